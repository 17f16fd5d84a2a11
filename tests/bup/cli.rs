//! `sysinstall bup list` and `bup check` through the binary: the listing of
//! a payload laid out like the real TX2-NX one (docs/spec/bup-format.md §6.3), the
//! board identity from a fake EEPROM, duplicate resolution, missing entries
//! and exit codes.

use crate::support::bup::*;
use sysinstall::bup::payload::{Builder, PayloadFormat};

/// The TX2-NX board of tegra-demo-distro#304.
const PART_NUMBER: &str = "699-13636-0001-300 H.0";
const MACHINE: &str = "jetson-xavier-nx-devkit-tx2-nx";
const TNSPEC: &str = "3636-300-0001-H.0-1-0-jetson-xavier-nx-devkit-tx2-nx-mmcblk0p1";
const COMPAT: &str = "3636--0001--1--jetson-xavier-nx-devkit-tx2-nx-";

fn spec(fab: &str, sku: &str) -> String {
    format!("3636-{fab}-{sku}--1-0-{MACHINE}-mmcblk0p1")
}

/// 25 entries like the real payload: 15 common (mb1 among them: a BCT
/// needs it), then board-specific ones for FAB 300 and 301 (the compatible
/// spec, FAB emptied, matches both).
fn tx2_nx_payload() -> Builder {
    let mut b = Builder::new();
    for name in [
        "bpmp-fw",
        "sce-fw",
        "cpu-bootloader",
        "mb2",
        "spe-fw",
        "adsp-fw",
        "secure-os",
        "BMP",
        "kernel",
        "mts-bootpack",
        "mts-preboot",
        "sc7",
        "badpage-fw",
        "eks",
        "mb1",
    ] {
        b = b.entry(name, &data(name, 100), 0, "");
    }
    for fab in ["301", "300"] {
        for name in ["bpmp-fw-dtb", "bootloader-dtb", "VER", "BCT", "MB1_BCT"] {
            b = b.entry(
                name,
                &data(&format!("{name}-{fab}"), 50),
                0,
                &spec(fab, "0001"),
            );
        }
    }
    b
}

fn board(dir: &std::path::Path) -> std::path::PathBuf {
    sysroot(
        dir,
        "24\n",
        "console=ttyS0\n",
        &format!("machine={MACHINE}\n"),
        Some(("7-0050", &eeprom(PART_NUMBER))),
    )
}

#[test]
fn list_prints_header_and_entries_like_the_generator() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bl_update_payload");
    std::fs::write(&p, tx2_nx_payload().build()).unwrap();
    let o = output(sysinstall().args(["bup", "list"]).arg(&p));
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    for line in [
        "Magic:        NVIDIA__BLOB__V2",
        "Version:      2.1-2021.6-0 (0x01020621)",
        "Header size:  48 bytes",
        "Entry count:  25",
        "Accessory:    0x0000000000000000",
    ] {
        assert!(out.contains(line), "no '{line}' in:\n{out}");
    }
    // First data offset 48 + 25 × 120 = 3048, as in the real listing.
    let first: Vec<&str> = out
        .lines()
        .find(|l| l.contains("bpmp-fw "))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(first, ["0", "bpmp-fw", "3048", "100", "3275", "0"]);
    let last = out.lines().last().unwrap();
    assert!(last.ends_with(&spec("300", "0001")), "{last}");

    let o = output(
        sysinstall()
            .args(["bup", "list", "--format", "json"])
            .arg(&p),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["header"]["header_size"], 48);
    assert_eq!(v["version_string"], "2.1-2021.6-0");
    assert_eq!(v["writable"], true);
    assert_eq!(v["entries"][24]["name"], "MB1_BCT");
    assert_eq!(v["entries"][24]["spec"], spec("300", "0001"));
}

#[test]
fn list_reads_v3_payloads_and_rejects_garbage() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v3");
    let mut b = Builder::new().entry(
        "mb1",
        b"x",
        0,
        "3701-500-0000-J.0-1-1-jetson-agx-orin-devkit-",
    );
    b.format = PayloadFormat::V3;
    b.version = 0x0103_0622;
    std::fs::write(&p, b.build()).unwrap();
    let o = output(sysinstall().args(["bup", "list"]).arg(&p));
    assert!(o.status.success());
    assert!(
        stdout(&o).contains("T234 payload: bup check checks it; UEFI writes it from a capsule"),
        "{}",
        stdout(&o)
    );

    std::fs::write(&p, b"NVIDIA__BLOB__V9 and then some more bytes..").unwrap();
    let o = output(sysinstall().args(["bup", "list"]).arg(&p));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(&format!("{}: bad header magic", p.display())),
        "{}",
        stderr(&o)
    );
}

#[test]
fn check_builds_the_tnspec_from_the_eeprom_and_resolves_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let root = board(dir.path());
    let p = dir.path().join("payload");
    std::fs::write(&p, tx2_nx_payload().build()).unwrap();
    let o = output(
        sysinstall()
            .args(["bup", "check"])
            .arg(&p)
            .arg("--sysroot")
            .arg(&root),
    );
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    // The lines of the real device log (tegra-demo-distro#304).
    assert!(
        out.contains(&format!("Native TNSPEC:   {TNSPEC} (EEPROM ")),
        "{out}"
    );
    assert!(out.contains(&format!("Compatible with: {COMPAT}")), "{out}");
    assert!(
        out.contains("SoC:             T186 (tegra_chip_id)"),
        "{out}"
    );
    // REF made two tasks of each FAB-301/300 pair (and crashed on BCT);
    // the FAB-300 entries match the TNSPEC itself and win.
    for (lost, kept) in [(15, 20), (16, 21), (17, 22), (18, 23), (19, 24)] {
        assert!(
            out.contains(&format!(
                "duplicate entry {lost} not used (entry {kept} is)"
            )),
            "{out}"
        );
    }
    assert!(out.contains("PASS"), "{out}");

    let o = output(
        sysinstall()
            .args(["bup", "check", "--format", "json"])
            .arg(&p)
            .arg("--sysroot")
            .arg(&root),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["identity"]["part_number"], PART_NUMBER);
    assert_eq!(v["selected"].as_array().unwrap().len(), 20);
    assert_eq!(v["dropped"].as_array().unwrap().len(), 5);
}

#[test]
fn check_fails_for_another_board() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("payload");
    std::fs::write(&p, tx2_nx_payload().build()).unwrap();
    // SKU 0003: none of the board-specific entries applies (meta-tegra#1067).
    let other = "3636-301-0003-D.0-1-0-jetson-xavier-nx-devkit-tx2-nx-mmcblk0p1";
    let o = output(
        sysinstall()
            .args(["bup", "check", "--tnspec", other])
            .arg(&p),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("FAIL: missing entries for partition(s): bpmp-fw-dtb, bootloader-dtb, VER, BCT, MB1_BCT"),
        "{}",
        stdout(&o)
    );
}

/// Issue 12 item 6: a payload whose BCT has no mb1 to follow it fails the
/// check (exit 1), naming the missing entry; REF would write the BCT and
/// then fail.
#[test]
fn check_fails_for_a_bct_without_mb1() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("payload");
    let mut b = tx2_nx_payload();
    b.entries.retain(|e| e.0 != "mb1");
    std::fs::write(&p, b.build()).unwrap();
    let o = output(
        sysinstall()
            .args(["bup", "check", "--soc", "t186", "--tnspec", TNSPEC])
            .arg(&p),
    );
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("FAIL: BCT needs an mb1 entry"), "{out}");
    assert!(!out.contains("PASS"), "{out}");
}

#[test]
fn check_refuses_v3_and_needs_an_identity() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("v3");
    let mut b = Builder::new().entry("mb1", b"x", 0, "");
    b.format = PayloadFormat::V3;
    b.version = 0x0103_0622;
    std::fs::write(&p, b.build()).unwrap();
    // A V3 payload is checked as T234 firmware: one entry is a development
    // package, and a TX2-NX spec gets none of what the firmware requires.
    let empty = dir.path().join("empty-root");
    std::fs::create_dir_all(&empty).unwrap();
    let o = output(
        sysinstall()
            .args(["bup", "check", "--tnspec", TNSPEC])
            .arg(&p)
            .arg("--sysroot")
            .arg(&empty),
    );
    assert_eq!(o.status.code(), Some(1));
    let out = stdout(&o);
    assert!(
        out.contains("FAIL: a firmware payload of one entry is a single-image development package"),
        "{out}"
    );
    assert!(
        out.contains("FAIL: the payload has no adsp-fw, bpmp-fw,"),
        "{out}"
    );

    // A board whose EEPROM cannot be read: the error says what to do.
    let root = sysroot(
        dir.path(),
        "24\n",
        "",
        &format!("machine={MACHINE}\n"),
        None,
    );
    std::fs::write(&p, tx2_nx_payload().build()).unwrap();
    let o = output(
        sysinstall()
            .args(["bup", "check"])
            .arg(&p)
            .arg("--sysroot")
            .arg(&root),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("7-0050/eeprom (give --tnspec if it is unreadable)"),
        "{}",
        stderr(&o)
    );

    // Without a machine name.
    let root2 = dir.path().join("r2");
    std::fs::create_dir_all(root2.join("sys/bus/i2c/devices/7-0050")).unwrap();
    std::fs::create_dir_all(root2.join("sys/module/tegra_fuse/parameters")).unwrap();
    std::fs::write(
        root2.join("sys/bus/i2c/devices/7-0050/eeprom"),
        eeprom(PART_NUMBER),
    )
    .unwrap();
    std::fs::write(
        root2.join("sys/module/tegra_fuse/parameters/tegra_chip_id"),
        "24",
    )
    .unwrap();
    let o = output(
        sysinstall()
            .args(["bup", "check"])
            .arg(&p)
            .arg("--sysroot")
            .arg(&root2),
    );
    assert!(
        stderr(&o).contains("the machine name is not configured"),
        "{}",
        stderr(&o)
    );
    // --machine supplies it.
    let o = output(
        sysinstall()
            .args(["bup", "check", "--machine", MACHINE])
            .arg(&p)
            .arg("--sysroot")
            .arg(&root2),
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

#[test]
fn write_refuses_slots_on_t210_as_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("payload");
    std::fs::write(&p, tx2_nx_payload().build()).unwrap();
    let o = output(
        sysinstall()
            .args([
                "bup", "write", "--soc", "t210", "--slot", "b", "--tnspec", TNSPEC,
            ])
            .arg(&p),
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("T210 boards have no A/B boot slots"));
}

/// A Nano eMMC (T210) rig for the commands: boot0/boot1 images as flashed
/// (release 32.6.1 in VER and VER_b), a user disk made by sgdisk, the board
/// in a fake sysfs, a payload of release 32.7.3, and the board's layout as
/// a t210 XML, which has no num_sectors (no t210 layout has).
struct Nano {
    _tmp: tempfile::TempDir,
    dir: std::path::PathBuf,
    boot: Vec<std::path::PathBuf>,
    user: UserDisk,
    root: std::path::PathBuf,
    payload: std::path::PathBuf,
    xml: std::path::PathBuf,
}

const NANO_SPEC: &str = "3448-200-0002--1-0-jetson-nano-emmc-mmcblk0p1";
const NANO_USER: &[(&str, u64)] = &[
    ("DTB", 128 * 1024),
    ("DTB-1", 128 * 1024),
    ("TOS", 128 * 1024),
    ("TOS-1", 128 * 1024),
    ("LNX", 256 * 1024),
    ("LNX-1", 256 * 1024),
    ("BMP", 128 * 1024),
];

fn nano() -> Nano {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let boot = boot_images(&dir, &[4 * MIB, 4 * MIB]);
    let mut lin = Linear::read(&boot);
    let table = nano_emmc_boot();
    let part = |n: &str| table.iter().find(|p| p.name == n).unwrap().clone();
    lin.fill_partition(&part("VER"), &ver(6, 1));
    lin.fill_partition(&part("VER_b"), &ver(6, 1));
    lin.save(&boot);
    let user = UserDisk::new(&dir, NANO_USER);
    let root = sysroot(
        &dir,
        "33\n",
        "console=ttyS0\n",
        "machine=jetson-nano-emmc\n",
        Some(("2-0050", &eeprom("699-13448-0002-200 B.0"))),
    );
    let mut e: Vec<(&str, Vec<u8>, u32, &str)> =
        vec![("BCT", bct(10240, false, 0xB1), 0, NANO_SPEC)];
    for n in ["RP1", "PT", "DTB", "LNX"] {
        e.push((n, data(n, 3000), 0, NANO_SPEC));
    }
    e.push(("VER", ver(7, 3), 0, NANO_SPEC));
    for n in ["NVC", "TBC", "EBT", "WB0", "BPF", "TOS", "BMP"] {
        e.push((n, data(n, 4000), 0, ""));
    }
    let payload = dir.join("bl_update_payload");
    std::fs::write(&payload, crate::support::bup::payload(&e)).unwrap();

    // The layout as NVIDIA writes t210 ones: two sdmmc devices, the first
    // the boot area (placed at start_location), the second the user area.
    let mut xml = String::from("<?xml version=\"1.0\"?>\n<partition_layout version=\"01.00.0000\">\n  <device type=\"sdmmc\" instance=\"3\">\n");
    for p in &table {
        xml.push_str(&format!(
            "    <partition name=\"{}\" type=\"data\"><size>{}</size><start_location>{}</start_location></partition>\n",
            p.name, p.size, p.offset
        ));
    }
    xml.push_str("  </device>\n  <device type=\"sdmmc\" instance=\"3\">\n    <partition name=\"GP1\" type=\"GP1\"><size>2097152</size></partition>\n");
    for (name, size) in NANO_USER {
        xml.push_str(&format!(
            "    <partition name=\"{name}\" type=\"data\"><size>{size}</size></partition>\n"
        ));
    }
    xml.push_str("    <partition name=\"UDA\" type=\"data\"><allocation_attribute>0x808</allocation_attribute></partition>\n    <partition name=\"GPT\" type=\"GPT\"><size>-1</size></partition>\n  </device>\n</partition_layout>\n");
    let xml_path = dir.join("flash_l4t_t210_emmc.xml");
    std::fs::write(&xml_path, xml).unwrap();
    Nano {
        _tmp: tmp,
        dir,
        boot,
        user,
        root,
        payload,
        xml: xml_path,
    }
}

impl Nano {
    fn check(&self, extra: &[&str]) -> std::process::Output {
        let mut cmd = sysinstall();
        cmd.args(["bup", "check"])
            .arg(&self.payload)
            .arg("--layout")
            .arg(&self.xml)
            .arg("--sysroot")
            .arg(&self.root)
            .args(extra);
        output(&mut cmd)
    }

    fn write(&self, extra: &[&str]) -> std::process::Output {
        let mut cmd = sysinstall();
        cmd.args(["bup", "write"])
            .arg(&self.payload)
            .arg("--layout")
            .arg(&self.xml)
            .arg("--sysroot")
            .arg(&self.root);
        for b in &self.boot {
            cmd.arg("--boot-device").arg(b);
        }
        cmd.args(extra);
        output(&mut cmd)
    }
}

/// Issue 12 item 5: `bup check --layout` and `bup write --layout` load a
/// layout whose user device has no num_sectors (every t210 XML): the size
/// comes from --disk-sectors, the user device, or the board's user disk.
#[test]
fn check_and_write_load_a_t210_layout_without_num_sectors() {
    require_sgdisk();
    let nano = nano();

    // No size anywhere: refused naming what this command accepts.
    let o = nano.check(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the user-area device has no num_sectors: give --disk-sectors"),
        "{}",
        stderr(&o)
    );
    let o = nano.write(&["--dry-run"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("no num_sectors: give --disk-sectors or --user-device"),
        "{}",
        stderr(&o)
    );

    // --disk-sectors: checked against the layout's partitions.
    let o = nano.check(&["--disk-sectors", "30777344"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("Partitions (layout, --initialize):"), "{out}");
    assert!(out.contains("PASS"), "{out}");

    // The board's user disk gives it when nothing else does.
    let disk = nano.root.join("dev/mmcblk0");
    std::fs::create_dir_all(disk.parent().unwrap()).unwrap();
    std::fs::copy(&nano.user.path, &disk).unwrap();
    let o = nano.check(&[]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    std::fs::remove_file(&disk).unwrap();

    // bup write takes it from --user-device, and writes.
    let user = nano.user.path.display().to_string();
    let o = nano.write(&["--user-device", &user]);
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    let boot = Linear::read(&nano.boot);
    let ver_part = nano_emmc_boot()
        .into_iter()
        .find(|p| p.name == "VER")
        .unwrap();
    assert_eq!(boot.get(ver_part.offset, ver(7, 3).len()), ver(7, 3));
    let lnx = nano.user.partition("LNX");
    let img = std::fs::read(&nano.user.path).unwrap();
    assert_eq!(&img[lnx.offset as usize..][..3000], &data("LNX", 3000)[..]);
    // Again, with --disk-sectors instead: everything is in place.
    let o = nano.write(&["--user-device", &user, "--disk-sectors", "30777344"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("0 written and verified"),
        "{}",
        stdout(&o)
    );

    // A partition_table CSV carries no size either.
    let csv = nano.dir.join("partition_table");
    std::fs::write(&csv, "1,DTB,256,,,,2048\n2,LNX,512,,,,4096\n").unwrap();
    let mut cmd = sysinstall();
    cmd.args(["bup", "check"])
        .arg(&nano.payload)
        .arg("--layout")
        .arg(&csv)
        .arg("--sysroot")
        .arg(&nano.root);
    let o = output(&mut cmd);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("carries no disk size: give --disk-sectors"),
        "{}",
        stderr(&o)
    );
    let o = output(cmd.args(["--disk-sectors", "30777344"]));
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    assert!(out.contains("the layout has no boot device"), "{out}");
}

// ---------------------------------------------------------------------------
// T234: payloads and capsules. The capsules are made by EDK2's own
// GenerateCapsule.py (PyPI edk2-basetools, installed into a venv by
// tests/setup.sh) with meta-tegra's command line; ours are cross-checked
// by its decoder.

use sysinstall::bup::t234::FMP_REQUIRED_BASE;
use sysinstall::uefi::capsule::Builder as CapsuleBuilder;
use sysinstall::uefi::vars::TEGRA_FMP_IMAGE_TYPE;

const AGX_SPEC: &str = "3701-500-0000-J.0-1-1-jetson-agx-orin-devkit-";
const AGX_TNSPEC: &str = "3701-500-0000-J.0-1-1-jetson-agx-orin-devkit-mmcblk0p1";
const AGX_ENTRY: &str = "3701-300-0000--1--jetson-agx-orin-devkit-";
const NANO_TNSPEC: &str = "3767-300-0005-K.2-1-0-jetson-orin-nano-devkit-nvme0n1p1";
const TEGRA_GUID: &str = "bf0d4599-20d4-414e-b2c5-3595b1cda402";

/// A `bl_only_payload` for the AGX Orin devkit: every image R36 firmware
/// requires, four of them board-specific, `mb1` per fuse mode.
fn agx_firmware() -> Builder {
    let mut b = Builder::new();
    b.format = PayloadFormat::V3;
    b.version = 0x0103_0622;
    for name in FMP_REQUIRED_BASE.iter().chain(&["pva-fw", "BCT", "eks"]) {
        b = match *name {
            "mb1" => b.entry("mb1", &data("mb1 dev", 64), 1, "").entry(
                "mb1",
                &data("mb1 prod", 64),
                2,
                "",
            ),
            "MB1_BCT" | "MEM_BCT" | "VER" | "bpmp-fw-dtb" => {
                b.entry(name, &data(name, 100), 0, AGX_ENTRY)
            }
            _ => b.entry(name, &data(name, 100), 0, ""),
        };
    }
    b
}

/// EDK2's capsule tool: the venv's python and the test certificates.
struct Edk2 {
    python: std::path::PathBuf,
    certs: std::path::PathBuf,
}

/// The tool (tests/setup.sh installs it into a virtualenv); a missing
/// tool fails the test.
fn edk2() -> Edk2 {
    let cache = std::env::var_os("SYSINSTALL_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("XDG_CACHE_HOME").map(|d| std::path::Path::new(&d).join("sysinstall"))
        })
        .or_else(|| {
            std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache/sysinstall"))
        })
        .unwrap_or_default();
    let venv = std::env::var_os("SYSINSTALL_EDK2_VENV")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| cache.join("edk2-venv"));
    let python = venv.join("bin/python");
    let o = std::process::Command::new(&python)
        .args([
            "-c",
            "import os, edk2basetools.Capsule.GenerateCapsule as g, edk2basetools as e; \
             print(os.path.join(os.path.dirname(e.__file__), 'Pkcs7Sign'))",
        ])
        .output();
    match o {
        Ok(o) if o.status.success() => Edk2 {
            python,
            certs: std::path::PathBuf::from(stdout(&o).trim()),
        },
        _ => panic!(
            "GenerateCapsule.py (PyPI edk2-basetools) is not in {}: run tests/setup.sh",
            venv.display()
        ),
    }
}

impl Edk2 {
    fn run(&self, args: &[&std::ffi::OsStr]) -> std::process::Output {
        let o = output(
            std::process::Command::new(&self.python)
                .args(["-m", "edk2basetools.Capsule.GenerateCapsule"])
                .args(args),
        );
        assert!(
            o.status.success(),
            "GenerateCapsule: {}{}",
            stdout(&o),
            stderr(&o)
        );
        o
    }

    /// meta-tegra's `tegra-uefi-capsule-signing.bbclass` command line.
    fn signed(&self, bup: &std::path::Path, out: &std::path::Path, version: u32, lsv: u32) {
        let cert = |f: &str| self.certs.join(f).into_os_string();
        let v = format!("{version:#010x}");
        let l = format!("{lsv:#010x}");
        self.run(&[
            "-v".as_ref(),
            "--encode".as_ref(),
            "--monotonic-count".as_ref(),
            "1".as_ref(),
            "--fw-version".as_ref(),
            v.as_ref(),
            "--lsv".as_ref(),
            l.as_ref(),
            "--guid".as_ref(),
            TEGRA_GUID.as_ref(),
            "--signer-private-cert".as_ref(),
            &cert("TestCert.pem"),
            "--other-public-cert".as_ref(),
            &cert("TestSub.pub.pem"),
            "--trusted-public-cert".as_ref(),
            &cert("TestRoot.pub.pem"),
            "-o".as_ref(),
            out.as_os_str(),
            bup.as_os_str(),
        ]);
    }
}

fn fake_esrt(root: &std::path::Path, version: u32, lsv: u32) {
    let d = root.join("sys/firmware/efi/esrt/entries/entry0");
    std::fs::create_dir_all(&d).unwrap();
    for (f, v) in [
        ("fw_class", format!("{TEGRA_GUID}\n")),
        ("fw_type", "1\n".into()),
        ("fw_version", format!("{version}\n")),
        ("lowest_supported_fw_version", format!("{lsv}\n")),
        ("capsule_flags", "0x0\n".into()),
        ("last_attempt_version", "0\n".into()),
        ("last_attempt_status", "0\n".into()),
    ] {
        std::fs::write(d.join(f), v).unwrap();
    }
    std::fs::create_dir_all(root.join("sys/firmware/efi/efivars")).unwrap();
}

#[test]
fn t234_a_capsule_made_by_generate_capsule_is_listed_and_checked() {
    let edk2 = edk2();
    let dir = tempfile::tempdir().unwrap();
    let bup = dir.path().join("bl_only_payload");
    let bup_bytes = agx_firmware().build();
    std::fs::write(&bup, &bup_bytes).unwrap();
    let cap = dir.path().join("tegra-bl.cap");
    edk2.signed(&bup, &cap, 0x0024_0403, 0x0024_0403);
    let cap_bytes = std::fs::read(&cap).unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();

    let o = output(sysinstall().args(["bup", "list"]).arg(&cap));
    let out = stdout(&o);
    assert!(o.status.success(), "{out}{}", stderr(&o));
    for line in [
        "Capsule:      6DCBD5ED-E82D-4C44-BDA1-7194199AD92A (FMP), header 32 bytes, flags 0x00000000",
        "FMP header:   version 1, 0 embedded driver(s), 1 payload(s)",
        "Image:        header v3, type BF0D4599-20D4-414E-B2C5-3595B1CDA402, index 1,",
        "monotonic count 1",
        "FW version:   36.4.3 (0x00240403)",
        "Lowest supp.: 36.4.3 (0x00240403)",
        "Magic:        NVIDIA__BLOB__V3",
        "Header size:  48 bytes",
        "Entry count:  24",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    let o = output(
        sysinstall()
            .args(["bup", "list", "--format", "json"])
            .arg(&cap),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["capsule"]["fw_version_string"], "36.4.3");
    assert_eq!(v["capsule"]["auth"]["monotonic_count"], 1);
    let (start, end) = (
        v["capsule"]["payload"]["start"].as_u64().unwrap() as usize,
        v["capsule"]["payload"]["end"].as_u64().unwrap() as usize,
    );
    // The BUP sits verbatim at the end of the capsule.
    assert_eq!(end, cap_bytes.len());
    assert_eq!(&cap_bytes[start..end], &bup_bytes[..]);
    assert_eq!(v["entries"][0]["name"], "adsp-fw");

    // The board it is for, with and without a running firmware to compare.
    let check = |tnspec: &str, root: &std::path::Path| {
        output(
            sysinstall()
                .args(["bup", "check", "--tnspec", tnspec])
                .arg(&cap)
                .arg("--sysroot")
                .arg(root),
        )
    };
    let o = check(AGX_TNSPEC, &root);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(&format!("Platform spec:   {AGX_SPEC} (from --tnspec)")),
        "{out}"
    );
    assert!(
        out.contains(&format!("Compatible spec: {AGX_ENTRY} (from --tnspec)")),
        "{out}"
    );
    assert!(
        out.contains("PASS: the firmware would take this for this board"),
        "{out}"
    );
    // Another board: what it misses, in one line.
    let o = check(NANO_TNSPEC, &root);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(
            "FAIL: the payload has no bpmp-fw-dtb, MB1_BCT, MEM_BCT, VER for this board \
             (3767-300-0005-K.2-1-0-jetson-orin-nano-devkit- / 3767--0005--1--jetson-orin-nano-devkit-)"
        ),
        "{}",
        stdout(&o)
    );
    // Running firmware above the capsule (the ratchet), and R35.4 below a
    // QSPI layout change.
    fake_esrt(&root, 0x0024_0404, 0x0024_0404);
    let o = check(AGX_TNSPEC, &root);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("FAIL: the capsule's firmware 36.4.3 is below the lowest version this board accepts, 36.4.4"),
        "{}",
        stdout(&o)
    );
    fake_esrt(&root, 0x0023_0401, 0x0023_0401);
    let o = check(AGX_TNSPEC, &root);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(
            "FAIL: this release changes the QSPI layout, and the running firmware 35.4.1"
        ),
        "{}",
        stdout(&o)
    );
    fake_esrt(&root, 0x0023_0500, 0x0023_0500);
    let o = check(AGX_TNSPEC, &root);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    let o = output(
        sysinstall()
            .args(["bup", "check", "--format", "json", "--tnspec", AGX_TNSPEC])
            .arg(&cap)
            .arg("--sysroot")
            .arg(&root),
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["soc"], "T234");
    assert_eq!(v["payload_kind"], "firmware");
    assert_eq!(v["board"]["specs"]["compat"], AGX_ENTRY);
    assert_eq!(v["selected"].as_array().unwrap().len(), 23);
    // mb1: the production copy (entry 5), the fuse being production.
    let mb1 = v["selected"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "mb1")
        .unwrap();
    assert_eq!(mb1["index"], 5);

    // bup write refuses it, saying where T234 firmware goes.
    let o = output(
        sysinstall()
            .args(["bup", "write", "--soc", "t186"])
            .arg(&cap),
    );
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("is a UEFI capsule: bup write writes boot partitions from a BUP; T234 boot firmware is on QSPI"),
        "{}",
        stderr(&o)
    );
    let o = output(
        sysinstall()
            .args(["bup", "write", "--soc", "t186"])
            .arg(&bup),
    );
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("bup write does not write NVIDIA__BLOB__V3 (T234) payloads"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn t234_unsigned_capsules_drivers_and_dependencies_from_generate_capsule() {
    let edk2 = edk2();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let bup = dir.path().join("bl_only_payload");
    let bup_bytes = agx_firmware().build();
    std::fs::write(&bup, &bup_bytes).unwrap();

    // Unsigned, with an embedded driver.
    let cap = dir.path().join("unsigned.cap");
    edk2.run(&[
        "--encode".as_ref(),
        "--fw-version".as_ref(),
        "0x00240403".as_ref(),
        "--lsv".as_ref(),
        "0x00240000".as_ref(),
        "--guid".as_ref(),
        TEGRA_GUID.as_ref(),
        "--embedded-driver".as_ref(),
        bup.as_os_str(),
        "-o".as_ref(),
        cap.as_os_str(),
        bup.as_os_str(),
    ]);
    let o = output(sysinstall().args(["bup", "list"]).arg(&cap));
    let out = stdout(&o);
    assert!(
        out.contains("FMP header:   version 1, 1 embedded driver(s), 1 payload(s)"),
        "{out}"
    );
    assert!(out.contains("Signature:    none"), "{out}");
    assert!(out.contains("Lowest supp.: 36.0.0 (0x00240000)"), "{out}");
    let o = output(
        sysinstall()
            .args(["bup", "check", "--tnspec", AGX_TNSPEC])
            .arg(&cap)
            .arg("--sysroot")
            .arg(&root),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("FAIL: the capsule is not signed"),
        "{}",
        stdout(&o)
    );

    // A dependency expression (JSON input), signed.
    let json = dir.path().join("cap.json");
    let cert = |f: &str| edk2.certs.join(f).display().to_string();
    std::fs::write(
        &json,
        serde_json::json!({
            "EmbeddedDrivers": [],
            "Payloads": [{
                "Payload": bup.display().to_string(),
                "Guid": TEGRA_GUID,
                "FwVersion": "0x00240403",
                "LowestSupportedVersion": "0x00240403",
                "MonotonicCount": "7",
                "Dependencies": "BF0D4599-20D4-414E-B2C5-3595B1CDA402 >= 0x00230500 && TRUE",
                "OpenSslSignerPrivateCertFile": cert("TestCert.pem"),
                "OpenSslOtherPublicCertFile": cert("TestSub.pub.pem"),
                "OpenSslTrustedPublicCertFile": cert("TestRoot.pub.pem"),
            }]
        })
        .to_string(),
    )
    .unwrap();
    let dep = dir.path().join("dep.cap");
    edk2.run(&[
        "--encode".as_ref(),
        "-j".as_ref(),
        json.as_os_str(),
        "-o".as_ref(),
        dep.as_os_str(),
    ]);
    let o = output(
        sysinstall()
            .args(["bup", "list", "--format", "json"])
            .arg(&dep),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["capsule"]["depex_len"].as_u64().unwrap() > 16, "{v}");
    let bytes = std::fs::read(&dep).unwrap();
    let start = v["capsule"]["payload"]["start"].as_u64().unwrap() as usize;
    assert_eq!(&bytes[start..], &bup_bytes[..]);
    let o = output(
        sysinstall()
            .args(["bup", "check", "--tnspec", AGX_TNSPEC])
            .arg(&dep)
            .arg("--sysroot")
            .arg(&root),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn t234_our_capsule_generator_agrees_with_edk2s_decoder() {
    let edk2 = edk2();
    let dir = tempfile::tempdir().unwrap();
    let bup_bytes = agx_firmware().build();
    for signed in [false, true] {
        let mut b = CapsuleBuilder::new(TEGRA_FMP_IMAGE_TYPE, 0x0024_0403);
        if !signed {
            b.cert = None;
        }
        b.lsv = 0x0023_0500;
        b.monotonic_count = 9;
        b.depex = Some(vec![0x06, 0x0D]);
        let bytes = b.build(&bup_bytes);
        let cap = dir.path().join("ours.cap");
        std::fs::write(&cap, &bytes).unwrap();
        // (0.1.53's --decode without JSON fails on its own arguments;
        // --dump-info decodes every header.)
        let o = edk2.run(&["--dump-info".as_ref(), cap.as_os_str()]);
        let log = stdout(&o);
        for line in [
            format!("EFI_CAPSULE_HEADER.CapsuleImageSize = {:08X}", bytes.len()),
            "EFI_FIRMWARE_MANAGEMENT_CAPSULE_IMAGE_HEADER.UpdateImageTypeId      = BF0D4599-20D4-414E-B2C5-3595B1CDA402".into(),
            format!("EFI_FIRMWARE_MANAGEMENT_CAPSULE_IMAGE_HEADER.ImageCapsuleSupport    = {:016X}", if signed { 3 } else { 2 }),
            "FMP_PAYLOAD_HEADER.FwVersion              = 00240403".into(),
            "FMP_PAYLOAD_HEADER.LowestSupportedVersion = 00230500".into(),
            if signed {
                "EFI_FIRMWARE_IMAGE_AUTHENTICATION.MonotonicCount                = 0000000000000009".into()
            } else {
                "No EFI_FIRMWARE_IMAGE_AUTHENTICATION".into()
            },
        ] {
            assert!(log.contains(&line), "{line}\n{log}");
        }
    }
}

// ---------------------------------------------------------------------------
// `sysinstall status` against fake sysfs/efivarfs trees. (UEFI's behaviour
// cannot exist here: the trees hold what it would have left.)

fn efivar(root: &std::path::Path, name: &str, guid: &str, attrs: u32, data: &[u8]) {
    let d = root.join("sys/firmware/efi/efivars");
    std::fs::create_dir_all(&d).unwrap();
    let mut b = attrs.to_le_bytes().to_vec();
    b.extend_from_slice(data);
    std::fs::write(d.join(format!("{name}-{guid}")), b).unwrap();
}

const NV_GUID: &str = "781e084c-a330-417c-b678-38e696380cb9";
const GLOBAL_GUID: &str = "8be4df61-93ca-11d2-aa0d-00e098032b8c";

/// A board that applied a 36.4.3 capsule to chain B and runs it; chain A
/// still has 35.6.0.
fn after_first_pass(dir: &std::path::Path) -> std::path::PathBuf {
    let root = dir.join("root");
    fake_esrt(&root, 0x0024_0403, 0x0024_0403);
    let e = root.join("sys/firmware/efi/esrt/entries/entry0");
    std::fs::write(e.join("last_attempt_version"), format!("{}\n", 0x0024_0403)).unwrap();
    efivar(&root, "BootChainFwCurrent", NV_GUID, 6, &1u32.to_le_bytes());
    let versions: Vec<u8> = [0x0023_0600u32, 0x0024_0403]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    efivar(&root, "SystemFwVersions", NV_GUID, 6, &versions);
    efivar(&root, "RootfsStatusSlotA", NV_GUID, 7, &[0; 4]);
    efivar(&root, "RootfsStatusSlotB", NV_GUID, 7, &[0; 4]);
    efivar(&root, "TegraPlatformSpec", NV_GUID, 7, AGX_SPEC.as_bytes());
    efivar(
        &root,
        "TegraPlatformCompatSpec",
        NV_GUID,
        7,
        AGX_ENTRY.as_bytes(),
    );
    root
}

fn status(root: &std::path::Path, extra: &[&str]) -> std::process::Output {
    output(
        sysinstall()
            .arg("status")
            .arg("--sysroot")
            .arg(root)
            .args(extra),
    )
}

#[test]
fn status_says_the_capsule_was_applied_and_a_second_pass_is_needed() {
    let dir = tempfile::tempdir().unwrap();
    let root = after_first_pass(dir.path());
    let o = status(&root, &[]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{}", stderr(&o));
    for line in [
        "Running chain:     B (firmware 36.4.3, lowest supported 36.4.3)",
        "Chain A:           35.6.0",
        "Chain B:           36.4.3",
        "Last capsule:      36.4.3 applied to chain B (running)",
        "Capsule requested: no",
        "Rootfs slots:      A normal, B normal",
        "Second pass:       needed: chain A has 35.6.0, stage the 36.4.3 capsule (--stage CAPSULE)",
        "ATTENTION: chain A has firmware 35.6.0, the running chain 36.4.3",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    let o = status(&root, &["--json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["report"]["capsule"]["outcome"], "applied");
    assert_eq!(v["report"]["capsule"]["chain"], "B");
    assert_eq!(v["report"]["second_pass"]["state"], "needed");
    assert_eq!(v["report"]["second_pass"]["chain"], "A");
    assert_eq!(v["report"]["second_pass"]["to"], 0x0024_0403);
    assert_eq!(v["firmware"]["platform_spec"], AGX_SPEC);

    // A failed capsule and the status it left behind.
    let e = root.join("sys/firmware/efi/esrt/entries/entry0");
    std::fs::write(e.join("last_attempt_status"), "6163\n").unwrap();
    efivar(&root, "BootChainFwStatus", NV_GUID, 7, &3u32.to_le_bytes());
    let o = status(&root, &[]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        out.contains("Last capsule:      36.4.3 NOT applied: Tegra FMP error 6163: BOOT_CHAIN_UPDATE_CANCELED"),
        "{out}"
    );
    assert!(
        out.contains("BootChainFwStatus: 3 (CANCELED_FOR_FMP_CONFLICT)"),
        "{out}"
    );

    // No firmware information at all.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let o = status(&empty, &[]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("no UEFI firmware information under"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn status_stages_the_second_pass_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = after_first_pass(dir.path());
    // A leftover status (it would cancel the capsule) and a pending switch.
    efivar(&root, "BootChainFwStatus", NV_GUID, 7, &0u32.to_le_bytes());
    efivar(&root, "BootChainFwNext", NV_GUID, 7, &0u32.to_le_bytes());
    let esp = dir.path().join("esp");
    std::fs::create_dir_all(&esp).unwrap();
    let bup = agx_firmware().build();
    let cap = dir.path().join("tegra-bl.cap");
    let vars = root.join("sys/firmware/efi/efivars");
    let osi = vars.join(format!("OsIndications-{GLOBAL_GUID}"));
    let staged = esp.join("EFI/UpdateCapsule/TEGRA_BL.Cap");

    // Refused, nothing changed: another version, another board.
    std::fs::write(
        &cap,
        CapsuleBuilder::new(TEGRA_FMP_IMAGE_TYPE, 0x0024_0402).build(&bup),
    )
    .unwrap();
    let stage = |extra: &[&str]| {
        let mut a = vec![
            "--stage",
            cap.to_str().unwrap(),
            "--esp",
            esp.to_str().unwrap(),
        ];
        a.extend_from_slice(extra);
        status(&root, &a)
    };
    let o = stage(&[]);
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("the capsule carries firmware 36.4.2, the running chain 36.4.3"),
        "{}",
        stderr(&o)
    );
    let mut nano = Builder::new();
    nano.format = PayloadFormat::V3;
    nano.version = 0x0103_0622;
    for name in FMP_REQUIRED_BASE {
        nano = nano.entry(name, b"x", 0, "3767-000-0000--1--jetson-orin-nano-devkit-");
    }
    std::fs::write(
        &cap,
        CapsuleBuilder::new(TEGRA_FMP_IMAGE_TYPE, 0x0024_0403).build(&nano.build()),
    )
    .unwrap();
    let o = stage(&[]);
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains("the payload has no adsp-fw"),
        "{}",
        stderr(&o)
    );
    assert!(!osi.exists() && !staged.exists());
    assert!(vars.join(format!("BootChainFwStatus-{NV_GUID}")).exists());

    // The running version, for this board: staged.
    std::fs::write(
        &cap,
        CapsuleBuilder::new(TEGRA_FMP_IMAGE_TYPE, 0x0024_0403).build(&bup),
    )
    .unwrap();
    let o = stage(&[]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{}", stderr(&o));
    assert_eq!(
        std::fs::read(&staged).unwrap(),
        std::fs::read(&cap).unwrap()
    );
    assert_eq!(
        std::fs::read(&osi).unwrap(),
        [7, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0]
    );
    assert!(!vars.join(format!("BootChainFwStatus-{NV_GUID}")).exists());
    assert!(!vars.join(format!("BootChainFwNext-{NV_GUID}")).exists());
    for line in [
        "  delete BootChainFwStatus: done",
        "  delete BootChainFwNext: done",
        "  set OsIndications = 0x4: done",
        "Capsule requested: yes (OsIndications): processed at the next boot",
    ] {
        assert!(out.contains(line), "{line}\n{out}");
    }
    // Again (a re-run after a power cut): nothing more to change.
    let o = stage(&["--json"]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let results: Vec<&str> = v["staged"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["result"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["already_done", "already_done", "already_done"]);

    // Both chains level: nothing to stage.
    let versions: Vec<u8> = [0x0024_0403u32; 2]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    efivar(&root, "SystemFwVersions", NV_GUID, 6, &versions);
    let o = stage(&[]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("Nothing staged: both chains run 36.4.3: no second pass is needed"),
        "{}",
        stdout(&o)
    );
}
