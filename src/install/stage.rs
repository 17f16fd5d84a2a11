//! `--keep-data` where DATA moves: a copy of DATA's files staged on the
//! disk itself, in a partition of the new layout that the install writes
//! only after DATA has been restored, so that a power cut at any point
//! leaves either the old DATA or the copy (docs/spec/data-stage.md).
//!
//! Pure: the choice of the area and the header are plain functions; the
//! copy is written and read through any `Read + Write + Seek` (the caller
//! opens the disk).

#![deny(clippy::indexing_slicing)]

use super::{Fs, FsRole};
use crate::bup::board::Slot;
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};

/// Header magic (docs/spec/data-stage.md §1).
pub const MAGIC: &[u8; 8] = b"SYSIDATA";
/// Header format version.
pub const VERSION: u32 = 1;
/// Bytes of the header; the payload (a PAX archive) follows it.
pub const HEADER_LEN: u64 = 512;
/// Alignment of the staged copy on the disk.
pub const ALIGN: u64 = 4096;
/// Bytes of the header the CRC covers.
const CRC_AT: usize = 84;

/// What the header says about the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Payload length in bytes.
    pub len: u64,
    /// SHA-256 of the payload.
    pub sha256: [u8; 32],
    /// SHA-256 of the listing of the tree that was copied
    /// (`rootfs::tree::hash`), checked after the restore.
    pub tree: [u8; 32],
}

/// Why a staged copy cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StageError {
    /// No header (or bytes of something else).
    #[error("no staged copy header (magic) at the recorded place")]
    Magic,
    /// A header of another format version.
    #[error("staged copy header of format version {0}, this program reads {VERSION}")]
    Version(u32),
    /// The header's CRC does not match, or its reserved bytes are not zero.
    #[error("staged copy header is corrupt")]
    Crc,
    /// The header is not the one the journal recorded.
    #[error("staged copy header does not match the journal (length {got}, recorded {want})")]
    NotRecorded {
        /// Length in the header.
        got: u64,
        /// Length in the journal.
        want: u64,
    },
    /// Fewer bytes than the header says.
    #[error("staged copy is truncated: {got} of {want} bytes")]
    Truncated {
        /// Bytes read.
        got: u64,
        /// Bytes announced.
        want: u64,
    },
    /// The payload's hash is not the recorded one.
    #[error("staged copy is damaged: its SHA-256 is {got}, recorded {want}")]
    Hash {
        /// Hash read.
        got: String,
        /// Hash recorded.
        want: String,
    },
}

impl Header {
    /// The header block.
    pub fn encode(&self) -> [u8; HEADER_LEN as usize] {
        let mut b = [0u8; HEADER_LEN as usize];
        let fields: [&[u8]; 5] = [
            MAGIC,
            &VERSION.to_le_bytes(),
            &self.len.to_le_bytes(),
            &self.sha256,
            &self.tree,
        ];
        let mut at = 0;
        for f in fields {
            if let Some(dst) = b.get_mut(at..at + f.len()) {
                dst.copy_from_slice(f);
            }
            at += f.len();
        }
        let crc = crc32fast::hash(b.get(..CRC_AT).unwrap_or_default());
        if let Some(dst) = b.get_mut(CRC_AT..CRC_AT + 4) {
            dst.copy_from_slice(&crc.to_le_bytes());
        }
        b
    }

    /// Reads a header block.
    pub fn decode(b: &[u8]) -> Result<Header, StageError> {
        let get = |r: std::ops::Range<usize>| b.get(r).ok_or(StageError::Magic);
        if get(0..8)? != MAGIC {
            return Err(StageError::Magic);
        }
        let u32_at = |at: usize| -> Result<u32, StageError> {
            Ok(u32::from_le_bytes(
                get(at..at + 4)?.try_into().map_err(|_| StageError::Magic)?,
            ))
        };
        let version = u32_at(8)?;
        if version != VERSION {
            return Err(StageError::Version(version));
        }
        // The CRC, and zeros after it: a header reads back as its bytes.
        if crc32fast::hash(get(0..CRC_AT)?) != u32_at(CRC_AT)?
            || get(CRC_AT + 4..HEADER_LEN as usize)?
                .iter()
                .any(|&x| x != 0)
        {
            return Err(StageError::Crc);
        }
        let arr = |r: std::ops::Range<usize>| -> Result<[u8; 32], StageError> {
            get(r)?.try_into().map_err(|_| StageError::Magic)
        };
        Ok(Header {
            len: u64::from_le_bytes(get(12..20)?.try_into().map_err(|_| StageError::Magic)?),
            sha256: arr(20..52)?,
            tree: arr(52..84)?,
        })
    }
}

/// Where the copy goes: a byte range of one partition of the new layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Area {
    /// The partition (of the new layout).
    pub partition: String,
    /// Its first byte on the disk.
    pub partition_start: u64,
    /// Offset of the header in the partition.
    pub offset: u64,
    /// Header plus payload, in bytes.
    pub len: u64,
}

impl Area {
    /// The header's byte on the disk.
    pub fn disk_offset(&self) -> u64 {
        self.partition_start + self.offset
    }
}

/// A partition that may hold the copy: name, first byte, length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// Partition name.
    pub name: String,
    /// First byte on the disk.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// The partitions that may hold the copy, best first: the filesystems the
/// install (re)creates other than DATA, which it writes only after DATA is
/// restored: slot B, slot A, then the others in layout order. Never an
/// encrypted (`crypt-`) one: its container is made right after the table,
/// before DATA is restored, and would overwrite the copy.
pub fn candidates<'a>(fs: &'a [Fs], create: &'a [String]) -> impl Iterator<Item = &'a Fs> + 'a {
    let rank = |f: &Fs| match f.role {
        FsRole::Slot(Slot::B) => 0,
        FsRole::Slot(Slot::A) => 1,
        _ => 2,
    };
    let mut v: Vec<&Fs> = fs
        .iter()
        .filter(|f| f.role != FsRole::Data && !f.crypt && create.contains(&f.name))
        .collect();
    v.sort_by_key(|f| rank(f));
    v.into_iter()
}

/// The first place, in `cands` order, for `need` bytes aligned to
/// [`ALIGN`] that overlaps none of `avoid` (byte ranges: the old DATA, the
/// GPT areas). `None` when no partition has room.
pub fn choose(cands: &[Candidate], avoid: &[(u64, u64)], need: u64) -> Option<Area> {
    let up = |x: u64| x.checked_add(ALIGN - 1).map(|v| v / ALIGN * ALIGN);
    for c in cands {
        let end = c.start.checked_add(c.len)?;
        let mut pos = up(c.start)?;
        loop {
            let stop = pos.checked_add(need)?;
            if stop > end {
                break;
            }
            match avoid.iter().find(|(a, b)| pos < *b && *a < stop) {
                Some((_, b)) => pos = up(*b)?,
                None => {
                    return Some(Area {
                        partition: c.name.clone(),
                        partition_start: c.start,
                        offset: pos - c.start,
                        len: need,
                    })
                }
            }
        }
    }
    None
}

/// A writer that hashes and counts what goes through it.
struct Hashing<'a> {
    inner: &'a mut dyn Write,
    sha: Sha256,
    n: u64,
}

impl Write for Hashing<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        let done = buf.get(..n).unwrap_or_default();
        self.sha.update(done);
        self.n += done.len() as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Writes the payload `fill` produces after the header's place at `at`,
/// then the header; the caller makes it durable and calls [`verify`].
/// Fails when the payload is longer than `max` bytes.
pub fn write<D: Write + Seek>(
    dev: &mut D,
    at: u64,
    max: u64,
    tree: [u8; 32],
    fill: impl FnOnce(&mut dyn Write) -> anyhow::Result<u64>,
) -> anyhow::Result<Header> {
    dev.seek(SeekFrom::Start(at + HEADER_LEN))?;
    let mut buf = std::io::BufWriter::with_capacity(1 << 20, &mut *dev);
    let mut h = Hashing {
        inner: &mut buf,
        sha: Sha256::new(),
        n: 0,
    };
    fill(&mut h)?;
    let (sha, n) = (h.sha.finalize().into(), h.n);
    buf.flush()?;
    drop(buf);
    if n > max {
        anyhow::bail!("the copy took {n} bytes, more than the {max} measured");
    }
    let header = Header {
        len: n,
        sha256: sha,
        tree,
    };
    dev.seek(SeekFrom::Start(at))?;
    dev.write_all(&header.encode())?;
    dev.flush()?;
    Ok(header)
}

/// Reads the copy at `at` through: its header, then its payload, hashed;
/// with `want` (the journal's record), the header must be that one.
pub fn verify<D: Read + Seek>(
    dev: &mut D,
    at: u64,
    want: Option<&Header>,
) -> anyhow::Result<Header> {
    dev.seek(SeekFrom::Start(at))?;
    let mut b = [0u8; HEADER_LEN as usize];
    dev.read_exact(&mut b).map_err(|_| StageError::Truncated {
        got: 0,
        want: HEADER_LEN,
    })?;
    let h = Header::decode(&b)?;
    if let Some(w) = want {
        if w.len != h.len {
            return Err(StageError::NotRecorded {
                got: h.len,
                want: w.len,
            }
            .into());
        }
    }
    let mut sha = Sha256::new();
    let mut left = h.len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let k = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let chunk = buf.get_mut(..k).unwrap_or_default();
        let n = dev.read(chunk)?;
        if n == 0 {
            return Err(StageError::Truncated {
                got: h.len - left,
                want: h.len,
            }
            .into());
        }
        sha.update(chunk.get(..n).unwrap_or_default());
        left -= n as u64;
    }
    let got: [u8; 32] = sha.finalize().into();
    let expected = want.map_or(h.sha256, |w| w.sha256);
    if got != h.sha256 || got != expected {
        return Err(StageError::Hash {
            got: crate::bytes::hex(&got),
            want: crate::bytes::hex(&expected),
        }
        .into());
    }
    Ok(h)
}

/// The payload of a verified copy, to unpack.
pub fn payload<D: Read + Seek>(mut dev: D, at: u64, h: &Header) -> std::io::Result<impl Read> {
    dev.seek(SeekFrom::Start(at + HEADER_LEN))?;
    Ok(dev.take(h.len))
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn cand(name: &str, start: u64, len: u64) -> Candidate {
        Candidate {
            name: name.into(),
            start,
            len,
        }
    }

    #[test]
    fn the_area_avoids_the_old_data_and_the_gpt_and_prefers_the_first_candidate() {
        const M: u64 = 1 << 20;
        let c = [cand("APP_b", 100 * M, 50 * M), cand("APP", 10 * M, 80 * M)];
        // Room at the start of APP_b.
        let a = choose(&c, &[(0, 17408)], 20 * M).unwrap();
        assert_eq!(
            (a.partition.as_str(), a.offset, a.disk_offset()),
            ("APP_b", 0, 100 * M)
        );
        // The old DATA covers APP_b's start: after it, aligned.
        let a = choose(&c, &[(90 * M, 110 * M + 5)], 20 * M).unwrap();
        assert_eq!((a.partition.as_str(), a.offset), ("APP_b", 10 * M + ALIGN));
        // No room left in APP_b: APP.
        let a = choose(&c, &[(90 * M, 140 * M)], 20 * M).unwrap();
        assert_eq!((a.partition.as_str(), a.offset), ("APP", 0));
        // Nowhere.
        assert_eq!(choose(&c, &[(0, 200 * M)], 20 * M), None);
        assert_eq!(choose(&c, &[], 81 * M), None);
        // An unaligned partition start is rounded up.
        let a = choose(&[cand("X", 1000, 3 * ALIGN)], &[], ALIGN).unwrap();
        assert_eq!(a.disk_offset(), ALIGN);
    }

    #[test]
    fn candidates_are_the_created_filesystems_but_data_slot_b_first() {
        let f = |name: &str, role| Fs {
            name: name.into(),
            number: 1,
            size: 1,
            role,
            crypt: name.starts_with(crate::install::CRYPT_PREFIX),
        };
        let fs = [
            f("APP", FsRole::Slot(Slot::A)),
            f("APP_b", FsRole::Slot(Slot::B)),
            f("DATA", FsRole::Data),
            f("EXTRA", FsRole::Scratch),
            f("LOGS", FsRole::Scratch),
        ];
        let create: Vec<String> = ["APP", "APP_b", "DATA", "EXTRA"].map(String::from).to_vec();
        let names: Vec<&str> = candidates(&fs, &create).map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["APP_b", "APP", "EXTRA"]);
        // An encrypted partition's container would be made over the copy.
        let fs = [
            f("crypt-APP_b", FsRole::Slot(Slot::B)),
            f("APP", FsRole::Slot(Slot::A)),
        ];
        let create: Vec<String> = ["crypt-APP_b", "APP"].map(String::from).to_vec();
        let names: Vec<&str> = candidates(&fs, &create).map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["APP"]);
    }

    fn staged(payload: &[u8]) -> (Cursor<Vec<u8>>, Header) {
        let mut dev = Cursor::new(vec![0u8; 8192]);
        let p = payload.to_vec();
        let h = write(&mut dev, 1024, 1 << 20, [7; 32], move |w| {
            w.write_all(&p)?;
            Ok(p.len() as u64)
        })
        .unwrap();
        (dev, h)
    }

    #[test]
    fn a_staged_copy_round_trips_and_damage_is_named() {
        let (mut dev, h) = staged(b"payload bytes");
        assert_eq!(h.len, 13);
        assert_eq!(Header::decode(&h.encode()), Ok(h));
        assert_eq!(verify(&mut dev, 1024, Some(&h)).unwrap(), h);
        let mut got = Vec::new();
        payload(&mut dev, 1024, &h)
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert_eq!(got, b"payload bytes");

        let err = |mut d: Cursor<Vec<u8>>, want: Option<&Header>| {
            verify(&mut d, 1024, want)
                .unwrap_err()
                .downcast::<StageError>()
                .unwrap()
        };
        // A payload byte flipped.
        let mut d = dev.clone();
        d.get_mut()[1024 + 512 + 3] ^= 1;
        assert!(matches!(err(d, Some(&h)), StageError::Hash { .. }));
        // A header byte flipped: the CRC.
        let mut d = dev.clone();
        d.get_mut()[1024 + 30] ^= 1;
        assert_eq!(err(d, Some(&h)), StageError::Crc);
        // Not a header.
        let mut d = dev.clone();
        d.get_mut()[1024] = b'X';
        assert_eq!(err(d, None), StageError::Magic);
        // A reserved byte set.
        let mut b = h.encode();
        b[300] = 1;
        assert_eq!(Header::decode(&b), Err(StageError::Crc));
        // Another version.
        let mut b = h.encode();
        b[8] = 9;
        assert_eq!(Header::decode(&b), Err(StageError::Version(9)));
        // Another copy than the journal's (a consistent header, other hash).
        let other = Header {
            sha256: [1; 32],
            ..h
        };
        assert!(matches!(
            err(dev.clone(), Some(&other)),
            StageError::Hash { .. }
        ));
        let longer = Header { len: 14, ..h };
        assert_eq!(
            err(dev.clone(), Some(&longer)),
            StageError::NotRecorded { got: 13, want: 14 }
        );
        // A length past the end of the device: truncated.
        let mut d = Cursor::new(dev.get_ref()[..1024 + 512 + 5].to_vec());
        let e = verify(&mut d, 1024, None)
            .unwrap_err()
            .downcast::<StageError>()
            .unwrap();
        assert_eq!(e, StageError::Truncated { got: 5, want: 13 });
    }

    #[test]
    fn a_copy_longer_than_measured_is_refused() {
        let mut dev = Cursor::new(vec![0u8; 8192]);
        let e = write(&mut dev, 0, 4, [0; 32], |w| {
            w.write_all(b"12345")?;
            Ok(5)
        })
        .unwrap_err();
        assert!(e.to_string().contains("more than the 4 measured"), "{e}");
        assert!(Header::decode(&dev.get_ref()[..512]).is_err());
    }
}
