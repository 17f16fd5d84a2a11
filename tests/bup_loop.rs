//! Root tier: `bup write` on real block devices. The boot devices and the
//! user disk are loop devices; user partitions are reached through their
//! partition nodes (found from the disk's GPT, as in an initramfs without
//! udev), opened exclusively, written, synced, dropped from the page cache
//! and read back. (Real eMMC boot partitions cannot exist on the test host.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bup_support;

use bup_support::*;
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

fn usable() -> bool {
    let test = "tx2_update_on_loop_devices";
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP {test}: needs root (loop devices)");
        return false;
    }
    for tool in ["losetup", "partx", "sgdisk"] {
        if Command::new(tool).arg("--version").output().is_err() {
            eprintln!("SKIP {test}: needs {tool}");
            return false;
        }
    }
    true
}

#[test]
fn tx2_update_on_loop_devices() {
    if !usable() {
        return;
    }
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
        bup_support::payload(&[
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

/// Root and the tools, else a visible SKIP.
fn root_with(test: &str, tools: &[&str]) -> bool {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("SKIP {test}: needs root (loop devices, mounts, chattr +i)");
        return false;
    }
    for tool in tools {
        let found = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .chain(["/sbin", "/usr/sbin"])
            .any(|d| Path::new(d).join(tool).is_file());
        if !found {
            eprintln!("SKIP {test}: needs {tool}");
            return false;
        }
    }
    true
}

/// The kernel mounts vfat (the module may be absent on a test host; the
/// qemu tier's kernel has it).
fn kernel_has_vfat(test: &str) -> bool {
    let _ = Command::new("modprobe").arg("vfat").output();
    let fs = std::fs::read_to_string("/proc/filesystems").unwrap_or_default();
    let has = fs
        .lines()
        .any(|l| l.split_whitespace().last() == Some("vfat"));
    if !has {
        eprintln!("SKIP {test}: this kernel cannot mount vfat (no vfat in /proc/filesystems)");
    }
    has
}

fn mtools(args: &[&str], image: &Path) -> std::process::Output {
    let (tool, rest) = args.split_first().unwrap();
    output(
        Command::new(tool)
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(image)
            .args(rest),
    )
}

/// T234 ESP: mkfs.vfat on a loop device, L4TLauncher and a capsule written,
/// synced and verified by sysinstall, then read from outside with mtools.
#[test]
fn t234_esp_on_a_loop_device() {
    use sysinstall::sys::vfat::{self, EspFile, VfatOptions};
    use sysinstall::uefi::capsule::Builder;
    use sysinstall::uefi::vars::TEGRA_FMP_IMAGE_TYPE;
    let test = "t234_esp_on_a_loop_device";
    if !root_with(test, &["losetup", "mkfs.vfat", "mdir", "mcopy"]) || !kernel_has_vfat(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("esp.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let launcher = tmp.path().join("BOOTAA64.efi");
    std::fs::write(&launcher, data("L4TLauncher", 200_000)).unwrap();
    let capsule = tmp.path().join("tegra-bl.cap");
    std::fs::write(
        &capsule,
        Builder::new(TEGRA_FMP_IMAGE_TYPE, 0x0024_0403).build(&data("BUP", 3 << 20)),
    )
    .unwrap();
    let files = [
        EspFile {
            path: vfat::LAUNCHER.into(),
            source: launcher.clone(),
        },
        EspFile {
            path: vfat::CAPSULE.into(),
            source: capsule.clone(),
        },
    ];
    let mnt = tmp.path().join("mnt");
    let dev = Loop::attach(&image);
    vfat::mkfs_vfat(&dev.0, &VfatOptions::default()).unwrap();
    let sizes = vfat::populate(&dev.0, &mnt, &files).unwrap();
    assert_eq!(sizes, [200_000, std::fs::metadata(&capsule).unwrap().len()]);
    vfat::verify(&dev.0, &mnt, &files).unwrap();

    // From outside: FAT32 (boot sector "FAT32   " at 82), both files with
    // their bytes.
    let img = std::fs::read(&image).unwrap();
    assert_eq!(&img[82..90], b"FAT32   ");
    let o = mtools(&["mdir", "-b", "::EFI/UpdateCapsule"], &image);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o).trim(), "::/EFI/UpdateCapsule/TEGRA_BL.Cap");
    for (on_esp, src) in [
        ("::EFI/BOOT/BOOTAA64.efi", &launcher),
        ("::EFI/UpdateCapsule/TEGRA_BL.Cap", &capsule),
    ] {
        let out = tmp.path().join("copied");
        let _ = std::fs::remove_file(&out);
        let o = mtools(&["mcopy", on_esp], &image);
        assert!(!o.status.success(), "mcopy without a target must fail");
        let o = output(
            Command::new("mcopy")
                .env("MTOOLS_SKIP_CHECK", "1")
                .arg("-i")
                .arg(&image)
                .arg(on_esp)
                .arg(&out),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(src).unwrap());
    }

    // Staging again replaces the capsule; verify catches a difference.
    std::fs::write(&capsule, b"a second capsule").unwrap();
    vfat::populate(&dev.0, &mnt, &files[1..]).unwrap();
    vfat::verify(&dev.0, &mnt, &files).unwrap();
    std::fs::write(&launcher, b"not what was written").unwrap();
    let err = format!("{:#}", vfat::verify(&dev.0, &mnt, &files).unwrap_err());
    assert!(
        err.contains("EFI/BOOT/BOOTAA64.efi on the ESP") && err.contains("does not hold"),
        "{err}"
    );
    drop(dev);
    let o = output(
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(&image)
            .arg("::EFI/UpdateCapsule/TEGRA_BL.Cap")
            .arg(tmp.path().join("second")),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        std::fs::read(tmp.path().join("second")).unwrap(),
        b"a second capsule"
    );
}

/// The efivarfs layer on files marked immutable, as efivarfs marks every
/// variable. (The real efivarfs is in the qemu tier; here the flag is set
/// with chattr on the test directory's filesystem.)
#[test]
fn t234_efivarfs_clears_and_restores_the_immutable_flag() {
    use sysinstall::sys::efivarfs::Efivarfs;
    use sysinstall::uefi::vars::{Var, VarStore, VarValue};
    let test = "t234_efivarfs_clears_and_restores_the_immutable_flag";
    if !root_with(test, &["chattr", "lsattr"]) {
        return;
    }
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

/// The efivarfs layer where files have no inode flags at all: vfat, whose
/// `FS_IOC_GETFLAGS` is `ENOTTY`. Writes, reads and deletes just work.
#[test]
fn t234_efivarfs_on_a_filesystem_without_inode_flags() {
    use sysinstall::sys::efivarfs::Efivarfs;
    use sysinstall::sys::vfat::{self, VfatOptions};
    use sysinstall::uefi::vars::{Var, VarStore, VarValue};
    let test = "t234_efivarfs_on_a_filesystem_without_inode_flags";
    if !root_with(test, &["losetup", "mkfs.vfat"]) || !kernel_has_vfat(test) {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let image = tmp.path().join("fat.img");
    std::fs::File::create(&image)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    let dev = Loop::attach(&image);
    vfat::mkfs_vfat(&dev.0, &VfatOptions::default()).unwrap();
    let mnt = tmp.path().join("mnt");
    let m = sysinstall::sys::mount::Mount::vfat(&dev.0, &mnt, false).unwrap();
    let f = std::fs::File::create(mnt.join("x")).unwrap();
    assert_eq!(sysinstall::sys::efivarfs::flags(&f).unwrap(), None);
    drop(f);
    let mut fat = Efivarfs::new(&mnt);
    fat.write(Var::BootChainFwNext, &VarValue::nv_u32(1))
        .unwrap();
    fat.write(Var::BootChainFwNext, &VarValue::nv_u32(0))
        .unwrap();
    assert_eq!(
        fat.read(Var::BootChainFwNext).unwrap(),
        Some(VarValue::nv_u32(0))
    );
    fat.delete(Var::BootChainFwNext).unwrap();
    m.unmount().unwrap();
}
