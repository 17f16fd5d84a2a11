//! T210: Nano eMMC (boot0/boot1 plus user-area partitions) and Nano SD
//! (4 MiB QSPI holding everything) on image files, through the library
//! boot-partition update with a layout built by hand (T210 boot devices carry no table, so
//! the layout is required), compared byte for byte with an independent
//! model; the version checks of docs/spec/bup-format.md §4.8 against VER/VER_b.

use crate::support::bup::*;
use std::path::PathBuf;
use sysinstall::bup::exec::StepAction;
use sysinstall::bup::update::{self, Request, UpdateOptions};
use sysinstall::events::Events;
use sysinstall::exit::Changes;
use sysinstall::layout::{BootArea, BootDeviceKind, BootPartition, Layout, Soc};
use sysinstall::sys::board::SysRoot;

const SPEC: &str = "3448-200-0002--1-0-jetson-nano-emmc-mmcblk0p1";
const OTHER: &str = "3448-300-0002--1-0-jetson-nano-emmc-mmcblk0p1";
const SPI_SPEC: &str = "3448-300-0000--1-0-jetson-nano-devkit-mmcblk0p1";
/// A T210 BCT: a whole number of pages.
const BCT_LEN: usize = 10240;

fn entries(
    spec: &'static str,
    other: &'static str,
) -> Vec<(&'static str, Vec<u8>, u32, &'static str)> {
    let mut e = Vec::new();
    for (s, tag) in [(other, "other"), (spec, "ours")] {
        e.push((
            "BCT",
            bct(BCT_LEN, false, if tag == "ours" { 0xB1 } else { 0xB0 }),
            0,
            s,
        ));
        for n in ["RP1", "PT", "DTB", "LNX"] {
            e.push((n, data(&format!("{n}-{tag}"), 3000), 0, s));
        }
        e.push((
            "VER",
            if tag == "ours" { ver(7, 3) } else { ver(7, 2) },
            0,
            s,
        ));
    }
    for n in ["NVC", "TBC", "EBT", "WB0", "BPF", "TOS", "EKS", "BMP"] {
        e.push((n, data(n, 4000), 0, ""));
    }
    e
}

fn entry(name: &str) -> Vec<u8> {
    entries(SPEC, OTHER)
        .into_iter()
        .rev()
        .find(|(n, _, _, s)| *n == name && (s.is_empty() || *s == SPEC))
        .unwrap()
        .1
}

const USER: &[(&str, u64)] = &[
    ("DTB", 128 * 1024),
    ("DTB-1", 128 * 1024),
    ("TOS", 128 * 1024),
    ("TOS-1", 128 * 1024),
    ("EKS", 64 * 1024),
    ("EKS-1", 64 * 1024),
    ("LNX", 256 * 1024),
    ("LNX-1", 256 * 1024),
    ("BMP", 128 * 1024),
    ("RP4", 128 * 1024),
];

struct Fx {
    _dir: tempfile::TempDir,
    boot: Vec<PathBuf>,
    user: Option<UserDisk>,
    root: PathBuf,
    payload: PathBuf,
    table: Vec<BootPartition>,
    spi: bool,
}

impl Fx {
    fn part(&self, name: &str) -> BootPartition {
        self.table.iter().find(|p| p.name == name).unwrap().clone()
    }

    fn state(&self) -> (Linear, Option<Vec<u8>>) {
        (
            Linear::read(&self.boot),
            self.user.as_ref().map(|u| std::fs::read(&u.path).unwrap()),
        )
    }

    /// VER and VER_b as the device holds them.
    fn set_ver(&self, cur: &[u8], back: &[u8]) {
        let mut lin = Linear::read(&self.boot);
        lin.fill_partition(&self.part("VER"), cur);
        lin.fill_partition(&self.part("VER_b"), back);
        lin.save(&self.boot);
    }

    fn layout(&self) -> Layout {
        let user: Vec<(String, u64, u64)> =
            self.user.iter().flat_map(|u| u.parts.clone()).collect();
        let boot = BootArea {
            kind: if self.spi {
                BootDeviceKind::Spi
            } else {
                BootDeviceKind::T210Sdmmc
            },
            num_sectors: None,
            partitions: self.table.clone(),
        };
        test_layout(Soc::T210, 16 * MIB, &user, boot)
    }

    fn options(&self, request: Request) -> UpdateOptions {
        UpdateOptions {
            payload: self.payload.clone(),
            request,
            soc: None,
            layout: Some(self.layout()),
            boot_devices: self.boot.clone(),
            user_device: self.user.as_ref().map(|u| u.path.clone()),
            tnspec: None,
            machine: None,
            sysroot: SysRoot::new(&self.root),
        }
    }

    /// Plans and writes; returns (written, skipped, warnings).
    fn run(&self, request: Request) -> anyhow::Result<(usize, usize, Vec<String>)> {
        let changes = Changes::new();
        let events = Events::silent();
        let mut s = update::prepare(&self.options(request))?;
        assert!(s.plan.slot_metadata.is_empty(), "T210 has no slot metadata");
        let labels: Vec<&str> = s.plan.steps.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels.first(), Some(&"VER_b"));
        assert_eq!(
            labels.last(),
            Some(&"VER"),
            "VER is the commit marker: {labels:?}"
        );
        let warnings = s.plan.warnings.clone();
        let r = s.execute_partitions(&changes, &events)?;
        let w = r.iter().filter(|s| s.action == StepAction::Write).count();
        assert_eq!(changes.any(), w > 0);
        Ok((w, r.len() - w, warnings))
    }
}

fn fixture(spi: bool) -> Fx {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let (table, sizes): (_, &[u64]) = if spi {
        (nano_spi_boot(), &[4 * MIB])
    } else {
        (nano_emmc_boot(), &[4 * MIB, 4 * MIB])
    };
    let boot = boot_images(&dir, sizes);
    let user = (!spi).then(|| UserDisk::new(&dir, USER));
    let (pn, machine) = if spi {
        ("699-13448-0000-300 B.0", "jetson-nano-devkit")
    } else {
        ("699-13448-0002-200 B.0", "jetson-nano-emmc")
    };
    let root = sysroot(
        &dir,
        "33\n",
        "console=ttyS0\n",
        &format!("machine={machine}\n"),
        Some(("2-0050", &eeprom(pn))),
    );
    let payload = dir.join("bl_update_payload");
    let e = if spi {
        entries(SPI_SPEC, OTHER)
    } else {
        entries(SPEC, OTHER)
    };
    std::fs::write(&payload, crate::support::bup::payload(&e)).unwrap();
    let fx = Fx {
        _dir: tmp,
        boot,
        user,
        root,
        payload,
        table,
        spi,
    };
    // As flashed: release 32.6.1 in both VER copies.
    fx.set_ver(&ver(6, 1), &ver(6, 1));
    fx
}

#[test]
fn nano_emmc_update_writes_every_copy_bct_64_times_and_ver_last() {
    require_sgdisk();
    let fx = fixture(false);
    let (mut want_boot, want_user) = fx.state();
    let mut want_user = want_user.unwrap();
    let (written, skipped, _) = fx.run(Request::Inactive).unwrap();
    assert_eq!(skipped, 0);
    for n in ["NVC", "PT", "TBC", "RP1", "EBT", "WB0", "BPF"] {
        want_boot.fill_partition(&fx.part(n), &entry(n));
        want_boot.fill_partition(&fx.part(&format!("{n}-1")), &entry(n));
    }
    want_boot.fill_partition(&fx.part("VER"), &entry("VER"));
    want_boot.fill_partition(&fx.part("VER_b"), &entry("VER"));
    for block in 0..64 {
        want_boot.put(block * 16384, &entry("BCT"));
    }
    let user = fx.user.as_ref().unwrap();
    for (p, n) in [
        ("DTB", "DTB"),
        ("DTB-1", "DTB"),
        ("TOS", "TOS"),
        ("TOS-1", "TOS"),
        ("EKS", "EKS"),
        ("EKS-1", "EKS"),
        ("LNX", "LNX"),
        ("LNX-1", "LNX"),
        ("BMP", "BMP"),
    ] {
        let part = user.partition(p);
        let at = part.offset as usize;
        want_user[at..at + part.size as usize].fill(0);
        want_user[at..at + entry(n).len()].copy_from_slice(&entry(n));
    }
    let (got_boot, got_user) = fx.state();
    assert!(got_boot == want_boot, "boot devices differ from the model");
    assert!(
        got_user.unwrap() == want_user,
        "user area differs from the model"
    );
    // 7 pairs + VER pair + 4 user pairs + BMP + 64 BCT copies.
    assert_eq!(written, 14 + 2 + 8 + 1 + 64);

    // The second run finds it all in place (and the version check passes:
    // VER and VER_b now both hold the payload's release).
    let (written, skipped, _) = fx.run(Request::Inactive).unwrap();
    assert_eq!((written, skipped), (0, 14 + 2 + 8 + 1 + 64));
}

#[test]
fn nano_spi_has_nine_bct_copies_and_nvc_r() {
    let fx = fixture(true);
    let (mut want_boot, _) = fx.state();
    let (_, _, warnings) = fx.run(Request::Initialize).unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    for n in ["NVC", "NVC_R"] {
        want_boot.fill_partition(&fx.part(n), &entry("NVC"));
    }
    for n in [
        "PT", "TBC", "RP1", "EBT", "WB0", "BPF", "TOS", "DTB", "LNX", "EKS", "BMP",
    ] {
        want_boot.fill_partition(&fx.part(n), &entry(n));
    }
    want_boot.fill_partition(&fx.part("VER"), &entry("VER"));
    want_boot.fill_partition(&fx.part("VER_b"), &entry("VER"));
    // Eight 32 KiB blocks, two copies in block 0.
    for at in (0..8).map(|b| b * 32768).chain([BCT_LEN as u64]) {
        want_boot.put(at, &entry("BCT"));
    }
    assert!(
        fx.state().0 == want_boot,
        "SPI flash differs from the model"
    );
    let (written, ..) = fx.run(Request::Initialize).unwrap();
    assert_eq!(written, 0);
}

fn refused(fx: &Fx, request: Request, message: &str) {
    let before = fx.state();
    let err = format!("{:#}", fx.run(request).map(|_| ()).unwrap_err());
    assert!(err.contains(message), "expected '{message}' in: {err}");
    assert!(fx.state() == before, "a refused run wrote");
}

#[test]
fn version_checks_guard_the_update() {
    let fx = fixture(true);
    // Both copies newer than the payload: no rollback, even when forced.
    fx.set_ver(&ver(7, 4), &ver(7, 4));
    refused(
        &fx,
        Request::Initialize,
        "current bootloader version is 32.7.4; cannot roll back to 32.7.3",
    );
    // VER_b has another release: an interrupted update of that release.
    fx.set_ver(&ver(6, 1), &ver(5, 0));
    refused(
        &fx,
        Request::Initialize,
        "previous update to 32.5.0 was incomplete",
    );
    // Nothing readable: only with --initialize (force), with a warning.
    fx.set_ver(&[0; 64], &[0; 64]);
    refused(
        &fx,
        Request::Inactive,
        "bootloader version partitions are corrupted",
    );
    let (_, _, warnings) = fx.run(Request::Initialize).unwrap();
    assert!(
        warnings.iter().any(|w| w.contains("corrupted")),
        "{warnings:?}"
    );
}

#[test]
fn an_interrupted_update_is_resumed_with_the_same_payload() {
    // VER_b (written first) already has the payload's release, VER (written
    // last) the old one. REF refuses this without -i; its comments and our
    // "re-run finishes the job" rule say resume (docs/spec/bup-format.md §4.8 QUIRK).
    let fx = fixture(true);
    fx.set_ver(&ver(6, 1), &ver(7, 3));
    let (written, ..) = fx.run(Request::Inactive).unwrap();
    assert!(written > 0);
    let lin = Linear::read(&fx.boot);
    assert_eq!(lin.get(fx.part("VER").offset, ver(7, 3).len()), ver(7, 3));
}

#[test]
fn nvc_copies_that_disagree_need_a_reflash() {
    let fx = fixture(true);
    let mut lin = Linear::read(&fx.boot);
    lin.fill_partition(&fx.part("NVC_R"), b"something else");
    lin.save(&fx.boot);
    refused(&fx, Request::Inactive, "NVC partition mismatch");
}

#[test]
fn t210_refuses_slots_and_needs_a_layout() {
    let fx = fixture(true);
    let err = format!(
        "{:#}",
        update::prepare(&fx.options(Request::Slot(sysinstall::bup::board::Slot::B)))
            .err()
            .unwrap()
    );
    assert!(err.contains("T210 boards have no A/B boot slots"), "{err}");
    let mut opts = fx.options(Request::Inactive);
    opts.layout = None;
    let err = format!("{:#}", update::prepare(&opts).err().unwrap());
    assert!(
        err.contains("T210 boot devices carry no partition table: give --layout"),
        "{err}"
    );
}
