//! The tegra-bootinfo store on T186/T194 (docs/spec/bup-format.md §9): the
//! boot counter, the boot-in-progress flag and the `name=value` variables
//! that OE4T's tegra-boot-tools keep near the end of the boot device, in two
//! redundant copies. Pure: bytes in, bytes out; the device side is
//! [`super::update::BootUpdate::initialize_bootinfo`].
//!
//! What an install writes (§9.5, a REC): the variables of the newest valid
//! copy are kept (a persistent machine id lives there), the counter and the
//! flag are reset, and both copies are written, the older one first.

#![deny(clippy::indexing_slicing)]

use super::BootMedium;
use crate::layout::Soc;

/// A sector of the store.
pub const SECTOR: u64 = 512;
/// Extension sectors per copy: tegra-boot-tools' build default (§9.2).
pub const EXT_SECTORS: u16 = 15;
/// One copy: the base sector, then the extension sectors.
pub const COPY_LEN: usize = 512 * (1 + EXT_SECTORS as usize);
/// The magic at byte 0 of the base sector.
pub const MAGIC: &[u8; 8] = b"BOOTINFO";
/// The version written (§9.3); 1 and 2 are read.
pub const VERSION: u16 = 3;
/// Header bytes before the variables.
const HEADER_LEN: usize = 20;
/// Where the base sector's CRC sits in the header.
const CRC_AT: usize = 12;
/// `flags` bit: a boot is in progress.
pub const FLAG_BOOT_IN_PROGRESS: u8 = 1;

/// Where the two copies are, as byte offsets on the store's device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Copy A then copy B: (base sector, first extension sector).
    pub copies: [(u64, u64); 2],
}

impl Location {
    /// Every byte range the store occupies: (offset, length).
    pub fn ranges(&self) -> [(u64, u64); 4] {
        let ext = u64::from(EXT_SECTORS) * SECTOR;
        let [(a, ea), (b, eb)] = self.copies;
        [(a, SECTOR), (ea, ext), (b, SECTOR), (eb, ext)]
    }

    /// The span of a write at `start` (`data` bytes, then zeros to `span`)
    /// with its zero tail cut before the store (§9.1 REC), or the store's
    /// range that the data itself would overwrite.
    pub fn clip_span(&self, start: u64, data: u64, span: u64) -> Result<u64, (u64, u64)> {
        if let Some(r) = self.overlaps(start, data) {
            return Err(r);
        }
        let end = start.saturating_add(span);
        let first = self
            .ranges()
            .into_iter()
            .filter(|&(o, l)| o < end && start < o.saturating_add(l))
            .map(|(o, _)| o.max(start.saturating_add(data)))
            .min();
        Ok(first.map_or(span, |o| o - start))
    }

    /// The first range that overlaps `[start, start + len)`.
    pub fn overlaps(&self, start: u64, len: u64) -> Option<(u64, u64)> {
        self.ranges()
            .into_iter()
            .find(|&(o, l)| start < o.saturating_add(l) && o < start.saturating_add(len))
    }
}

/// Where the store lives on a device of `len` bytes: the end of eMMC boot1
/// on T186 and T194, or of the QSPI flash of a T194 without eMMC (§9.1).
/// `None` where tegra-bootinfo keeps no store we write (T210, T234), or the
/// device is too small.
pub fn location(soc: Soc, medium: BootMedium, len: u64) -> Option<Location> {
    // Sectors from the end: (base A, base B); each copy's extension ends
    // where its base begins on the QSPI flash, below both bases on eMMC.
    let back = |n: u64| len.checked_sub(n * SECTOR);
    let ext = u64::from(EXT_SECTORS);
    let (a, ea, b, eb) = match (soc, medium) {
        (Soc::T186 | Soc::T194, BootMedium::Emmc) => (37, ext + 38, 38, 2 * ext + 38),
        (Soc::T194, BootMedium::Spi) => (129, ext + 129, 257, ext + 257),
        _ => return None,
    };
    Some(Location {
        copies: [(back(a)?, back(ea)?), (back(b)?, back(eb)?)],
    })
}

/// Whether an install keeps a store for this SoC on this boot medium.
pub fn kept_on(soc: Soc, medium: BootMedium) -> bool {
    location(soc, medium, u64::MAX).is_some()
}

/// Why a copy is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootinfoError {
    /// Fewer bytes than a copy.
    #[error("{0} bytes, a copy is {COPY_LEN}")]
    Short(usize),
    /// No `BOOTINFO` magic.
    #[error("no BOOTINFO magic")]
    Magic,
    /// A version this reader does not know.
    #[error("unknown version {0}")]
    Version(u16),
    /// Another build's extension size.
    #[error("{0} extension sectors, expected {EXT_SECTORS}")]
    ExtSectors(u16),
    /// The base sector's CRC does not match.
    #[error("base sector CRC mismatch")]
    BaseCrc,
    /// The extension's CRC does not match.
    #[error("extension CRC mismatch")]
    ExtCrc,
    /// The variables do not fit one copy.
    #[error("the variables take {0} bytes, more than a copy holds")]
    TooLarge(usize),
}

/// One decoded copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    /// The version on the device (1, 2 or 3).
    pub version: u16,
    /// `flags` ([`FLAG_BOOT_IN_PROGRESS`]).
    pub flags: u8,
    /// Failed boots counted.
    pub failed_boots: u8,
    /// Write sequence number (wraps).
    pub sernum: u8,
    /// The variables, in order: (name, value), without their NULs.
    pub vars: Vec<(Vec<u8>, Vec<u8>)>,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut x = [0u8; 2];
    if let Some(s) = b.get(at..at + 2) {
        x.copy_from_slice(s);
    }
    u16::from_le_bytes(x)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut x = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        x.copy_from_slice(s);
    }
    u32::from_le_bytes(x)
}

/// CRC-32 of the base sector with its CRC field read as zero.
fn base_crc(base: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(base.get(..CRC_AT).unwrap_or(&[]));
    h.update(&[0; 4]);
    h.update(base.get(CRC_AT + 4..).unwrap_or(&[]));
    h.finalize()
}

/// Decodes one copy: the base sector followed by its extension sectors, as
/// read from the device (`COPY_LEN` bytes). Checks both CRCs (§9.4).
pub fn decode(copy: &[u8]) -> Result<Store, BootinfoError> {
    let copy = copy
        .get(..COPY_LEN)
        .ok_or(BootinfoError::Short(copy.len()))?;
    let (base, ext) = copy.split_at(SECTOR as usize);
    if base.get(..8) != Some(MAGIC.as_slice()) {
        return Err(BootinfoError::Magic);
    }
    let version = u16_at(base, 8);
    let (flags, failed_boots) = (
        base.get(10).copied().unwrap_or(0),
        base.get(11).copied().unwrap_or(0),
    );
    let sernum = base.get(16).copied().unwrap_or(0);
    let vars = match version {
        // Version 1: a header only, its flag byte a boolean; no CRC.
        1 => {
            return Ok(Store {
                version,
                flags: u8::from(flags != 0),
                failed_boots,
                sernum,
                vars: Vec::new(),
            })
        }
        2 => {
            if base_crc(base) != u32_at(base, CRC_AT) {
                return Err(BootinfoError::BaseCrc);
            }
            parse_vars(base.get(HEADER_LEN..).unwrap_or(&[]))
        }
        VERSION => {
            let n = u16_at(base, 18);
            if n != EXT_SECTORS {
                return Err(BootinfoError::ExtSectors(n));
            }
            if base_crc(base) != u32_at(base, CRC_AT) {
                return Err(BootinfoError::BaseCrc);
            }
            let (body, crc) = ext.split_at(ext.len() - 4);
            if crc32fast::hash(body) != u32_at(crc, 0) {
                return Err(BootinfoError::ExtCrc);
            }
            parse_vars(copy.get(HEADER_LEN..COPY_LEN - 4).unwrap_or(&[]))
        }
        v => return Err(BootinfoError::Version(v)),
    };
    Ok(Store {
        version,
        flags,
        failed_boots,
        sernum,
        vars,
    })
}

/// `name NUL value NUL ...`, ended by an empty name; a variable cut short
/// by the end of the space is dropped, as tegra-bootinfo drops it.
fn parse_vars(mut space: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut vars = Vec::new();
    while space.first().is_some_and(|&c| c != 0) {
        let mut parts = space.splitn(3, |&c| c == 0);
        let (Some(name), Some(value), Some(rest)) = (parts.next(), parts.next(), parts.next())
        else {
            break;
        };
        vars.push((name.to_vec(), value.to_vec()));
        space = rest;
    }
    vars
}

/// Encodes one version-3 copy (`COPY_LEN` bytes: base, then extension).
pub fn encode(store: &Store) -> Result<Vec<u8>, BootinfoError> {
    let mut b = vec![0u8; COPY_LEN];
    let mut packed = Vec::new();
    for (n, v) in &store.vars {
        packed.extend_from_slice(n);
        packed.push(0);
        packed.extend_from_slice(v);
        packed.push(0);
    }
    // The list's terminating NUL and the extension CRC must fit too.
    let room = COPY_LEN - HEADER_LEN - 4 - 1;
    if packed.len() > room {
        return Err(BootinfoError::TooLarge(packed.len()));
    }
    let mut header = [0u8; HEADER_LEN];
    header[..8].copy_from_slice(MAGIC);
    header[8..10].copy_from_slice(&VERSION.to_le_bytes());
    header[10] = store.flags;
    header[11] = store.failed_boots;
    header[16] = store.sernum;
    header[18..20].copy_from_slice(&EXT_SECTORS.to_le_bytes());
    if let Some(s) = b.get_mut(..HEADER_LEN) {
        s.copy_from_slice(&header);
    }
    if let Some(s) = b.get_mut(HEADER_LEN..HEADER_LEN + packed.len()) {
        s.copy_from_slice(&packed);
    }
    seal(&mut b);
    Ok(b)
}

/// Sets both CRCs of a version-3 copy (`COPY_LEN` bytes; others are left
/// alone) to match its bytes.
pub fn seal(copy: &mut [u8]) {
    let Some(copy) = copy.get_mut(..COPY_LEN) else {
        return;
    };
    let (base, ext) = copy.split_at_mut(SECTOR as usize);
    let crc = base_crc(base);
    if let Some(s) = base.get_mut(CRC_AT..CRC_AT + 4) {
        s.copy_from_slice(&crc.to_le_bytes());
    }
    let (body, tail) = ext.split_at_mut(ext.len() - 4);
    tail.copy_from_slice(&crc32fast::hash(body).to_le_bytes());
}

/// A copy's name: A (0) or B (1).
pub fn copy_name(i: usize) -> &'static str {
    if i == 0 {
        "A"
    } else {
        "B"
    }
}

/// The copy tegra-bootinfo reads: the valid one, or of two the newer by
/// sequence number (255 → 0 counts as newer; a tie picks copy A).
pub fn current(copies: &[Option<Store>; 2]) -> Option<usize> {
    match copies {
        [Some(a), Some(b)] => Some(match (a.sernum, b.sernum) {
            (255, 0) => 1,
            (0, 255) => 0,
            (x, y) => usize::from(y > x),
        }),
        [Some(_), None] => Some(0),
        [None, Some(_)] => Some(1),
        [None, None] => None,
    }
}

/// What initializing does to a store, worked out from its two copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitPlan {
    /// The copy read (A = 0, B = 1), when one was valid.
    pub found: Option<usize>,
    /// Variables kept.
    pub kept: usize,
    /// Copies to write, in order: (copy index, `COPY_LEN` bytes). Empty
    /// when the store is already initialized.
    pub writes: Vec<(usize, Vec<u8>)>,
}

/// Initializes a store (§9.5): keeps the variables of the copy tegra-bootinfo
/// would read, resets the flag and the counter, and writes both copies,
/// the one not read first (a power cut leaves the old copy readable).
/// Nothing to write when both copies are already version 3, reset and equal.
pub fn initialize(raw: [&[u8]; 2]) -> Result<InitPlan, BootinfoError> {
    let copies = raw.map(|r| decode(r).ok());
    let found = current(&copies);
    let cur = found.and_then(|i| copies.get(i).cloned().flatten());
    let reset = |s: &Store| s.version == VERSION && s.flags == 0 && s.failed_boots == 0;
    if let ([Some(a), Some(b)], Some(c)) = (&copies, &cur) {
        if reset(a) && reset(b) && a.vars == b.vars {
            return Ok(InitPlan {
                found,
                kept: c.vars.len(),
                writes: Vec::new(),
            });
        }
    }
    let (first, sernum, vars) = match (found, cur) {
        (Some(i), Some(c)) => (1 - i, c.sernum, c.vars),
        _ => (0, 0, Vec::new()),
    };
    let kept = vars.len();
    let mut store = Store {
        version: VERSION,
        flags: 0,
        failed_boots: 0,
        sernum: sernum.wrapping_add(1),
        vars,
    };
    let a = encode(&store)?;
    store.sernum = sernum.wrapping_add(2);
    let b = encode(&store)?;
    Ok(InitPlan {
        found,
        kept,
        writes: vec![(first, a), (1 - first, b)],
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn store(sernum: u8, vars: &[(&str, &str)]) -> Store {
        Store {
            version: VERSION,
            flags: 0,
            failed_boots: 0,
            sernum,
            vars: vars
                .iter()
                .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    /// The vector of docs/spec/bup-format.md §9.6, built byte by byte from
    /// the field table rather than by `encode`.
    #[test]
    fn encode_matches_the_spec_vector() {
        let mut s = store(1, &[("machine_id", "0123")]);
        s.flags = FLAG_BOOT_IN_PROGRESS;
        s.failed_boots = 2;
        let got = encode(&s).unwrap();
        let mut want = vec![0u8; 8192];
        want[..8].copy_from_slice(b"BOOTINFO");
        want[8] = 3; // version, little-endian
        want[10] = 1; // flags
        want[11] = 2; // failed boots
        want[16] = 1; // sernum
        want[18] = 15; // extension sectors
        want[20..36].copy_from_slice(b"machine_id\x000123\x00");
        // CRC-32 (zlib) of the base sector with its CRC field zero.
        let crc = [0x9d, 0xbb, 0x3d, 0x07];
        want[12..16].copy_from_slice(&crc);
        // The extension is all zero: the CRC-32 of 7676 zero bytes.
        want[8188..].copy_from_slice(&0xab72_a617u32.to_le_bytes());
        assert_eq!(&got[..512], &want[..512], "base sector");
        assert_eq!(got, want);
        assert_eq!(decode(&got).unwrap(), s);
    }

    #[test]
    fn variables_run_into_the_extension_and_back() {
        let long = "x".repeat(1000);
        let s = store(7, &[("a", "1"), ("long", &long), ("b", "")]);
        let b = encode(&s).unwrap();
        assert_eq!(b.len(), COPY_LEN);
        assert_eq!(decode(&b).unwrap(), s);
        let too_big = "y".repeat(COPY_LEN);
        assert_eq!(
            encode(&store(0, &[("v", &too_big)])),
            Err(BootinfoError::TooLarge(too_big.len() + 3))
        );
    }

    #[test]
    fn corruption_is_named() {
        let good = encode(&store(1, &[("k", "v")])).unwrap();
        let mut b = good.clone();
        b[0] = b'X';
        assert_eq!(decode(&b), Err(BootinfoError::Magic));
        let mut b = good.clone();
        b[21] ^= 1;
        assert_eq!(decode(&b), Err(BootinfoError::BaseCrc));
        let mut b = good.clone();
        b[4000] = 1;
        assert_eq!(decode(&b), Err(BootinfoError::ExtCrc));
        let mut b = good.clone();
        b[18] = 1;
        assert_eq!(decode(&b), Err(BootinfoError::ExtSectors(1)));
        let mut b = good.clone();
        b[8] = 9;
        assert_eq!(decode(&b), Err(BootinfoError::Version(9)));
        assert_eq!(decode(&good[..100]), Err(BootinfoError::Short(100)));
    }

    #[test]
    fn older_versions_are_read() {
        // Version 2: variables in the base sector only, base CRC.
        let mut b = vec![0u8; COPY_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8] = 2;
        b[16] = 4;
        b[20..24].copy_from_slice(b"a\0b\0");
        let crc = base_crc(&b[..512]);
        b[12..16].copy_from_slice(&crc.to_le_bytes());
        b[600] = 0xff; // the extension is not part of version 2
        let s = decode(&b).unwrap();
        assert_eq!((s.version, s.sernum, s.vars.len()), (2, 4, 1));
        // Version 1: no CRC, a boolean flag byte.
        let mut b = vec![0u8; COPY_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8] = 1;
        b[10] = 0x80;
        assert_eq!(decode(&b).unwrap().flags, FLAG_BOOT_IN_PROGRESS);
    }

    #[test]
    fn a_cut_variable_is_dropped() {
        assert_eq!(
            parse_vars(b"a\0b\0c\0"),
            vec![(b"a".to_vec(), b"b".to_vec())]
        );
        assert_eq!(parse_vars(b"a\0b"), Vec::<(Vec<u8>, Vec<u8>)>::new());
        assert_eq!(parse_vars(b"\0a\0b\0").len(), 0);
    }

    #[test]
    fn the_newer_copy_is_current() {
        let s = |n| Some(store(n, &[]));
        assert_eq!(current(&[s(3), s(4)]), Some(1));
        assert_eq!(current(&[s(4), s(3)]), Some(0));
        assert_eq!(current(&[s(4), s(4)]), Some(0));
        assert_eq!(current(&[s(255), s(0)]), Some(1));
        assert_eq!(current(&[s(0), s(255)]), Some(0));
        assert_eq!(current(&[None, s(0)]), Some(1));
        assert_eq!(current(&[None, None]), None);
    }

    #[test]
    fn initialize_keeps_variables_and_resets_the_counter() {
        let mut old = store(9, &[("machine_id", "abc")]);
        old.flags = FLAG_BOOT_IN_PROGRESS;
        old.failed_boots = 3;
        let a = encode(&old).unwrap();
        let b = vec![0u8; COPY_LEN];
        let p = initialize([&a, &b]).unwrap();
        assert_eq!((p.found, p.kept), (Some(0), 1));
        // B (not read) first, then A.
        assert_eq!(p.writes.iter().map(|w| w.0).collect::<Vec<_>>(), [1, 0]);
        let nb = decode(&p.writes[0].1).unwrap();
        let na = decode(&p.writes[1].1).unwrap();
        assert_eq!((nb.sernum, na.sernum), (10, 11));
        assert_eq!((na.flags, na.failed_boots), (0, 0));
        assert_eq!(na.vars, old.vars);
        // Applied, it is already initialized: nothing more to write.
        let again = initialize([&p.writes[1].1, &p.writes[0].1]).unwrap();
        assert_eq!((again.found, again.kept), (Some(0), 1));
        assert!(again.writes.is_empty());
    }

    #[test]
    fn initialize_without_a_valid_copy_starts_empty() {
        let mut bad = encode(&store(5, &[("k", "v")])).unwrap();
        bad[30] ^= 0xff;
        let p = initialize([&bad, &[0u8; 10]]).unwrap();
        assert_eq!((p.found, p.kept), (None, 0));
        assert_eq!(p.writes.iter().map(|w| w.0).collect::<Vec<_>>(), [0, 1]);
        let a = decode(&p.writes[0].1).unwrap();
        assert_eq!((a.sernum, a.vars.len()), (1, 0));
    }

    /// In NVIDIA's T186/T194 layouts the store lies in the unused end of a
    /// VER partition or clear of every partition (the pseudo-GPT included):
    /// with the zero tails cut, no write of the payload touches it.
    #[test]
    fn real_layouts_leave_the_store_alone() {
        use crate::layout::{self, BootDeviceKind, LoadOptions};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/flash-layouts");
        let (mut checked, mut clipped) = (0, 0);
        for name in [
            "r32.7.2-flash_l4t_t186.xml",
            "r32.7.2-flash_l4t_t186_rootfs_ab.xml",
            "r32.7.2-flash_t194_sdmmc.xml",
            "r35.3.1-flash_t194_sdmmc.xml",
            "r32.7.2-flash_l4t_t194_spi_emmc_p3668.xml",
            "r35.3.1-flash_l4t_t194_spi_emmc_p3668.xml",
            "r32.5.0-testdistro-flash_jetson-tx2-devkit_custom.xml",
            "r32.5.0-testdistro-flash_jetson-agx-xavier-devkit_custom.xml",
        ] {
            let opts = LoadOptions {
                set: vec![
                    ("APPSIZE".into(), "6442450944".into()),
                    ("RECROOTFSSIZE".into(), "104857600".into()),
                ],
                disk_sectors: Some(61_071_360),
            };
            let l = layout::load(&dir.join(name), &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
            let boot = l.boot.unwrap();
            let soc = if name.contains("186") || name.contains("tx2") {
                Soc::T186
            } else {
                Soc::T194
            };
            let medium = BootMedium::of(boot.kind);
            // The store's device: boot1 (the second 4 MiB), or the whole flash.
            let (dev_start, dev_len) = match boot.kind {
                BootDeviceKind::Spi => (0, boot.num_sectors.unwrap() * 512),
                _ => (4 << 20, 4 << 20),
            };
            let loc = location(soc, medium, dev_len).unwrap();
            for p in &boot.partitions {
                let Some(start) = p.offset.checked_sub(dev_start) else {
                    continue;
                };
                // A VER file (the largest such entry, well under 1 KiB) fits
                // before the store; the zero tail after it is cut.
                let span = loc.clip_span(start, 1024.min(p.size), p.size);
                let span = span.unwrap_or_else(|r| panic!("{name}: {} holds {r:?}", p.name));
                assert_eq!(loc.overlaps(start, span), None, "{name}: {}", p.name);
                if span < p.size {
                    assert!(p.name.starts_with("VER"), "{name}: {}", p.name);
                    clipped += 1;
                }
            }
            // The boot device's own GPT (the last 33 sectors) too.
            assert_eq!(loc.overlaps(dev_len - 33 * 512, 33 * 512), None, "{name}");
            checked += 1;
        }
        assert_eq!(checked, 8);
        // R32.7.2 TX2: VER; R32.7.2 NX: VER_b; R35.3.1 NX: VER and VER_b.
        assert_eq!(clipped, 5);
    }

    #[test]
    fn locations_per_soc() {
        let mib4 = 4 << 20;
        let l = location(Soc::T186, BootMedium::Emmc, mib4).unwrap();
        // Sectors 8155 (A), 8154 (B); extensions 8139.. and 8124..
        assert_eq!(
            l.copies,
            [(8155 * 512, 8139 * 512), (8154 * 512, 8124 * 512)]
        );
        // The top three sectors before the 33-sector pseudo-GPT stay free.
        let top = l.ranges().iter().map(|(o, n)| o + n).max().unwrap();
        assert_eq!(top, (8192 - 36) * 512);
        assert_eq!(location(Soc::T194, BootMedium::Emmc, mib4), Some(l));
        let spi = location(Soc::T194, BootMedium::Spi, 32 << 20).unwrap();
        assert_eq!(
            spi.copies,
            [(65407 * 512, 65392 * 512), (65279 * 512, 65264 * 512)]
        );
        // Each copy in its own 64 KiB erase block, neither in the GPT's.
        let block = |o: u64| o / 65536;
        for (base, ext) in spi.copies {
            assert_eq!(block(base), block(ext));
            assert_ne!(block(base), block((65536 - 33) * 512));
        }
        assert_ne!(block(spi.copies[0].0), block(spi.copies[1].0));
        assert_eq!(location(Soc::T210, BootMedium::Emmc, mib4), None);
        assert_eq!(location(Soc::T186, BootMedium::Spi, mib4), None);
        assert_eq!(location(Soc::T186, BootMedium::Emmc, 1024), None);
        assert_eq!(l.overlaps(8154 * 512, 1), Some((8154 * 512, 512)));
        assert_eq!(l.overlaps((8192 - 36) * 512, 36 * 512), None);
        // VER of R32.7.2's TX2 layout, sectors 8064-8127 of boot1: its zero
        // tail stops at extension B (8124); data there is refused.
        assert_eq!(l.clip_span(8064 * 512, 200, 64 * 512), Ok(60 * 512));
        assert_eq!(l.clip_span(8064 * 512, 4000, 32 * 512), Ok(32 * 512));
        assert_eq!(
            l.clip_span(8064 * 512, 61 * 512, 64 * 512),
            Err((8124 * 512, 15 * 512))
        );
        assert_eq!(l.clip_span(8124 * 512, 0, 4 * 512), Ok(0));
    }
}
