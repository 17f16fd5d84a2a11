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

/// Attaches `img` as a loop device of 4096-byte logical sectors (a 4Kn
/// disk).
fn attach_4kn(img: &Path) -> LoopDevice {
    let o = output(
        Command::new("losetup")
            .args(["-f", "--show", "--sector-size", "4096"])
            .arg(img),
    );
    assert!(
        o.status.success(),
        "losetup --sector-size 4096: {}",
        stderr(&o)
    );
    LoopDevice {
        path: PathBuf::from(crate::support::stdout(&o).trim()),
    }
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_512_byte_sector_table_on_a_4096_byte_sector_disk_is_refused() {
    require_root(&["losetup"]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    sparse_image(&img, N * 512);
    let lo = attach_4kn(&img);
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
        err.contains(&format!(
            "the layout was placed for 512-byte sectors, but {} has 4096-byte logical sectors",
            lo.path.display()
        )),
        "{err}"
    );
    // From the command line: the layout is refused when it is loaded.
    let xml = dir.path().join("l.xml");
    std::fs::write(&xml, layout_xml(512, "16896")).unwrap();
    for args in [
        vec!["layout".to_owned(), xml.display().to_string()],
        vec![
            "plan".to_owned(),
            "--layout".to_owned(),
            xml.display().to_string(),
        ],
    ] {
        let o = output(
            crate::support::sysinstall()
                .args(&args)
                .arg("--device")
                .arg(&lo.path),
        );
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("the layout's sector size is 512 bytes, but"),
            "{}",
            stderr(&o)
        );
    }
    assert_eq!(sha256_file(&img), before);
}

/// A layout of one user device with `sector_size` and a primary GPT of `pg`
/// bytes: kernel 4 MiB (16 KiB aligned), esp 8 MiB (EFI type), APP filling.
fn layout_xml(sector_size: u64, pg: &str) -> String {
    format!(
        "<?xml version=\"1.0\"?>\n<partition_layout version=\"01.00.0000\">\n\
         <device type=\"nvme\" instance=\"0\" sector_size=\"{sector_size}\" num_sectors=\"EXT_NUM_SECTORS\">\n\
         <partition name=\"master_boot_record\" type=\"protective_master_boot_record\"><size>512</size></partition>\n\
         <partition name=\"primary_gpt\" type=\"primary_gpt\"><size>{pg}</size></partition>\n\
         <partition name=\"kernel\" id=\"2\" type=\"kernel\"><size>4194304</size><align_boundary>16384</align_boundary></partition>\n\
         <partition name=\"esp\" type=\"data\"><size>8388608</size><partition_type_guid>C12A7328-F81F-11D2-BA4B-00A0C93EC93B</partition_type_guid></partition>\n\
         <partition name=\"APP\" id=\"1\" type=\"data\"><allocation_attribute>0x808</allocation_attribute><align_boundary>16384</align_boundary></partition>\n\
         <partition name=\"secondary_gpt\" type=\"secondary_gpt\"><size>0xFFFFFFFFFFFFFFFF</size></partition>\n\
         </device>\n</partition_layout>\n"
    )
}

/// A 4Kn disk: `sysinstall partition` places and writes the table in
/// 4096-byte sectors, the kernel's partitions (BLKPG) sit on the right
/// bytes, and sgdisk, reading the loop device in its own unit, agrees.
#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_4096_byte_sector_disk_is_partitioned_in_its_unit_and_sgdisk_agrees() {
    require_root(&["losetup", "sgdisk"]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    sparse_image(&img, N * 512);
    let lo = attach_4kn(&img);
    let n4 = N / 8;
    let xml = dir.path().join("nvme.xml");
    std::fs::write(&xml, layout_xml(4096, "20480")).unwrap();
    let o = output(
        crate::support::sysinstall()
            .args(["partition", "--yes", "--layout"])
            .arg(&xml)
            .arg("--device")
            .arg(&lo.path),
    );
    assert!(o.status.success(), "{}", stderr(&o));

    // kernel: LBA 8 (6 rounded up to 4 sectors), 1024 sectors; esp right
    // after; APP 16 KiB aligned to the last usable sector N - 6.
    let want: Vec<Row> = vec![
        (1, 3080, n4 - 6, "0700".into(), "APP".into()),
        (2, 8, 1031, "0700".into(), "kernel".into()),
        (3, 1032, 3079, "EF00".into(), "esp".into()),
    ];
    let print = sgdisk_print(&lo.path);
    assert!(
        print.contains("Sector size (logical/physical): 4096/4096 bytes"),
        "{print}"
    );
    assert_eq!(parse_rows(&print), want, "{print}");
    assert_eq!(
        number_after(&print, "First usable sector is "),
        6,
        "{print}"
    );
    assert_eq!(
        number_after(&print, "last usable sector is "),
        n4 - 6,
        "{print}"
    );
    assert_eq!(number_after(&print, "holds up to "), 128, "{print}");
    let verify = sgdisk_verify(&lo.path);
    assert!(verify.contains("No problems found"), "{verify}");

    // The kernel counts 512-byte sectors in sysfs.
    assert_eq!(
        kernel_view(&lo.path),
        [
            (1, 3080 * 8, (n4 - 6 - 3080 + 1) * 8),
            (2, 64, 1024 * 8),
            (3, 1032 * 8, 2048 * 8)
        ]
    );
    // p2 addresses byte 8 × 4096 of the disk.
    let marker = b"4kn-kernel";
    std::fs::OpenOptions::new()
        .write(true)
        .open(lo.part(2))
        .and_then(|mut f| std::io::Write::write_all(&mut f, marker).and_then(|_| f.sync_all()))
        .unwrap();
    let bytes = std::fs::read(&img).unwrap();
    assert_eq!(&bytes[8 * 4096..8 * 4096 + marker.len()], marker);
    // The primary header at byte 4096, the backup in the last 4 KiB.
    assert_eq!(&bytes[4096..4104], b"EFI PART");
    assert_eq!(&bytes[bytes.len() - 4096..bytes.len() - 4088], b"EFI PART");

    // plan: in place; a second partition run changes nothing.
    let o = output(
        crate::support::sysinstall()
            .args(["plan", "--format", "json", "--layout"])
            .arg(&xml)
            .arg("--device")
            .arg(&lo.path),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["in_place"], true, "{v}");
    assert_eq!(v["disk_sectors"], n4);
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
