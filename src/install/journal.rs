//! The install journal: one record in the boot-code area of the protective
//! MBR (LBA 0, bytes 0..440), plus a completion marker per filesystem.
//!
//! Why there: it must survive re-partitioning, and LBA 0 is the one sector
//! the install rewrites itself (keeping these bytes). Nothing on a Jetson
//! reads them: the boot ROM starts from boot0/SPI, the bootloaders find
//! partitions by name in the GPT, the kernel reads only the partition records
//! at 446..512, and UEFI leaves the protective MBR's boot code unused.
//! NVIDIA's and sgdisk's MBRs have zeros there; a finished install clears
//! the record back to zeros.
//!
//! The record says: an install of this mode, for this rootfs, with this
//! nonce, started at this time, and whether it finished; with `--keep-data`
//! where DATA moves, also where the copy of DATA is staged and whether DATA
//! was restored from it (docs/spec/data-stage.md §3). Each filesystem
//! that is complete carries `sysinstall:<nonce>:done` in its superblock's
//! `s_last_mounted` field (set by `mke2fs -M` / `tune2fs -M` after the last
//! write; any later mount overwrites it, which correctly makes it "not ours
//! any more"). Everything else is idempotent by comparison (GPT in place,
//! boot partitions compared before writing), so a re-run after a power cut
//! redoes exactly the unfinished steps.
//!
//! A torn write of the record is caught by its CRC and treated as "no
//! journal"; the per-filesystem markers still prevent redoing finished work
//! only when the nonce matches, so a lost record costs time, never
//! correctness.

#![deny(clippy::indexing_slicing)]

use sha2::{Digest, Sha256};

/// Bytes of LBA 0 the record may use (the MBR boot-code area).
pub const AREA: usize = 440;
/// Record magic; its last byte is the format version (4: with the stream's
/// hash, the artifact name, the machine-id carried over and where a staged
/// copy of DATA is; a record of an older format reads as no record, which
/// costs a redo, never correctness).
pub const MAGIC: &[u8; 12] = b"SYSINSTALLJ\x04";
/// Longest artifact name kept (bytes of UTF-8).
pub const ARTIFACT_MAX: usize = 128;
/// Length of the encoded record.
pub const RECORD_LEN: usize =
    12 + 1 + 1 + 1 + 1 + 8 + 32 + 8 + 32 + 1 + ARTIFACT_MAX + 1 + 16 + STAGE_LEN + 4;
/// Longest partition name of a staged copy kept (a GPT name has 36 UTF-16
/// units; the layouts' names are ASCII).
pub const STAGE_NAME_MAX: usize = 36;
/// Bytes of the staged-copy part: state, name length, name, offset,
/// length, SHA-256.
const STAGE_LEN: usize = 1 + 1 + STAGE_NAME_MAX + 8 + 8 + 32;
/// Prefix of the per-filesystem marker.
pub const MARKER_PREFIX: &str = "sysinstall:";

/// Which kind of install a record describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InstallMode {
    /// The disk is re-laid-out and everything is installed.
    Initial,
    /// One slot is installed and the board switched to it.
    Update,
}

/// State of the recorded install.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Started, not finished: a re-run resumes it.
    Running,
    /// Finished (kept only until the record is cleared).
    Complete,
}

/// One journal record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Mode of the install.
    pub mode: InstallMode,
    /// State.
    pub state: State,
    /// Slot being installed in update mode (0 = A, 1 = B); 0 in initial mode.
    pub target_slot: u8,
    /// Random per install; filesystem markers carry it.
    pub nonce: [u8; 8],
    /// SHA-256 over what is being installed (rootfs identity, data identity,
    /// layout table): a different image or layout means a different install.
    pub content: [u8; 32],
    /// Unix time the install started.
    pub started: u64,
    /// SHA-256 of the rootfs stream the finished slots were unpacked from,
    /// once known.
    pub stream_sha256: Option<[u8; 32]>,
    /// The installed artifact's name, once known (for the PASS line of a
    /// run that resumes after the unpack).
    pub artifact: Option<String>,
    /// The board's machine-id the new slots get (read before the old slot
    /// was re-created, so a resumed run still has it).
    pub machine_id: Option<[u8; 16]>,
    /// Where the copy of DATA is staged (`--keep-data` where DATA moves),
    /// once it is written and verified (docs/spec/data-stage.md).
    pub stage: Option<StageRecord>,
}

/// A staged copy of DATA, as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRecord {
    /// The partition of the new layout that holds it.
    pub partition: String,
    /// Byte offset of its header in that partition.
    pub offset: u64,
    /// Payload length.
    pub len: u64,
    /// Payload SHA-256.
    pub sha256: [u8; 32],
    /// DATA has been restored from it (the partition may be re-used).
    pub restored: bool,
}

impl Record {
    /// A new running record with a random nonce.
    pub fn start(
        mode: InstallMode,
        target_slot: u8,
        content: [u8; 32],
        now: u64,
    ) -> std::io::Result<Record> {
        let mut nonce = [0u8; 8];
        getrandom::fill(&mut nonce).map_err(std::io::Error::from)?;
        Ok(Record {
            mode,
            state: State::Running,
            target_slot,
            nonce,
            content,
            started: now,
            stream_sha256: None,
            artifact: None,
            machine_id: None,
            stage: None,
        })
    }

    /// The nonce in hex (the filesystem markers' key).
    pub fn nonce_hex(&self) -> String {
        crate::bytes::hex(&self.nonce)
    }

    /// The `s_last_mounted` text of a completed filesystem of this install
    /// (28 bytes; the field holds 64).
    pub fn done_marker(&self) -> String {
        format!("{MARKER_PREFIX}{}:done", self.nonce_hex())
    }

    /// True when `last_mounted` is this install's completion marker.
    pub fn is_done(&self, last_mounted: &str) -> bool {
        last_mounted == self.done_marker()
    }

    /// Encodes the record into its bytes.
    pub fn encode(&self) -> [u8; RECORD_LEN] {
        let mut b = [0u8; RECORD_LEN];
        let mut w = 0usize;
        let mut put = |bytes: &[u8]| {
            if let Some(dst) = b.get_mut(w..w + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
            w += bytes.len();
        };
        put(MAGIC);
        put(&[match self.mode {
            InstallMode::Initial => 1,
            InstallMode::Update => 2,
        }]);
        put(&[match self.state {
            State::Running => 1,
            State::Complete => 2,
        }]);
        put(&[self.target_slot]);
        put(&[0]);
        put(&self.nonce);
        put(&self.content);
        put(&self.started.to_le_bytes());
        put(&self.stream_sha256.unwrap_or([0; 32]));
        let artifact = self
            .artifact
            .as_deref()
            .map_or(&[][..], |a| cut(a).as_bytes());
        put(&[artifact.len() as u8]);
        let mut field = [0u8; ARTIFACT_MAX];
        if let Some(dst) = field.get_mut(..artifact.len()) {
            dst.copy_from_slice(artifact);
        }
        put(&field);
        put(&[u8::from(self.machine_id.is_some())]);
        put(&self.machine_id.unwrap_or([0; 16]));
        let stage = self.stage.as_ref();
        put(&[stage.map_or(0, |s| 1 + u8::from(s.restored))]);
        let name = stage.map_or(&[][..], |s| s.partition.as_bytes());
        let name = name.get(..STAGE_NAME_MAX).unwrap_or(name);
        put(&[name.len() as u8]);
        let mut field = [0u8; STAGE_NAME_MAX];
        if let Some(dst) = field.get_mut(..name.len()) {
            dst.copy_from_slice(name);
        }
        put(&field);
        put(&stage.map_or(0, |s| s.offset).to_le_bytes());
        put(&stage.map_or(0, |s| s.len).to_le_bytes());
        put(&stage.map_or([0; 32], |s| s.sha256));
        let crc = crc32fast::hash(b.get(..RECORD_LEN - 4).unwrap_or(&[]));
        if let Some(dst) = b.get_mut(RECORD_LEN - 4..) {
            dst.copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    /// Decodes a record from the first bytes of LBA 0; `None` when there is
    /// none (zeros, another MBR's boot code, or a torn write).
    pub fn decode(lba0: &[u8]) -> Option<Record> {
        let b = lba0.get(..RECORD_LEN)?;
        if b.get(..12)? != MAGIC {
            return None;
        }
        let stored = u32::from_le_bytes(b.get(RECORD_LEN - 4..)?.try_into().ok()?);
        if crc32fast::hash(b.get(..RECORD_LEN - 4)?) != stored {
            return None;
        }
        let mode = match *b.get(12)? {
            1 => InstallMode::Initial,
            2 => InstallMode::Update,
            _ => return None,
        };
        let state = match *b.get(13)? {
            1 => State::Running,
            2 => State::Complete,
            _ => return None,
        };
        // Reserved: zero in this version, so a record reads back as its bytes.
        if *b.get(15)? != 0 {
            return None;
        }
        let sha: [u8; 32] = b.get(64..96)?.try_into().ok()?;
        let len = usize::from(*b.get(96)?);
        let field = b.get(97..97 + ARTIFACT_MAX)?;
        // Canonical only: the name is UTF-8 and the rest of its field zeros.
        if len > ARTIFACT_MAX || field.get(len..)?.iter().any(|&x| x != 0) {
            return None;
        }
        let artifact = std::str::from_utf8(field.get(..len)?).ok()?;
        let id_at = 97 + ARTIFACT_MAX;
        let id: [u8; 16] = b.get(id_at + 1..id_at + 17)?.try_into().ok()?;
        let machine_id = match *b.get(id_at)? {
            0 if id == [0; 16] => None,
            1 => Some(id),
            _ => return None,
        };
        let at = id_at + 17;
        let name_len = usize::from(*b.get(at + 1)?);
        let name = b.get(at + 2..at + 2 + STAGE_NAME_MAX)?;
        if name_len > STAGE_NAME_MAX || name.get(name_len..)?.iter().any(|&x| x != 0) {
            return None;
        }
        let at = at + 2 + STAGE_NAME_MAX;
        let offset = u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?);
        let len = u64::from_le_bytes(b.get(at + 8..at + 16)?.try_into().ok()?);
        let sha256: [u8; 32] = b.get(at + 16..at + 48)?.try_into().ok()?;
        let stage = match *b.get(id_at + 17)? {
            0 if name_len == 0 && offset == 0 && len == 0 && sha256 == [0; 32] => None,
            s @ (1 | 2) => Some(StageRecord {
                partition: std::str::from_utf8(name.get(..name_len)?).ok()?.to_owned(),
                offset,
                len,
                sha256,
                restored: s == 2,
            }),
            _ => return None,
        };
        Some(Record {
            mode,
            state,
            target_slot: *b.get(14)?,
            nonce: b.get(16..24)?.try_into().ok()?,
            content: b.get(24..56)?.try_into().ok()?,
            started: u64::from_le_bytes(b.get(56..64)?.try_into().ok()?),
            stream_sha256: (sha != [0; 32]).then_some(sha),
            artifact: (!artifact.is_empty()).then(|| artifact.to_owned()),
            machine_id,
            stage,
        })
    }
}

// The record fits the MBR's boot-code area.
const _: () = assert!(RECORD_LEN <= AREA);

/// `s` cut to at most [`ARTIFACT_MAX`] bytes, on a character boundary.
fn cut(s: &str) -> &str {
    let mut end = s.len().min(ARTIFACT_MAX);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.get(..end).unwrap_or_default()
}

/// Hashes the parts that identify what an install installs.
pub fn content_id(parts: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"sysinstall content v1");
    for p in parts {
        h.update((p.len() as u64).to_le_bytes());
        h.update(p.as_bytes());
    }
    h.finalize().into()
}

/// Rewrites the boot-code area of an LBA-0 sector with `record` (or zeros),
/// leaving the partition records and signature (440..512) alone.
pub fn store(lba0: &mut [u8], record: Option<&Record>) {
    if let Some(area) = lba0.get_mut(..AREA) {
        area.fill(0);
        if let Some(r) = record {
            if let Some(dst) = area.get_mut(..RECORD_LEN) {
                dst.copy_from_slice(&r.encode());
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn rec() -> Record {
        Record::start(
            InstallMode::Update,
            1,
            content_id(&["rootfs", "abc"]),
            1_700_000_000,
        )
        .unwrap()
    }

    #[test]
    fn round_trip_and_marker() {
        let r = rec();
        let mut sector = crate::gpt::protective_mbr(1 << 20);
        store(&mut sector, Some(&r));
        assert_eq!(Record::decode(&sector), Some(r.clone()));
        assert!(
            crate::gpt::is_protective_mbr(&sector),
            "partition records untouched"
        );
        assert!(r.done_marker().len() < 64);
        assert!(r.is_done(&r.done_marker()));
        assert!(!r.is_done("/run/sysinstall/APP"));
        store(&mut sector, None);
        assert_eq!(Record::decode(&sector), None);
        assert!(sector[..440].iter().all(|&b| b == 0));
    }

    #[test]
    fn stream_hash_and_artifact_round_trip() {
        let mut r = rec();
        r.stream_sha256 = Some([0xAB; 32]);
        r.artifact = Some("tegra-demo ünïcode 1.2".into());
        r.machine_id = Some([0x5a; 16]);
        assert_eq!(Record::decode(&r.encode()), Some(r.clone()));
        // A machine-id flag that is neither 0 nor 1 is not a record.
        let mut b = r.encode();
        b[97 + ARTIFACT_MAX] = 2;
        let crc = crc32fast::hash(&b[..RECORD_LEN - 4]);
        b[RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Record::decode(&b), None);
        r.machine_id = None;
        for restored in [false, true] {
            r.stage = Some(StageRecord {
                partition: "APP_b".into(),
                offset: 4096,
                len: 1 << 33,
                sha256: [0x11; 32],
                restored,
            });
            assert_eq!(Record::decode(&r.encode()), Some(r.clone()));
        }
        // A stage state that is neither 0, 1 nor 2 is not a record.
        let mut b = r.encode();
        b[97 + ARTIFACT_MAX + 17] = 3;
        let crc = crc32fast::hash(&b[..RECORD_LEN - 4]);
        b[RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Record::decode(&b), None);
        r.stage = None;
        // An over-long name is cut to what fits, on a character boundary.
        r.artifact = Some("é".repeat(100));
        let back = Record::decode(&r.encode()).unwrap();
        assert_eq!(back.artifact.unwrap(), "é".repeat(ARTIFACT_MAX / 2));
    }

    #[test]
    fn torn_or_foreign_bytes_are_not_a_record() {
        let r = rec();
        let mut b = r.encode().to_vec();
        b[40] ^= 1;
        assert_eq!(Record::decode(&b), None);
        assert_eq!(Record::decode(&[0u8; 512]), None);
        assert_eq!(Record::decode(&[0xEB, 0x63, 0x90]), None);
        for n in 0..RECORD_LEN {
            assert_eq!(Record::decode(&r.encode()[..n]), None);
        }
    }

    /// Fuzz regression (journal): a record with a non-zero reserved byte 15
    /// and a matching CRC was accepted, and re-encoded to other bytes.
    #[test]
    fn fuzz_non_zero_reserved_byte_is_not_a_record() {
        let mut b = rec().encode();
        b[15] = 1;
        let crc = crc32fast::hash(&b[..RECORD_LEN - 4]);
        b[RECORD_LEN - 4..].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(Record::decode(&b), None);
    }

    #[test]
    fn nonces_differ_and_content_ids_separate_parts() {
        assert_ne!(rec().nonce, rec().nonce);
        assert_ne!(content_id(&["ab", "c"]), content_id(&["a", "bc"]));
    }
}
