//! Mounting a filesystem for the duration of a step.
//!
//! A [`Mount`] is unmounted when dropped (best effort, retried, then lazily
//! detached), so an error in the middle of an unpack does not leave a slot
//! mounted. The mount point directory is created if needed and never
//! removed: removing a directory that may still be a mount point is how
//! installers delete the data they were meant to keep.

use anyhow::Context as _;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// A mounted filesystem.
#[derive(Debug)]
pub struct Mount {
    target: PathBuf,
    mounted: bool,
}

impl Mount {
    /// Mounts the ext4 filesystem on `device` at `target` (created if missing).
    pub fn ext4(device: &Path, target: &Path, read_only: bool) -> anyhow::Result<Mount> {
        Mount::ext4_with(device, target, read_only, None)
    }

    /// Mounts an existing filesystem only to read it, without replaying its
    /// journal (`ro,noload`): reading a partition that is about to be
    /// re-created must not write to it.
    pub fn ext4_inspect(device: &Path, target: &Path) -> anyhow::Result<Mount> {
        Mount::ext4_with(device, target, true, Some("noload"))
    }

    fn ext4_with(
        device: &Path,
        target: &Path,
        read_only: bool,
        data: Option<&str>,
    ) -> anyhow::Result<Mount> {
        Mount::with(device, target, "ext4", MsFlags::empty(), read_only, data)
    }

    /// Mounts the FAT filesystem on `device` (an ESP) at `target`, without
    /// exec: nothing on it runs under Linux.
    pub fn vfat(device: &Path, target: &Path, read_only: bool) -> anyhow::Result<Mount> {
        Mount::with(device, target, "vfat", MsFlags::MS_NOEXEC, read_only, None)
    }

    fn with(
        device: &Path,
        target: &Path,
        fstype: &str,
        extra: MsFlags,
        read_only: bool,
        data: Option<&str>,
    ) -> anyhow::Result<Mount> {
        std::fs::create_dir_all(target)
            .with_context(|| format!("creating mount point {}", target.display()))?;
        let mut flags = MsFlags::MS_NOATIME | MsFlags::MS_NODEV | MsFlags::MS_NOSUID | extra;
        if read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        // nodev/nosuid protect the installer while it writes device nodes and
        // setuid files into the tree; they only affect this mount.
        mount(Some(device), target, Some(fstype), flags, data).with_context(|| {
            format!(
                "mounting {} on {} ({fstype})",
                device.display(),
                target.display()
            )
        })?;
        Ok(Mount {
            target: target.to_owned(),
            mounted: true,
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// Unmounts, reporting failure (use this on the success path).
    pub fn unmount(mut self) -> anyhow::Result<()> {
        self.mounted = false;
        unmount_with_retry(&self.target)
    }
}

fn unmount_with_retry(target: &Path) -> anyhow::Result<()> {
    let mut last = None;
    for attempt in 0..10 {
        match umount2(target, MntFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EBUSY) => {
                last = Some(nix::errno::Errno::EBUSY);
                std::thread::sleep(Duration::from_millis(100 * (attempt + 1)));
            }
            Err(e) => return Err(e).with_context(|| format!("unmounting {}", target.display())),
        }
    }
    Err(anyhow::anyhow!(
        "unmounting {}: {}",
        target.display(),
        last.map_or_else(String::new, |e| e.to_string())
    ))
}

/// Unmounts everything mounted below `dir` (deepest first): what a run
/// that was killed (`kill -9`, a power cut of the process, not the board)
/// left mounted in its own run directory. Returns the mount points.
pub fn unmount_under(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let Ok(dir) = std::fs::canonicalize(dir) else {
        return Ok(Vec::new());
    };
    let text =
        std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut points: Vec<PathBuf> = super::holders::parse_mountinfo(&text)
        .into_iter()
        .map(|m| PathBuf::from(m.mount_point))
        .filter(|p| p.starts_with(&dir) && *p != dir)
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for p in &points {
        unmount_with_retry(p)?;
    }
    Ok(points)
}

impl Drop for Mount {
    fn drop(&mut self) {
        if self.mounted {
            if let Err(e) = unmount_with_retry(&self.target) {
                log::warn!("{e:#}; detaching it lazily");
                let _ = umount2(&self.target, MntFlags::MNT_DETACH);
            }
        }
    }
}
