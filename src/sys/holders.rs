//! Who is using a disk: mounts of the disk or its partitions, swap, holders
//! (device-mapper, md, bcache: anything under `holders/` in sysfs), and the
//! running system's root filesystem.
//!
//! Rewriting the GPT under any of these would pull a filesystem or a mapping
//! out from under a running system, so [`check_unused`] refuses before the
//! first write, and the `O_EXCL` open of the device
//! ([`super::blockdev::Access::Exclusive`]) guards the window after the
//! check. The checks here come first because they can say *who* holds the
//! disk; `EBUSY` cannot.
//!
//! "The device the running system booted from" is taken to be the device
//! holding the mounted root filesystem (`/` in mountinfo, directly or below a
//! device-mapper holder), not `root=` on the kernel command line: the
//! installer runs from an initramfs whose command line often still names the
//! eMMC it is about to re-lay-out, and refusing that would refuse the very job
//! it exists for. A running system on the disk always shows up as a mount.
//!
//! The parsers are pure (text in, records out); [`snapshot`] reads the files
//! below a configurable root so tests can use a fake `/proc` and `/sys`.

#![deny(clippy::indexing_slicing)]

use super::blockdev::DevNum;
use std::fmt;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// One mount, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// `major:minor` of the mounted device (anonymous for btrfs, tmpfs, ...).
    pub dev: DevNum,
    /// Where it is mounted.
    pub mount_point: String,
    /// Filesystem type.
    pub fs_type: String,
    /// The mount source (`/dev/mmcblk0p1`, `tmpfs`, ...).
    pub source: String,
}

/// Undoes the octal escapes (`\040` for a space) the kernel puts in
/// mountinfo and /proc/swaps paths.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| c == b'\\' && d.iter().all(|x| (b'0'..=b'7').contains(x)))
            .map(|d| d.iter().fold(0u32, |v, x| v * 8 + u32::from(x - b'0')));
        match octal.and_then(|v| u8::try_from(v).ok()) {
            Some(v) => {
                out.push(v);
                i += 4;
            }
            None => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `/proc/self/mountinfo`; malformed lines are skipped.
///
/// Format (proc(5)): `id parent major:minor root mount_point options
/// [optional fields...] - fs_type source super_options`.
pub fn parse_mountinfo(text: &str) -> Vec<MountInfo> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut l = left.split_whitespace();
            let dev = DevNum::parse(l.nth(2)?)?;
            let mount_point = unescape(l.nth(1)?);
            let mut r = right.split_whitespace();
            Some(MountInfo {
                dev,
                mount_point,
                fs_type: r.next()?.to_owned(),
                source: unescape(r.next().unwrap_or("")),
            })
        })
        .collect()
}

/// Parses `/proc/swaps` into the swap areas' file names.
pub fn parse_swaps(text: &str) -> Vec<String> {
    text.lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .map(unescape)
        .collect()
}

/// A swap area and, when it is a block device, its number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    /// File name from /proc/swaps.
    pub path: String,
    /// Device number when the path is a block device.
    pub dev: Option<DevNum>,
}

/// Something that holds a block device open (an entry of `holders/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    /// Kernel name (`dm-0`, `md127`).
    pub name: String,
    /// Device-mapper name (`/sys/block/dm-0/dm/name`), for dm holders.
    pub dm_name: Option<String>,
    /// Its device number, when sysfs has it.
    pub dev: Option<DevNum>,
}

/// The disk or one of its partitions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// Kernel name (`mmcblk0`, `mmcblk0p1`).
    pub name: String,
    /// Device number.
    pub dev: DevNum,
    /// What holds it.
    pub holders: Vec<Holder>,
}

/// One reason the disk must not be rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Use {
    /// The running system's root filesystem is on it.
    Root {
        /// Device name.
        device: String,
        /// Filesystem type.
        fs_type: String,
    },
    /// Mounted.
    Mounted {
        /// Device name.
        device: String,
        /// Mount point.
        mount_point: String,
        /// Filesystem type.
        fs_type: String,
    },
    /// Used as swap.
    Swap {
        /// Device name.
        device: String,
    },
    /// Held by another block device.
    Held {
        /// Device name.
        device: String,
        /// The holder.
        holder: Holder,
        /// Where the holder is mounted, if it is.
        holder_mount: Option<String>,
    },
}

impl fmt::Display for Use {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Use::Root { device, fs_type } => write!(
                f,
                "{device} holds the running system's root filesystem (/, {fs_type})"
            ),
            Use::Mounted {
                device,
                mount_point,
                fs_type,
            } => write!(f, "{device} is mounted on {mount_point} ({fs_type})"),
            Use::Swap { device } => write!(f, "{device} is in use as swap"),
            Use::Held {
                device,
                holder,
                holder_mount,
            } => {
                write!(f, "{device} is held by {}", holder.name)?;
                if let Some(dm) = &holder.dm_name {
                    write!(f, " (device-mapper '{dm}')")?;
                }
                match holder_mount.as_deref() {
                    Some("/") => write!(f, ", which holds the running system's root filesystem"),
                    Some(m) => write!(f, ", mounted on {m}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Every use of `devices` (the disk and its partitions) found in the mounts,
/// swaps and holders.
pub fn find_uses(devices: &[Device], mounts: &[MountInfo], swaps: &[Swap]) -> Vec<Use> {
    let source_is = |source: &str, name: &str| {
        source
            .strip_prefix("/dev/")
            .is_some_and(|rest| rest == name)
    };
    let mut uses = Vec::new();
    for d in devices {
        for m in mounts
            .iter()
            .filter(|m| m.dev == d.dev || source_is(&m.source, &d.name))
        {
            uses.push(if m.mount_point == "/" {
                Use::Root {
                    device: d.name.clone(),
                    fs_type: m.fs_type.clone(),
                }
            } else {
                Use::Mounted {
                    device: d.name.clone(),
                    mount_point: m.mount_point.clone(),
                    fs_type: m.fs_type.clone(),
                }
            });
        }
        if swaps
            .iter()
            .any(|s| s.dev == Some(d.dev) || source_is(&s.path, &d.name))
        {
            uses.push(Use::Swap {
                device: d.name.clone(),
            });
        }
        for h in &d.holders {
            let holder_mount = h
                .dev
                .and_then(|hd| mounts.iter().find(|m| m.dev == hd))
                .map(|m| m.mount_point.clone());
            uses.push(Use::Held {
                device: d.name.clone(),
                holder: h.clone(),
                holder_mount,
            });
        }
    }
    uses
}

/// The disk is in use: every reason, on one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{disk} is in use: {}", join(uses))]
pub struct InUse {
    /// Kernel name of the disk.
    pub disk: String,
    /// What uses it.
    pub uses: Vec<Use>,
}

fn join(uses: &[Use]) -> String {
    uses.iter()
        .map(Use::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// What [`snapshot`] read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The disk first, then its partitions as the kernel knows them now.
    pub devices: Vec<Device>,
    /// All mounts.
    pub mounts: Vec<MountInfo>,
    /// All swap areas.
    pub swaps: Vec<Swap>,
}

fn read_trim(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path).map(|s| s.trim().to_owned())
}

fn read_dev(dir: &Path) -> Option<DevNum> {
    read_trim(&dir.join("dev"))
        .ok()
        .and_then(|s| DevNum::parse(&s))
}

fn holders(root: &Path, dir: &Path) -> io::Result<Vec<Holder>> {
    let hdir = dir.join("holders");
    let entries = match std::fs::read_dir(&hdir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let hsys = root.join("sys/class/block").join(&name);
        out.push(Holder {
            dm_name: read_trim(&hsys.join("dm/name")).ok(),
            dev: read_dev(&hsys),
            name,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Reads what uses disk `disk` (a kernel name) below `root` (`/` on a real
/// system): `sys/block/<disk>` and its partitions with their holders,
/// `proc/self/mountinfo` and `proc/swaps`.
pub fn snapshot(root: &Path, disk: &str) -> io::Result<Snapshot> {
    let ctx =
        |what: &Path, e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", what.display()));
    let ddir = root.join("sys/block").join(disk);
    let mut devices = vec![Device {
        name: disk.to_owned(),
        dev: read_dev(&ddir)
            .ok_or_else(|| io::Error::other(format!("{}/dev: unreadable", ddir.display())))?,
        holders: holders(root, &ddir).map_err(|e| ctx(&ddir, e))?,
    }];
    let mut parts = Vec::new();
    for entry in std::fs::read_dir(&ddir).map_err(|e| ctx(&ddir, e))? {
        let p = entry?.path();
        if !p.join("partition").is_file() {
            continue;
        }
        if let Some(dev) = read_dev(&p) {
            parts.push(Device {
                name: p
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                dev,
                holders: holders(root, &p).map_err(|e| ctx(&p, e))?,
            });
        }
    }
    parts.sort_by(|a, b| a.name.cmp(&b.name));
    devices.extend(parts);

    let mi = root.join("proc/self/mountinfo");
    let mounts = parse_mountinfo(&std::fs::read_to_string(&mi).map_err(|e| ctx(&mi, e))?);
    // /proc/swaps is absent on kernels without swap support.
    let sw = root.join("proc/swaps");
    let swaps = match std::fs::read_to_string(&sw) {
        Ok(t) => parse_swaps(&t),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(ctx(&sw, e)),
    };
    let swaps = swaps
        .into_iter()
        .map(|path| {
            let local = root.join(path.trim_start_matches('/'));
            let dev = std::fs::metadata(local)
                .ok()
                .filter(|m| m.file_type().is_block_device())
                .map(|m| DevNum::from_dev_t(m.rdev()));
            Swap { path, dev }
        })
        .collect();
    Ok(Snapshot {
        devices,
        mounts,
        swaps,
    })
}

/// Refuses (with every reason) when disk `disk` or any of its partitions is
/// mounted, used as swap, held by another device, or holds the running
/// system's root. `root` is `/` except in tests.
pub fn check_unused(root: &Path, disk: &str) -> anyhow::Result<()> {
    let snap = snapshot(root, disk)
        .map_err(|e| anyhow::anyhow!(e).context(format!("finding what uses {disk}")))?;
    let uses = find_uses(&snap.devices, &snap.mounts, &snap.swaps);
    if uses.is_empty() {
        Ok(())
    } else {
        Err(InUse {
            disk: disk.to_owned(),
            uses,
        }
        .into())
    }
}

/// Loop devices (kernel names) whose backing file is `image`, read from
/// `sys/block/loop*/loop/backing_file` below `root`. An image attached to a
/// loop device is a disk in its own right: what uses that loop device uses
/// the image.
pub fn loops_backed_by(root: &Path, image: &Path) -> io::Result<Vec<String>> {
    use std::os::unix::fs::MetadataExt as _;
    let target = std::fs::metadata(image)?;
    let id = (target.dev(), target.ino());
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root.join("sys/block"))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if !name.starts_with("loop") {
            continue;
        }
        let Ok(backing) = read_trim(&root.join("sys/block").join(&name).join("loop/backing_file"))
        else {
            continue; // not attached
        };
        let backing = root.join(backing.trim_start_matches('/'));
        if std::fs::metadata(&backing).is_ok_and(|m| (m.dev(), m.ino()) == id) {
            out.push(name);
        }
    }
    out.sort();
    Ok(out)
}

/// Refuses when `image` backs a loop device that is in use (see
/// [`check_unused`]): writing the image would change a mounted filesystem
/// underneath the kernel.
pub fn check_image_unused(root: &Path, image: &Path) -> anyhow::Result<()> {
    let loops = loops_backed_by(root, image).map_err(|e| {
        anyhow::anyhow!(e).context(format!(
            "finding loop devices backed by {}",
            image.display()
        ))
    })?;
    for l in loops {
        check_unused(root, &l)
            .map_err(|e| e.context(format!("{} is attached to {l}", image.display())))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::fs;

    const MOUNTINFO: &str = "\
22 1 0:21 / / rw,relatime shared:1 - tmpfs rootfs rw
25 22 0:5 / /dev rw,nosuid shared:2 - devtmpfs udev rw,size=10k
41 22 179:1 / /mnt/my\\040app rw,relatime shared:20 master:3 - ext4 /dev/mmcblk0p1 rw
42 22 0:45 / /data rw - btrfs /dev/mmcblk0p3 rw,space_cache
43 22 253:0 / /secure rw - ext4 /dev/mapper/crypt rw
garbage line without separator
";

    fn dev(major: u32, minor: u32) -> DevNum {
        DevNum { major, minor }
    }

    #[test]
    fn mountinfo_fields_and_escapes() {
        let m = parse_mountinfo(MOUNTINFO);
        assert_eq!(m.len(), 5);
        assert_eq!(m[2].dev, dev(179, 1));
        assert_eq!(m[2].mount_point, "/mnt/my app");
        assert_eq!(m[2].fs_type, "ext4");
        assert_eq!(m[2].source, "/dev/mmcblk0p1");
        assert_eq!(m[0].mount_point, "/");
    }

    #[test]
    fn swaps_are_parsed() {
        let text = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                    /dev/mmcblk0p5                          partition\t1000444\t\t0\t\t-2\n\
                    /swap\\040file                           file\t\t1024\t\t0\t\t-3\n";
        assert_eq!(parse_swaps(text), ["/dev/mmcblk0p5", "/swap file"]);
        assert!(parse_swaps("Filename Type Size Used Priority\n").is_empty());
    }

    fn devices() -> Vec<Device> {
        vec![
            Device {
                name: "mmcblk0".into(),
                dev: dev(179, 0),
                holders: vec![],
            },
            Device {
                name: "mmcblk0p1".into(),
                dev: dev(179, 1),
                holders: vec![],
            },
            Device {
                name: "mmcblk0p2".into(),
                dev: dev(179, 2),
                holders: vec![Holder {
                    name: "dm-0".into(),
                    dm_name: Some("crypt".into()),
                    dev: Some(dev(253, 0)),
                }],
            },
            Device {
                name: "mmcblk0p3".into(),
                dev: dev(179, 3),
                holders: vec![],
            },
            Device {
                name: "mmcblk0p5".into(),
                dev: dev(179, 5),
                holders: vec![],
            },
        ]
    }

    #[test]
    fn every_kind_of_use_is_found_and_named() {
        let swaps = vec![Swap {
            path: "/dev/mmcblk0p5".into(),
            dev: None,
        }];
        let uses = find_uses(&devices(), &parse_mountinfo(MOUNTINFO), &swaps);
        let text: Vec<String> = uses.iter().map(Use::to_string).collect();
        assert_eq!(
            text,
            [
                "mmcblk0p1 is mounted on /mnt/my app (ext4)",
                "mmcblk0p2 is held by dm-0 (device-mapper 'crypt'), mounted on /secure",
                // btrfs reports an anonymous device number; the source names it.
                "mmcblk0p3 is mounted on /data (btrfs)",
                "mmcblk0p5 is in use as swap",
            ]
        );
    }

    fn without_holders() -> Vec<Device> {
        let mut d = devices();
        d.iter_mut().for_each(|d| d.holders.clear());
        d
    }

    #[test]
    fn an_unused_disk_has_no_uses() {
        let mounts = parse_mountinfo(&MOUNTINFO.lines().take(2).collect::<Vec<_>>().join("\n"));
        assert!(find_uses(&without_holders(), &mounts, &[]).is_empty());
    }

    #[test]
    fn the_running_root_is_named_as_such() {
        let mounts = parse_mountinfo(
            "20 1 179:1 / / rw - ext4 /dev/root rw\n30 20 253:0 / /x rw - xfs a rw\n",
        );
        let uses = find_uses(&devices(), &mounts, &[]);
        assert_eq!(
            uses[0].to_string(),
            "mmcblk0p1 holds the running system's root filesystem (/, ext4)"
        );
        let mounts = parse_mountinfo("20 1 253:0 / / rw - ext4 /dev/dm-0 rw\n");
        let uses = find_uses(&devices(), &mounts, &[]);
        assert_eq!(
            uses[0].to_string(),
            "mmcblk0p2 is held by dm-0 (device-mapper 'crypt'), which holds the running system's root filesystem"
        );
    }

    #[test]
    fn swap_matched_by_device_number() {
        let swaps = vec![Swap {
            path: "/dev/disk/by-partlabel/SWAP".into(),
            dev: Some(dev(179, 3)),
        }];
        let uses = find_uses(&without_holders(), &[], &swaps);
        assert_eq!(
            uses,
            [Use::Swap {
                device: "mmcblk0p3".into()
            }]
        );
    }

    /// A fake root: /sys/block/loop0 with two partitions, one held by dm-1
    /// ("vg-lv"), /proc with a mount and a swap.
    fn fake_root() -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        let w = |p: &str, v: &str| {
            let path = root.path().join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, v).unwrap();
        };
        w("sys/block/loop0/dev", "7:0\n");
        fs::create_dir_all(root.path().join("sys/block/loop0/holders")).unwrap();
        for (n, minor) in [(1, 0), (2, 1)] {
            w(
                &format!("sys/block/loop0/loop0p{n}/partition"),
                &format!("{n}\n"),
            );
            w(
                &format!("sys/block/loop0/loop0p{n}/dev"),
                &format!("259:{minor}\n"),
            );
        }
        fs::create_dir_all(root.path().join("sys/block/loop0/loop0p2/holders/dm-1")).unwrap();
        w("sys/class/block/dm-1/dev", "253:1\n");
        w("sys/class/block/dm-1/dm/name", "vg-lv\n");
        w(
            "proc/self/mountinfo",
            "1 0 0:2 / / rw - rootfs rootfs rw\n50 1 259:0 / /media/usb rw - vfat /dev/loop0p1 rw\n",
        );
        w(
            "proc/swaps",
            "Filename Type Size Used Priority\n/dev/loop0p2 partition 1 0 -2\n",
        );
        root
    }

    #[test]
    fn snapshot_reads_a_fake_tree() {
        let root = fake_root();
        let s = snapshot(root.path(), "loop0").unwrap();
        assert_eq!(
            s.devices
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
            ["loop0", "loop0p1", "loop0p2"]
        );
        assert_eq!(s.devices[2].holders[0].dm_name.as_deref(), Some("vg-lv"));
        assert_eq!(s.devices[2].holders[0].dev, Some(dev(253, 1)));
        assert_eq!(s.mounts.len(), 2);
        assert_eq!(s.swaps[0].path, "/dev/loop0p2");

        let err = check_unused(root.path(), "loop0").unwrap_err().to_string();
        assert_eq!(
            err,
            "loop0 is in use: loop0p1 is mounted on /media/usb (vfat); \
             loop0p2 is in use as swap; loop0p2 is held by dm-1 (device-mapper 'vg-lv')"
        );
    }

    #[test]
    fn a_free_disk_passes_and_a_missing_one_is_an_error() {
        let root = fake_root();
        fs::write(
            root.path().join("proc/self/mountinfo"),
            "1 0 0:2 / / rw - rootfs rootfs rw\n",
        )
        .unwrap();
        fs::remove_file(root.path().join("proc/swaps")).unwrap();
        fs::remove_dir(root.path().join("sys/block/loop0/loop0p2/holders/dm-1")).unwrap();
        check_unused(root.path(), "loop0").unwrap();
        let err = format!("{:#}", check_unused(root.path(), "loop9").unwrap_err());
        assert!(err.starts_with("finding what uses loop9: "), "{err}");
    }

    #[test]
    fn unescape_leaves_other_backslashes() {
        assert_eq!(unescape(r"a\040b\\c\09"), "a b\\\\c\\09");
        assert_eq!(unescape(r"\134"), "\\");
        assert_eq!(unescape("end\\"), "end\\");
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod loop_tests {
    use super::*;
    use std::fs;

    #[test]
    fn an_image_behind_a_used_loop_device_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        let w = |p: &str, v: &str| {
            let path = r.join(p);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, v).unwrap();
        };
        w("images/disk.img", "");
        w("images/other.img", "");
        w("sys/block/loop3/loop/backing_file", "/images/disk.img\n");
        w("sys/block/loop3/dev", "7:3\n");
        w("sys/block/loop3/loop3p1/partition", "1\n");
        w("sys/block/loop3/loop3p1/dev", "259:7\n");
        w("sys/block/loop4/loop/backing_file", "/images/other.img\n");
        w("sys/block/loop4/dev", "7:4\n");
        fs::create_dir_all(r.join("sys/block/loop5")).unwrap(); // detached
        w("sys/block/sda/dev", "8:0\n");
        w("proc/self/mountinfo", "1 0 0:2 / / rw - rootfs rootfs rw\n");

        let img = r.join("images/disk.img");
        assert_eq!(loops_backed_by(r, &img).unwrap(), ["loop3"]);
        check_image_unused(r, &img).unwrap();

        w(
            "proc/self/mountinfo",
            "1 0 0:2 / / rw - rootfs rootfs rw\n9 1 259:7 / /mnt rw - ext4 /dev/loop3p1 rw\n",
        );
        let err = format!("{:#}", check_image_unused(r, &img).unwrap_err());
        assert!(
            err.ends_with(
                "disk.img is attached to loop3: loop3 is in use: loop3p1 is mounted on /mnt (ext4)"
            ),
            "{err}"
        );
        check_image_unused(r, &r.join("images/other.img")).unwrap();
    }
}
