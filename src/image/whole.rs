//! Whole-disk images (`--disk-image`, docs/spec/image-format.md §4): the
//! pure parts of writing one over a device.
//!
//! ```text
//! zap old tables + journal record ─► image body (from byte HEAD on)
//!   ─► read back ─► image head (MBR, GPT; held back by HeadLast) ─► read back
//!   ─► backup GPT moved to the device's end (relocate) ─► kernel told
//! ```
//!
//! The head goes last so that a run cut short leaves a disk without a
//! partition table rather than one whose table points at half-written
//! partitions. Until then LBA 0 carries a [`Record`], so a re-run of the
//! same image knows it resumes ([`SkipSame`] then leaves equal bytes alone).
#![deny(clippy::indexing_slicing)]

use super::{Piece, Sink, Target};
use crate::gpt::{self, GptHeader};
use anyhow::{ensure, Result};
use std::io;

/// Bytes at the start of the image written last (MBR, GPT and the usual
/// alignment gap before the first partition).
pub const HEAD: u64 = 1 << 20;

/// A piece held back, with its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// Bytes at an offset.
    Data(u64, Vec<u8>),
    /// A zero run.
    Zero(u64, u64),
}

/// Hands on the pieces from [`HEAD`] on and keeps those before it.
pub struct HeadLast<'a> {
    inner: &'a mut dyn Sink,
    held: Vec<Held>,
}

impl<'a> HeadLast<'a> {
    /// Pieces from [`HEAD`] on go to `inner`.
    pub fn new(inner: &'a mut dyn Sink) -> HeadLast<'a> {
        HeadLast {
            inner,
            held: Vec::new(),
        }
    }

    /// What was held back, in order.
    pub fn into_held(self) -> Vec<Held> {
        self.held
    }
}

impl Sink for HeadLast<'_> {
    fn piece(&mut self, p: &Piece<'_>) -> Result<()> {
        match *p {
            Piece::Data { offset, bytes } if offset < HEAD => {
                let n = ((HEAD - offset) as usize).min(bytes.len());
                let (head, rest) = bytes.split_at(n);
                self.held.push(Held::Data(offset, head.to_vec()));
                if !rest.is_empty() {
                    self.inner.piece(&Piece::Data {
                        offset: HEAD,
                        bytes: rest,
                    })?;
                }
                Ok(())
            }
            Piece::Zero { offset, len } if offset < HEAD => {
                let n = (HEAD - offset).min(len);
                self.held.push(Held::Zero(offset, n));
                if len > n {
                    self.inner.piece(&Piece::Zero {
                        offset: HEAD,
                        len: len - n,
                    })?;
                }
                Ok(())
            }
            Piece::Skip { offset, len } if offset < HEAD => {
                let n = (HEAD - offset).min(len);
                if len > n {
                    self.inner.piece(&Piece::Skip {
                        offset: HEAD,
                        len: len - n,
                    })?;
                }
                Ok(())
            }
            _ => self.inner.piece(p),
        }
    }
}

/// Replays held pieces into a sink.
pub fn replay(held: &[Held], sink: &mut dyn Sink) -> Result<()> {
    for h in held {
        match h {
            Held::Data(offset, bytes) => sink.piece(&Piece::Data {
                offset: *offset,
                bytes,
            })?,
            Held::Zero(offset, len) => sink.piece(&Piece::Zero {
                offset: *offset,
                len: *len,
            })?,
        }
    }
    Ok(())
}

/// The sector size a GPT in the image's first bytes was made for.
pub fn gpt_sector_size(head: &[u8]) -> Option<u64> {
    [512u64, 4096]
        .into_iter()
        .find(|&ss| head.get(ss as usize..ss as usize + 8) == Some(&gpt::SIGNATURE[..]))
}

/// The writes that move an image's backup GPT to the end of a larger
/// device (as `sgdisk -e` does), in groups to be made durable one after
/// the other: the new backup (entries, then header), then the primary
/// header and the protective MBR that describe it, then zeros over the old
/// backup header. A cut between groups leaves a valid pair: the old
/// primary still names the old backup until the new primary is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relocation {
    /// (byte offset, bytes) per group.
    pub groups: Vec<Vec<(u64, Vec<u8>)>>,
    /// The new last usable LBA.
    pub last_usable: u64,
}

/// The [`Relocation`] for an image whose first bytes are `head` (at least
/// the MBR, the primary header and its entries), `image` bytes long, on a
/// device of `device` bytes. `None` when there is nothing to move: no GPT,
/// a device no larger than the image, or a backup header that is not at
/// the image's end (then the image's own layout is left as it is).
pub fn relocate(head: &[u8], image: u64, device: u64) -> Result<Option<Relocation>> {
    let Some(ss) = gpt_sector_size(head) else {
        return Ok(None);
    };
    let image_sectors = image / ss;
    let device_sectors = device / ss;
    if device_sectors <= image_sectors || image % ss != 0 {
        return Ok(None);
    }
    let at = |lba: u64, len: u64| -> Option<&[u8]> {
        head.get(usize::try_from(lba * ss).ok()?..usize::try_from(lba * ss + len).ok()?)
    };
    let header = GptHeader::decode(at(1, ss).unwrap_or_default())
        .map_err(|e| anyhow::anyhow!("the image's primary GPT header: {e}"))?;
    if header.my_lba != 1 || header.alternate_lba + 1 != image_sectors {
        return Ok(None);
    }
    let array_bytes = header.entry_array_bytes();
    let array = at(header.partition_entry_lba, array_bytes).ok_or_else(|| {
        anyhow::anyhow!("the image's GPT entries lie beyond its first {HEAD} bytes")
    })?;
    header
        .decode_entries(array)
        .map_err(|e| anyhow::anyhow!("the image's GPT entries: {e}"))?;
    let array_sectors = header.entry_array_sectors_in(ss);
    let backup_lba = device_sectors - 1;
    let backup_entries = backup_lba - array_sectors;
    let last_usable = backup_entries - 1;
    ensure!(
        last_usable >= header.last_usable_lba,
        "the device is too small for the image's GPT"
    );
    let primary = GptHeader {
        alternate_lba: backup_lba,
        last_usable_lba: last_usable,
        ..header.clone()
    };
    let backup = GptHeader {
        my_lba: backup_lba,
        alternate_lba: 1,
        partition_entry_lba: backup_entries,
        ..primary.clone()
    };
    let mut array_sector = array.to_vec();
    array_sector.resize((array_sectors * ss) as usize, 0);
    let mut groups = vec![
        vec![
            (backup_entries * ss, array_sector),
            (backup_lba * ss, backup.encode_sector(ss as usize)),
        ],
        vec![(ss, primary.encode_sector(ss as usize))],
        vec![(header.alternate_lba * ss, vec![0; ss as usize])],
    ];
    let mbr = at(0, ss).unwrap_or_default();
    if gpt::is_protective_mbr(mbr) {
        let mut m = mbr.to_vec();
        let size = u32::try_from(device_sectors - 1).unwrap_or(u32::MAX);
        if let Some(field) = m.get_mut(458..462) {
            field.copy_from_slice(&size.to_le_bytes());
        }
        if let Some(g) = groups.get_mut(1) {
            g.insert(0, (0, m));
        }
    }
    Ok(Some(Relocation {
        groups,
        last_usable,
    }))
}

/// The record LBA 0 carries while an image is written (in the MBR's
/// boot-code bytes, like the install journal, with a magic of its own).
pub const RECORD_MAGIC: &[u8; 12] = b"SYSINSTALLW\x01";
/// Length of an encoded record.
pub const RECORD_LEN: usize = 12 + 32 + 4;

/// Encodes the record of a write of the image identified by `content`.
pub fn encode_record(content: &[u8; 32]) -> [u8; RECORD_LEN] {
    let mut b = [0u8; RECORD_LEN];
    let (magic, rest) = b.split_at_mut(12);
    magic.copy_from_slice(RECORD_MAGIC);
    let (id, crc) = rest.split_at_mut(32);
    id.copy_from_slice(content);
    let sum = crc32fast::hash(&[&RECORD_MAGIC[..], &content[..]].concat());
    crc.copy_from_slice(&sum.to_le_bytes());
    b
}

/// The image a record in `lba0` names, when it holds an intact one.
pub fn decode_record(lba0: &[u8]) -> Option<[u8; 32]> {
    let b = lba0.get(..RECORD_LEN)?;
    if b.get(..12)? != RECORD_MAGIC {
        return None;
    }
    let content: [u8; 32] = b.get(12..44)?.try_into().ok()?;
    let stored = u32::from_le_bytes(b.get(44..48)?.try_into().ok()?);
    (crc32fast::hash(b.get(..44)?) == stored).then_some(content)
}

/// A target that, when `compare` is on, reads before it writes and leaves
/// bytes that are already right alone: the resumed write of the same image.
pub struct SkipSame<'a> {
    inner: &'a mut dyn Target,
    compare: bool,
    buf: Vec<u8>,
    /// Bytes found already in place.
    pub same: u64,
}

impl<'a> SkipSame<'a> {
    /// Wraps `inner`; with `compare` off it only passes writes on.
    pub fn new(inner: &'a mut dyn Target, compare: bool) -> SkipSame<'a> {
        SkipSame {
            inner,
            compare,
            buf: Vec::new(),
            same: 0,
        }
    }
}

impl Target for SkipSame<'_> {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if !self.compare {
            return self.inner.write_at(offset, buf);
        }
        self.buf.resize(buf.len(), 0);
        self.inner.read_at(offset, &mut self.buf)?;
        if self.buf == buf {
            self.same += buf.len() as u64;
            return Ok(());
        }
        self.inner.write_at(offset, buf)
    }
    fn zero(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.inner.zero(offset, len)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.inner.sync()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::gpt::read;
    use std::io::Cursor;

    /// A GPT disk image of `sectors` 512-byte sectors with one partition,
    /// made by our own GPT writer's encoders.
    fn gpt_image(sectors: u64) -> Vec<u8> {
        let entry = gpt::GptEntry {
            type_guid: crate::guid::BASIC_DATA,
            unique_guid: crate::guid::Guid::from_gpt_bytes([7; 16]),
            first_lba: 2048,
            last_lba: sectors - 34,
            attributes: 0,
            name: "APP".into(),
        };
        let array = gpt::encode_entries(&[(1, entry)], 128).unwrap();
        let h = GptHeader {
            revision: 0x0001_0000,
            header_size: 92,
            my_lba: 1,
            alternate_lba: sectors - 1,
            first_usable_lba: 34,
            last_usable_lba: sectors - 34,
            disk_guid: crate::guid::Guid::from_gpt_bytes([9; 16]),
            partition_entry_lba: 2,
            num_partition_entries: 128,
            sizeof_partition_entry: 128,
            partition_entry_array_crc32: gpt::crc32(&array),
        };
        let mut img = vec![0u8; (sectors * 512) as usize];
        img[..512].copy_from_slice(&gpt::protective_mbr(sectors));
        img[512..1024].copy_from_slice(&h.encode());
        img[1024..1024 + array.len()].copy_from_slice(&array);
        let backup = GptHeader {
            my_lba: sectors - 1,
            alternate_lba: 1,
            partition_entry_lba: sectors - 33,
            ..h
        };
        let b = ((sectors - 33) * 512) as usize;
        img[b..b + array.len()].copy_from_slice(&array);
        let e = ((sectors - 1) * 512) as usize;
        img[e..e + 512].copy_from_slice(&backup.encode());
        img
    }

    #[test]
    fn the_backup_gpt_moves_to_the_end_of_a_larger_device() {
        let img = gpt_image(8192);
        let device_sectors = 20_000u64;
        let mut disk = img.clone();
        disk.resize((device_sectors * 512) as usize, 0xEE);
        let r = relocate(&img[..HEAD as usize], img.len() as u64, disk.len() as u64)
            .unwrap()
            .unwrap();
        assert_eq!(r.last_usable, device_sectors - 34);
        for group in &r.groups {
            for (off, bytes) in group {
                disk[*off as usize..*off as usize + bytes.len()].copy_from_slice(bytes);
            }
        }
        // Our reader finds both copies valid, in agreement, at the new end.
        let g = read::read(&mut Cursor::new(&disk), device_sectors)
            .unwrap()
            .unwrap();
        assert_eq!(g.other_copy_problem, None);
        assert_eq!(g.header.alternate_lba, device_sectors - 1);
        assert_eq!(g.entries.len(), 1);
        assert_eq!(g.entries[0].1.name, "APP");
        // The protective MBR covers the device; the old backup header is gone.
        assert_eq!(
            &disk[458..462],
            &((device_sectors - 1) as u32).to_le_bytes()
        );
        assert!(disk[(8191 * 512)..(8192 * 512)].iter().all(|b| *b == 0));
        // Nothing to do on a device of the image's size, or without a GPT.
        assert_eq!(
            relocate(&img[..HEAD as usize], img.len() as u64, img.len() as u64).unwrap(),
            None
        );
        assert_eq!(relocate(&[0u8; 4096], 1 << 20, 2 << 20).unwrap(), None);
        assert_eq!(gpt_sector_size(&img), Some(512));
    }

    #[test]
    fn the_head_is_held_back_and_replayed() {
        struct Log(Vec<(u64, u64, bool)>);
        impl Sink for Log {
            fn piece(&mut self, p: &Piece<'_>) -> Result<()> {
                match *p {
                    Piece::Data { offset, bytes } => {
                        self.0.push((offset, bytes.len() as u64, true))
                    }
                    Piece::Zero { offset, len } => self.0.push((offset, len, false)),
                    Piece::Skip { .. } => {}
                }
                Ok(())
            }
        }
        let mut body = Log(Vec::new());
        let mut h = HeadLast::new(&mut body);
        let bytes = vec![1u8; 3 << 19];
        h.piece(&Piece::Data {
            offset: 0,
            bytes: &bytes,
        })
        .unwrap();
        h.piece(&Piece::Zero {
            offset: 3 << 19,
            len: 10,
        })
        .unwrap();
        let held = h.into_held();
        assert_eq!(body.0, [(HEAD, 1 << 19, true), ((3 << 19), 10, false)]);
        let mut head = Log(Vec::new());
        replay(&held, &mut head).unwrap();
        assert_eq!(head.0, [(0, HEAD, true)]);
    }

    #[test]
    fn records_round_trip_and_torn_ones_read_as_none() {
        let r = encode_record(&[5; 32]);
        assert_eq!(decode_record(&r), Some([5; 32]));
        let mut torn = r;
        torn[20] ^= 1;
        assert_eq!(decode_record(&torn), None);
        assert_eq!(decode_record(&[0; 512]), None);
    }
}
