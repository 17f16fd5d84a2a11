//! `--disk-image` on real loop devices (root tier): a GPT disk image made
//! by mke2fs and sgdisk, mapped by bmap-tools' own `bmaptool create`, is
//! written with and without its bmap; the result is compared with what
//! `bmaptool copy` plus `sgdisk -e` make of the same image on a file, and
//! checked by `sgdisk -v`, e2fsck and debugfs. Bad inputs leave the device
//! as it was; a run cut after the body is finished by the same command.

use crate::support::disk::fingerprint;
use crate::support::{output, require_root, stderr, stdout, LoopDevice};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOOLS: &[&str] = &[
    "losetup", "partx", "sgdisk", "mke2fs", "e2fsck", "debugfs", "bmaptool", "xz", "zstd",
];
const MIB: u64 = 1 << 20;
/// The image's first bytes, which sysinstall writes last.
const HEAD: u64 = MIB;
/// The device: larger than the image, so its backup GPT has to move.
const DEVICE: u64 = 160 * MIB;
const IMAGE: u64 = 64 * MIB;
/// The pattern the device holds before each run (bytes never written keep it).
const OLD: u8 = 0xAA;

fn run(cmd: &mut Command) -> String {
    let o = output(cmd);
    assert!(o.status.success(), "{cmd:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

/// A 64 MiB GPT disk image: APP (ext4 with /etc/hello) at 1 MiB, DATA
/// (never formatted: zeros) after it; its bmap; xz and zstd forms.
fn disk_image(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(tree.join("etc/hello"), "from a disk image\n").unwrap();
    std::fs::write(tree.join("big"), vec![0x5au8; 3 << 20]).unwrap();
    let img = dir.join("disk.img");
    std::fs::File::create(&img).unwrap().set_len(IMAGE).unwrap();
    // mke2fs first: it clears the start of the file it is given.
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-L", "APP", "-E"])
        .arg(format!("offset={}", MIB))
        .arg("-d")
        .arg(&tree)
        .arg(&img)
        .arg("20M"));
    run(Command::new("sgdisk")
        .args([
            "-n",
            "1:2048:+20M",
            "-c",
            "1:APP",
            "-n",
            "2:0:+10M",
            "-c",
            "2:DATA",
        ])
        .arg(&img));
    run(Command::new("bmaptool")
        .args(["-q", "create", "-o"])
        .arg(dir.join("disk.img.bmap"))
        .arg(&img));
    run(Command::new("xz").args(["-k", "-0", "-T1"]).arg(&img));
    run(Command::new("zstd").args(["-q", "-k"]).arg(&img));
    img
}

/// A device file holding the old pattern, attached to a loop device.
fn device(dir: &Path, name: &str) -> (PathBuf, LoopDevice) {
    let file = dir.join(name);
    std::fs::write(&file, vec![OLD; DEVICE as usize]).unwrap();
    let dev = LoopDevice::attach(&file);
    (file, dev)
}

fn install(dev: &LoopDevice, args: &[&str]) -> std::process::Output {
    output(
        crate::support::sysinstall()
            .args(["install", "--yes", "--events", "json", "--device"])
            .arg(&dev.path)
            .args(args),
    )
}

fn summary(o: &std::process::Output) -> serde_json::Value {
    stdout(o)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .rfind(|v| v["kind"] == "summary")
        .unwrap_or_else(|| panic!("no summary: {}{}", stdout(o), stderr(o)))
}

/// What bmaptool and sgdisk make of the image on a device like ours (the
/// device's file).
fn reference(dir: &Path, img: &Path, bmap: bool) -> PathBuf {
    let (file, dev) = device(dir, if bmap { "ref-bmap" } else { "ref-full" });
    let mut c = Command::new("bmaptool");
    c.args(["-q", "copy"]);
    if bmap {
        c.arg("--bmap").arg(dir.join("disk.img.bmap"));
    } else {
        c.arg("--nobmap");
    }
    run(c.arg(img).arg(&dev.path));
    drop(dev);
    run(Command::new("sgdisk").arg("-e").arg(&file));
    file
}

/// The partition table as `sgdisk -p` prints it, less the disk's name.
fn table(file: &Path) -> String {
    let p = run(Command::new("sgdisk").arg("-p").arg(file));
    p.lines()
        .filter(|l| !l.starts_with("Disk "))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `ours` holds what `reference` does: the same table, and the same bytes
/// from the end of the head (which we zero where the image maps nothing,
/// bmaptool leaves as it was) to the image's old backup GPT.
fn assert_like(ours: &Path, reference: &Path) {
    assert_eq!(table(ours), table(reference));
    let (a, b) = (
        std::fs::read(ours).unwrap(),
        std::fs::read(reference).unwrap(),
    );
    let body = HEAD as usize..(IMAGE - 33 * 512) as usize;
    assert_eq!(
        differing_sectors(&a[body.clone()], &b[body]),
        Vec::<u64>::new(),
        "sectors past the head that differ"
    );
}

/// The first sectors (512 bytes) where two disks differ.
fn differing_sectors(a: &[u8], b: &[u8]) -> Vec<u64> {
    a.chunks(512)
        .zip(b.chunks(512))
        .enumerate()
        .filter(|(_, (x, y))| x != y)
        .map(|(i, _)| i as u64)
        .take(8)
        .collect()
}

fn check_disk(dev: &LoopDevice) {
    let v = run(Command::new("sgdisk").arg("-v").arg(&dev.path));
    assert!(v.contains("No problems found"), "sgdisk -v: {v}");
    dev.partx_add();
    run(Command::new("e2fsck").arg("-fn").arg(dev.part(1)));
    let cat = run(Command::new("debugfs")
        .args(["-R", "cat /etc/hello"])
        .arg(dev.part(1)));
    assert_eq!(cat.trim(), "from a disk image");
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_disk_image_lands_as_bmaptool_and_sgdisk_would_leave_it() {
    require_root(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path());
    let xz = img.with_extension("img.xz");
    let zst = img.with_extension("img.zst");
    let bmap = dir.path().join("disk.img.bmap");

    // With the bmap: only mapped blocks are written.
    let (file, dev) = device(dir.path(), "dev-a");
    let o = install(
        &dev,
        &[
            "--disk-image",
            xz.to_str().unwrap(),
            "--bmap",
            bmap.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let s = summary(&o)["disk_image"].clone();
    assert_eq!(s["gpt_moved"], true, "{s}");
    assert_eq!(s["size"], IMAGE);
    assert!(
        s["written"].as_u64().unwrap() < 8 * MIB,
        "only mapped blocks: {s}"
    );
    check_disk(&dev);
    drop(dev);
    assert_like(&file, &reference(dir.path(), &img, true));
    let got = std::fs::read(&file).unwrap();
    // The image's old backup header is cleared (sgdisk -e leaves it).
    let old_backup = (IMAGE - 512) as usize;
    assert!(got[old_backup..old_backup + 512].iter().all(|b| *b == 0));
    // Never-mapped blocks (the unformatted DATA) keep the old bytes.
    let data = (43_008 * 512) as usize;
    assert!(got[data..data + MIB as usize].iter().all(|b| *b == OLD));

    // The bmap beside the image is found (disk.img.bmap for disk.img.zst)...
    let (_, dev) = device(dir.path(), "dev-b");
    let o = install(&dev, &["--disk-image", zst.to_str().unwrap(), "--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("disk.img.bmap (format 2.0)"),
        "{}",
        stderr(&o)
    );
    drop(dev);
    // ...unless --no-bmap: then every byte of the image is written.
    let (file, dev) = device(dir.path(), "dev-c");
    let o = install(&dev, &["--disk-image", zst.to_str().unwrap(), "--no-bmap"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("bmap:       none"), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("Boot:       left alone"),
        "{}",
        stderr(&o)
    );
    check_disk(&dev);
    drop(dev);
    assert_like(&file, &reference(dir.path(), &img, false));
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn bad_disk_images_and_bmaps_leave_the_device_as_it_was() {
    require_root(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let img = disk_image(d);
    let bmap = d.join("disk.img.bmap");
    // The image changed after its bmap was made (a byte in APP's superblock).
    let changed = d.join("changed.img");
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[(MIB + 1024 + 120) as usize] ^= 0xff;
    std::fs::write(&changed, &bytes).unwrap();
    // The bmap edited by hand (its own checksum no longer matches).
    let edited = d.join("edited.bmap");
    let text = std::fs::read_to_string(&bmap).unwrap();
    std::fs::write(
        &edited,
        text.replacen("<BlockSize> 4096", "<BlockSize>  4096", 1),
    )
    .unwrap();
    // Larger than the device.
    let huge = d.join("huge.img");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(DEVICE + MIB)
        .unwrap();
    let (file, dev) = device(d, "dev");
    let before = fingerprint(&file);
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    let cases: Vec<(Vec<String>, i32, &str, &str)> = vec![
        (
            vec![
                "--disk-image".into(),
                s(&changed),
                "--bmap".into(),
                s(&bmap),
            ],
            3,
            "rootfs_invalid",
            "do not match their bmap checksum",
        ),
        (
            vec!["--disk-image".into(), s(&img), "--bmap".into(), s(&edited)],
            3,
            "input_invalid",
            "BmapFileChecksum",
        ),
        (
            vec!["--disk-image".into(), s(&huge)],
            3,
            "no_space",
            "the image is",
        ),
        (
            vec!["--disk-image".into(), s(&img), s(&img)],
            2,
            "usage",
            "ROOTFS cannot go with it",
        ),
    ];
    for (args, code, why, text) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = install(&dev, &args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        assert_eq!(summary(&o)["code"], why, "{args:?}");
        assert!(
            stderr(&o).contains(text) || stdout(&o).contains(text),
            "{args:?}: {}",
            stderr(&o)
        );
        assert_eq!(fingerprint(&file), before, "{args:?} changed the device");
    }
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_cut_write_leaves_no_table_and_the_same_command_finishes_it() {
    require_root(TOOLS);
    let dir = tempfile::tempdir().unwrap();
    let img = disk_image(dir.path());
    let xz = img.with_extension("img.xz");
    let (_file, dev) = device(dir.path(), "dev");
    let args = ["--disk-image", xz.to_str().unwrap(), "--no-bmap"];
    let o = output(
        crate::support::sysinstall()
            .args(["install", "--yes", "--device"])
            .arg(&dev.path)
            .args(args)
            .env("SYSINSTALL_FAILPOINT", "disk-image-body"),
    );
    assert_ne!(o.status.code(), Some(0), "the failpoint fired");
    // The body is written, the head is not: no partition table to follow.
    let p = output(Command::new("sgdisk").arg("-p").arg(&dev.path));
    assert!(
        !stdout(&p).contains("APP"),
        "a cut write shows no table: {}",
        stdout(&p)
    );
    let o = install(&dev, &args);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let s = summary(&o);
    assert!(
        s["disk_image"]["in_place"].as_u64().unwrap() > MIB,
        "the re-run kept what was in place: {s}"
    );
    assert!(!s["resumed"].as_array().unwrap().is_empty(), "{s}");
    check_disk(&dev);
}
