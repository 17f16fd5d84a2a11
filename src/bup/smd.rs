//! Slot metadata (SMD), the record in the `SMD` and `SMD_b` boot partitions
//! that tells the T186/T194 bootloaders which slot to boot
//! (docs/spec/bup-format.md §4.9).
//!
//! ```text
//! 0   magic "\0NBC"      4   version   5   flags   6   maxslots (u16)
//! 8   slot A: priority, suffix[2], retry_count, boot_successful
//! 13  slot B: same       18  crc32 of bytes 0..18
//! 22  extension (version ≥ 4): crc32, len, "ENBC", ...   191 bytes in all
//! ```
//!
//! A copy is valid when its magic is right, its CRC matches (version ≥ 3)
//! and, from version 4 on, its extension checks out. We use the first valid
//! copy of SMD, SMD_b, as REF intends (its loop actually lets an invalid
//! SMD_b win over a valid v3 SMD, §4.9 QUIRK), and never write one that did
//! not validate.

#![deny(clippy::indexing_slicing)]

use super::board::Slot;
use serde::Serialize;

/// Bytes REF reads and writes: the 22-byte record and the 169-byte
/// extension area.
pub const SMD_LEN: usize = 191;
/// `"\0NBC"` (NVIDIA's u32 0x43424E00).
pub const MAGIC: [u8; 4] = *b"\0NBC";
/// Magic of the version-4 extension.
const EXT_MAGIC: [u8; 4] = *b"ENBC";
const OFF_VERSION: usize = 4;
const OFF_FLAGS: usize = 5;
const OFF_MAXSLOTS: usize = 6;
const OFF_SLOTS: usize = 8;
const SLOT_LEN: usize = 5;
const OFF_CRC: usize = 18;
const OFF_EXT: usize = 22;
const OFF_EXT_LEN: usize = 26;
const OFF_EXT_MAGIC: usize = 30;
/// The extension's `len` covers at most the area after its crc32.
const EXT_LEN_MAX: u32 = (SMD_LEN - OFF_EXT_LEN) as u32;
/// Bootloader redundancy enabled.
const FLAG_RED_BL: u8 = 0x01;
/// Redundancy of the user (kernel) partitions too.
const FLAG_RED_USER: u8 = 0x02;
/// "Unified" bootloader and rootfs A/B (version 5).
const FLAG_RED_UNIFIED: u8 = 0x20;
/// Highest slot priority; the bootloader boots the highest.
const PRIORITY_ACTIVE: u8 = 15;
/// Retries before the bootloader gives up on a slot.
const RETRY_COUNT: u8 = 7;

/// How much A/B redundancy the metadata enables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Redundancy {
    /// One slot.
    Off,
    /// Bootloader partitions only.
    BootloaderOnly,
    /// Bootloader and kernel partitions.
    Full,
}

/// Why a copy of the metadata is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SmdError {
    /// Fewer bytes than the record.
    #[error("slot metadata truncated ({0} bytes)")]
    Truncated(usize),
    /// No `\0NBC` magic.
    #[error("no slot metadata magic")]
    Magic,
    /// Header CRC mismatch.
    #[error("slot metadata CRC mismatch")]
    Crc,
    /// The version-4 extension does not check out.
    #[error("slot metadata extension is invalid")]
    Extension,
    /// Older than version 3, which REF refuses to write.
    #[error("slot metadata version {0} is older than 3 and cannot be updated")]
    TooOld(u8),
    /// The slot to activate does not exist.
    #[error("slot metadata has {maxslots} slot(s); cannot activate slot {slot}")]
    NoSuchSlot {
        /// Slots in the record.
        maxslots: u16,
        /// Slot asked for.
        slot: &'static str,
    },
}

/// One slot's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SlotInfo {
    /// 0..15, 0 = unbootable; the highest boots.
    pub priority: u8,
    /// `"_a"` or `"_b"`.
    pub suffix: [u8; 2],
    /// Boot attempts left.
    pub retry_count: u8,
    /// 1 once the slot booted successfully.
    pub successful: u8,
}

/// A valid slot metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Smd {
    raw: [u8; SMD_LEN],
}

impl Smd {
    /// Checks a copy as read from the start of `SMD` or `SMD_b`. The
    /// extension area is kept only from version 4 on (REF rewrites it as
    /// zeros for older versions).
    pub fn decode(bytes: &[u8]) -> Result<Smd, SmdError> {
        let head = bytes
            .get(..OFF_EXT)
            .ok_or(SmdError::Truncated(bytes.len()))?;
        if head.get(..4) != Some(&MAGIC[..]) {
            return Err(SmdError::Magic);
        }
        let version = head.get(OFF_VERSION).copied().unwrap_or(0);
        if version >= 3 && crc32(head.get(..OFF_CRC).unwrap_or(&[])) != u32_at(head, OFF_CRC) {
            return Err(SmdError::Crc);
        }
        let mut raw = [0u8; SMD_LEN];
        if version >= 4 {
            let all = bytes
                .get(..SMD_LEN)
                .ok_or(SmdError::Truncated(bytes.len()))?;
            let len = u32_at(all, OFF_EXT_LEN);
            let covered = all.get(OFF_EXT_LEN..OFF_EXT_LEN + len as usize);
            if len > EXT_LEN_MAX
                || covered.map(crc32) != Some(u32_at(all, OFF_EXT))
                || all.get(OFF_EXT_MAGIC..OFF_EXT_MAGIC + 4) != Some(&EXT_MAGIC[..])
            {
                return Err(SmdError::Extension);
            }
            raw.copy_from_slice(all);
        } else if let Some(dst) = raw.get_mut(..OFF_EXT) {
            dst.copy_from_slice(head);
        }
        Ok(Smd { raw })
    }

    /// Fresh metadata as `--initialize` writes it (REF's `smd_new(FULL)`):
    /// version 3, full redundancy, A priority 15 and B 14, both successful.
    pub fn new_full() -> Smd {
        let mut s = Smd { raw: [0; SMD_LEN] };
        put(&mut s.raw, 0, &MAGIC);
        put(&mut s.raw, OFF_VERSION, &[3]);
        put(&mut s.raw, OFF_MAXSLOTS, &1u16.to_le_bytes());
        s.set_slot(0, PRIORITY_ACTIVE, RETRY_COUNT, 1);
        s.set_full();
        s
    }

    /// The record's version.
    pub fn version(&self) -> u8 {
        self.raw.get(OFF_VERSION).copied().unwrap_or(0)
    }

    /// Redundancy flags.
    pub fn flags(&self) -> u8 {
        self.raw.get(OFF_FLAGS).copied().unwrap_or(0)
    }

    /// Number of slots.
    pub fn maxslots(&self) -> u16 {
        u16::from_le_bytes([
            self.raw.get(OFF_MAXSLOTS).copied().unwrap_or(0),
            self.raw.get(OFF_MAXSLOTS + 1).copied().unwrap_or(0),
        ])
    }

    /// A slot's record.
    pub fn slot(&self, slot: Slot) -> SlotInfo {
        let o = OFF_SLOTS + SLOT_LEN * slot.index();
        let b = |i: usize| self.raw.get(o + i).copied().unwrap_or(0);
        SlotInfo {
            priority: b(0),
            suffix: [b(1), b(2)],
            retry_count: b(3),
            successful: b(4),
        }
    }

    fn set_slot(&mut self, index: usize, priority: u8, retry: u8, successful: u8) {
        let suffix = if index == 0 { b"_a" } else { b"_b" };
        let o = OFF_SLOTS + SLOT_LEN * index;
        put(
            &mut self.raw,
            o,
            &[priority, suffix[0], suffix[1], retry, successful],
        );
    }

    /// The redundancy level the flags and slot count give.
    pub fn redundancy(&self) -> Redundancy {
        let mask = if self.version() < 5 { 0x07 } else { 0x27 };
        match self.flags() & mask {
            0 => Redundancy::Off,
            _ if self.maxslots() < 2 => Redundancy::Off,
            FLAG_RED_BL => Redundancy::BootloaderOnly,
            _ => Redundancy::Full,
        }
    }

    /// Enables full redundancy; metadata that had none gets two fresh slots.
    pub fn set_full(&mut self) {
        let old = self.flags();
        let mut flags = old | FLAG_RED_BL | FLAG_RED_USER;
        if self.version() >= 5 {
            flags |= FLAG_RED_UNIFIED;
        }
        put(&mut self.raw, OFF_FLAGS, &[flags]);
        if flags != old && old == 0 {
            put(&mut self.raw, OFF_MAXSLOTS, &2u16.to_le_bytes());
            for i in 0..2 {
                self.set_slot(i, PRIORITY_ACTIVE - i as u8, RETRY_COUNT, 1);
            }
        }
    }

    /// Makes `slot` the one booted next: priority 15, 7 retries, not yet
    /// successful; the other slot gets priority 14.
    pub fn mark_active(&mut self, slot: Slot) -> Result<(), SmdError> {
        if slot.index() >= usize::from(self.maxslots()) {
            return Err(SmdError::NoSuchSlot {
                maxslots: self.maxslots(),
                slot: slot.letter(),
            });
        }
        self.set_slot(slot.index(), PRIORITY_ACTIVE, RETRY_COUNT, 0);
        put(
            &mut self.raw,
            OFF_SLOTS + SLOT_LEN * slot.other().index(),
            &[PRIORITY_ACTIVE - 1],
        );
        if self.version() >= 5
            && self.flags() & (FLAG_RED_USER | FLAG_RED_UNIFIED) == FLAG_RED_UNIFIED
        {
            let flags = self.flags() | FLAG_RED_USER;
            put(&mut self.raw, OFF_FLAGS, &[flags]);
        }
        Ok(())
    }

    /// The 191 bytes to write, with the header CRC recomputed. The extension
    /// is written as it was read (REF never changes it, so its CRC holds).
    /// REF writes a version-4 extension a second time right after the
    /// record; nothing reads that copy and we do not write it.
    pub fn encode(&self) -> Result<[u8; SMD_LEN], SmdError> {
        if self.version() < 3 {
            return Err(SmdError::TooOld(self.version()));
        }
        let mut out = self.raw;
        let crc = crc32(out.get(..OFF_CRC).unwrap_or(&[]));
        put(&mut out, OFF_CRC, &crc.to_le_bytes());
        Ok(out)
    }
}

/// The first valid copy among `copies` (SMD, then SMD_b), with its index.
/// `None` entries are copies that do not exist or could not be read.
pub fn first_valid(copies: &[Option<&[u8]>]) -> Result<(Smd, usize), Vec<SmdError>> {
    let mut errors = Vec::new();
    for (i, c) in copies.iter().enumerate() {
        match c.map(Smd::decode) {
            Some(Ok(s)) => return Ok((s, i)),
            Some(Err(e)) => errors.push(e),
            None => errors.push(SmdError::Truncated(0)),
        }
    }
    Err(errors)
}

fn crc32(b: &[u8]) -> u32 {
    crc32fast::hash(b)
}

/// Zero when `b` is too short: the callers rely on that fallback.
fn u32_at(b: &[u8], off: usize) -> u32 {
    crate::bytes::le32(b, off).unwrap_or(0)
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(d) = b.get_mut(off..off + v.len()) {
        d.copy_from_slice(v);
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn initialize_bytes_match_the_golden_vector() {
        let mut s = Smd::new_full();
        assert_eq!(s.redundancy(), Redundancy::Full);
        s.mark_active(Slot::A).unwrap();
        let b = s.encode().unwrap();
        assert_eq!(
            &b[..22],
            &[
                0x00, 0x4e, 0x42, 0x43, 0x03, 0x03, 0x02, 0x00, 0x0f, 0x5f, 0x61, 0x07, 0x00, 0x0e,
                0x5f, 0x62, 0x07, 0x01, 0x33, 0x14, 0xfc, 0xfe
            ]
        );
        assert!(b[22..].iter().all(|&x| x == 0));
    }

    #[test]
    fn update_from_slot_a_matches_the_golden_vector() {
        // The state after a successful boot of slot A.
        let mut s = Smd::new_full();
        let current = s.encode().unwrap();
        s = Smd::decode(&current).unwrap();
        s.mark_active(Slot::B).unwrap();
        let b = s.encode().unwrap();
        assert_eq!(
            &b[..22],
            &[
                0x00, 0x4e, 0x42, 0x43, 0x03, 0x03, 0x02, 0x00, 0x0e, 0x5f, 0x61, 0x07, 0x01, 0x0f,
                0x5f, 0x62, 0x07, 0x00, 0x8e, 0xb5, 0x05, 0x90
            ]
        );
        assert_eq!(s.slot(Slot::B).priority, 15);
        assert_eq!(s.slot(Slot::A).successful, 1);
    }

    fn v4() -> Vec<u8> {
        let mut b = Smd::new_full().encode().unwrap().to_vec();
        b[4] = 4;
        let crc = crc32(&b[..18]);
        b[18..22].copy_from_slice(&crc.to_le_bytes());
        b[30..34].copy_from_slice(b"ENBC");
        b[34] = 1; // extension version
        b[38] = 0; // rootfs selection
        let len = 24u32;
        b[26..30].copy_from_slice(&len.to_le_bytes());
        let ext_crc = crc32(&b[26..26 + len as usize]);
        b[22..26].copy_from_slice(&ext_crc.to_le_bytes());
        b
    }

    #[test]
    fn version_4_extension_is_checked_and_kept() {
        let b = v4();
        let mut s = Smd::decode(&b).unwrap();
        s.mark_active(Slot::B).unwrap();
        let out = s.encode().unwrap();
        assert_eq!(&out[22..], &b[22..]);
        let mut bad = b.clone();
        bad[35] ^= 1; // inside the extension's CRC
        assert_eq!(Smd::decode(&bad), Err(SmdError::Extension));
        let mut long = b.clone();
        long[26..30].copy_from_slice(&1000u32.to_le_bytes());
        assert_eq!(Smd::decode(&long), Err(SmdError::Extension));
        assert_eq!(Smd::decode(&b[..100]), Err(SmdError::Truncated(100)));
    }

    #[test]
    fn first_valid_copy_wins_and_a_v3_copy_is_enough() {
        let good = Smd::new_full().encode().unwrap();
        let mut bad = good;
        bad[9] ^= 0xFF;
        // REF's loop lets SMD_b overwrite a valid v3 SMD even when SMD_b is
        // bad (§4.9 QUIRK); we take the first valid copy.
        let (s, i) = first_valid(&[Some(&good[..]), Some(&bad[..])]).unwrap();
        assert_eq!((s.encode().unwrap(), i), (good, 0));
        let (_, i) = first_valid(&[Some(&bad[..]), Some(&good[..])]).unwrap();
        assert_eq!(i, 1);
        let errs = first_valid(&[Some(&bad[..]), None]).unwrap_err();
        assert_eq!(errs, [SmdError::Crc, SmdError::Truncated(0)]);
        assert_eq!(Smd::decode(&[0u8; 191]), Err(SmdError::Magic));
    }

    #[test]
    fn redundancy_is_enabled_on_metadata_without_it() {
        let mut b = [0u8; 22];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = 3;
        b[6] = 1;
        b[8..13].copy_from_slice(&[15, b'_', b'a', 7, 1]);
        let crc = crc32(&b[..18]);
        b[18..].copy_from_slice(&crc.to_le_bytes());
        let mut s = Smd::decode(&b).unwrap();
        assert_eq!(s.redundancy(), Redundancy::Off);
        assert!(s.mark_active(Slot::B).is_err());
        s.set_full();
        assert_eq!(s.maxslots(), 2);
        assert_eq!(s.slot(Slot::B).suffix, *b"_b");
        s.mark_active(Slot::B).unwrap();
        assert_eq!(s.slot(Slot::B).priority, 15);
        assert_eq!(s.slot(Slot::A).priority, 14);
    }

    #[test]
    fn old_versions_are_read_but_not_written() {
        let mut b = [0u8; 22];
        b[..4].copy_from_slice(&MAGIC);
        b[4] = 2; // no CRC before version 3
        let s = Smd::decode(&b).unwrap();
        assert_eq!(s.encode(), Err(SmdError::TooOld(2)));
    }

    #[test]
    fn decode_never_panics() {
        use proptest::prelude::*;
        let seed = v4();
        proptest!(|(cut in 0usize..200, flips in proptest::collection::vec((0usize..191, any::<u8>()), 0..6))| {
            let mut b = seed.clone();
            for (i, v) in flips { b[i] = v; }
            b.truncate(cut);
            if let Ok(mut s) = Smd::decode(&b) {
                let _ = s.mark_active(Slot::B);
                let _ = s.encode();
            }
        });
    }
}
