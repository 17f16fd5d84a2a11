//! `--image NAME=SOURCE` on real loop devices (root tier): an ext4 image
//! made by mke2fs, turned sparse by `img2simg` (Android's own tool) and
//! compressed, fills both slots and is grown to them; a raw image with
//! zero runs lands byte for byte; bad images are refused before anything
//! is written. The results are read from the disk image file with e2fsck,
//! dumpe2fs and debugfs, not with sysinstall.

use crate::support::rig::Rig;
use crate::support::{output, require_root, stderr, stdout};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOOLS: &[&str] = &[
    "losetup",
    "partx",
    "sgdisk",
    "mke2fs",
    "e2fsck",
    "tune2fs",
    "resize2fs",
    "dumpe2fs",
    "debugfs",
    "img2simg",
    "zstd",
    "xz",
    "python3",
];

/// (first byte, bytes) of partition `name` in the rig's layout.
fn extent(rig: &Rig, name: &str) -> (u64, u64) {
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&rig.layout_json).unwrap()).unwrap();
    let ss = j["sector_size"].as_u64().unwrap();
    let p = j["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no partition {name}"));
    (
        p["start_lba"].as_u64().unwrap() * ss,
        p["size_sectors"].as_u64().unwrap() * ss,
    )
}

/// Copies partition `name` out of the disk image into a file of its own.
fn copy_out(rig: &Rig, name: &str) -> PathBuf {
    let _ = Command::new("sync").status();
    let (start, len) = extent(rig, name);
    let out = rig.dir.path().join(format!("{name}.out"));
    let mut f = std::fs::File::open(&rig.image).unwrap();
    f.seek(SeekFrom::Start(start)).unwrap();
    let mut w = std::fs::File::create(&out).unwrap();
    std::io::copy(&mut f.take(len), &mut w).unwrap();
    out
}

fn run(cmd: &mut Command) -> String {
    let o = output(cmd);
    assert!(o.status.success(), "{cmd:?}: {}{}", stdout(&o), stderr(&o));
    stdout(&o)
}

/// A 96 MiB ext4 image holding a small tree, its sparse form and the
/// compressed sparse form.
fn ext4_image(dir: &Path) -> (PathBuf, PathBuf) {
    let tree = dir.join("image-tree");
    std::fs::create_dir_all(tree.join("etc")).unwrap();
    std::fs::write(
        tree.join("etc/os-release"),
        "PRETTY_NAME=\"from an image\"\n",
    )
    .unwrap();
    std::fs::write(tree.join("big"), vec![0x5au8; 3 << 20]).unwrap();
    let raw = dir.join("rootfs.ext4");
    run(Command::new("mke2fs")
        .args(["-q", "-F", "-t", "ext4", "-b", "4096", "-L", "APP", "-d"])
        .arg(&tree)
        .arg(&raw)
        .arg("96M"));
    let simg = dir.join("rootfs.simg");
    run(Command::new("img2simg").arg(&raw).arg(&simg));
    run(Command::new("zstd").args(["-q", "-f"]).arg(&simg));
    (raw, dir.join("rootfs.simg.zst"))
}

/// Block count × block size of the filesystem in `dev`, from dumpe2fs.
fn fs_bytes(dev: &Path) -> u64 {
    let h = run(Command::new("dumpe2fs").arg("-h").arg(dev));
    let field = |k: &str| -> u64 {
        h.lines()
            .find_map(|l| l.strip_prefix(k))
            .unwrap_or_else(|| panic!("no {k} in {h}"))
            .trim()
            .parse()
            .unwrap()
    };
    field("Block count:") * field("Block size:")
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_sparse_compressed_ext4_image_fills_both_slots_and_is_grown_to_them() {
    require_root(TOOLS);
    let rig = Rig::new();
    let (raw, simg) = ext4_image(rig.dir.path());
    let o = output(
        rig.install_cmd()
            .arg("--image")
            .arg(format!("APP={}", simg.display()))
            .arg("--bup")
            .arg(&rig.bup),
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("sparse image (zstd)"), "{err}");
    let (_, slot_bytes) = extent(&rig, "APP");
    for slot in ["APP", "APP_b"] {
        let dev = copy_out(&rig, slot);
        run(Command::new("e2fsck").arg("-fn").arg(&dev));
        assert_eq!(
            fs_bytes(&dev),
            slot_bytes,
            "{slot} is grown to its partition"
        );
        let cat = run(Command::new("debugfs")
            .arg("-R")
            .arg("cat /etc/os-release")
            .arg(&dev));
        assert!(cat.contains("from an image"), "{slot}: {cat}");
        let big = run(Command::new("debugfs").arg("-R").arg("stat /big").arg(&dev));
        assert!(big.contains("Size: 3145728"), "{slot}: {big}");
    }
    // The boot partitions came from --bup, as with a tarball.
    rig.check(&[
        "boot",
        "--smd",
        "initialize",
        rig.layout_json.to_str().unwrap(),
        rig.boot[0].to_str().unwrap(),
        rig.boot[1].to_str().unwrap(),
        rig.image.to_str().unwrap(),
        rig.manifest.to_str().unwrap(),
    ]);
    // The same install again (the journal cleared): the layout is in place,
    // the image is written again and checked again.
    let o = output(
        rig.install_cmd()
            .arg("--image")
            .arg(format!("APP={}", raw.display()))
            .arg("--bup")
            .arg(&rig.bup),
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("raw image (none)"), "{}", stderr(&o));
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_raw_image_lands_byte_for_byte_and_the_rest_of_its_partition_is_untouched() {
    require_root(TOOLS);
    let rig = Rig::new();
    // 5 MiB: data, 2 MiB of zeros (a zero-out), data again, a ragged end.
    let mut bytes: Vec<u8> = (0..(1u32 << 20)).map(|i| (i % 251) as u8 | 1).collect();
    bytes.extend(vec![0u8; 2 << 20]);
    bytes.extend((0..(2u32 << 20) - 300).map(|i| (i % 241) as u8 | 2));
    let image = rig.dir.path().join("logs.bin");
    std::fs::write(&image, &bytes).unwrap();
    run(Command::new("xz").args(["-k", "-0", "-T1"]).arg(&image));
    let o = output(
        rig.install_cmd()
            .arg(&rig.rootfs)
            .arg("--image")
            .arg(format!("LOGS={}.xz", image.display())),
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let logs = std::fs::read(copy_out(&rig, "LOGS")).unwrap();
    assert_eq!(&logs[..bytes.len()], &bytes[..], "LOGS holds the image");
    assert!(
        logs[bytes.len()..].iter().all(|b| *b == 0),
        "past the image LOGS is as it was (blank)"
    );
    // The slots are the tarball's, as without --image.
    rig.check(&[
        "tree",
        rig.image.to_str().unwrap(),
        rig.layout_json.to_str().unwrap(),
        "APP",
        rig.rootfs.to_str().unwrap(),
    ]);
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn bad_images_are_refused_before_anything_is_written() {
    require_root(TOOLS);
    let rig = Rig::new();
    let d = rig.dir.path();
    let big = d.join("big.img");
    let (_, logs_bytes) = extent(&rig, "LOGS");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(logs_bytes + 4096).unwrap();
    let broken = d.join("broken.simg");
    // A sparse header whose chunks do not add up.
    let mut b = 0xED26_FF3Au32.to_le_bytes().to_vec();
    b.extend([1u16, 0, 28, 12].iter().flat_map(|v| v.to_le_bytes()));
    b.extend([4096u32, 10, 0, 0].iter().flat_map(|v| v.to_le_bytes()));
    std::fs::write(&broken, b).unwrap();
    let small = d.join("small.img");
    std::fs::write(&small, vec![1u8; 8192]).unwrap();
    let before = rig.state();
    let cases: Vec<(Vec<String>, &str, &str)> = vec![
        (
            vec![
                rig.rootfs.display().to_string(),
                format!("--image=LOGS={}", big.display()),
            ],
            "no_space",
            "the image is",
        ),
        (
            vec![
                format!("--image=APP={}", broken.display()),
                "--no-bootloader".into(),
            ],
            "rootfs_invalid",
            "cover 0 of its 10 blocks",
        ),
        (
            vec![format!("--image=APP={}", small.display())],
            "input_missing",
            "give the same build's payload with --bup",
        ),
        (
            vec![
                rig.rootfs.display().to_string(),
                format!("--image=NOPE={}", small.display()),
            ],
            "input_invalid",
            "the layout has no partition NOPE",
        ),
        (
            vec![
                rig.rootfs.display().to_string(),
                format!("--image=kernel={}", small.display()),
            ],
            "input_invalid",
            "kernel belongs to the boot chain (the payload writes it)",
        ),
    ];
    for (args, code, says) in cases {
        let o = output(rig.install_cmd().args(&args).args(["--events", "json"]));
        assert_eq!(
            o.status.code(),
            Some(3),
            "{args:?}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        let out = stdout(&o);
        assert!(out.contains(says), "{args:?}: {out}");
        assert!(
            out.contains(&format!("\"code\":\"{code}\"")),
            "{args:?}: {out}"
        );
        assert_eq!(rig.state(), before, "{args:?} changed the disk");
    }
    // Usage errors (exit 2): a tarball and an APP image together.
    let o = output(
        rig.install_cmd()
            .arg(&rig.rootfs)
            .arg(format!("--image=APP={}", small.display())),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).contains("not both"), "{}", stdout(&o));
    assert_eq!(rig.state(), before);
}

/// A block in the middle of the longest run of blocks `bmap` (bmaptool's
/// XML) does not map: free space in the image's filesystem, which neither
/// the write nor growing the filesystem touches.
fn unmapped_block(bmap: &Path) -> u64 {
    let text = std::fs::read_to_string(bmap).unwrap();
    // The element, not the header comment that names it.
    let count: u64 = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("<BlocksCount>"))
        .and_then(|t| t.split('<').next())
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let (mut next, mut best) = (0u64, (0u64, 0u64));
    let mut gap = |from: u64, to: u64| {
        if to - from > best.1 - best.0 {
            best = (from, to);
        }
    };
    for line in text
        .lines()
        .filter(|l| l.trim_start().starts_with("<Range"))
    {
        let body = line
            .split('>')
            .nth(1)
            .unwrap()
            .split('<')
            .next()
            .unwrap()
            .trim();
        let (a, b) = body.split_once('-').unwrap_or((body, body));
        let (a, b): (u64, u64) = (a.trim().parse().unwrap(), b.trim().parse().unwrap());
        gap(next, a);
        next = b + 1;
    }
    gap(next, count);
    assert!(best.1 > best.0, "the image maps every block");
    (best.0 + best.1) / 2
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_bmap_beside_an_image_limits_the_write_to_the_blocks_it_maps() {
    let tools: Vec<&str> = TOOLS.iter().copied().chain(["bmaptool"]).collect();
    require_root(&tools);
    let rig = Rig::new();
    let d = rig.dir.path();
    let (raw, _) = ext4_image(d);
    // rootfs.ext4.bmap is found for rootfs.ext4.xz, as bmaptool finds it.
    let bmap = d.join("rootfs.ext4.bmap");
    run(Command::new("bmaptool")
        .args(["-q", "create", "-o"])
        .arg(&bmap)
        .arg(&raw));
    run(Command::new("xz").args(["-k", "-0", "-T1"]).arg(&raw));
    let image = d.join("rootfs.ext4.xz");
    let gap = unmapped_block(&bmap) * 4096;
    // Both slots hold an old pattern where the image maps nothing.
    let old = [0xAAu8; 4096];
    let disk = std::fs::OpenOptions::new()
        .write(true)
        .open(&rig.image)
        .unwrap();
    for slot in ["APP", "APP_b"] {
        std::os::unix::fs::FileExt::write_all_at(&disk, &old, extent(&rig, slot).0 + gap).unwrap();
    }
    drop(disk);
    let install = |extra: &[&str]| {
        let o = output(
            rig.install_cmd()
                .arg("--image")
                .arg(format!("APP={}", image.display()))
                .arg("--bup")
                .arg(&rig.bup)
                .args(extra),
        );
        assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
        stderr(&o)
    };
    let err = install(&[]);
    assert!(err.contains("rootfs.ext4.bmap:"), "{err}");
    for slot in ["APP", "APP_b"] {
        let dev = copy_out(&rig, slot);
        run(Command::new("e2fsck").arg("-fn").arg(&dev));
        let cat = run(Command::new("debugfs")
            .arg("-R")
            .arg("cat /etc/os-release")
            .arg(&dev));
        assert!(cat.contains("from an image"), "{slot}: {cat}");
        let mut f = std::fs::File::open(&dev).unwrap();
        let mut b = [0u8; 4096];
        f.seek(SeekFrom::Start(gap)).unwrap();
        f.read_exact(&mut b).unwrap();
        assert!(
            b == old,
            "{slot}: a block the bmap does not map is not written"
        );
    }
    // --no-bmap: every block, the unmapped one as zeros (the layout is in
    // place now, so this run is an update of the other slot, APP_b).
    let err = install(&["--no-bmap"]);
    assert!(!err.contains(".bmap:"), "{err}");
    assert!(err.contains("APP_b"), "{err}");
    let dev = copy_out(&rig, "APP_b");
    let mut f = std::fs::File::open(&dev).unwrap();
    let mut b = [0u8; 4096];
    f.seek(SeekFrom::Start(gap)).unwrap();
    f.read_exact(&mut b).unwrap();
    assert!(
        b.iter().all(|x| *x == 0),
        "without the bmap the block is zeroed"
    );
}
