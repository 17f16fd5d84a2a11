//! T194: AGX Xavier (eMMC boot0/boot1) and Xavier NX (32 MiB QSPI flash,
//! table at its end, not doubled) on image files, compared byte for byte
//! with an independent model: update through the binary, initialize through
//! the library (`bup::update`), second runs, refusals.

use crate::support::bup::*;
use std::path::PathBuf;
use sysinstall::bup::update::{self, Request, UpdateOptions};
use sysinstall::events::Events;
use sysinstall::exit::Changes;
use sysinstall::layout::{BootArea, BootDeviceKind, BootPartition, Layout, Soc};
use sysinstall::sys::board::SysRoot;

struct Board {
    boot: fn() -> Vec<BootPartition>,
    sizes: &'static [u64],
    kind: BootDeviceKind,
    part_number: &'static str,
    machine: &'static str,
    spec: &'static str,
    other_spec: &'static str,
    /// BCT copy offsets (block 0 slot 1, block 1, block 0 slot 0) and the slot size.
    bct: ([u64; 3], u64),
}

/// AGX Xavier: FAB 400 SKU 0001 rev C.1, which the compatible spec maps to D.0.
const AGX: Board = Board {
    boot: agx_boot,
    sizes: &[4 * MIB, 4 * MIB],
    kind: BootDeviceKind::SdmmcBoot,
    part_number: "699-82888-0001-400 C.1",
    machine: "jetson-agx-xavier-devkit",
    spec: "2888-400-0001-D.0-1-2-jetson-agx-xavier-devkit-mmcblk0p1",
    other_spec: "2888-400-0004--1-2-jetson-agx-xavier-devkit-mmcblk0p1",
    // T19x BCT: 2888 bytes, 512-byte pages → 3072-byte slots, 16 KiB blocks.
    bct: ([3072, 16384, 0], 3072),
};

/// Xavier NX (SD): FAB 300, which the compatible spec maps to 100.
const NX: Board = Board {
    boot: nx_boot,
    sizes: &[32 * MIB],
    kind: BootDeviceKind::Spi,
    part_number: "699-13668-0000-300 B.0",
    machine: "jetson-xavier-nx-devkit",
    spec: "3668-100---1-2-jetson-xavier-nx-devkit-mmcblk0p1",
    other_spec: "3668-301---1-2-jetson-xavier-nx-devkit-mmcblk0p1",
    // SPI: 2 KiB pages → 4096-byte slots, 32 KiB blocks.
    bct: ([4096, 32768, 0], 4096),
};

/// Boot-device A/B pairs of the payload, by entry name.
const AB: &[&str] = &[
    "spe-fw",
    "mts-preboot",
    "MB1_BCT",
    "MEM_BCT",
    "VER",
    "mb2",
    "mb1",
];

fn entries(b: &Board) -> Vec<(&'static str, Vec<u8>, u32, &'static str)> {
    let mut e = vec![
        ("spe-fw", data("spe-fw", 6000), 0, ""),
        ("mb2", data("mb2", 7000), 0, ""),
        ("mts-preboot", data("mtsp-dev", 4000), 1, ""),
        ("mts-preboot", data("mtsp-prod", 4000), 2, ""),
        ("kernel", data("kernel", 150_000), 0, ""),
        ("BMP", data("bmp-blob", 5000), 0, ""),
    ];
    for (spec, tag) in [(b.other_spec, "other"), (b.spec, "ours")] {
        e.extend([
            ("kernel-dtb", data(&format!("dtb-{tag}"), 3000), 0, spec),
            ("VER", data(&format!("ver-{tag}"), 150), 0, spec),
            ("mb1", data(&format!("mb1-{tag}"), 9000), 0, spec),
            (
                "BCT",
                bct(2888, true, if tag == "ours" { 0xB1 } else { 0xB0 }),
                0,
                spec,
            ),
            ("MB1_BCT", data(&format!("mb1bct-{tag}"), 2000), 0, spec),
            ("MEM_BCT", data(&format!("membct-{tag}"), 2500), 0, spec),
        ]);
    }
    e
}

fn entry(b: &Board, name: &str) -> Vec<u8> {
    entries(b)
        .into_iter()
        .rev()
        .find(|(n, _, op, spec)| *n == name && *op != 1 && (spec.is_empty() || *spec == b.spec))
        .unwrap()
        .1
}

const USER: &[(&str, u64)] = &[
    ("kernel", 256 * 1024),
    ("kernel_b", 256 * 1024),
    ("kernel-dtb", 256 * 1024),
    ("kernel-dtb_b", 256 * 1024),
    ("BMP", 256 * 1024),
    ("BMP_b", 256 * 1024),
];

/// Slot metadata, version 3, both slots bootable, `active` at priority 15.
fn smd(active: usize, active_successful: u8) -> Vec<u8> {
    let mut s = vec![0x00, 0x4e, 0x42, 0x43, 3, 3, 2, 0];
    for i in 0..2 {
        let (prio, ok) = if i == active {
            (15, active_successful)
        } else {
            (14, 1)
        };
        s.extend([prio, b'_', b"ab"[i], 7, ok]);
    }
    let crc = crc32fast::hash(&s);
    s.extend(crc.to_le_bytes());
    s.resize(191, 0);
    s
}

struct Fx {
    _dir: tempfile::TempDir,
    boot: Vec<PathBuf>,
    user: UserDisk,
    root: PathBuf,
    payload: PathBuf,
    table: Vec<BootPartition>,
}

impl Fx {
    fn part(&self, name: &str) -> BootPartition {
        self.table.iter().find(|p| p.name == name).unwrap().clone()
    }

    fn state(&self) -> (Linear, Vec<u8>) {
        (
            Linear::read(&self.boot),
            std::fs::read(&self.user.path).unwrap(),
        )
    }

    fn user_put(&self, user: &mut [u8], name: &str, data: &[u8]) {
        let p = self.user.partition(name);
        let at = p.offset as usize;
        user[at..at + p.size as usize].fill(0);
        user[at..at + data.len()].copy_from_slice(data);
    }

    fn bct_model(&self, b: &Board, lin: &mut Linear) {
        let mut copy = entry(b, "BCT");
        copy.resize(b.bct.1 as usize, 0);
        for at in b.bct.0 {
            lin.put(self.part("BCT").offset + at, &copy);
        }
    }

    fn write(&self, extra: &[&str]) -> std::process::Output {
        let mut cmd = sysinstall();
        cmd.args(["bup", "write"]).arg(&self.payload);
        for d in &self.boot {
            cmd.arg("--boot-device").arg(d);
        }
        cmd.arg("--user-device").arg(&self.user.path);
        cmd.arg("--sysroot").arg(&self.root);
        output(cmd.args(extra))
    }
}

/// A flashed board booted from `booted` (0 = A, 1 = B); `blank` = nothing
/// on the boot device at all.
fn fixture(b: &Board, booted: usize, blank: bool) -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let boot = boot_images(&dir, b.sizes);
    let table = (b.boot)();
    if !blank {
        let mut lin = Linear::read(&boot);
        lin.put_table(&table);
        for name in ["SMD", "SMD_b"] {
            let p = table.iter().find(|p| p.name == name).unwrap();
            lin.put(p.offset, &smd(booted, 1));
        }
        let old = bct(2888, true, 0xAA);
        for at in b.bct.0 {
            lin.put(at, &old);
        }
        lin.save(&boot);
    }
    let user = UserDisk::new(&dir, USER);
    let suffix = ["_a", "_b"][booted];
    let root = sysroot(
        &dir,
        "25\n",
        &format!("root=/dev/mmcblk0p1 boot.slot_suffix={suffix} quiet\n"),
        &format!("machine={}\n", b.machine),
        Some(("0-0050", &eeprom(b.part_number))),
    );
    let payload = dir.join("bl_update_payload");
    std::fs::write(&payload, crate::support::bup::payload(&entries(b))).unwrap();
    Fx {
        _dir: tmp,
        boot,
        user,
        root,
        payload,
        table,
    }
}

fn update_through_the_binary(b: &Board, booted: usize) {
    let fx = fixture(b, booted, false);
    let (mut want_boot, mut want_user) = fx.state();
    let o = fx.write(&[]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let target = 1 - booted;
    let name_of = |n: &str, slot: usize| {
        if slot == 1 {
            format!("{n}_b")
        } else {
            n.to_string()
        }
    };
    for n in AB {
        want_boot.fill_partition(&fx.part(&name_of(n, target)), &entry(b, n));
    }
    // The running slot's mb1 follows the new BCT.
    want_boot.fill_partition(&fx.part(&name_of("mb1", booted)), &entry(b, "mb1"));
    fx.bct_model(b, &mut want_boot);
    for name in ["SMD", "SMD_b"] {
        want_boot.put(fx.part(name).offset, &smd(target, 0));
    }
    for n in ["kernel", "kernel-dtb", "BMP"] {
        fx.user_put(&mut want_user, &name_of(n, target), &entry(b, n));
    }
    let (got_boot, got_user) = fx.state();
    assert!(got_boot == want_boot, "boot device differs from the model");
    assert!(got_user == want_user, "user area differs from the model");
    let out = stdout(&o);
    let slot = ["A", "B"][target];
    assert!(out.contains(&format!("slot {slot} marked active")), "{out}");

    // Second run: nothing to do.
    for p in fx.boot.iter().chain([&fx.user.path]) {
        age(p);
    }
    let before: Vec<_> = fx
        .boot
        .iter()
        .chain([&fx.user.path])
        .map(|p| mtime(p))
        .collect();
    let o = fx.write(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("0 written and verified"),
        "{}",
        stdout(&o)
    );
    let after: Vec<_> = fx
        .boot
        .iter()
        .chain([&fx.user.path])
        .map(|p| mtime(p))
        .collect();
    assert_eq!(before, after, "the second run wrote");
}

#[test]
fn agx_xavier_update_from_slot_a() {
    require_sgdisk();
    update_through_the_binary(&AGX, 0);
}

#[test]
fn xavier_nx_spi_update_from_slot_b() {
    require_sgdisk();
    update_through_the_binary(&NX, 1);
}

fn layout(b: &Board, fx: &Fx) -> Layout {
    let boot = BootArea {
        kind: b.kind,
        num_sectors: Some(b.sizes.iter().sum::<u64>() / 512),
        partitions: (b.boot)(),
    };
    test_layout(Soc::T194, 8 * MIB, &fx.user.parts, boot)
}

fn initialize_through_the_library(b: &Board) {
    let fx = fixture(b, 0, true);
    let (mut want_boot, mut want_user) = fx.state();
    let opts = UpdateOptions {
        payload: fx.payload.clone(),
        request: Request::Initialize,
        soc: None,
        layout: Some(layout(b, &fx)),
        boot_devices: vec![],
        user_device: Some(fx.user.path.clone()),
        tnspec: None,
        machine: None,
        sysroot: SysRoot::new(&fx.root),
    };
    // No --boot-device: the board configuration names them.
    let conf = fx.root.join("etc/sysinstall/board.conf");
    let devs: Vec<String> = fx.boot.iter().map(|p| p.display().to_string()).collect();
    std::fs::write(
        &conf,
        format!("machine={}\nboot-device={}\n", b.machine, devs.join(" ")),
    )
    .unwrap();

    let changes = Changes::new();
    let events = Events::silent();
    let mut s = update::prepare(&opts).unwrap();
    assert_eq!(s.plan.soc, Soc::T194, "from tegra_chip_id");
    s.execute_partitions(&changes, &events).unwrap();
    s.commit_slot_metadata(&changes, &events).unwrap();

    for n in AB {
        want_boot.fill_partition(&fx.part(n), &entry(b, n));
        want_boot.fill_partition(&fx.part(&format!("{n}_b")), &entry(b, n));
    }
    fx.bct_model(b, &mut want_boot);
    for name in ["SMD", "SMD_b"] {
        want_boot.put(fx.part(name).offset, &smd(0, 0));
    }
    for n in ["kernel", "kernel-dtb", "BMP"] {
        fx.user_put(&mut want_user, n, &entry(b, n));
        fx.user_put(&mut want_user, &format!("{n}_b"), &entry(b, n));
    }
    // The table: checked, then taken into the model (its GUIDs are random).
    let (got_boot, got_user) = fx.state();
    let len = got_boot.len();
    let n = len / 512;
    let header = got_boot.get(len - 512, 512);
    let h = sysinstall::gpt::GptHeader::decode(&header).unwrap();
    assert_eq!(
        (h.my_lba, h.last_usable_lba, h.partition_entry_lba),
        (n - 1, n - 33, n - 33)
    );
    let array = got_boot.get((n - 33) * 512, 16384);
    let names: Vec<String> = h
        .decode_entries(&array)
        .unwrap()
        .into_iter()
        .map(|e| e.1.name)
        .collect();
    assert_eq!(
        names,
        fx.table.iter().map(|p| p.name.clone()).collect::<Vec<_>>()
    );
    want_boot.put((n - 33) * 512, &array);
    want_boot.put(len - 512, &header[..92]);
    assert!(got_boot == want_boot, "boot device differs from the model");
    assert!(got_user == want_user, "user area differs from the model");

    // The tegra-bootinfo store, as the installer initializes it
    // (docs/spec/bup-format.md §9): at the end of the last boot device, off
    // every write of the payload, and nothing but it written.
    let (dev, loc) = s.bootinfo_location().cloned().unwrap();
    assert_eq!(&dev, fx.boot.last().unwrap());
    let sector = |n: u64| n * 512;
    let want_copies = match b.kind {
        // 32 MiB QSPI: each copy in its own 64 KiB erase block.
        BootDeviceKind::Spi => [
            (sector(65407), sector(65392)),
            (sector(65279), sector(65264)),
        ],
        // 4 MiB boot1: just below the pseudo-GPT's last 33 sectors.
        _ => [(sector(8155), sector(8139)), (sector(8154), sector(8124))],
    };
    assert_eq!(loc.copies, want_copies);
    let name = dev.display().to_string();
    for st in s.plan.steps.iter().chain(&s.plan.slot_metadata) {
        if st.device == name {
            assert_eq!(
                loc.overlaps(st.device_offset, st.span),
                None,
                "{}",
                st.label
            );
        }
    }
    let r = s.initialize_bootinfo(&changes, &events).unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].action, sysinstall::bup::exec::StepAction::Write);
    let (got_boot, _) = fx.state();
    let dev_start: u64 = b.sizes[..b.sizes.len() - 1].iter().sum();
    for (i, (base, ext)) in loc.copies.into_iter().enumerate() {
        let mut copy = got_boot.get(dev_start + base, 512).to_vec();
        copy.extend_from_slice(&got_boot.get(dev_start + ext, 15 * 512));
        let st = sysinstall::bup::bootinfo::decode(&copy).unwrap();
        assert_eq!((st.sernum, st.flags, st.failed_boots), (i as u8 + 1, 0, 0));
        want_boot.put(dev_start + base, &copy[..512]);
        want_boot.put(dev_start + ext, &copy[512..]);
    }
    assert!(got_boot == want_boot, "more than the store changed");

    // Again: nothing written, the store included.
    let changes = Changes::new();
    let mut s = update::prepare(&opts).unwrap();
    let r = s.execute_partitions(&changes, &events).unwrap();
    let bi = s.initialize_bootinfo(&changes, &events).unwrap();
    s.commit_slot_metadata(&changes, &events).unwrap();
    assert!(!changes.any(), "{r:?} {bi:?}");
}

#[test]
fn agx_xavier_initialize() {
    require_sgdisk();
    initialize_through_the_library(&AGX);
}

#[test]
fn xavier_nx_spi_initialize() {
    require_sgdisk();
    initialize_through_the_library(&NX);
}

#[test]
fn slot_metadata_without_a_valid_copy_stops_the_update() {
    require_sgdisk();
    let fx = fixture(&NX, 0, false);
    let mut lin = Linear::read(&fx.boot);
    for name in ["SMD", "SMD_b"] {
        let at = fx.part(name).offset;
        let mut bad = lin.get(at, 191);
        bad[8] ^= 1; // breaks the CRC
        lin.put(at, &bad);
    }
    lin.save(&fx.boot);
    let before = fx.state();
    let o = fx.write(&[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("loading slot metadata: no valid copy in SMD or SMD_b"),
        "{}",
        stderr(&o)
    );
    assert!(fx.state() == before);
}

#[test]
fn a_t19x_bct_with_another_page_size_is_refused() {
    require_sgdisk();
    let fx = fixture(&AGX, 0, false);
    let mut e = entries(&AGX);
    let i = e.iter().rposition(|x| x.0 == "BCT").unwrap();
    e[i].1[2368] = 11; // PageSizeLog2 at the T19x offset
    std::fs::write(&fx.payload, crate::support::bup::payload(&e)).unwrap();
    let before = fx.state();
    let o = fx.write(&[]);
    assert_eq!(o.status.code(), Some(3));
    assert!(
        stderr(&o).contains("PageSizeLog2 differs"),
        "{}",
        stderr(&o)
    );
    assert!(fx.state() == before);
}
