//! Partitioning real block devices (loop devices; root only): the kernel and
//! sgdisk see exactly the table, partition nodes appear, a changed table
//! replaces the kernel's view, and a disk in use is refused with its bytes
//! unchanged. This host's kernel does not parse GPTs, so the BLKPG path is
//! the one exercised here; the qemu tier covers BLKRRPART on a real kernel.

use crate::support::disk::*;
use crate::support::{output, require_root, sha256_file, sparse_image, stderr, LoopDevice};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use sysinstall::disk::{self, DiskEnv, KernelUpdate};
use sysinstall::events::Events;
use sysinstall::exit::Changes;
use sysinstall::layout::PartitionTable;
use sysinstall::sys::blockdev::{DevNum, NodeOrigin};

/// 64 MiB.
const N: u64 = 131072;

struct Rig {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    lo: LoopDevice,
}

fn rig() -> Rig {
    require_root(&["losetup", "partx", "sgdisk"]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    sparse_image(&img, N * 512);
    let lo = LoopDevice::attach(&img);
    Rig {
        dir: dir.path().to_owned(),
        _dir: dir,
        lo,
    }
}

fn kname(dev: &Path) -> String {
    dev.file_name().unwrap().to_string_lossy().into_owned()
}

/// (number, start, size) of every partition the kernel knows, from sysfs.
fn kernel_view(dev: &Path) -> Vec<(u32, u64, u64)> {
    let name = kname(dev);
    let mut v: Vec<(u32, u64, u64)> = std::fs::read_dir(format!("/sys/block/{name}"))
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let rd = |f: &str| {
                std::fs::read_to_string(p.join(f))
                    .ok()
                    .map(|s| s.trim().parse::<u64>().unwrap())
            };
            Some((rd("partition")? as u32, rd("start")?, rd("size")?))
        })
        .collect();
    v.sort();
    v
}

fn extents(t: &PartitionTable) -> Vec<(u32, u64, u64)> {
    let mut v: Vec<_> = t
        .partitions
        .iter()
        .map(|p| (p.number, p.first_lba, p.last_lba - p.first_lba + 1))
        .collect();
    v.sort();
    v
}

fn sysfs_dev(part: &Path) -> DevNum {
    let s = std::fs::read_to_string(format!("/sys/class/block/{}/dev", kname(part))).unwrap();
    DevNum::parse(&s).unwrap()
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn written_table_is_what_the_kernel_and_sgdisk_see() {
    let r = rig();
    let t = small_table(N);
    let changes = Changes::new();
    let w = disk::partition(&r.lo.path, &t, &changes, &Events::silent()).unwrap();
    assert!(changes.any());
    eprintln!("kernel update: {:?}", w.kernel);
    assert!(w.kernel.is_some());

    assert_eq!(kernel_view(&r.lo.path), extents(&t));
    assert_eq!(w.nodes.len(), 4);
    for node in &w.nodes {
        assert_eq!(node.path, r.lo.part(node.number));
        let m = std::fs::metadata(&node.path).unwrap();
        assert!(m.file_type().is_block_device(), "{}", node.path.display());
        assert_eq!(DevNum::from_dev_t(m.rdev()), sysfs_dev(&node.path));
        assert_eq!(node.origin, NodeOrigin::Appeared, "devtmpfs made it");
    }
    // The partition nodes address the right sectors: write through p3, read
    // the disk at its start LBA.
    let marker = b"sysinstall-partition-3";
    std::fs::OpenOptions::new()
        .write(true)
        .open(r.lo.part(3))
        .and_then(|mut f| std::io::Write::write_all(&mut f, marker).and_then(|_| f.sync_all()))
        .unwrap();
    let mut disk = std::fs::File::open(&r.lo.path).unwrap();
    let mut buf = [0u8; 22];
    std::io::Seek::seek(&mut disk, std::io::SeekFrom::Start(8232 * 512)).unwrap();
    std::io::Read::read_exact(&mut disk, &mut buf).unwrap();
    assert_eq!(&buf, marker);

    assert_sgdisk_agrees(&r.lo.path, &rows_of(&t), 40, N);
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_changed_table_replaces_the_kernels_view() {
    let r = rig();
    let t = small_table(N);
    disk::partition(&r.lo.path, &t, &Changes::new(), &Events::silent()).unwrap();
    assert!(r.lo.part(6).exists());

    let mut t2 = t.clone();
    t2.partitions.retain(|p| p.name != "esp"); // 6 goes
    t2.partitions[2].last_lba = 10_000; // 3 grows
    t2.partitions.push(part(9, "new", 12288, 20479)); // 9 comes
    let w = disk::partition(&r.lo.path, &t2, &Changes::new(), &Events::silent()).unwrap();
    if let Some(KernelUpdate::Blkpg { removed, added, .. }) = &w.kernel {
        assert_eq!(removed, &[3, 6]);
        assert_eq!(added, &[3, 9]);
    }
    assert_eq!(kernel_view(&r.lo.path), extents(&t2));
    assert!(
        !r.lo.part(6).exists(),
        "the node of a deleted partition is gone"
    );
    assert!(r.lo.part(9).exists());
    assert_sgdisk_agrees(&r.lo.path, &rows_of(&t2), 40, N);
}

/// Unmounts (or swaps off) on drop, so a failing test leaves no mount behind.
struct Undo(Vec<&'static str>, PathBuf);

impl Drop for Undo {
    fn drop(&mut self) {
        let _ = Command::new(self.0[0])
            .args(&self.0[1..])
            .arg(&self.1)
            .output();
    }
}

fn assert_refused(dev: &Path, table: &PartitionTable, want: &[&str]) {
    let before = sha256_file(dev);
    let changes = Changes::new();
    let err = disk::partition(dev, table, &changes, &Events::silent()).unwrap_err();
    let msg = format!("{err:#}");
    for w in want {
        assert!(msg.contains(w), "'{msg}' lacks '{w}'");
    }
    assert!(!changes.any(), "nothing may be marked changed");
    assert_eq!(sha256_file(dev), before, "the disk must be unchanged");
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_mounted_partition_is_refused_and_the_disk_unchanged() {
    let r = rig();
    require_root(&["mkfs.ext4", "mount"]);
    let t = small_table(N);
    disk::partition(&r.lo.path, &t, &Changes::new(), &Events::silent()).unwrap();
    let p2 = r.lo.part(2);
    let o = output(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&p2));
    assert!(o.status.success(), "{}", stderr(&o));
    let mnt = r.dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    // Read-only, so the mounted filesystem cannot change the disk's hash.
    let o = output(Command::new("mount").args(["-o", "ro"]).arg(&p2).arg(&mnt));
    assert!(o.status.success(), "{}", stderr(&o));
    let _undo = Undo(vec!["umount"], mnt.clone());

    let mut t2 = t.clone();
    t2.partitions.retain(|p| p.number != 3);
    assert_refused(
        &r.lo.path,
        &t2,
        &[
            &format!("refusing to partition {}", r.lo.path.display()),
            &format!(
                "{}p2 is mounted on {} (ext4)",
                kname(&r.lo.path),
                mnt.display()
            ),
        ],
    );
    // The kernel's view is untouched too.
    assert_eq!(kernel_view(&r.lo.path), extents(&t));
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn swap_on_a_partition_is_refused() {
    let r = rig();
    require_root(&["mkswap", "swapon", "swapoff"]);
    let t = small_table(N);
    disk::partition(&r.lo.path, &t, &Changes::new(), &Events::silent()).unwrap();
    let p2 = r.lo.part(2);
    assert!(output(Command::new("mkswap").arg(&p2)).status.success());
    let o = output(Command::new("swapon").arg(&p2));
    assert!(o.status.success(), "swapon: {}", stderr(&o));
    let _undo = Undo(vec!["swapoff"], p2.clone());
    assert_refused(
        &r.lo.path,
        &t,
        &[&format!("{}p2 is in use as swap", kname(&r.lo.path))],
    );
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn an_exclusive_opener_is_refused_by_the_final_guard() {
    let r = rig();
    // Holds the disk like a program with O_EXCL would (nothing in sysfs shows it).
    let held = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_EXCL)
        .open(&r.lo.path)
        .unwrap();
    assert_refused(&r.lo.path, &small_table(N), &["is in use", "busy"]);
    drop(held);
    disk::partition(
        &r.lo.path,
        &small_table(N),
        &Changes::new(),
        &Events::silent(),
    )
    .unwrap();
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_partition_is_not_a_disk() {
    let r = rig();
    disk::partition(
        &r.lo.path,
        &small_table(N),
        &Changes::new(),
        &Events::silent(),
    )
    .unwrap();
    let p1 = r.lo.part(1);
    let err = format!(
        "{:#}",
        disk::partition(&p1, &small_table(N), &Changes::new(), &Events::silent()).unwrap_err()
    );
    assert!(err.contains("is a partition; give the whole disk"), "{err}");
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn nodes_are_made_when_nothing_creates_them() {
    let r = rig();
    // A /dev without devtmpfs or udev, holding a stale node for partition 1.
    let dev_dir = r.dir.join("dev");
    std::fs::create_dir(&dev_dir).unwrap();
    let stale = dev_dir.join(format!("{}p1", kname(&r.lo.path)));
    nix::sys::stat::mknod(
        &stale,
        nix::sys::stat::SFlag::S_IFBLK,
        nix::sys::stat::Mode::from_bits_truncate(0o600),
        libc::makedev(7, 250),
    )
    .unwrap();
    let opts = DiskEnv {
        dev_dir: dev_dir.clone(),
        node_timeout: Duration::from_millis(200),
        ..DiskEnv::default()
    };
    let t = small_table(N);
    let p = disk::prepare(&r.lo.path, &t, &opts).unwrap();
    let w = disk::write(p, &opts, &Changes::new(), &Events::silent()).unwrap();
    let origins: Vec<_> = w.nodes.iter().map(|n| (n.number, n.origin)).collect();
    assert_eq!(
        origins,
        [
            (1, NodeOrigin::Replaced),
            (2, NodeOrigin::Created),
            (3, NodeOrigin::Created),
            (6, NodeOrigin::Created)
        ]
    );
    for n in &w.nodes {
        assert_eq!(n.path.parent(), Some(dev_dir.as_path()));
        let m = std::fs::metadata(&n.path).unwrap();
        assert!(m.file_type().is_block_device());
        assert_eq!(
            DevNum::from_dev_t(m.rdev()),
            sysfs_dev(&r.lo.part(n.number))
        );
    }
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn sector_sizes_other_than_512_are_refused() {
    require_root(&["losetup"]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    sparse_image(&img, N * 512);
    let o = output(
        Command::new("losetup")
            .args(["-f", "--show", "--sector-size", "4096"])
            .arg(&img),
    );
    assert!(o.status.success(), "losetup --sector-size: {}", stderr(&o));
    let lo = LoopDevice {
        path: PathBuf::from(crate::support::stdout(&o).trim()),
    };
    let before = sha256_file(&img);
    let err = format!(
        "{:#}",
        disk::partition(
            &lo.path,
            &small_table(N),
            &Changes::new(),
            &Events::silent()
        )
        .unwrap_err()
    );
    assert!(
        err.contains("4096-byte logical sectors; only 512 is supported"),
        "{err}"
    );
    assert_eq!(sha256_file(&img), before);
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_rescan_that_finds_nothing_falls_back_to_blkpg() {
    require_root(&["losetup", "sgdisk"]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    sparse_image(&img, N * 512);
    // -P: the loop device scans partitions, so BLKRRPART succeeds; whether
    // the kernel then finds the GPT depends on CONFIG_EFI_PARTITION.
    let o = output(
        Command::new("losetup")
            .args(["-f", "--show", "-P"])
            .arg(&img),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let lo = LoopDevice {
        path: PathBuf::from(crate::support::stdout(&o).trim()),
    };
    let t = small_table(N);
    for _ in 0..2 {
        let w = disk::partition(&lo.path, &t, &Changes::new(), &Events::silent()).unwrap();
        eprintln!("kernel update: {:?}", w.kernel);
        match w.kernel.unwrap() {
            KernelUpdate::Reread => {}
            KernelUpdate::Blkpg { reason, .. } => {
                assert!(reason.contains("found no partitions"), "{reason}")
            }
        }
        assert_eq!(kernel_view(&lo.path), extents(&t));
        assert!(w.nodes.iter().all(|n| n.path.exists()));
    }
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn an_image_whose_loop_device_is_mounted_is_refused() {
    let r = rig();
    require_root(&["mkfs.ext4", "mount"]);
    let t = small_table(N);
    disk::partition(&r.lo.path, &t, &Changes::new(), &Events::silent()).unwrap();
    let p2 = r.lo.part(2);
    assert!(
        output(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&p2))
            .status
            .success()
    );
    let mnt = r.dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    assert!(
        output(Command::new("mount").args(["-o", "ro"]).arg(&p2).arg(&mnt))
            .status
            .success()
    );
    let _undo = Undo(vec!["umount"], mnt.clone());

    // Writing the backing image directly would pull the GPT out from under
    // the mounted filesystem just the same.
    let img = r.dir.join("disk.img");
    let before = fingerprint(&img);
    let changes = Changes::new();
    let err = format!(
        "{:#}",
        disk::partition(&img, &t, &changes, &Events::silent()).unwrap_err()
    );
    assert!(
        err.contains(&format!("disk.img is attached to {}", kname(&r.lo.path))),
        "{err}"
    );
    assert!(err.contains("p2 is mounted on"), "{err}");
    assert!(!changes.any());
    assert_eq!(fingerprint(&img), before);
}
