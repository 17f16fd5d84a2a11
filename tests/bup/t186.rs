//! T186 (TX2): `bup write` on image files standing in for eMMC boot0/boot1
//! and the user area, compared byte for byte with an independent model of
//! docs/spec/bup-format.md §4: update mode through the binary, initialize mode through
//! the library (`bup::update`) (until the layout engine lands, the layout is built
//! by hand), second runs, dry runs and refusals.

use crate::support::bup::*;
use std::path::{Path, PathBuf};
use sysinstall::bup::board::Slot;
use sysinstall::bup::update::{self, Request, UpdateOptions};
use sysinstall::events::Events;
use sysinstall::exit::Changes;
use sysinstall::layout::{BootArea, BootDeviceKind, Layout, Soc};
use sysinstall::sys::board::SysRoot;

const B00: &str = "3310-B00---1-0-jetson-tx2-devkit-mmcblk0p1";
const B01: &str = "3310-B01---1-0-jetson-tx2-devkit-mmcblk0p1";
/// The board: a TX2 with FAB D01, which the compatible spec maps to B01.
const PART_NUMBER: &str = "699-83310-1000-D01 B.0";
const TNSPEC: &str = "3310-D01-1000-B.0-1-0-jetson-tx2-devkit-mmcblk0p1";

/// SMD after `--initialize`: slot A active (docs/spec/bup-format.md §4.9 golden bytes).
const SMD_INIT: [u8; 22] = [
    0x00, 0x4e, 0x42, 0x43, 0x03, 0x03, 0x02, 0x00, 0x0f, 0x5f, 0x61, 0x07, 0x00, 0x0e, 0x5f, 0x62,
    0x07, 0x01, 0x33, 0x14, 0xfc, 0xfe,
];
/// SMD after an update from slot A (golden bytes).
const SMD_TO_B: [u8; 22] = [
    0x00, 0x4e, 0x42, 0x43, 0x03, 0x03, 0x02, 0x00, 0x0e, 0x5f, 0x61, 0x07, 0x01, 0x0f, 0x5f, 0x62,
    0x07, 0x00, 0x8e, 0xb5, 0x05, 0x90,
];

fn entries() -> Vec<(&'static str, Vec<u8>, u32, &'static str)> {
    vec![
        ("spe-fw", data("spe-fw", 5000), 0, ""),
        ("mb2", data("mb2", 7000), 0, ""),
        ("mb1", data("mb1-dev", 9000), 1, ""),
        ("mb1", data("mb1-prod", 9000), 2, ""),
        ("mts-preboot", data("mtsp-dev", 4000), 1, ""),
        ("mts-preboot", data("mtsp-prod", 4000), 2, ""),
        ("kernel", data("kernel", 100_000), 0, ""),
        ("kernel-dtb", data("dtb-b00", 3000), 0, B00),
        ("kernel-dtb", data("dtb-b01", 3000), 0, B01),
        ("BCT", bct(3584, false, 0xB0), 0, B00),
        ("BCT", bct(3584, false, 0xB1), 0, B01),
        ("MB1_BCT", data("mb1bct-b00", 2000), 0, B00),
        ("MB1_BCT", data("mb1bct-b01", 2000), 0, B01),
        ("VER", data("ver-b00", 200), 0, B00),
        ("VER", data("ver-b01", 200), 0, B01),
        ("dram-ecc-fw", data("ecc", 1000), 0, ""),
        ("badpage-fw", data("badpage", 1000), 0, ""),
        ("eks", data("eks", 1000), 0, ""),
    ]
}

fn entry(name: &str) -> Vec<u8> {
    let (_, d, _, _) = entries()
        .into_iter()
        .rev()
        .find(|(n, _, op, spec)| *n == name && *op != 1 && (spec.is_empty() || *spec == B01))
        .unwrap();
    d
}

const USER: &[(&str, u64)] = &[
    ("kernel", 256 * 1024),
    ("kernel_b", 256 * 1024),
    ("kernel-dtb", 256 * 1024),
    ("kernel-dtb_b", 256 * 1024),
    ("eks", 256 * 1024),
];

struct Fx {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    boot: Vec<PathBuf>,
    user: UserDisk,
    root: PathBuf,
    payload: PathBuf,
}

fn part(name: &str) -> sysinstall::layout::BootPartition {
    tx2_boot().into_iter().find(|p| p.name == name).unwrap()
}

/// A TX2 as flashed: table, slot metadata (A booted successfully), an old
/// BCT in its three copies; the board identity in a fake sysfs.
fn fixture(initialized: bool) -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let boot = boot_images(&dir, &[4 * MIB, 4 * MIB]);
    if initialized {
        let mut lin = Linear::read(&boot);
        lin.put_table(&tx2_boot());
        let mut smd = SMD_INIT;
        smd[12] = 1; // slot A booted successfully
        let crc = crc32fast::hash(&smd[..18]);
        smd[18..].copy_from_slice(&crc.to_le_bytes());
        lin.put(part("SMD").offset, &smd);
        lin.put(part("SMD_b").offset, &smd);
        let old = bct(3584, false, 0xAA);
        for at in [0, 3584, 16384] {
            lin.put(at, &old);
        }
        lin.save(&boot);
    }
    let user = UserDisk::new(&dir, USER);
    let root = sysroot(
        &dir,
        "24\n",
        "console=ttyS0,115200 boot.slot_suffix=_a root=/dev/mmcblk0p1\n",
        "# test board\nmachine=jetson-tx2-devkit\n",
        Some(("7-0050", &eeprom(PART_NUMBER))),
    );
    let payload = dir.join("bl_update_payload");
    std::fs::write(&payload, crate::support::bup::payload(&entries())).unwrap();
    Fx {
        _dir: tmp,
        dir,
        boot,
        user,
        root,
        payload,
    }
}

impl Fx {
    fn state(&self) -> (Linear, Vec<u8>) {
        (
            Linear::read(&self.boot),
            std::fs::read(&self.user.path).unwrap(),
        )
    }

    fn write(&self, payload: &Path, extra: &[&str]) -> std::process::Output {
        let mut cmd = sysinstall();
        cmd.args(["bup", "write"]).arg(payload);
        for b in &self.boot {
            cmd.arg("--boot-device").arg(b);
        }
        cmd.arg("--user-device").arg(&self.user.path);
        cmd.arg("--sysroot").arg(&self.root);
        cmd.args(extra);
        output(&mut cmd)
    }

    fn user_put(&self, user: &mut [u8], name: &str, data: &[u8]) {
        let p = self.user.partition(name);
        let at = p.offset as usize;
        user[at..at + p.size as usize].fill(0);
        user[at..at + data.len()].copy_from_slice(data);
    }

    fn age_all(&self) {
        self.boot
            .iter()
            .chain([&self.user.path])
            .for_each(|p| age(p));
    }

    fn unchanged_since_aged(&self) -> bool {
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
        self.boot
            .iter()
            .chain([&self.user.path])
            .all(|p| mtime(p) == old)
    }
}

fn smd_bytes(golden: &[u8; 22]) -> Vec<u8> {
    let mut b = golden.to_vec();
    b.resize(191, 0);
    b
}

#[test]
fn update_writes_the_inactive_slot_bct_copies_and_switches_to_b() {
    require_sgdisk();
    let fx = fixture(true);
    let (mut want_boot, mut want_user) = fx.state();

    let o = fx.write(&fx.payload, &[]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}{}", out, stderr(&o));
    assert!(out.contains(&format!("Native TNSPEC:   {TNSPEC}")), "{out}");
    assert!(
        out.contains("Compatible with: 3310-B01---1--jetson-tx2-devkit-"),
        "{out}"
    );
    assert!(out.contains("slot B marked active"), "{out}");

    // The model: slot B copies, BCT in three copies, both mb1, then SMD.
    for name in [
        "spe-fw",
        "mts-preboot",
        "MB1_BCT",
        "VER",
        "badpage-fw",
        "mb2",
        "mb1",
    ] {
        want_boot.fill_partition(&part(&format!("{name}_b")), &entry(name));
    }
    want_boot.fill_partition(&part("mb1"), &entry("mb1"));
    for at in [3584, 16384, 0] {
        want_boot.put(at, &entry("BCT"));
    }
    want_boot.put(part("SMD").offset, &smd_bytes(&SMD_TO_B));
    want_boot.put(part("SMD_b").offset, &smd_bytes(&SMD_TO_B));
    fx.user_put(&mut want_user, "kernel_b", &entry("kernel"));
    fx.user_put(&mut want_user, "kernel-dtb_b", &entry("kernel-dtb"));
    let (got_boot, got_user) = fx.state();
    assert!(got_boot == want_boot, "boot devices differ from the model");
    assert!(got_user == want_user, "user area differs from the model");

    // Order: SMD last, mb1 of the running slot after the BCT.
    let steps: Vec<&str> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.first().is_some_and(|n| n.parse::<u32>().is_ok()))
        .filter(|w| w.last().is_some_and(|a| *a == "written" || *a == "skipped"))
        .filter_map(|w| w.get(1).copied())
        .collect();
    let pos = |s: &str| steps.iter().position(|x| *x == s).unwrap();
    assert!(
        pos("mb2_b") < pos("BCT") && pos("mb1_b") > pos("BCT"),
        "{steps:?}"
    );
    assert_eq!(&steps[steps.len() - 3..], ["mb1", "SMD", "SMD_b"]);

    // A second run finds everything in place and writes nothing.
    fx.age_all();
    let o = fx.write(&fx.payload, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("0 written and verified"),
        "{}",
        stdout(&o)
    );
    assert!(fx.unchanged_since_aged(), "the second run wrote");
    assert!(fx.state() == (want_boot, want_user));
}

#[test]
fn explicit_slot_a_leaves_slot_metadata_alone() {
    require_sgdisk();
    let fx = fixture(true);
    let (mut want_boot, mut want_user) = fx.state();
    let o = fx.write(&fx.payload, &["--slot", "a", "--tnspec", TNSPEC]);
    assert!(o.status.success(), "{}", stderr(&o));
    for name in [
        "spe-fw",
        "mts-preboot",
        "MB1_BCT",
        "VER",
        "badpage-fw",
        "mb2",
        "mb1",
    ] {
        want_boot.fill_partition(&part(name), &entry(name));
    }
    want_boot.fill_partition(&part("mb1_b"), &entry("mb1"));
    for at in [3584, 16384, 0] {
        want_boot.put(at, &entry("BCT"));
    }
    fx.user_put(&mut want_user, "kernel", &entry("kernel"));
    fx.user_put(&mut want_user, "kernel-dtb", &entry("kernel-dtb"));
    assert!(fx.state() == (want_boot, want_user));
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    require_sgdisk();
    let fx = fixture(true);
    let before = fx.state();
    fx.age_all();
    let o = fx.write(&fx.payload, &["--dry-run"]);
    let out = stdout(&o);
    assert!(o.status.success(), "{}", stderr(&o));
    let boot0 = fx.boot[0].display().to_string();
    let boot1 = fx.boot[1].display().to_string();
    let line = |label: &str| {
        out.lines()
            .find(|l| l.split_whitespace().nth(1) == Some(label))
            .unwrap_or_else(|| panic!("no {label} in {out}"))
            .split_whitespace()
            .skip(2)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("mb1_b"),
        format!("mb1_b {boot0} 294912 9000 262144 write")
    );
    assert_eq!(
        line("VER_b"),
        format!("VER_b {boot1} {} 200 32768 write", 8257536 - 4 * MIB)
    );
    assert!(line("kernel_b").ends_with(&format!("{} 100000 262144 write", 2 * MIB)));
    assert_eq!(line("SMD"), format!("SMD {boot0} 2063360 191 191 write"));
    assert!(out.contains("Not written:     dram-ecc-fw"), "{out}");
    assert!(out.contains("Dry run:"), "{out}");
    assert!(fx.unchanged_since_aged());
    assert!(fx.state() == before);
}

/// Runs a refused write and checks that no image changed.
fn refused(fx: &Fx, payload: &Path, extra: &[&str], message: &str) {
    let before = fx.state();
    fx.age_all();
    let o = fx.write(payload, extra);
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(err.contains(message), "expected '{message}' in: {err}");
    assert!(fx.unchanged_since_aged(), "a refused run wrote");
    assert!(fx.state() == before);
}

#[test]
fn bad_payloads_leave_every_image_unchanged() {
    require_sgdisk();
    let fx = fixture(true);
    let good = std::fs::read(&fx.payload).unwrap();

    let truncated = fx.dir.join("truncated");
    std::fs::write(&truncated, &good[..good.len() - 100]).unwrap();
    refused(&fx, &truncated, &[], "beyond end of file");

    // Built for FAB B00 only: the board (B01 family) has no BCT entry.
    let other = fx.dir.join("other-board");
    let b00: Vec<_> = entries().into_iter().filter(|e| e.3 != B01).collect();
    std::fs::write(&other, crate::support::bup::payload(&b00)).unwrap();
    refused(
        &fx,
        &other,
        &[],
        "missing entries for partition(s): kernel-dtb, BCT, MB1_BCT, VER",
    );

    // A kernel larger than kernel_b: refused before anything is erased (REF
    // erased the partition first).
    let big = fx.dir.join("big-kernel");
    let mut e = entries();
    e[6].1 = data("kernel", 300_000);
    std::fs::write(&big, crate::support::bup::payload(&e)).unwrap();
    refused(
        &fx,
        &big,
        &[],
        "entry kernel of 300000 bytes does not fit partition kernel_b",
    );

    // A BCT whose block size differs from the board's.
    let bad_bct = fx.dir.join("bad-bct");
    let mut e = entries();
    e[10].1[1700] = 15;
    std::fs::write(&bad_bct, crate::support::bup::payload(&e)).unwrap();
    refused(&fx, &bad_bct, &[], "BlockSizeLog2 differs");

    // A BCT without mb1 (issue 12 item 6): REF writes the BCT, fails on
    // the missing mb1 and leaves the BR-BCT changed; refused before any
    // write, naming the missing entry. Same with bup check (exit 1).
    let no_mb1 = fx.dir.join("no-mb1");
    let e: Vec<_> = entries().into_iter().filter(|e| e.0 != "mb1").collect();
    std::fs::write(&no_mb1, crate::support::bup::payload(&e)).unwrap();
    refused(&fx, &no_mb1, &[], "BCT needs an mb1 entry");
    let o = output(
        sysinstall()
            .args(["bup", "check"])
            .arg(&no_mb1)
            .arg("--sysroot")
            .arg(&fx.root),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("FAIL: BCT needs an mb1 entry"),
        "{}",
        stdout(&o)
    );

    // No entries: REF would still switch slots.
    let empty = fx.dir.join("empty");
    std::fs::write(&empty, crate::support::bup::payload(&[])).unwrap();
    refused(&fx, &empty, &[], "refusing to write (and to switch slots)");

    // A blank boot device has no table to update by.
    let blank = fixture(false);
    refused(
        &blank,
        &blank.payload,
        &[],
        "a blank boot device needs --initialize",
    );

    // --initialize needs the layout.
    refused(&fx, &fx.payload, &["--initialize"], "give --layout");
}

fn layout(fx: &Fx) -> Layout {
    let boot = BootArea {
        kind: BootDeviceKind::SdmmcBoot,
        num_sectors: Some(16384),
        partitions: tx2_boot(),
    };
    test_layout(Soc::T186, 7 * MIB, &fx.user.parts, boot)
}

fn options(fx: &Fx, request: Request) -> UpdateOptions {
    UpdateOptions {
        payload: fx.payload.clone(),
        request,
        soc: None,
        layout: Some(layout(fx)),
        boot_devices: fx.boot.clone(),
        user_device: Some(fx.user.path.clone()),
        tnspec: None,
        machine: None,
        sysroot: SysRoot::new(&fx.root),
    }
}

/// What the installer does: prepare, partitions, (its own checks), commit.
fn install(opts: &UpdateOptions) -> (usize, usize, Changes) {
    let changes = Changes::new();
    let events = Events::silent();
    let mut s = update::prepare(opts).unwrap();
    let parts = s.execute_partitions(&changes, &events).unwrap();
    let smd = s.commit_slot_metadata(&changes, &events).unwrap();
    let written = |r: &[sysinstall::bup::exec::StepReport]| {
        r.iter()
            .filter(|s| s.action == sysinstall::bup::exec::StepAction::Write)
            .count()
    };
    (written(&parts), written(&smd), changes)
}

#[test]
fn initialize_writes_table_both_slots_singles_and_fresh_metadata() {
    require_sgdisk();
    let fx = fixture(false);
    let (mut want_boot, mut want_user) = fx.state();
    let (parts, smd, changes) = install(&options(&fx, Request::Initialize));
    assert!(changes.any());
    assert_eq!(smd, 2);
    assert!(parts > 20);

    for name in [
        "spe-fw",
        "mts-preboot",
        "MB1_BCT",
        "VER",
        "badpage-fw",
        "mb2",
        "mb1",
    ] {
        want_boot.fill_partition(&part(name), &entry(name));
        want_boot.fill_partition(&part(&format!("{name}_b")), &entry(name));
    }
    want_boot.fill_partition(&part("dram-ecc-fw"), &entry("dram-ecc-fw"));
    for at in [3584, 16384, 0] {
        want_boot.put(at, &entry("BCT"));
    }
    want_boot.put(part("SMD").offset, &smd_bytes(&SMD_INIT));
    want_boot.put(part("SMD_b").offset, &smd_bytes(&SMD_INIT));
    for (name, data) in [
        ("kernel", "kernel"),
        ("kernel_b", "kernel"),
        ("kernel-dtb", "kernel-dtb"),
        ("kernel-dtb_b", "kernel-dtb"),
        ("eks", "eks"),
    ] {
        fx.user_put(&mut want_user, name, &entry(data));
    }

    // The table, read with the generic GPT code: NVIDIA's placement, the
    // layout's partitions. Its GUIDs are random, so the model takes its bytes
    // once they are checked.
    let (got_boot, got_user) = fx.state();
    let len = 8 * MIB;
    let header = got_boot.get(len - 512, 512);
    let h = sysinstall::gpt::GptHeader::decode(&header).unwrap();
    assert_eq!(
        (h.my_lba, h.alternate_lba, h.first_usable_lba),
        (16383, 1, 0)
    );
    assert_eq!((h.last_usable_lba, h.partition_entry_lba), (16351, 16351));
    let array = got_boot.get(16351 * 512, 16384);
    let entries = h.decode_entries(&array).unwrap();
    let names: Vec<_> = entries.iter().map(|(_, e)| e.name.as_str()).collect();
    assert_eq!(
        names,
        tx2_boot()
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>()
    );
    for ((_, e), p) in entries.iter().zip(tx2_boot()) {
        assert_eq!(
            (e.first_lba * 512, (e.last_lba + 1 - e.first_lba) * 512),
            (p.offset, p.size)
        );
    }
    want_boot.put(16351 * 512, &array);
    want_boot.put(len - 512, &header[..92]);
    assert!(got_boot == want_boot, "boot devices differ from the model");
    assert!(got_user == want_user, "user area differs from the model");

    // Again: the table is the layout's already, everything else in place.
    fx.age_all();
    let (parts, smd, changes) = install(&options(&fx, Request::Initialize));
    assert_eq!((parts, smd), (0, 0));
    assert!(!changes.any());
    assert!(fx.unchanged_since_aged());
}

#[test]
fn the_installer_update_switches_the_slot_it_wrote() {
    require_sgdisk();
    // Booted from B (cmdline says so) but the installer names slot B itself:
    // the explicit slot wins, and is then marked active.
    let fx = fixture(true);
    let (mut want_boot, _) = fx.state();
    let (_, smd, _) = install(&options(&fx, Request::UpdateAndActivate(Slot::B)));
    assert_eq!(smd, 2);
    want_boot.put(part("SMD").offset, &smd_bytes(&SMD_TO_B));
    let got = Linear::read(&fx.boot);
    assert_eq!(got.get(part("SMD").offset, 191), smd_bytes(&SMD_TO_B));
    assert_eq!(got.get(part("SMD_b").offset, 191), smd_bytes(&SMD_TO_B));
    assert_eq!(got.get(part("mb1_b").offset, 9000), entry("mb1"));
}

/// Bytes that are nobody's data: what a used device holds where nothing
/// is written.
const PATTERN: u8 = 0xA5;

/// Issue 12 items 7 and 8, update mode: where the data already matches but
/// old bytes follow it, and where an entry is empty, the partitions end up
/// as tegra-bootloader-update leaves them (data, then zeros to the end);
/// the whole boot devices and user area equal the model, and a second run
/// writes nothing.
#[test]
fn update_leaves_data_then_zeros_over_stale_tails_and_empty_entries() {
    require_sgdisk();
    let fx = fixture(true);
    // badpage-fw (boot) and kernel-dtb (user) come empty in this payload.
    let e: Vec<_> = entries()
        .into_iter()
        .map(|(n, d, op, spec)| {
            let d = if n == "badpage-fw" || n == "kernel-dtb" {
                Vec::new()
            } else {
                d
            };
            (n, d, op, spec)
        })
        .collect();
    let payload = fx.dir.join("empty-entries");
    std::fs::write(&payload, crate::support::bup::payload(&e)).unwrap();
    let entry = |name: &str| -> Vec<u8> {
        e.iter()
            .rev()
            .find(|(n, _, op, spec)| *n == name && *op != 1 && (spec.is_empty() || *spec == B01))
            .unwrap()
            .1
            .clone()
    };

    // Slot B as an earlier update left it: the right data, stale bytes after.
    let (mut boot, mut user) = fx.state();
    for name in ["mb2_b", "VER_b", "badpage-fw_b"] {
        let p = part(name);
        boot.put(p.offset, &vec![PATTERN; p.size as usize]);
    }
    boot.put(part("mb2_b").offset, &entry("mb2"));
    boot.put(part("VER_b").offset, &entry("VER"));
    boot.save(&fx.boot);
    for name in ["kernel_b", "kernel-dtb_b"] {
        let p = fx.user.partition(name);
        user[p.offset as usize..(p.offset + p.size) as usize].fill(PATTERN);
    }
    let k = fx.user.partition("kernel_b");
    user[k.offset as usize..][..entry("kernel").len()].copy_from_slice(&entry("kernel"));
    std::fs::write(&fx.user.path, &user).unwrap();

    let (mut want_boot, mut want_user) = fx.state();
    let o = fx.write(&payload, &[]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    for name in [
        "spe-fw",
        "mts-preboot",
        "MB1_BCT",
        "VER",
        "badpage-fw",
        "mb2",
        "mb1",
    ] {
        want_boot.fill_partition(&part(&format!("{name}_b")), &entry(name));
    }
    want_boot.fill_partition(&part("mb1"), &entry("mb1"));
    for at in [3584, 16384, 0] {
        want_boot.put(at, &entry("BCT"));
    }
    want_boot.put(part("SMD").offset, &smd_bytes(&SMD_TO_B));
    want_boot.put(part("SMD_b").offset, &smd_bytes(&SMD_TO_B));
    fx.user_put(&mut want_user, "kernel_b", &entry("kernel"));
    fx.user_put(&mut want_user, "kernel-dtb_b", &entry("kernel-dtb"));
    let (got_boot, got_user) = fx.state();
    assert!(got_boot == want_boot, "boot devices differ from the model");
    assert!(got_user == want_user, "user area differs from the model");
    let b = part("badpage-fw_b");
    assert!(got_boot
        .get(b.offset, b.size as usize)
        .iter()
        .all(|&x| x == 0));

    fx.age_all();
    let o = fx.write(&payload, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("0 written and verified"),
        "{}",
        stdout(&o)
    );
    assert!(fx.unchanged_since_aged(), "the second run wrote");
}

/// The TX2 rig's layout as an XML: the boot area placed at its documented
/// offsets, the user area with the rig's partitions (its size comes from
/// the user device).
fn tx2_xml(fx: &Fx) -> PathBuf {
    let mut x = String::from("<?xml version=\"1.0\"?>\n<partition_layout version=\"01.00.0000\">\n  <device type=\"sdmmc_boot\" instance=\"3\" sector_size=\"512\" num_sectors=\"16384\">\n");
    for p in tx2_boot() {
        x.push_str(&format!(
            "    <partition name=\"{}\" type=\"data\"><size>{}</size><start_location>{}</start_location></partition>\n",
            p.name, p.size, p.offset
        ));
    }
    x.push_str("  </device>\n  <device type=\"sdmmc_user\" instance=\"3\" sector_size=\"512\">\n    <partition name=\"master_boot_record\" type=\"protective_master_boot_record\"><size>512</size></partition>\n    <partition name=\"primary_gpt\" type=\"primary_gpt\"><size>16896</size></partition>\n");
    for (name, size) in USER {
        x.push_str(&format!(
            "    <partition name=\"{name}\" type=\"data\"><size>{size}</size></partition>\n"
        ));
    }
    x.push_str("  </device>\n</partition_layout>\n");
    let path = fx.dir.join("tx2.xml");
    std::fs::write(&path, x).unwrap();
    path
}

/// Issue 12 item 8, "Done when": `bup write --initialize` over boot devices
/// and user partitions full of old bytes leaves exactly what a fresh
/// tegra-bootloader-update run leaves: every written partition its data
/// then zeros, the BCT copies, 191 bytes of slot metadata, the table's
/// header and entries, and the old bytes everywhere nothing is written.
#[test]
fn reinitialize_over_a_used_device_leaves_what_tegra_bootloader_update_leaves() {
    require_sgdisk();
    let fx = fixture(false);
    let (mut boot, mut user) = fx.state();
    for dev in &mut boot.0 {
        dev.fill(PATTERN);
    }
    // A board flashed with this release over a longer one: slot A's data is
    // already the payload's, with the old bytes after it.
    for name in ["mb2", "mb1", "spe-fw", "VER"] {
        boot.put(part(name).offset, &entry(name));
    }
    boot.save(&fx.boot);
    for (name, _) in USER {
        let p = fx.user.partition(name);
        user[p.offset as usize..(p.offset + p.size) as usize].fill(PATTERN);
    }
    let k = fx.user.partition("kernel");
    user[k.offset as usize..][..entry("kernel").len()].copy_from_slice(&entry("kernel"));
    std::fs::write(&fx.user.path, &user).unwrap();
    let xml = tx2_xml(&fx);
    let layout = xml.display().to_string();
    let args = ["--initialize", "--layout", layout.as_str()];

    let (mut want_boot, mut want_user) = fx.state();
    // REC (docs/spec/bup-format.md §9.1): VER (boot1 sectors 8064-8127) is
    // zeroed only up to the tegra-bootinfo store, boot1 sectors 8124-8155,
    // which keeps its bytes.
    let store = (4 * MIB + 8124 * 512, 32 * 512);
    let store_before = want_boot.get(store.0, store.1 as usize).to_vec();
    let o = fx.write(&fx.payload, &args);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("slot A marked active"),
        "{}",
        stdout(&o)
    );
    for name in [
        "spe-fw",
        "mts-preboot",
        "MB1_BCT",
        "VER",
        "badpage-fw",
        "mb2",
        "mb1",
    ] {
        want_boot.fill_partition(&part(name), &entry(name));
        want_boot.fill_partition(&part(&format!("{name}_b")), &entry(name));
    }
    want_boot.fill_partition(&part("dram-ecc-fw"), &entry("dram-ecc-fw"));
    for at in [3584, 16384, 0] {
        want_boot.put(at, &entry("BCT"));
    }
    want_boot.put(part("SMD").offset, &smd_bytes(&SMD_INIT));
    want_boot.put(part("SMD_b").offset, &smd_bytes(&SMD_INIT));
    for (name, data) in [
        ("kernel", "kernel"),
        ("kernel_b", "kernel"),
        ("kernel-dtb", "kernel-dtb"),
        ("kernel-dtb_b", "kernel-dtb"),
        ("eks", "eks"),
    ] {
        fx.user_put(&mut want_user, name, &entry(data));
    }
    // The table: REF writes the 92 header bytes and the entry array only
    // (the rest of their sectors keeps the old bytes); its GUIDs are random,
    // so the model takes its bytes once they read back as the layout's.
    let (got_boot, got_user) = fx.state();
    let len = 8 * MIB;
    let header = got_boot.get(len - 512, 512);
    assert!(
        header[92..].iter().all(|&b| b == PATTERN),
        "only 92 bytes written"
    );
    let h = sysinstall::gpt::GptHeader::decode(&header).unwrap();
    let array = got_boot.get(16351 * 512, 16384);
    let names: Vec<String> = h
        .decode_entries(&array)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e.name)
        .collect();
    let want_names: Vec<String> = tx2_boot().into_iter().map(|p| p.name).collect();
    assert_eq!(names, want_names);
    want_boot.put(16351 * 512, &array);
    want_boot.put(len - 512, &header[..92]);
    assert_ne!(store_before, vec![0; store.1 as usize]);
    want_boot.put(store.0, &store_before);
    // Untouched: UBENV, the gaps, the rest of the BCT partition.
    let ubenv = part("UBENV");
    assert!(got_boot
        .get(ubenv.offset, ubenv.size as usize)
        .iter()
        .all(|&b| b == PATTERN));
    assert!(got_boot
        .get(3584 * 2, 16384 - 3584 * 2)
        .iter()
        .all(|&b| b == PATTERN));
    assert!(got_boot == want_boot, "boot devices differ from the model");
    assert!(got_user == want_user, "user area differs from the model");

    // Again: everything is in place, nothing is written.
    fx.age_all();
    let o = fx.write(&fx.payload, &args);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("0 written and verified"),
        "{}",
        stdout(&o)
    );
    assert!(fx.unchanged_since_aged(), "the second run wrote");
}
