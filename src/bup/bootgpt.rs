//! NVIDIA's partition table on boot devices (docs/spec/bup-format.md §3.3): a GPT
//! with only a backup header, in the last sector of the linear boot device
//! (eMMC boot0 + boot1, or the SPI flash), and an entry array whose first
//! LBA equals the header's last usable LBA, not the one after it.
//!
//! ```text
//! LBA 0 .. N−34   boot partitions (BCT at 0, mb1, ..., SMD, VER)
//! LBA N−33        entry array, 128 × 128 bytes (32 sectors)
//! LBA N−1         header: my_lba N−1, alternate 1, usable 0..=N−33,
//!                 entries at N−33
//! ```
//!
//! Built on [`crate::gpt`]; only the placement is NVIDIA's.

#![deny(clippy::indexing_slicing)]

use crate::gpt::{self, GptEntry, GptError, GptHeader};
use crate::guid::{Guid, BASIC_DATA};
use crate::layout::BootPartition;

/// Sector size of every boot device.
pub const SECTOR: u64 = 512;
/// Sectors at the end of the device taken by the table: the entry array
/// (32) and the header (1).
pub const TABLE_SECTORS: u64 = 33;
/// Header bytes REF writes (the rest of the sector is left as it is).
pub const HEADER_BYTES: usize = gpt::HEADER_SIZE as usize;

/// Why a boot device's table cannot be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootGptError {
    /// The header or entry array is not a valid GPT structure.
    #[error("{0}")]
    Gpt(#[from] GptError),
    /// A valid GPT header, but not NVIDIA's placement.
    #[error("GPT header's entry array starts at LBA {entries}, not at its last usable LBA {last_usable} as on NVIDIA boot devices")]
    NotNvidia {
        /// `partition_entry_lba`.
        entries: u64,
        /// `last_usable_lba`.
        last_usable: u64,
    },
    /// The entry array or a partition lies outside the device.
    #[error("{what} lies outside the {len}-byte boot device")]
    Outside {
        /// What.
        what: String,
        /// Device size.
        len: u64,
    },
    /// The device is too small to hold a table.
    #[error("a {0}-byte boot device is too small for a partition table")]
    TooSmall(u64),
    /// A partition is not whole sectors, or overlaps the table.
    #[error("boot partition '{name}' at {offset}+{size} is not whole sectors before the partition table at {table}")]
    BadPartition {
        /// Partition name.
        name: String,
        /// Offset in bytes.
        offset: u64,
        /// Size in bytes.
        size: u64,
        /// Where the table starts.
        table: u64,
    },
    /// Two partitions share bytes.
    #[error("boot partitions '{0}' and '{1}' overlap")]
    Overlap(String, String),
    /// More partitions than entries.
    #[error("{0} boot partitions do not fit the 128 entries of the table")]
    TooMany(usize),
}

/// Sectors of a device of `len` bytes.
fn sectors(len: u64) -> u64 {
    len / SECTOR
}

/// Byte offset of the header for a device of `len` bytes.
pub fn header_offset(len: u64) -> u64 {
    sectors(len).saturating_sub(1) * SECTOR
}

/// Byte offset of the entry array (and the end of the usable area).
pub fn entries_offset(len: u64) -> u64 {
    sectors(len).saturating_sub(TABLE_SECTORS) * SECTOR
}

/// Checks the header sector read from [`header_offset`]: a valid GPT header
/// in NVIDIA's placement, whose entry array lies on the device. Returns the
/// header and where its entry array is (offset, length).
pub fn decode_header(sector: &[u8], len: u64) -> Result<(GptHeader, u64, u64), BootGptError> {
    let h = GptHeader::decode(sector)?;
    if h.partition_entry_lba != h.last_usable_lba {
        return Err(BootGptError::NotNvidia {
            entries: h.partition_entry_lba,
            last_usable: h.last_usable_lba,
        });
    }
    let bytes = h.entry_array_bytes();
    let at = h.partition_entry_lba.checked_mul(SECTOR);
    match at.and_then(|a| a.checked_add(bytes)) {
        Some(end) if end <= len => Ok((h, at.unwrap_or(0), bytes)),
        _ => Err(BootGptError::Outside {
            what: "the partition entry array".into(),
            len,
        }),
    }
}

/// The partitions of a checked entry array, in entry order, as byte ranges
/// of the linear boot device.
pub fn decode_entries(
    header: &GptHeader,
    array: &[u8],
    len: u64,
) -> Result<Vec<BootPartition>, BootGptError> {
    let mut out = Vec::new();
    for (_, e) in header.decode_entries(array)? {
        let range = e
            .last_lba
            .checked_sub(e.first_lba)
            .and_then(|n| n.checked_add(1))
            .and_then(|n| n.checked_mul(SECTOR))
            .and_then(|size| Some((e.first_lba.checked_mul(SECTOR)?, size)));
        match range {
            Some((offset, size)) if offset.checked_add(size).is_some_and(|end| end <= len) => out
                .push(BootPartition {
                    name: e.name,
                    offset,
                    size,
                }),
            _ => {
                return Err(BootGptError::Outside {
                    what: format!(
                        "partition '{}' (LBA {}..={})",
                        e.name, e.first_lba, e.last_lba
                    ),
                    len,
                })
            }
        }
    }
    Ok(out)
}

/// A table ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The 92 header bytes, for [`header_offset`].
    pub header: Vec<u8>,
    /// The entry array (128 × 128 bytes), for [`entries_offset`].
    pub entries: Vec<u8>,
}

/// The table REF's `gpt_save` writes for these partitions on a device of
/// `len` bytes: basic-data type, one entry per partition in order, GUIDs
/// from `guid` (random in use, fixed in tests).
pub fn encode(
    parts: &[BootPartition],
    len: u64,
    mut guid: impl FnMut() -> Guid,
) -> Result<Encoded, BootGptError> {
    let n = sectors(len);
    if n <= TABLE_SECTORS + 1 {
        return Err(BootGptError::TooSmall(len));
    }
    if parts.len() > gpt::ENTRY_COUNT as usize {
        return Err(BootGptError::TooMany(parts.len()));
    }
    let table = entries_offset(len);
    let mut entries = Vec::with_capacity(parts.len());
    for (p, number) in parts.iter().zip(1u32..) {
        let end = p.offset.checked_add(p.size);
        if p.size == 0
            || p.offset % SECTOR != 0
            || p.size % SECTOR != 0
            || end.map_or(true, |e| e > table)
        {
            return Err(BootGptError::BadPartition {
                name: p.name.clone(),
                offset: p.offset,
                size: p.size,
                table,
            });
        }
        entries.push((
            number,
            GptEntry {
                type_guid: BASIC_DATA,
                unique_guid: guid(),
                first_lba: p.offset / SECTOR,
                last_lba: (p.offset + p.size) / SECTOR - 1,
                attributes: 0,
                name: p.name.clone(),
            },
        ));
    }
    let mut by_offset: Vec<&BootPartition> = parts.iter().collect();
    by_offset.sort_by_key(|p| p.offset);
    for w in by_offset.windows(2) {
        if let [a, b] = w {
            if a.offset + a.size > b.offset {
                return Err(BootGptError::Overlap(a.name.clone(), b.name.clone()));
            }
        }
    }
    let array = gpt::encode_entries(&entries, gpt::ENTRY_COUNT)?;
    let header = GptHeader {
        revision: gpt::REVISION_1_0,
        header_size: gpt::HEADER_SIZE,
        my_lba: n - 1,
        alternate_lba: 1,
        first_usable_lba: 0,
        last_usable_lba: n - TABLE_SECTORS,
        disk_guid: guid(),
        partition_entry_lba: n - TABLE_SECTORS,
        num_partition_entries: gpt::ENTRY_COUNT,
        sizeof_partition_entry: gpt::ENTRY_SIZE,
        partition_entry_array_crc32: gpt::crc32(&array),
    };
    Ok(Encoded {
        header: header.encode().get(..HEADER_BYTES).unwrap_or(&[]).to_vec(),
        entries: array,
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::bup::fixtures::tx2_boot as tx2;

    fn counter() -> impl FnMut() -> Guid {
        let mut n = 0u8;
        move || {
            n += 1;
            Guid::from_bytes([n; 16])
        }
    }

    const EIGHT_MIB: u64 = 8 << 20;

    #[test]
    fn tx2_table_has_the_verified_golden_fields() {
        // docs/spec/bup-format.md §3.3: REF's gpt_save on 4 MiB boot1 (N = 16384).
        let e = encode(&tx2(), EIGHT_MIB, counter()).unwrap();
        assert_eq!(e.header.len(), 92);
        let mut sector = e.header.clone();
        sector.resize(512, 0);
        let (h, at, len) = decode_header(&sector, EIGHT_MIB).unwrap();
        assert_eq!(h.my_lba, 16383);
        assert_eq!(h.alternate_lba, 1);
        assert_eq!(h.first_usable_lba, 0);
        assert_eq!(h.last_usable_lba, 16351);
        assert_eq!(h.partition_entry_lba, 16351);
        assert_eq!(
            (h.num_partition_entries, h.sizeof_partition_entry),
            (128, 128)
        );
        assert_eq!(h.header_size, 92);
        assert_eq!(h.revision, 0x0001_0000);
        // Entries 33 sectors before the end: boot1 offset D − 16896.
        assert_eq!(at, EIGHT_MIB - 16896);
        assert_eq!(header_offset(EIGHT_MIB), EIGHT_MIB - 512);
        assert_eq!(entries_offset(EIGHT_MIB), at);
        assert_eq!(len, 16384);
        let back = decode_entries(&h, &e.entries, EIGHT_MIB).unwrap();
        assert_eq!(back, tx2());
        // Names are UTF-16LE, type is basic data.
        assert_eq!(&e.entries[56..62], b"B\0C\0T\0");
        assert_eq!(&e.entries[..4], &[0xa2, 0xa0, 0xd0, 0xeb]);
    }

    #[test]
    fn spi_table_is_not_doubled() {
        // A 4 MiB mtd: current_lba 8191, last usable = entries = 8159.
        let parts = vec![BootPartition {
            name: "BCT".into(),
            offset: 0,
            size: 262144,
        }];
        let e = encode(&parts, 4 << 20, counter()).unwrap();
        let mut sector = e.header.clone();
        sector.resize(512, 0);
        let (h, ..) = decode_header(&sector, 4 << 20).unwrap();
        assert_eq!(
            (h.my_lba, h.last_usable_lba, h.partition_entry_lba),
            (8191, 8159, 8159)
        );
    }

    #[test]
    fn a_standard_backup_header_is_not_nvidias() {
        let e = encode(&tx2(), EIGHT_MIB, counter()).unwrap();
        let mut h = GptHeader::decode(&{
            let mut s = e.header.clone();
            s.resize(512, 0);
            s
        })
        .unwrap();
        h.last_usable_lba -= 1;
        assert!(matches!(
            decode_header(&h.encode(), EIGHT_MIB),
            Err(BootGptError::NotNvidia { .. })
        ));
        // The same table on a device too small to hold its entry array.
        let mut s = e.header;
        s.resize(512, 0);
        assert!(matches!(
            decode_header(&s, 1 << 20),
            Err(BootGptError::Outside { .. })
        ));
    }

    #[test]
    fn partitions_must_be_sectors_before_the_table() {
        let mut parts = tx2();
        parts[18].size = 65536; // VER runs into the table
        assert!(matches!(
            encode(&parts, EIGHT_MIB, counter()),
            Err(BootGptError::BadPartition { .. })
        ));
        let mut parts = tx2();
        parts[1].offset += 1;
        assert!(encode(&parts, EIGHT_MIB, counter()).is_err());
        let mut parts = tx2();
        parts[16].size = 65536; // UBENV overlaps VER_b
        assert_eq!(
            encode(&parts, EIGHT_MIB, counter())
                .unwrap_err()
                .to_string(),
            "boot partitions 'UBENV' and 'VER_b' overlap"
        );
        assert!(matches!(
            encode(&[], 16 * 512, counter()),
            Err(BootGptError::TooSmall(_))
        ));
    }

    #[test]
    fn decoding_never_panics() {
        use proptest::prelude::*;
        let e = encode(&tx2(), EIGHT_MIB, counter()).unwrap();
        let mut sector = e.header.clone();
        sector.resize(512, 0);
        proptest!(|(flips in proptest::collection::vec((0usize..512, any::<u8>()), 0..4), len in 0u64..(16 << 20))| {
            let mut s = sector.clone();
            for (i, v) in flips { s[i] = v; }
            if let Ok((h, _, n)) = decode_header(&s, len) {
                let _ = decode_entries(&h, &e.entries[..(n as usize).min(e.entries.len())], len);
            }
        });
    }
}
