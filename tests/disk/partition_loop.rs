//! `sysinstall partition` on a loop device (root only): the demo layout is
//! written, the kernel gets every partition and the nodes appear; a mounted
//! partition makes it refuse with exit 3 and the disk unchanged.

use crate::support::disk::{assert_sgdisk_agrees, fingerprint, rows_of};
use crate::support::{output, require_root, sparse_image, stderr, stdout, sysinstall, LoopDevice};
use std::path::{Path, PathBuf};
use std::process::Command;
use sysinstall::layout::{self, LoadOptions};

const N: u64 = 8388608; // 4 GiB, the demo layout's disk

fn demo() -> PathBuf {
    crate::support::repo().join("layouts/demo.xml")
}

fn partition(dev: &Path) -> std::process::Output {
    output(
        sysinstall()
            .args(["partition", "--yes", "--layout"])
            .arg(demo())
            .arg("--device")
            .arg(dev),
    )
}

struct Umount(PathBuf);

impl Drop for Umount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).output();
    }
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn the_demo_layout_on_a_loop_device() {
    require_root(&["losetup", "partx", "sgdisk", "mkfs.ext4", "mount"]);
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    sparse_image(&img, N * 512);
    let lo = LoopDevice::attach(&img);

    let o = partition(&lo.path);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let table = layout::load(
        &demo(),
        &LoadOptions {
            set: vec![],
            disk_sectors: Some(N),
        },
    )
    .unwrap()
    .user;
    let out = stdout(&o);
    for p in &table.partitions {
        let node = lo.part(p.number);
        assert!(out.contains(&format!("{}  ", node.display())), "{out}");
        use std::os::unix::fs::FileTypeExt;
        assert!(std::fs::metadata(&node)
            .unwrap()
            .file_type()
            .is_block_device());
        let start: u64 = std::fs::read_to_string(format!(
            "/sys/class/block/{}/start",
            node.file_name().unwrap().to_string_lossy()
        ))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
        assert_eq!(start, p.first_lba, "{}", p.name);
    }
    assert_sgdisk_agrees(&lo.path, &rows_of(&table), table.first_usable_lba, N);

    // DATA gets a filesystem and is mounted: the next run must refuse.
    let data = lo.part(table.by_name("DATA").unwrap().number);
    let o = output(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "DATA"])
            .arg(&data),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let o = output(
        Command::new("mount")
            .args(["-o", "ro"])
            .arg(&data)
            .arg(&mnt),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let _umount = Umount(mnt.clone());

    let before = fingerprint(&img);
    let o = partition(&lo.path);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains(&format!(
            "{} is mounted on {} (ext4)",
            data.file_name().unwrap().to_string_lossy(),
            mnt.display()
        )),
        "{err}"
    );
    assert_eq!(fingerprint(&img), before, "the disk is unchanged");

    // A dry run says the same, and also writes nothing.
    let o = output(
        sysinstall()
            .args(["partition", "--dry-run", "--layout"])
            .arg(demo())
            .arg("--device")
            .arg(&lo.path),
    );
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("The layout is already in place"),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("is mounted on"), "{}", stderr(&o));
    assert_eq!(fingerprint(&img), before);
}
