//! Creating and checking ext4 filesystems with the real e2fsprogs.
//!
//! The arguments are built by pure functions ([`mkfs_ext4_args`],
//! [`Ext4Options::for_partition`]) and unit-tested; [`mkfs_ext4`] and
//! [`e2fsck_preen`] only run them through [`crate::sys::cmd`], so a missing
//! tool or a failure comes back with the command line and its stderr.

use crate::sys::cmd;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

/// Longest ext4 volume label (`EXT2_LABEL_LEN`).
pub const LABEL_MAX: usize = 16;
/// Bytes per inode the old installer gave the partitions that hold many small
/// files (`mkfs.ext4 -i 4096` on APP, APP_b, DATA and UDA).
pub const DENSE_INODE_RATIO: u32 = 4096;
/// Partitions that get [`DENSE_INODE_RATIO`].
pub const DENSE_INODE_PARTITIONS: [&str; 4] = ["APP", "APP_b", "DATA", "UDA"];

/// How one partition is formatted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ext4Options {
    /// Volume label (the partition name).
    pub label: String,
    /// `-i BYTES-PER-INODE`, if set.
    pub inode_ratio: Option<u32>,
    /// Further mke2fs arguments, e.g. from the site configuration
    /// (`-E nodiscard`, `-O ^metadata_csum`), passed before the device.
    pub extra: Vec<String>,
}

impl Ext4Options {
    /// The old installer's choice for a partition: its name as the label,
    /// `-i 4096` for APP, APP_b, DATA and UDA.
    pub fn for_partition(name: &str) -> Ext4Options {
        Ext4Options {
            label: name.to_owned(),
            inode_ratio: DENSE_INODE_PARTITIONS
                .contains(&name)
                .then_some(DENSE_INODE_RATIO),
            extra: Vec::new(),
        }
    }
}

/// The mke2fs command line for `dev` (without the program name).
pub fn mkfs_ext4_args(dev: &Path, o: &Ext4Options) -> Result<Vec<OsString>> {
    if o.label.is_empty() || o.label.len() > LABEL_MAX {
        bail!("ext4 label {:?} must be 1 to {LABEL_MAX} bytes", o.label);
    }
    if let Some(bad) = o.extra.iter().find(|a| a.is_empty()) {
        bail!("empty mke2fs argument {bad:?}");
    }
    let mut args: Vec<OsString> = ["-t", "ext4", "-F", "-q", "-L"]
        .iter()
        .map(OsString::from)
        .collect();
    args.push(o.label.clone().into());
    if let Some(i) = o.inode_ratio {
        args.push("-i".into());
        args.push(i.to_string().into());
    }
    args.extend(o.extra.iter().map(OsString::from));
    args.push(dev.as_os_str().to_owned());
    Ok(args)
}

/// Makes an ext4 filesystem on `dev` (a partition or an image file).
pub fn mkfs_ext4(dev: &Path, o: &Ext4Options) -> Result<()> {
    let args = mkfs_ext4_args(dev, o)?;
    cmd::run_retrying_busy(Command::new("mke2fs").args(&args), &[])
        .with_context(|| format!("formatting {} ({}) as ext4", o.label, dev.display()))?;
    Ok(())
}

/// What mke2fs makes of `bytes` with the options `o`: the superblock of a
/// filesystem created in a sparse scratch file under `scratch` (removed
/// afterwards), so its free blocks and inodes are exactly what the real
/// mkfs of that partition will leave. Inode tables and the journal are
/// initialised lazily, so the scratch file holds only a few MB of metadata.
pub fn capacity(
    bytes: u64,
    o: &Ext4Options,
    scratch: &Path,
) -> Result<crate::probe::ExtSuperblock> {
    let image = scratch.join(format!("capacity-{}.img", o.label));
    let made = (|| -> Result<crate::probe::ExtSuperblock> {
        std::fs::File::create(&image)
            .and_then(|f| f.set_len(bytes))
            .with_context(|| format!("creating {}", image.display()))?;
        let mut probe = o.clone();
        probe
            .extra
            .extend(["-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"].map(String::from));
        mkfs_ext4(&image, &probe)?;
        let head = super::blockdev::read_head(&image, 4096)?;
        crate::probe::ext_superblock(&head)
            .with_context(|| format!("reading the superblock mke2fs wrote to {}", image.display()))
    })();
    let _ = std::fs::remove_file(&image);
    made.with_context(|| format!("finding what {} can hold", o.label))
}

/// Sets the filesystem's "last mounted directory" (`tune2fs -M`), which the
/// install uses as its per-filesystem completion marker (see
/// `install::journal`). The filesystem must not be mounted.
pub fn set_last_mounted(dev: &Path, text: &str) -> Result<()> {
    if text.len() >= 64 {
        bail!("last-mounted text {text:?} does not fit the 64-byte superblock field");
    }
    cmd::run_retrying_busy(Command::new("tune2fs").arg("-M").arg(text).arg(dev), &[])
        .with_context(|| format!("marking {} complete", dev.display()))?;
    Ok(())
}

/// Grows the ext2/3/4 filesystem on `dev` to fill it: `e2fsck -f -p`
/// first (resize2fs wants a freshly checked filesystem), then `resize2fs`.
/// The filesystem must not be mounted.
pub fn grow(dev: &Path) -> Result<()> {
    cmd::run_retrying_busy(Command::new("e2fsck").arg("-f").arg("-p").arg(dev), &[1])
        .with_context(|| format!("checking {} before growing it", dev.display()))?;
    cmd::run_retrying_busy(Command::new("resize2fs").arg(dev), &[])
        .with_context(|| format!("growing the filesystem on {}", dev.display()))?;
    Ok(())
}

/// What `e2fsck -p` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsckOutcome {
    /// Nothing to fix (exit 0).
    Clean,
    /// Errors were fixed (exit 1, or 2 "reboot": irrelevant for an unmounted slot).
    Fixed,
}

/// Runs `e2fsck -p` (preen: fix what is safe, fail on anything else) on an
/// unmounted filesystem, as the old installer did after unpacking a slot.
pub fn e2fsck_preen(dev: &Path) -> Result<FsckOutcome> {
    let out = cmd::run_retrying_busy(Command::new("e2fsck").arg("-p").arg(dev), &[1, 2])
        .with_context(|| format!("checking {}", dev.display()))?;
    Ok(if out.status.code() == Some(0) {
        FsckOutcome::Clean
    } else {
        FsckOutcome::Fixed
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(dev: &str, o: &Ext4Options) -> Vec<String> {
        mkfs_ext4_args(Path::new(dev), o)
            .unwrap()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn old_tool_options_per_partition() {
        assert_eq!(
            args("/dev/mmcblk0p1", &Ext4Options::for_partition("APP")),
            [
                "-t",
                "ext4",
                "-F",
                "-q",
                "-L",
                "APP",
                "-i",
                "4096",
                "/dev/mmcblk0p1"
            ]
        );
        for dense in ["APP_b", "DATA", "UDA"] {
            assert_eq!(Ext4Options::for_partition(dense).inode_ratio, Some(4096));
        }
        for plain in ["LOGS", "EXTRA"] {
            assert_eq!(
                args("/dev/x", &Ext4Options::for_partition(plain)),
                ["-t", "ext4", "-F", "-q", "-L", plain, "/dev/x"]
            );
        }
    }

    #[test]
    fn extra_options_come_before_the_device() {
        let mut o = Ext4Options::for_partition("DATA");
        o.extra = vec!["-E".into(), "nodiscard".into()];
        let a = args("/dev/y", &o);
        assert_eq!(&a[a.len() - 3..], ["-E", "nodiscard", "/dev/y"]);
    }

    #[test]
    fn labels_are_checked() {
        let mut o = Ext4Options::for_partition("A_NAME_LONGER_THAN_16");
        assert!(mkfs_ext4_args(Path::new("/dev/z"), &o)
            .unwrap_err()
            .to_string()
            .contains("1 to 16"));
        o.label.clear();
        assert!(mkfs_ext4_args(Path::new("/dev/z"), &o).is_err());
    }
}
