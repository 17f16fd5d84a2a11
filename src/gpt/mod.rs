//! GPT on-disk structures (UEFI 2.10 §5.2–5.3): protective MBR, header and
//! partition entries, encoded and decoded explicitly little-endian.
//!
//! This module is bytes in, bytes out. Where the bytes go (primary at LBA 1,
//! backup at the last LBA, NVIDIA's backup-only pseudo-GPT on boot devices) is
//! decided by the callers.
//!
//! Why our own code and not a crate: the `gpt` crate renumbers entries and
//! accepts overlaps (docs/spec/toolchain.md §1); `gptman` would do for the user
//! area, but we also read and write NVIDIA's boot-device pseudo-GPT (a backup
//! header whose entry array starts *at* its last usable LBA), and we want the
//! header fields and the write order under our control. The structures are
//! small; the tests pin every field against the spec and against sgdisk.

#![deny(clippy::indexing_slicing)]

pub mod read;
pub mod write;

use crate::guid::Guid;

/// "EFI PART".
pub const SIGNATURE: [u8; 8] = *b"EFI PART";
/// GPT revision 1.0.
pub const REVISION_1_0: u32 = 0x0001_0000;
/// Size of the header structure we write.
pub const HEADER_SIZE: u32 = 92;
/// The smallest sector: a header's and the protective MBR's bytes, and the
/// logical sector of every eMMC. Disks of 4096-byte sectors hold the same
/// structures at the start of each sector (UEFI 2.10 §5.3.1).
pub const SECTOR: usize = 512;
/// Size of one partition entry we write.
pub const ENTRY_SIZE: u32 = 128;
/// Entries in the arrays we write.
pub const ENTRY_COUNT: u32 = 128;
/// Largest entry array we accept when reading (bounded memory on hostile input):
/// 1 MiB is 8192 entries of 128 bytes; every real table is 16 KiB.
pub const MAX_ENTRY_ARRAY_BYTES: u64 = 1 << 20;
/// Longest name, in UTF-16 code units.
pub const NAME_UNITS: usize = 36;
/// MBR partition type of the protective entry.
pub const MBR_TYPE_PROTECTIVE: u8 = 0xEE;

const OFF_SIGNATURE: usize = 0;
const OFF_REVISION: usize = 8;
const OFF_HEADER_SIZE: usize = 12;
const OFF_HEADER_CRC: usize = 16;
const OFF_MY_LBA: usize = 24;
const OFF_ALTERNATE_LBA: usize = 32;
const OFF_FIRST_USABLE: usize = 40;
const OFF_LAST_USABLE: usize = 48;
const OFF_DISK_GUID: usize = 56;
const OFF_ENTRY_LBA: usize = 72;
const OFF_ENTRY_COUNT: usize = 80;
const OFF_ENTRY_SIZE: usize = 84;
const OFF_ENTRIES_CRC: usize = 88;

const ENT_TYPE: usize = 0;
const ENT_UNIQUE: usize = 16;
const ENT_FIRST: usize = 32;
const ENT_LAST: usize = 40;
const ENT_ATTR: usize = 48;
const ENT_NAME: usize = 56;

/// Why bytes are not a valid GPT structure. Each rule has its own variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GptError {
    /// The sector does not start with "EFI PART".
    #[error("no GPT signature")]
    NoSignature,
    /// header_size is outside 92..=512.
    #[error("GPT header size {0} is outside 92..=512")]
    BadHeaderSize(u32),
    /// The header CRC does not match.
    #[error("GPT header CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    HeaderCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The entry array CRC does not match.
    #[error("GPT entry array CRC mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    EntriesCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// sizeof_partition_entry is not 128 × 2^n.
    #[error("GPT entry size {0} is not 128, 256, 512, ...")]
    BadEntrySize(u32),
    /// The entry array would be unreasonably large.
    #[error(
        "GPT entry array of {count} × {size} bytes is larger than {MAX_ENTRY_ARRAY_BYTES} bytes"
    )]
    EntryArrayTooLarge {
        /// Number of entries claimed.
        count: u32,
        /// Size of each.
        size: u32,
    },
    /// Fewer bytes than the structure needs.
    #[error("GPT structure truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes needed.
        need: usize,
        /// Bytes given.
        have: usize,
    },
    /// A partition name does not fit 36 UTF-16 units.
    #[error("partition name '{0}' is longer than 36 UTF-16 code units")]
    NameTooLong(String),
    /// An entry number is outside 1..=count.
    #[error("partition number {number} is outside 1..={count}")]
    BadNumber {
        /// The number.
        number: u32,
        /// Entries in the array.
        count: u32,
    },
    /// Two entries claim the same number.
    #[error("partition number {0} is used twice")]
    DuplicateNumber(u32),
}

fn get<const N: usize>(b: &[u8], off: usize) -> Result<[u8; N], GptError> {
    crate::bytes::array_at::<N>(b, off).ok_or(GptError::Truncated {
        need: off + N,
        have: b.len(),
    })
}

fn le32(b: &[u8], off: usize) -> Result<u32, GptError> {
    get::<4>(b, off).map(u32::from_le_bytes)
}

fn le64(b: &[u8], off: usize) -> Result<u64, GptError> {
    get::<8>(b, off).map(u64::from_le_bytes)
}

fn put(b: &mut [u8], off: usize, v: &[u8]) {
    if let Some(dst) = b.get_mut(off..off + v.len()) {
        dst.copy_from_slice(v);
    }
}

/// CRC-32 as GPT uses it (IEEE 802.3, the zlib one).
pub fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// A GPT header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptHeader {
    /// Revision; we write 1.0.
    pub revision: u32,
    /// Bytes of the header covered by its CRC.
    pub header_size: u32,
    /// LBA of this header.
    pub my_lba: u64,
    /// LBA of the other header.
    pub alternate_lba: u64,
    /// First LBA a partition may use.
    pub first_usable_lba: u64,
    /// Last LBA a partition may use.
    pub last_usable_lba: u64,
    /// Disk GUID.
    pub disk_guid: Guid,
    /// LBA where this header's entry array starts.
    pub partition_entry_lba: u64,
    /// Entries in the array.
    pub num_partition_entries: u32,
    /// Bytes per entry.
    pub sizeof_partition_entry: u32,
    /// CRC-32 of the entry array.
    pub partition_entry_array_crc32: u32,
}

impl GptHeader {
    /// Encodes the header into a whole sector of `sector_size` bytes (at
    /// least [`SECTOR`]): as [`Self::encode`], zeros to the end.
    pub fn encode_sector(&self, sector_size: usize) -> Vec<u8> {
        let mut s = self.encode().to_vec();
        s.resize(sector_size.max(SECTOR), 0);
        s
    }

    /// Encodes the header into a 512-byte sector: 92 header bytes with the
    /// CRC filled in, the rest zero.
    pub fn encode(&self) -> [u8; SECTOR] {
        let mut s = [0u8; SECTOR];
        put(&mut s, OFF_SIGNATURE, &SIGNATURE);
        put(&mut s, OFF_REVISION, &self.revision.to_le_bytes());
        put(&mut s, OFF_HEADER_SIZE, &HEADER_SIZE.to_le_bytes());
        put(&mut s, OFF_MY_LBA, &self.my_lba.to_le_bytes());
        put(&mut s, OFF_ALTERNATE_LBA, &self.alternate_lba.to_le_bytes());
        put(
            &mut s,
            OFF_FIRST_USABLE,
            &self.first_usable_lba.to_le_bytes(),
        );
        put(&mut s, OFF_LAST_USABLE, &self.last_usable_lba.to_le_bytes());
        put(&mut s, OFF_DISK_GUID, &self.disk_guid.to_gpt_bytes());
        put(
            &mut s,
            OFF_ENTRY_LBA,
            &self.partition_entry_lba.to_le_bytes(),
        );
        put(
            &mut s,
            OFF_ENTRY_COUNT,
            &self.num_partition_entries.to_le_bytes(),
        );
        put(
            &mut s,
            OFF_ENTRY_SIZE,
            &self.sizeof_partition_entry.to_le_bytes(),
        );
        put(
            &mut s,
            OFF_ENTRIES_CRC,
            &self.partition_entry_array_crc32.to_le_bytes(),
        );
        let crc = crc32(s.get(..HEADER_SIZE as usize).unwrap_or(&[]));
        put(&mut s, OFF_HEADER_CRC, &crc.to_le_bytes());
        s
    }

    /// Decodes and validates a header sector: signature, header size, header
    /// CRC, entry size and a bound on the entry array. It does not check the
    /// LBAs against a disk size; callers do, since the boot-device pseudo-GPT
    /// bends those rules.
    pub fn decode(sector: &[u8]) -> Result<GptHeader, GptError> {
        if get::<8>(sector, OFF_SIGNATURE)? != SIGNATURE {
            return Err(GptError::NoSignature);
        }
        let header_size = le32(sector, OFF_HEADER_SIZE)?;
        if !(HEADER_SIZE..=SECTOR as u32).contains(&header_size) {
            return Err(GptError::BadHeaderSize(header_size));
        }
        let mut covered = sector
            .get(..header_size as usize)
            .ok_or(GptError::Truncated {
                need: header_size as usize,
                have: sector.len(),
            })?
            .to_vec();
        let stored = le32(&covered, OFF_HEADER_CRC)?;
        put(&mut covered, OFF_HEADER_CRC, &[0; 4]);
        let computed = crc32(&covered);
        if stored != computed {
            return Err(GptError::HeaderCrc { stored, computed });
        }
        let h = GptHeader {
            revision: le32(sector, OFF_REVISION)?,
            header_size,
            my_lba: le64(sector, OFF_MY_LBA)?,
            alternate_lba: le64(sector, OFF_ALTERNATE_LBA)?,
            first_usable_lba: le64(sector, OFF_FIRST_USABLE)?,
            last_usable_lba: le64(sector, OFF_LAST_USABLE)?,
            disk_guid: Guid::from_gpt_bytes(get::<16>(sector, OFF_DISK_GUID)?),
            partition_entry_lba: le64(sector, OFF_ENTRY_LBA)?,
            num_partition_entries: le32(sector, OFF_ENTRY_COUNT)?,
            sizeof_partition_entry: le32(sector, OFF_ENTRY_SIZE)?,
            partition_entry_array_crc32: le32(sector, OFF_ENTRIES_CRC)?,
        };
        let size = h.sizeof_partition_entry;
        if size < ENTRY_SIZE || !size.is_power_of_two() {
            return Err(GptError::BadEntrySize(size));
        }
        if h.entry_array_bytes() > MAX_ENTRY_ARRAY_BYTES {
            return Err(GptError::EntryArrayTooLarge {
                count: h.num_partition_entries,
                size,
            });
        }
        Ok(h)
    }

    /// Bytes of the entry array this header describes.
    pub fn entry_array_bytes(&self) -> u64 {
        u64::from(self.num_partition_entries) * u64::from(self.sizeof_partition_entry)
    }

    /// 512-byte sectors of the entry array (rounded up).
    pub fn entry_array_sectors(&self) -> u64 {
        self.entry_array_sectors_in(SECTOR as u64)
    }

    /// Sectors of `sector_size` bytes of the entry array (rounded up).
    pub fn entry_array_sectors_in(&self, sector_size: u64) -> u64 {
        self.entry_array_bytes().div_ceil(sector_size.max(1))
    }

    /// Checks an entry array against this header's CRC and decodes the used
    /// entries.
    pub fn decode_entries(&self, array: &[u8]) -> Result<Vec<(u32, GptEntry)>, GptError> {
        let need = usize::try_from(self.entry_array_bytes()).unwrap_or(usize::MAX);
        let bytes = array.get(..need).ok_or(GptError::Truncated {
            need,
            have: array.len(),
        })?;
        let computed = crc32(bytes);
        if computed != self.partition_entry_array_crc32 {
            return Err(GptError::EntriesCrc {
                stored: self.partition_entry_array_crc32,
                computed,
            });
        }
        decode_entries(bytes, self.sizeof_partition_entry)
    }
}

/// One partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptEntry {
    /// Partition type GUID (never nil for a used entry).
    pub type_guid: Guid,
    /// Unique partition GUID.
    pub unique_guid: Guid,
    /// First LBA.
    pub first_lba: u64,
    /// Last LBA, inclusive.
    pub last_lba: u64,
    /// Attribute bits.
    pub attributes: u64,
    /// Name (at most 36 UTF-16 code units).
    pub name: String,
}

impl GptEntry {
    /// A basic-data entry with a random unique GUID, for the tests.
    #[cfg(test)]
    pub(crate) fn basic_data(name: &str, first_lba: u64, last_lba: u64) -> GptEntry {
        GptEntry {
            type_guid: crate::guid::BASIC_DATA,
            unique_guid: Guid::random().unwrap(),
            first_lba,
            last_lba,
            attributes: 0,
            name: name.into(),
        }
    }

    /// Encodes the entry into its 128 bytes.
    pub fn encode(&self) -> Result<[u8; ENTRY_SIZE as usize], GptError> {
        let units: Vec<u16> = self.name.encode_utf16().collect();
        if units.len() > NAME_UNITS {
            return Err(GptError::NameTooLong(self.name.clone()));
        }
        let mut b = [0u8; ENTRY_SIZE as usize];
        put(&mut b, ENT_TYPE, &self.type_guid.to_gpt_bytes());
        put(&mut b, ENT_UNIQUE, &self.unique_guid.to_gpt_bytes());
        put(&mut b, ENT_FIRST, &self.first_lba.to_le_bytes());
        put(&mut b, ENT_LAST, &self.last_lba.to_le_bytes());
        put(&mut b, ENT_ATTR, &self.attributes.to_le_bytes());
        for (i, u) in units.iter().enumerate() {
            put(&mut b, ENT_NAME + 2 * i, &u.to_le_bytes());
        }
        Ok(b)
    }

    /// Decodes an entry; `None` for an unused one (nil type GUID). Names stop
    /// at the first NUL; invalid UTF-16 becomes U+FFFD.
    pub fn decode(b: &[u8]) -> Result<Option<GptEntry>, GptError> {
        let type_guid = Guid::from_gpt_bytes(get::<16>(b, ENT_TYPE)?);
        if type_guid.is_nil() {
            return Ok(None);
        }
        let raw = get::<72>(b, ENT_NAME)?;
        let units = raw
            .chunks_exact(2)
            .map(|c| {
                u16::from_le_bytes([
                    c.first().copied().unwrap_or(0),
                    c.get(1).copied().unwrap_or(0),
                ])
            })
            .take_while(|&u| u != 0);
        let name = char::decode_utf16(units)
            .map(|r| r.unwrap_or(char::REPLACEMENT_CHARACTER))
            .collect();
        Ok(Some(GptEntry {
            type_guid,
            unique_guid: Guid::from_gpt_bytes(get::<16>(b, ENT_UNIQUE)?),
            first_lba: le64(b, ENT_FIRST)?,
            last_lba: le64(b, ENT_LAST)?,
            attributes: le64(b, ENT_ATTR)?,
            name,
        }))
    }
}

/// Encodes a full entry array of `count` slots; entry `n` goes to slot `n − 1`
/// (numbers are kept exactly, gaps stay zero). `count` is bounded like a
/// decoded header's (it may come from a table read from a disk).
pub fn encode_entries(entries: &[(u32, GptEntry)], count: u32) -> Result<Vec<u8>, GptError> {
    if u64::from(count) * u64::from(ENTRY_SIZE) > MAX_ENTRY_ARRAY_BYTES {
        return Err(GptError::EntryArrayTooLarge {
            count,
            size: ENTRY_SIZE,
        });
    }
    let mut out = vec![0u8; count as usize * ENTRY_SIZE as usize];
    let mut seen = vec![false; count as usize];
    for (number, entry) in entries {
        let slot = number
            .checked_sub(1)
            .filter(|s| *s < count)
            .ok_or(GptError::BadNumber {
                number: *number,
                count,
            })? as usize;
        match seen.get_mut(slot) {
            Some(s) if *s => return Err(GptError::DuplicateNumber(*number)),
            Some(s) => *s = true,
            None => {}
        }
        let off = slot * ENTRY_SIZE as usize;
        if let Some(dst) = out.get_mut(off..off + ENTRY_SIZE as usize) {
            dst.copy_from_slice(&entry.encode()?);
        }
    }
    Ok(out)
}

/// Decodes the used entries of an array with entries of `entry_size` bytes,
/// as `(number, entry)` in number order.
pub fn decode_entries(array: &[u8], entry_size: u32) -> Result<Vec<(u32, GptEntry)>, GptError> {
    if entry_size < ENTRY_SIZE {
        return Err(GptError::BadEntrySize(entry_size));
    }
    let mut out = Vec::new();
    // Numbers are 1-based u32s; `zip` ends the walk where they would run out.
    for (number, chunk) in (1u32..).zip(array.chunks_exact(entry_size as usize)) {
        if let Some(e) = GptEntry::decode(chunk)? {
            out.push((number, e));
        }
    }
    Ok(out)
}

/// The protective MBR for a disk of `disk_sectors` sectors, as UEFI 2.10
/// §5.2.3 specifies and sgdisk writes it: one entry of type 0xEE, starting CHS
/// 0x000200, ending CHS 0xFFFFFF, first LBA 1, size `min(N − 1, 0xFFFFFFFF)`.
///
/// NVIDIA's `mbr_1_3.bin` differs in the CHS bytes (`00 01 00` / `FE FF FF`)
/// and always says `0xFFFFFFFF` (docs/spec/flash-layout.md §2.1, §5.4). No Tegra boot
/// stage reads the MBR (they read the GPT by name), and the kernel and sgdisk
/// accept both, so we write the spec's values, which `sgdisk -v` also checks.
pub fn protective_mbr(disk_sectors: u64) -> [u8; SECTOR] {
    let mut s = [0u8; SECTOR];
    let size = u32::try_from(disk_sectors.saturating_sub(1)).unwrap_or(u32::MAX);
    // Partition record 1 at 446: status, start CHS, type, end CHS, first LBA, size.
    put(
        &mut s,
        446,
        &[
            0x00,
            0x00,
            0x02,
            0x00,
            MBR_TYPE_PROTECTIVE,
            0xFF,
            0xFF,
            0xFF,
        ],
    );
    put(&mut s, 454, &1u32.to_le_bytes());
    put(&mut s, 458, &size.to_le_bytes());
    put(&mut s, 510, &[0x55, 0xAA]);
    s
}

/// True when a sector holds an MBR whose first record is a protective 0xEE entry.
pub fn is_protective_mbr(sector: &[u8]) -> bool {
    sector.get(510..512) == Some(&[0x55, 0xAA][..]) && sector.get(450) == Some(&MBR_TYPE_PROTECTIVE)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::guid::BASIC_DATA;

    fn header() -> GptHeader {
        GptHeader {
            revision: REVISION_1_0,
            header_size: HEADER_SIZE,
            my_lba: 1,
            alternate_lba: 61071359,
            first_usable_lba: 34,
            last_usable_lba: 61071326,
            disk_guid: Guid::parse("3B721BF8-8634-4DEE-B029-AC54C88F0C52").unwrap(),
            partition_entry_lba: 2,
            num_partition_entries: 128,
            sizeof_partition_entry: 128,
            partition_entry_array_crc32: 0xc4195747,
        }
    }

    #[test]
    fn header_round_trips_and_places_fields_per_spec() {
        let h = header();
        let s = h.encode();
        assert_eq!(&s[0..8], b"EFI PART");
        assert_eq!(&s[8..12], &[0, 0, 1, 0]);
        assert_eq!(&s[12..16], &[92, 0, 0, 0]);
        assert_eq!(u64::from_le_bytes(s[32..40].try_into().unwrap()), 61071359);
        assert_eq!(u64::from_le_bytes(s[72..80].try_into().unwrap()), 2);
        assert!(s[92..].iter().all(|&b| b == 0));
        assert_eq!(GptHeader::decode(&s).unwrap(), h);
    }

    #[test]
    fn header_crc_covers_the_header_only() {
        let mut s = header().encode();
        s[100] = 0xAA; // outside header_size: still valid
        assert!(GptHeader::decode(&s).is_ok());
        s[40] ^= 1; // first_usable changed: CRC fails
        assert!(matches!(
            GptHeader::decode(&s),
            Err(GptError::HeaderCrc { .. })
        ));
    }

    #[test]
    fn header_rejections() {
        let good = header().encode();
        let mut s = good;
        s[0] = b'X';
        assert_eq!(GptHeader::decode(&s), Err(GptError::NoSignature));
        assert!(matches!(
            GptHeader::decode(&good[..50]),
            Err(GptError::Truncated { .. })
        ));
        let mut h = header();
        h.sizeof_partition_entry = 100;
        assert_eq!(
            GptHeader::decode(&h.encode()),
            Err(GptError::BadEntrySize(100))
        );
        h.sizeof_partition_entry = 128;
        h.num_partition_entries = u32::MAX;
        assert!(matches!(
            GptHeader::decode(&h.encode()),
            Err(GptError::EntryArrayTooLarge { .. })
        ));
    }

    #[test]
    fn entry_bytes_match_the_spec_layout() {
        let e = GptEntry {
            type_guid: BASIC_DATA,
            unique_guid: Guid::parse("11111111-2222-3333-4444-555555555555").unwrap(),
            first_lba: 40,
            last_lba: 8231,
            attributes: 0,
            name: "mts-bootpack".into(),
        };
        let b = e.encode().unwrap();
        assert_eq!(&b[0..4], &[0xa2, 0xa0, 0xd0, 0xeb]);
        assert_eq!(&b[16..20], &[0x11, 0x11, 0x11, 0x11]);
        assert_eq!(&b[20..24], &[0x22, 0x22, 0x33, 0x33]);
        assert_eq!(u64::from_le_bytes(b[32..40].try_into().unwrap()), 40);
        assert_eq!(&b[56..60], &[b'm', 0, b't', 0]);
        assert_eq!(GptEntry::decode(&b).unwrap(), Some(e));
        assert_eq!(GptEntry::decode(&[0u8; 128]).unwrap(), None);
    }

    #[test]
    fn names_longer_than_36_units_are_refused() {
        let mut e = GptEntry {
            type_guid: BASIC_DATA,
            unique_guid: Guid::NIL,
            first_lba: 1,
            last_lba: 1,
            attributes: 0,
            name: "a".repeat(36),
        };
        assert!(e.encode().is_ok());
        e.name.push('b');
        assert!(matches!(e.encode(), Err(GptError::NameTooLong(_))));
    }

    #[test]
    fn entry_numbers_are_kept_with_gaps() {
        let e = |n: &str| GptEntry {
            type_guid: BASIC_DATA,
            unique_guid: Guid::NIL,
            first_lba: 100,
            last_lba: 200,
            attributes: 0,
            name: n.into(),
        };
        let arr = encode_entries(&[(6, e("six")), (1, e("one"))], 128).unwrap();
        assert_eq!(arr.len(), 16384);
        let back = decode_entries(&arr, 128).unwrap();
        assert_eq!(back.iter().map(|(n, _)| *n).collect::<Vec<_>>(), [1, 6]);
        assert_eq!(back[1].1.name, "six");
        assert!(arr[128..640].iter().all(|&b| b == 0));
        assert_eq!(
            encode_entries(&[(129, e("x"))], 128),
            Err(GptError::BadNumber {
                number: 129,
                count: 128
            })
        );
        assert_eq!(
            encode_entries(&[(0, e("x"))], 128),
            Err(GptError::BadNumber {
                number: 0,
                count: 128
            })
        );
        assert_eq!(
            encode_entries(&[(3, e("x")), (3, e("y"))], 128),
            Err(GptError::DuplicateNumber(3))
        );
    }

    /// Audit (issue 8): a slot count taken from a disk's header must not
    /// size an allocation unchecked (u32::MAX slots would be 512 GiB).
    #[test]
    fn encoding_an_enormous_entry_array_is_refused() {
        assert_eq!(
            encode_entries(&[], u32::MAX),
            Err(GptError::EntryArrayTooLarge {
                count: u32::MAX,
                size: 128
            })
        );
        assert_eq!(encode_entries(&[], 8192).unwrap().len(), 1 << 20);
    }

    #[test]
    fn entries_crc_is_checked() {
        let arr = encode_entries(&[], 128).unwrap();
        let mut h = header();
        h.partition_entry_array_crc32 = crc32(&arr);
        assert!(h.decode_entries(&arr).unwrap().is_empty());
        h.partition_entry_array_crc32 ^= 1;
        assert!(matches!(
            h.decode_entries(&arr),
            Err(GptError::EntriesCrc { .. })
        ));
        assert!(matches!(
            h.decode_entries(&arr[..100]),
            Err(GptError::Truncated { .. })
        ));
    }

    #[test]
    fn protective_mbr_bytes() {
        let m = protective_mbr(61071360);
        assert_eq!(&m[446..454], &[0, 0, 2, 0, 0xEE, 0xFF, 0xFF, 0xFF]);
        assert_eq!(u32::from_le_bytes(m[454..458].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(m[458..462].try_into().unwrap()),
            61071359
        );
        assert_eq!(&m[510..], &[0x55, 0xAA]);
        assert!(m[..446].iter().all(|&b| b == 0));
        assert!(is_protective_mbr(&m));
        // Disks over 2 TiB saturate the 32-bit size field.
        let big = protective_mbr(1 << 33);
        assert_eq!(&big[458..462], &[0xFF; 4]);
    }
}
