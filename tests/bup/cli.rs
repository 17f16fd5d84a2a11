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
        stdout(&o).contains("writing it is not supported yet"),
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
    let o = output(
        sysinstall()
            .args(["bup", "check", "--tnspec", TNSPEC])
            .arg(&p),
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains("FAIL: writing NVIDIA__BLOB__V3"),
        "{}",
        stdout(&o)
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
