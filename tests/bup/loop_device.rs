//! Root tier: `bup write` on real block devices. The boot devices and the
//! user disk are loop devices; user partitions are reached through their
//! partition nodes (found from the disk's GPT, as in an initramfs without
//! udev), opened exclusively, written, synced, dropped from the page cache
//! and read back. (Real eMMC boot partitions cannot exist on the test host.)

use crate::support::bup::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const SPEC: &str = "3310-B01---1-0-jetson-tx2-devkit-mmcblk0p1";
const TNSPEC: &str = "3310-B01-1000-L.0-1-0-jetson-tx2-devkit-mmcblk0p1";

struct Loop(PathBuf);

impl Loop {
    fn attach(image: &Path) -> Loop {
        for _ in 0..20 {
            let o = output(Command::new("losetup").args(["-f", "--show"]).arg(image));
            if o.status.success() {
                return Loop(PathBuf::from(stdout(&o).trim()));
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("no free loop device for {}", image.display());
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("partx").arg("-d").arg(&self.0).output();
        let _ = Command::new("losetup").arg("-d").arg(&self.0).output();
    }
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn tx2_update_on_loop_devices() {
    crate::support::require_root(&["losetup", "partx", "sgdisk"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let images = boot_images(dir, &[4 * MIB, 4 * MIB]);
    let mut lin = Linear::read(&images);
    lin.put_table(&tx2_boot());
    lin.save(&images);
    let user = UserDisk::new(dir, &[("kernel", 256 * 1024), ("kernel_b", 256 * 1024)]);
    let payload = dir.join("payload");
    let kernel = data("kernel", 200_000);
    let mb2 = data("mb2", 7000);
    std::fs::write(
        &payload,
        crate::support::bup::payload(&[
            ("mb2", mb2.clone(), 0, ""),
            ("kernel", kernel.clone(), 0, ""),
            ("VER", data("ver", 100), 0, SPEC),
        ]),
    )
    .unwrap();

    let boot: Vec<Loop> = images.iter().map(|i| Loop::attach(i)).collect();
    let disk = Loop::attach(&user.path);
    let o = output(Command::new("partx").arg("-a").arg(&disk.0));
    assert!(o.status.success(), "partx -a: {}", stderr(&o));

    let mut cmd = sysinstall();
    cmd.args([
        "bup", "write", "--slot", "b", "--soc", "t186", "--tnspec", TNSPEC,
    ])
    .arg(&payload)
    .arg("--user-device")
    .arg(&disk.0);
    for b in &boot {
        cmd.arg("--boot-device").arg(&b.0);
    }
    let o = output(&mut cmd);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    // The kernel went through the partition node, not the whole disk.
    let node = format!("{}p2", disk.0.display());
    let line = out.lines().find(|l| l.contains(" kernel_b ")).unwrap();
    assert_eq!(line.split_whitespace().nth(3), Some(node.as_str()), "{out}");
    assert!(line.ends_with("written"), "{out}");

    drop(boot);
    drop(disk);
    let got = Linear::read(&images);
    let mb2_b = tx2_boot().into_iter().find(|p| p.name == "mb2_b").unwrap();
    assert_eq!(got.get(mb2_b.offset, mb2.len()), mb2);
    let bytes = std::fs::read(&user.path).unwrap();
    let k = user.partition("kernel_b");
    assert_eq!(
        &bytes[k.offset as usize..k.offset as usize + kernel.len()],
        &kernel[..]
    );
    let a = user.partition("kernel");
    assert!(bytes[a.offset as usize..(a.offset + a.size) as usize]
        .iter()
        .all(|&b| b == 0));
}

/// Issue 12 items 7 and 8 on block devices: stale bytes after data that
/// already matches, and an empty entry, leave data then zeros; the whole
/// boot devices and user disk equal the model afterwards.
#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn stale_tails_and_empty_entries_on_loop_devices() {
    crate::support::require_root(&["losetup", "partx", "sgdisk"]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let images = boot_images(dir, &[4 * MIB, 4 * MIB]);
    let part = |n: &str| tx2_boot().into_iter().find(|p| p.name == n).unwrap();
    let mb2 = data("mb2", 7000);
    let kernel = data("kernel", 200_000);
    let mut lin = Linear::read(&images);
    lin.put_table(&tx2_boot());
    for n in ["mb2_b", "VER_b"] {
        lin.put(part(n).offset, &vec![0xA5; part(n).size as usize]);
    }
    lin.put(part("mb2_b").offset, &mb2);
    lin.save(&images);
    let user = UserDisk::new(dir, &[("kernel", 256 * 1024), ("kernel_b", 256 * 1024)]);
    let mut bytes = std::fs::read(&user.path).unwrap();
    let k = user.partition("kernel_b");
    bytes[k.offset as usize..(k.offset + k.size) as usize].fill(0xA5);
    bytes[k.offset as usize..][..kernel.len()].copy_from_slice(&kernel);
    std::fs::write(&user.path, &bytes).unwrap();
    let payload = dir.join("payload");
    std::fs::write(
        &payload,
        crate::support::bup::payload(&[
            ("mb2", mb2.clone(), 0, ""),
            ("kernel", kernel.clone(), 0, ""),
            ("VER", Vec::new(), 0, SPEC),
        ]),
    )
    .unwrap();
    let mut want_boot = Linear::read(&images);
    want_boot.fill_partition(&part("mb2_b"), &mb2);
    want_boot.fill_partition(&part("VER_b"), &[]);
    let mut want_user = bytes.clone();
    want_user[k.offset as usize..(k.offset + k.size) as usize].fill(0);
    want_user[k.offset as usize..][..kernel.len()].copy_from_slice(&kernel);

    let boot: Vec<Loop> = images.iter().map(|i| Loop::attach(i)).collect();
    let disk = Loop::attach(&user.path);
    let o = output(Command::new("partx").arg("-a").arg(&disk.0));
    assert!(o.status.success(), "partx -a: {}", stderr(&o));
    let write = || {
        let mut cmd = sysinstall();
        cmd.args([
            "bup", "write", "--slot", "b", "--soc", "t186", "--tnspec", TNSPEC,
        ])
        .arg(&payload)
        .arg("--user-device")
        .arg(&disk.0);
        for b in &boot {
            cmd.arg("--boot-device").arg(&b.0);
        }
        output(&mut cmd)
    };
    let o = write();
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("3 written and verified"), "{out}");
    let o = write();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("0 written and verified"),
        "{}",
        stdout(&o)
    );

    drop(boot);
    drop(disk);
    assert!(
        Linear::read(&images) == want_boot,
        "boot devices differ from the model"
    );
    assert!(
        std::fs::read(&user.path).unwrap() == want_user,
        "user disk differs from the model"
    );
}

/// The efivarfs layer on files marked immutable, as efivarfs marks every
/// variable. (The real efivarfs is in the qemu tier; here the flag is set
/// with chattr on the test directory's filesystem.)
#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn t234_efivarfs_clears_and_restores_the_immutable_flag() {
    use sysinstall::sys::efivarfs::Efivarfs;
    use sysinstall::uefi::vars::{Var, VarStore, VarValue};
    crate::support::require_root(&["chattr", "lsattr"]);
    let tmp = tempfile::tempdir().unwrap();
    let mut s = Efivarfs::new(tmp.path());
    s.write(Var::RootfsStatusSlotB, &VarValue::nv_u32(0xFF))
        .unwrap();
    let path = s.path(Var::RootfsStatusSlotB);
    let o = output(Command::new("chattr").arg("+i").arg(&path));
    if !o.status.success() {
        // Root without CAP_LINUX_IMMUTABLE, or a filesystem without flags:
        // this test cannot say anything here.
        panic!("chattr +i {}: {}", path.display(), stderr(&o));
    }
    let lsattr = |p: &Path| {
        let o = output(Command::new("lsattr").arg("-d").arg(p));
        assert!(o.status.success(), "{}", stderr(&o));
        stdout(&o).split_whitespace().next().unwrap().to_owned()
    };
    assert!(lsattr(&path).contains('i'));
    // What a plain write meets on a real board.
    assert_eq!(
        std::fs::write(&path, [7, 0, 0, 0, 0, 0, 0, 0])
            .unwrap_err()
            .raw_os_error(),
        Some(libc::EPERM)
    );
    s.write(Var::RootfsStatusSlotB, &VarValue::nv_u32(0))
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), [7, 0, 0, 0, 0, 0, 0, 0]);
    assert!(lsattr(&path).contains('i'), "the flag is set again");
    s.delete(Var::RootfsStatusSlotB).unwrap();
    assert!(!path.exists());
}
