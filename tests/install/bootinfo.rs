//! The tegra-bootinfo store (docs/spec/bup-format.md §9) after an install on
//! loop devices (root tier), the TX2 rig: boot1 is an image file standing in
//! for the eMMC boot partition. The store is read back from outside: the
//! header and both CRCs checked here by hand, the variables through the
//! library's decoder.

use crate::support::rig::{Rig, BOOT_BYTES};
use crate::support::{output, require_root, stderr, stdout};
use sysinstall::bup::bootinfo::{self, Store};

const TOOLS: &[&str] = &[
    "losetup", "partx", "sgdisk", "mke2fs", "e2fsck", "tune2fs", "zstd", "setfacl", "setfattr",
    "python3",
];

/// Copy A and copy B: (base sector, first extension sector) counted back
/// from the end of boot1 (§9.1, 15 extension sectors).
const COPIES: [(u64, u64); 2] = [(37, 53), (38, 68)];

fn read_copy(boot1: &[u8], copy: usize) -> Vec<u8> {
    let n = boot1.len();
    let (base, ext) = COPIES[copy];
    let at = |s: u64| n - (s as usize) * 512;
    let mut b = boot1[at(base)..at(base) + 512].to_vec();
    b.extend_from_slice(&boot1[at(ext)..at(ext) + 15 * 512]);
    b
}

fn write_copy(boot1: &mut [u8], copy: usize, bytes: &[u8]) {
    let n = boot1.len();
    let (base, ext) = COPIES[copy];
    let at = |s: u64| n - (s as usize) * 512;
    boot1[at(base)..at(base) + 512].copy_from_slice(&bytes[..512]);
    boot1[at(ext)..at(ext) + 15 * 512].copy_from_slice(&bytes[512..]);
}

/// Checks the copy by the field table of §9.2 and returns it decoded.
fn check_copy(copy: &[u8]) -> Store {
    assert_eq!(&copy[..8], b"BOOTINFO");
    assert_eq!(u16::from_le_bytes([copy[8], copy[9]]), 3, "version");
    assert_eq!(
        u16::from_le_bytes([copy[18], copy[19]]),
        15,
        "extension sectors"
    );
    let mut base = copy[..512].to_vec();
    let crc = u32::from_le_bytes(base[12..16].try_into().unwrap());
    base[12..16].fill(0);
    assert_eq!(crc32fast::hash(&base), crc, "base CRC");
    let ext = u32::from_le_bytes(copy[8188..].try_into().unwrap());
    assert_eq!(crc32fast::hash(&copy[512..8188]), ext, "extension CRC");
    bootinfo::decode(copy).unwrap()
}

fn vars(s: &Store) -> Vec<(String, String)> {
    s.vars
        .iter()
        .map(|(n, v)| {
            (
                String::from_utf8_lossy(n).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// Runs the install again, with JSON events: its report and events.
fn install_again(rig: &Rig) -> String {
    let o = output(
        rig.install_cmd()
            .args(["--events", "json"])
            .arg(&rig.rootfs),
    );
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let events = stdout(&o);
    // The step is an event of the boot phase.
    assert!(
        events.lines().any(|l| l.contains("\"step_start\"")
            && l.contains("initialize tegra-bootinfo")
            && l.contains("\"boot\"")),
        "{events}"
    );
    // The plan names the store's device.
    assert!(
        events
            .lines()
            .any(|l| l.contains("\"bootinfo\":") && l.contains("boot1.img")),
        "{events}"
    );
    format!("{}{events}", stderr(&o))
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn the_install_initializes_the_store_keeps_its_variables_and_mends_it() {
    require_root(TOOLS);
    let rig = Rig::new();
    let o = rig.install();
    let err = stderr(&o);
    assert!(
        err.contains("tegra-bootinfo store initialized at the end of"),
        "{err}"
    );
    // The boot partitions hold the payload, zero after it but for the store
    // (check.py), so the store wrote over nothing the payload put there.
    rig.verify_initial(&rig.rootfs);
    let mut boot1 = std::fs::read(&rig.boot[1]).unwrap();
    assert_eq!(boot1.len() as u64, BOOT_BYTES);
    // A blank boot1: a new store, copy A then copy B.
    let (a, b) = (
        check_copy(&read_copy(&boot1, 0)),
        check_copy(&read_copy(&boot1, 1)),
    );
    assert_eq!((a.sernum, b.sernum), (1, 2));
    for s in [&a, &b] {
        assert_eq!((s.flags, s.failed_boots, s.vars.len()), (0, 0, 0));
    }
    // Nothing else of boot1 between the last boot partition and the
    // pseudo-GPT changed: the three sectors between store and table are zero.
    let n = boot1.len();
    assert!(boot1[n - 36 * 512..n - 33 * 512].iter().all(|&x| x == 0));

    // A board that ran: copy A holds a machine id, a boot in progress and
    // three failed boots; copy B is damaged. The update keeps the variable
    // and resets the rest, on both copies.
    let used = Store {
        version: 3,
        flags: bootinfo::FLAG_BOOT_IN_PROGRESS,
        failed_boots: 3,
        sernum: 9,
        vars: vec![
            (b"machine_id".to_vec(), b"4f1c2d".to_vec()),
            (b"note".to_vec(), b"kept".to_vec()),
        ],
    };
    write_copy(&mut boot1, 0, &bootinfo::encode(&used).unwrap());
    let mut damaged = read_copy(&boot1, 1);
    damaged[600] ^= 0xff;
    write_copy(&mut boot1, 1, &damaged);
    std::fs::write(&rig.boot[1], &boot1).unwrap();
    let err = install_again(&rig);
    assert!(err.contains("Mode:     update"), "{err}");
    assert!(
        err.contains("copy A read, 2 variables kept"),
        "the event names what it found: {err}"
    );
    let boot1 = std::fs::read(&rig.boot[1]).unwrap();
    let (a, b) = (
        check_copy(&read_copy(&boot1, 0)),
        check_copy(&read_copy(&boot1, 1)),
    );
    // B (the copy not read) first with 10, then A with 11.
    assert_eq!((a.sernum, b.sernum), (11, 10));
    for s in [&a, &b] {
        assert_eq!((s.flags, s.failed_boots), (0, 0));
        assert_eq!(
            vars(s),
            [
                ("machine_id".into(), "4f1c2d".into()),
                ("note".into(), "kept".into())
            ]
        );
    }

    // Once more: already initialized, nothing of it is written.
    let err = install_again(&rig);
    assert!(err.contains("already initialized"), "{err}");
    assert_eq!(std::fs::read(&rig.boot[1]).unwrap(), boot1);

    // Both copies gone bad: a new, empty store.
    let mut bad = boot1.clone();
    let n = bad.len();
    bad[n - 37 * 512] = b'X';
    bad[n - 38 * 512 + 20] ^= 1;
    std::fs::write(&rig.boot[1], &bad).unwrap();
    let err = install_again(&rig);
    assert!(err.contains("no valid copy: a new, empty store"), "{err}");
    let boot1 = std::fs::read(&rig.boot[1]).unwrap();
    let (a, b) = (
        check_copy(&read_copy(&boot1, 0)),
        check_copy(&read_copy(&boot1, 1)),
    );
    assert_eq!(
        (a.sernum, b.sernum, a.vars.len(), b.vars.len()),
        (1, 2, 0, 0)
    );

    // --no-bootloader leaves it alone, damaged or not.
    std::fs::write(&rig.boot[1], &bad).unwrap();
    let o = output(
        rig.install_cmd()
            .args(["--no-bootloader", "--mode", "update"])
            .arg(&rig.rootfs),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stderr(&o).contains("tegra-bootinfo"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&rig.boot[1]).unwrap(), bad);
}
