//! Writing a new GPT: build it in memory, validate it, check it by reading it
//! back, then replace whatever is on the disk in an order that keeps the disk
//! readable at every moment.
//!
//! # What is written
//!
//! For a disk of `N` sectors of 512 bytes and a table whose first usable
//! LBA is `F`:
//!
//! | LBA            | content                                              |
//! |----------------|------------------------------------------------------|
//! | 0              | protective MBR ([`super::protective_mbr`]), boot code kept |
//! | 1              | primary header                                       |
//! | 2 ..= 33       | primary entry array, 128 × 128 bytes, entry n in slot n−1 |
//! | 34 ..= F−1     | zeros (only when the layout's primary_gpt is larger) |
//! | N−33 ..= N−2   | backup entry array (same bytes as the primary one)   |
//! | N−1            | backup header                                        |
//!
//! On a disk of 4096-byte sectors the same 16 KiB array takes 4 sectors:
//! LBA 2..=5 and N−5..=N−2, the first usable LBA is at least 6, the last
//! usable `N − 6`; each header and the MBR fill the start of their sector,
//! zeros after.
//!
//! Header fields: first usable = the layout's (NVIDIA's `1 + ceil(primary_gpt
//! / 512)`: 34, 40, 4097), last usable = `N − 34`. NVIDIA writes `N − 33`,
//! which is the first sector of its own backup entry array; the UEFI-correct
//! value is `N − 34`, and since no NVIDIA partition ever ends past `N − 34`
//! the entries are identical to NVIDIA's either way. Attributes are 0, unused
//! entries all-zero, and unique GUIDs the layout leaves open are random and
//! distinct (or kept from the current table, see [`build`]).
//!
//! # What is zapped
//!
//! Anything that could make the kernel, sgdisk or a bootloader find an older
//! table later:
//! * the old MBR's partition records (bytes 440..512), primary header and
//!   array: overwritten by the new ones. The MBR's boot-code area (bytes
//!   0..440) is kept: UEFI and every Jetson boot stage ignore it, and the
//!   install journal lives there so that it survives re-partitioning
//!   (`install::journal`);
//! * sectors 34 up to the first usable LBA: zeroed (an older, smaller-entry
//!   or differently placed primary array may live there);
//! * the old backup (the last 33 sectors): overwritten by the new backup;
//! * a stale backup header left by an earlier, smaller disk size (an image
//!   that was grown, a table written for the XML's `num_sectors`): found
//!   through the old primary's `AlternateLBA` and through the old protective
//!   MBR's size field, and zeroed — but only when that sector really holds a
//!   valid GPT header claiming to be at that LBA, so that no data sector is
//!   ever zeroed on a guess. Only the header is zapped: an entry array is
//!   found through its header, never on its own.
//!
//! # Order
//!
//! The steps run in three stages separated by a barrier (`fsync`, which also
//! flushes the device's write cache). Within a stage the kernel may write
//! back in any order; across a barrier the order is guaranteed.
//!
//! 1. Protective MBR, backup entry array, backup header. The MBR is replaced
//!    in one sector, never zeroed first, so the disk never lacks a valid
//!    protective MBR. The old primary is untouched during this stage and stays
//!    valid; readers use it.
//! 2. Stale headers, the gap up to the first usable LBA, the primary entry
//!    array. The old primary's entries CRC now fails; the new backup, made
//!    durable by barrier 1, is valid (UEFI firmware and sgdisk fall back to
//!    it; Linux does with `gpt` on its command line).
//! 3. The primary header: both copies are now valid and equal.
//!
//! So at every moment at least one complete, valid GPT is on the disk: the old
//! primary until stage 2 starts, the new backup from barrier 1 on, both new
//! copies after stage 3 (a unit test cuts the power after every sector, with
//! the writes of each stage in random orders). The only window is for
//! readers that never fall back to the backup (Linux without `gpt`): from
//! the first primary-entry sector to the primary header, 33 sector writes,
//! they see no table. A power cut anywhere leaves a disk on which running
//! `sysinstall partition` again finishes the job.
//!
//! Afterwards [`verify`] reads every written sector back and parses the disk
//! with the same reader `plan` uses ([`super::read::read`]); the caller drops
//! the device's page cache in between so the bytes come from the device.

use super::read::{self, DiskGpt, GptCopy};
use super::{
    crc32, encode_entries, is_protective_mbr, protective_mbr, GptEntry, GptError, GptHeader,
    ENTRY_COUNT, ENTRY_SIZE, HEADER_SIZE, NAME_UNITS, REVISION_1_0, SECTOR,
};
use crate::guid::Guid;
use crate::layout::PartitionTable;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Seek, SeekFrom, Write};

/// Bytes of the 128-entry array (16 KiB).
pub const ENTRY_ARRAY_BYTES: u64 = ENTRY_COUNT as u64 * ENTRY_SIZE as u64;
/// 512-byte sectors of the 128-entry array; [`entry_array_sectors`] for any
/// sector size.
pub const ENTRY_ARRAY_SECTORS: u64 = ENTRY_ARRAY_BYTES / SECTOR as u64;
/// LBA of the primary entry array.
pub const PRIMARY_ENTRY_LBA: u64 = 2;
/// Lowest first usable LBA a 128-entry GPT allows at 512 bytes a sector:
/// MBR + header + 32 sectors; [`min_first_usable_lba`] for any sector size.
pub const MIN_FIRST_USABLE_LBA: u64 = PRIMARY_ENTRY_LBA + ENTRY_ARRAY_SECTORS;
/// Sectors at the end of a 512-byte-sector disk the backup takes: array +
/// header; [`backup_sectors`] for any sector size.
pub const BACKUP_SECTORS: u64 = ENTRY_ARRAY_SECTORS + 1;
/// The sector sizes a table may be written in.
pub const SECTOR_SIZES: [u64; 2] = [512, 4096];

/// Sectors of the 128-entry array: 32 at 512 bytes a sector, 4 at 4096.
pub fn entry_array_sectors(sector_size: u64) -> u64 {
    ENTRY_ARRAY_BYTES.div_ceil(sector_size.max(1))
}

/// Lowest first usable LBA a 128-entry GPT allows: 34 at 512, 6 at 4096.
pub fn min_first_usable_lba(sector_size: u64) -> u64 {
    PRIMARY_ENTRY_LBA + entry_array_sectors(sector_size)
}

/// Sectors at the end of the disk the backup takes: 33 at 512, 5 at 4096.
pub fn backup_sectors(sector_size: u64) -> u64 {
    entry_array_sectors(sector_size) + 1
}

/// Bytes of LBA 0 before the disk signature: the MBR boot code, unused by a
/// protective MBR, kept on write (the install journal lives there).
pub const MBR_BOOT_CODE_BYTES: usize = 440;

/// Largest chunk written or compared at once when zeroing.
const ZERO_CHUNK: usize = 64 * 1024;

/// Why a partition table cannot be written as a GPT. Each rule has its own
/// variant; every message names the partition concerned.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The table is for sectors of neither 512 nor 4096 bytes.
    #[error("sector size {0} is not supported (only 512- and 4096-byte sectors)")]
    SectorSize(u64),
    /// The first usable LBA would put partitions on the primary entry array.
    #[error("first usable LBA {got} is below {min} (MBR, header and 128 entries)")]
    FirstUsableTooLow {
        /// The table's first usable LBA.
        got: u64,
        /// The lowest allowed at its sector size.
        min: u64,
    },
    /// The disk cannot hold both GPT copies and at least one usable sector.
    #[error("a disk of {disk_sectors} sectors is too small for a GPT whose first usable LBA is {first_usable}")]
    DiskTooSmall {
        /// Disk size in sectors.
        disk_sectors: u64,
        /// First usable LBA of the table.
        first_usable: u64,
    },
    /// The table's last usable LBA is not the last sector before the backup
    /// GPT and one spare (`N − 34`, or `N − 6` at 4096 bytes a sector): a
    /// table placed for another disk size.
    #[error("last usable LBA {got} is not {want} (the sector before the backup GPT and one spare, on a disk of {disk_sectors} sectors)")]
    LastUsable {
        /// What the table says.
        got: u64,
        /// N − 34.
        want: u64,
        /// N.
        disk_sectors: u64,
    },
    /// A disk of more than 2^63 bytes (byte offsets would overflow).
    #[error("a disk of {0} sectors is larger than 2^63 bytes")]
    DiskTooLarge(u64),
    /// More partitions than the array has entries.
    #[error("{0} partitions do not fit a {ENTRY_COUNT}-entry GPT")]
    TooManyPartitions(usize),
    /// A partition number outside 1..=128.
    #[error("partition '{name}': number {number} is outside 1..={ENTRY_COUNT}")]
    BadNumber {
        /// Partition name.
        name: String,
        /// Its number.
        number: u32,
    },
    /// Two partitions with one number.
    #[error("partitions '{first}' and '{second}' both have number {number}")]
    DuplicateNumber {
        /// The number.
        number: u32,
        /// One partition.
        first: String,
        /// The other.
        second: String,
    },
    /// An empty name.
    #[error("partition {0} has an empty name")]
    EmptyName(u32),
    /// A name longer than a GPT entry holds.
    #[error("partition '{name}': name is {units} UTF-16 code units, more than {NAME_UNITS}")]
    NameTooLong {
        /// The name.
        name: String,
        /// Its length in UTF-16 units.
        units: usize,
    },
    /// A NUL character, which would end the name early on disk.
    #[error("partition {0}: name contains a NUL character")]
    NameHasNul(u32),
    /// Two partitions with one name: the bootloaders and the installer find
    /// partitions by name.
    #[error("partitions {first} and {second} are both named '{name}'")]
    DuplicateName {
        /// The name.
        name: String,
        /// One number.
        first: u32,
        /// The other.
        second: u32,
    },
    /// A partition whose last LBA is before its first (a zero-length entry).
    #[error("partition '{name}': last LBA {last} is before first LBA {first} (empty partition)")]
    Empty {
        /// Partition name.
        name: String,
        /// First LBA.
        first: u64,
        /// Last LBA.
        last: u64,
    },
    /// A partition outside the usable range.
    #[error("partition '{name}': sectors {first}..={last} are outside the usable range {first_usable}..={last_usable}")]
    OutsideUsable {
        /// Partition name.
        name: String,
        /// First LBA.
        first: u64,
        /// Last LBA.
        last: u64,
        /// First usable LBA.
        first_usable: u64,
        /// Last usable LBA.
        last_usable: u64,
    },
    /// Two partitions share sectors.
    #[error("partitions '{a}' ({a_first}..={a_last}) and '{b}' ({b_first}..={b_last}) overlap")]
    Overlap {
        /// One partition.
        a: String,
        /// Its first LBA.
        a_first: u64,
        /// Its last LBA.
        a_last: u64,
        /// The other.
        b: String,
        /// Its first LBA.
        b_first: u64,
        /// Its last LBA.
        b_last: u64,
    },
    /// The nil type GUID marks an unused entry.
    #[error("partition '{0}': the type GUID is nil, which marks an unused entry")]
    NilType(String),
    /// The layout fixes a nil unique GUID.
    #[error("partition '{0}': the unique GUID is nil")]
    NilUniqueGuid(String),
    /// Two partitions with one unique GUID: `root=PARTUUID=` and the
    /// bootloaders' GUID lookups would become ambiguous (UEFI requires them
    /// to be unique).
    #[error("partitions '{first}' and '{second}' have the same unique GUID {guid}")]
    DuplicateUniqueGuid {
        /// The GUID.
        guid: Guid,
        /// One partition.
        first: String,
        /// The other.
        second: String,
    },
    /// No random GUID could be had.
    #[error("generating a random GUID: {0}")]
    Random(#[source] io::Error),
    /// The encoded bytes did not read back as the table (a bug, caught before
    /// anything was written).
    #[error("self-check of the new GPT failed: {0}")]
    SelfCheck(String),
}

/// A complete new GPT for one disk, validated and self-checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewGpt {
    /// Disk size it was built for, in sectors.
    pub disk_sectors: u64,
    /// Bytes of a sector: 512 or 4096.
    pub sector_size: u64,
    /// The primary header (the backup is derived: [`NewGpt::backup_header`]).
    pub header: GptHeader,
    /// Used entries in number order.
    pub entries: Vec<(u32, GptEntry)>,
    /// The 128-entry array as written.
    array: Vec<u8>,
}

impl NewGpt {
    /// The backup header: at the last LBA, its array at `N − 33`.
    pub fn backup_header(&self) -> GptHeader {
        GptHeader {
            my_lba: self.header.alternate_lba,
            alternate_lba: self.header.my_lba,
            partition_entry_lba: self.backup_entry_lba(),
            ..self.header.clone()
        }
    }

    /// LBA of the backup entry array.
    pub fn backup_entry_lba(&self) -> u64 {
        self.disk_sectors - backup_sectors(self.sector_size)
    }

    /// The protective MBR (its first 512 bytes of LBA 0).
    pub fn mbr(&self) -> [u8; SECTOR] {
        protective_mbr(self.disk_sectors)
    }

    /// Sectors of the entry array.
    pub fn entry_array_sectors(&self) -> u64 {
        entry_array_sectors(self.sector_size)
    }

    /// The entry array bytes (128 × 128).
    pub fn entry_array(&self) -> &[u8] {
        &self.array
    }
}

/// Builds the GPT for `table` with random GUIDs where the layout fixes none.
///
/// With `current` (the table now on the disk), a partition that stays exactly
/// where it is (same number, name, first and last LBA, type) keeps its unique
/// GUID when the layout leaves it open, and the disk keeps its disk GUID:
/// `root=PARTUUID=` references and `/dev/disk/by-partuuid` links stay valid,
/// and rewriting an unchanged table writes the same bytes again.
pub fn build(table: &PartitionTable, current: Option<&DiskGpt>) -> Result<NewGpt, BuildError> {
    build_with(table, current, &mut || Guid::random())
}

/// [`build`] with a GUID source (tests use a deterministic one).
pub fn build_with(
    table: &PartitionTable,
    current: Option<&DiskGpt>,
    random: &mut dyn FnMut() -> io::Result<Guid>,
) -> Result<NewGpt, BuildError> {
    validate(table)?;
    let n = table.disk_sectors;
    let ss = table.sector_size;

    let mut taken: BTreeSet<Guid> = table
        .partitions
        .iter()
        .filter_map(|p| p.unique_guid)
        .collect();
    let mut fresh = |taken: &mut BTreeSet<Guid>| -> Result<Guid, BuildError> {
        loop {
            let g = random().map_err(BuildError::Random)?;
            if !g.is_nil() && taken.insert(g) {
                return Ok(g);
            }
        }
    };

    let mut entries = Vec::with_capacity(table.partitions.len());
    for p in &table.partitions {
        let unique_guid = match p.unique_guid {
            Some(g) => g,
            None => {
                let kept = current
                    .and_then(|c| c.entries.iter().find(|(num, _)| *num == p.number))
                    .map(|(_, e)| e)
                    .filter(|e| {
                        e.name == p.name
                            && e.first_lba == p.first_lba
                            && e.last_lba == p.last_lba
                            && e.type_guid == p.type_guid
                            && !e.unique_guid.is_nil()
                    })
                    .map(|e| e.unique_guid)
                    .filter(|g| !taken.contains(g));
                match kept {
                    Some(g) => {
                        taken.insert(g);
                        g
                    }
                    None => fresh(&mut taken)?,
                }
            }
        };
        entries.push((
            p.number,
            GptEntry {
                type_guid: p.type_guid,
                unique_guid,
                first_lba: p.first_lba,
                last_lba: p.last_lba,
                attributes: 0,
                name: p.name.clone(),
            },
        ));
    }
    entries.sort_by_key(|(num, _)| *num);

    let disk_guid = match current.map(|c| c.header.disk_guid) {
        Some(g) if !g.is_nil() => g,
        _ => random().map_err(BuildError::Random)?,
    };
    let array = encode_entries(&entries, ENTRY_COUNT).map_err(self_check)?;
    let header = GptHeader {
        revision: REVISION_1_0,
        header_size: HEADER_SIZE,
        my_lba: 1,
        alternate_lba: n - 1,
        first_usable_lba: table.first_usable_lba,
        last_usable_lba: n - 1 - backup_sectors(ss),
        disk_guid,
        partition_entry_lba: PRIMARY_ENTRY_LBA,
        num_partition_entries: ENTRY_COUNT,
        sizeof_partition_entry: ENTRY_SIZE,
        partition_entry_array_crc32: crc32(&array),
    };
    let gpt = NewGpt {
        disk_sectors: n,
        sector_size: ss,
        header,
        entries,
        array,
    };
    self_check_gpt(&gpt)?;
    Ok(gpt)
}

fn self_check(e: GptError) -> BuildError {
    BuildError::SelfCheck(e.to_string())
}

/// Checks every rule a table must meet before it is turned into bytes.
pub fn validate(table: &PartitionTable) -> Result<(), BuildError> {
    let ss = table.sector_size;
    if !SECTOR_SIZES.contains(&ss) {
        return Err(BuildError::SectorSize(ss));
    }
    let n = table.disk_sectors;
    let first_usable = table.first_usable_lba;
    let min = min_first_usable_lba(ss);
    if first_usable < min {
        return Err(BuildError::FirstUsableTooLow {
            got: first_usable,
            min,
        });
    }
    // Both copies, and at least one usable sector between them; and every
    // byte offset within 2^63 (Linux's loff_t).
    let backup = backup_sectors(ss);
    if n < first_usable.saturating_add(backup + 1) {
        return Err(BuildError::DiskTooSmall {
            disk_sectors: n,
            first_usable,
        });
    }
    if n > i64::MAX as u64 / ss {
        return Err(BuildError::DiskTooLarge(n));
    }
    let last_usable = n - 1 - backup;
    if table.last_usable_lba != last_usable {
        return Err(BuildError::LastUsable {
            got: table.last_usable_lba,
            want: last_usable,
            disk_sectors: n,
        });
    }
    if table.partitions.len() > ENTRY_COUNT as usize {
        return Err(BuildError::TooManyPartitions(table.partitions.len()));
    }

    let mut numbers: BTreeMap<u32, &str> = BTreeMap::new();
    let mut names: BTreeMap<&str, u32> = BTreeMap::new();
    let mut guids: BTreeMap<Guid, &str> = BTreeMap::new();
    for p in &table.partitions {
        if p.number == 0 || p.number > ENTRY_COUNT {
            return Err(BuildError::BadNumber {
                name: p.name.clone(),
                number: p.number,
            });
        }
        if let Some(first) = numbers.insert(p.number, &p.name) {
            return Err(BuildError::DuplicateNumber {
                number: p.number,
                first: first.to_owned(),
                second: p.name.clone(),
            });
        }
        if p.name.is_empty() {
            return Err(BuildError::EmptyName(p.number));
        }
        if p.name.contains('\0') {
            return Err(BuildError::NameHasNul(p.number));
        }
        let units = p.name.encode_utf16().count();
        if units > NAME_UNITS {
            return Err(BuildError::NameTooLong {
                name: p.name.clone(),
                units,
            });
        }
        if let Some(first) = names.insert(&p.name, p.number) {
            return Err(BuildError::DuplicateName {
                name: p.name.clone(),
                first,
                second: p.number,
            });
        }
        if p.type_guid.is_nil() {
            return Err(BuildError::NilType(p.name.clone()));
        }
        if let Some(g) = p.unique_guid {
            if g.is_nil() {
                return Err(BuildError::NilUniqueGuid(p.name.clone()));
            }
            if let Some(first) = guids.insert(g, &p.name) {
                return Err(BuildError::DuplicateUniqueGuid {
                    guid: g,
                    first: first.to_owned(),
                    second: p.name.clone(),
                });
            }
        }
        if p.last_lba < p.first_lba {
            return Err(BuildError::Empty {
                name: p.name.clone(),
                first: p.first_lba,
                last: p.last_lba,
            });
        }
        if p.first_lba < first_usable || p.last_lba > last_usable {
            return Err(BuildError::OutsideUsable {
                name: p.name.clone(),
                first: p.first_lba,
                last: p.last_lba,
                first_usable,
                last_usable,
            });
        }
    }

    let mut by_start: Vec<_> = table.partitions.iter().collect();
    by_start.sort_by_key(|p| (p.first_lba, p.last_lba));
    for pair in by_start.windows(2) {
        if let [a, b] = pair {
            if b.first_lba <= a.last_lba {
                return Err(BuildError::Overlap {
                    a: a.name.clone(),
                    a_first: a.first_lba,
                    a_last: a.last_lba,
                    b: b.name.clone(),
                    b_first: b.first_lba,
                    b_last: b.last_lba,
                });
            }
        }
    }
    Ok(())
}

/// Writes the GPT onto an empty in-memory disk and reads it back with the
/// reader `plan` and [`verify`] use: the bytes are proven to say what the
/// table says before anything touches a real disk.
fn self_check_gpt(gpt: &NewGpt) -> Result<(), BuildError> {
    let mut disk = SparseDisk::new(gpt.disk_sectors.saturating_mul(gpt.sector_size));
    let mut plan = plan_writes(&mut disk, gpt).map_err(|e| BuildError::SelfCheck(e.to_string()))?;
    // The disk is blank: zeroing it again proves nothing and would cost time
    // for a layout with a large primary_gpt.
    plan.steps.retain(|s| s.content != Fill::Zeros);
    write(&mut disk, &plan, |_| Ok(())).map_err(|e| BuildError::SelfCheck(e.to_string()))?;
    verify(&mut disk, &plan, gpt).map_err(|e| BuildError::SelfCheck(e.to_string()))?;
    Ok(())
}

/// What a write step puts on the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fill {
    /// These bytes (a whole number of sectors).
    Bytes(Vec<u8>),
    /// Zeros.
    Zeros,
}

/// One contiguous write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptWrite {
    /// First sector.
    pub lba: u64,
    /// Number of sectors (of [`GptWrites::sector_size`] bytes).
    pub sectors: u64,
    /// What this is, for `--dry-run` and messages ("backup GPT header").
    pub what: String,
    /// True when the step only destroys something old (a zap).
    pub zap: bool,
    /// The bytes.
    pub content: Fill,
    /// Make everything up to here durable before the next step.
    pub barrier_after: bool,
}

/// The ordered writes that replace a disk's GPT (see the module doc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GptWrites {
    /// Bytes of a sector: the unit of every step's `lba` and `sectors`.
    pub sector_size: u64,
    /// In order.
    pub steps: Vec<GptWrite>,
}

/// The first 512 bytes of sector `lba` (of `ss` bytes): where a header or
/// an MBR is.
fn read_sector<R: Read + Seek>(r: &mut R, lba: u64, ss: u64) -> io::Result<[u8; SECTOR]> {
    r.seek(SeekFrom::Start(lba * ss))?;
    let mut s = [0u8; SECTOR];
    r.read_exact(&mut s)?;
    Ok(s)
}

/// A valid GPT header claiming to be at `lba`, read from there.
fn header_at<R: Read + Seek>(r: &mut R, lba: u64, ss: u64) -> io::Result<Option<GptHeader>> {
    let s = read_sector(r, lba, ss)?;
    Ok(GptHeader::decode(&s).ok().filter(|h| h.my_lba == lba))
}

/// Plans the writes for `gpt` on `dev`, reading the disk's current state to
/// find stale GPT headers outside the regions the new GPT overwrites.
pub fn plan_writes<R: Read + Seek>(dev: &mut R, gpt: &NewGpt) -> io::Result<GptWrites> {
    let n = gpt.disk_sectors;
    let ss = gpt.sector_size;
    let backup_entry_lba = gpt.backup_entry_lba();
    let old_primary = header_at(dev, 1, ss)?;
    let old_backup = header_at(dev, n - 1, ss)?.is_some();
    let old_mbr = read_sector(dev, 0, ss)?;

    let replacing = |what: &str, old: bool| {
        if old {
            format!("{what} (replaces the old one)")
        } else {
            what.to_owned()
        }
    };
    // A 4096-byte LBA 0 holds the MBR in its first 512 bytes, zeros after.
    let mut mbr = gpt.mbr().to_vec();
    mbr.resize(ss as usize, 0);
    if let (Some(dst), Some(src)) = (
        mbr.get_mut(..MBR_BOOT_CODE_BYTES),
        old_mbr.get(..MBR_BOOT_CODE_BYTES),
    ) {
        dst.copy_from_slice(src);
    }
    let mut steps = vec![
        GptWrite {
            lba: 0,
            sectors: 1,
            what: replacing(
                "protective MBR, boot-code area kept",
                old_mbr.get(510..512) == Some(&[0x55, 0xAA][..]),
            ),
            zap: false,
            content: Fill::Bytes(mbr),
            barrier_after: false,
        },
        GptWrite {
            lba: backup_entry_lba,
            sectors: gpt.entry_array_sectors(),
            what: replacing("backup GPT entries", old_backup),
            zap: false,
            content: Fill::Bytes(gpt.array.clone()),
            barrier_after: false,
        },
        GptWrite {
            lba: n - 1,
            sectors: 1,
            what: replacing("backup GPT header", old_backup),
            zap: false,
            content: Fill::Bytes(gpt.backup_header().encode_sector(ss as usize)),
            barrier_after: true,
        },
    ];

    // Stale headers: where the old primary says its backup is, and where the
    // old protective MBR says the disk ended.
    let mut candidates = BTreeSet::new();
    if let Some(h) = &old_primary {
        candidates.insert(h.alternate_lba);
    }
    if is_protective_mbr(&old_mbr) {
        let le32 = |off: usize| {
            old_mbr
                .get(off..off + 4)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map(u32::from_le_bytes)
        };
        if let (Some(start), Some(size)) = (le32(454), le32(458)) {
            // A saturated size says "2 TiB or more", not where the disk ended.
            if size != u32::MAX && size > 0 {
                candidates.insert(u64::from(start) + u64::from(size) - 1);
            }
        }
    }
    for lba in candidates {
        // Regions the new GPT overwrites anyway are not listed twice.
        if lba < gpt.header.first_usable_lba || lba >= backup_entry_lba {
            continue;
        }
        if header_at(dev, lba, ss)?.is_some() {
            steps.push(GptWrite {
                lba,
                sectors: 1,
                what: format!(
                    "stale backup GPT header of a {}-sector disk",
                    lba.saturating_add(1)
                ),
                zap: true,
                content: Fill::Zeros,
                barrier_after: false,
            });
        }
    }

    let min_first = min_first_usable_lba(ss);
    let gap = gpt.header.first_usable_lba - min_first;
    if gap > 0 {
        steps.push(GptWrite {
            lba: min_first,
            sectors: gap,
            what: "sectors between the primary entries and the first usable LBA".into(),
            zap: true,
            content: Fill::Zeros,
            barrier_after: false,
        });
    }
    steps.push(GptWrite {
        lba: PRIMARY_ENTRY_LBA,
        sectors: gpt.entry_array_sectors(),
        what: replacing("primary GPT entries", old_primary.is_some()),
        zap: false,
        content: Fill::Bytes(gpt.array.clone()),
        barrier_after: true,
    });
    steps.push(GptWrite {
        lba: 1,
        sectors: 1,
        what: replacing("primary GPT header", old_primary.is_some()),
        zap: false,
        content: Fill::Bytes(gpt.header.encode_sector(ss as usize)),
        barrier_after: true,
    });
    Ok(GptWrites {
        sector_size: ss,
        steps,
    })
}

/// Carries out a [`GptWrites`] in order, calling `barrier` where a step asks
/// for one (the caller passes `fsync`; image tests may pass a no-op).
pub fn write<D: Write + Seek>(
    dev: &mut D,
    plan: &GptWrites,
    mut barrier: impl FnMut(&mut D) -> io::Result<()>,
) -> io::Result<()> {
    let zeros = vec![0u8; ZERO_CHUNK];
    let ss = plan.sector_size;
    for step in &plan.steps {
        dev.seek(SeekFrom::Start(step.lba * ss))?;
        match &step.content {
            Fill::Bytes(b) => dev.write_all(b)?,
            Fill::Zeros => {
                let mut left = step.sectors * ss;
                while left > 0 {
                    let n = left.min(ZERO_CHUNK as u64) as usize;
                    dev.write_all(zeros.get(..n).unwrap_or(&zeros))?;
                    left -= n as u64;
                }
            }
        }
        if step.barrier_after {
            barrier(dev)?;
        }
    }
    Ok(())
}

/// Why a written GPT does not read back as written.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Reading failed.
    #[error("reading back: {0}")]
    Io(#[from] io::Error),
    /// A written region holds other bytes.
    #[error("{what} at LBA {lba} reads back different from what was written")]
    Mismatch {
        /// The step's description.
        what: String,
        /// First differing sector.
        lba: u64,
    },
    /// The reader does not see the table that was written.
    #[error("the disk does not read back as the new GPT: {0}")]
    Table(String),
}

/// Reads every written region back and compares it, then parses the disk and
/// checks both copies are valid, agree, and hold exactly the new table.
pub fn verify<R: Read + Seek>(
    dev: &mut R,
    plan: &GptWrites,
    gpt: &NewGpt,
) -> Result<DiskGpt, VerifyError> {
    let mut buf = vec![0u8; ZERO_CHUNK];
    let ss = plan.sector_size;
    for step in &plan.steps {
        dev.seek(SeekFrom::Start(step.lba * ss))?;
        let total = step.sectors * ss;
        let mut done = 0u64;
        while done < total {
            let n = (total - done).min(ZERO_CHUNK as u64) as usize;
            let chunk = buf.get_mut(..n).unwrap_or_default();
            dev.read_exact(chunk)?;
            let same = match &step.content {
                Fill::Zeros => chunk.iter().all(|&b| b == 0),
                Fill::Bytes(want) => want.get(done as usize..done as usize + n) == Some(chunk),
            };
            if !same {
                let want = |i: usize| match &step.content {
                    Fill::Zeros => Some(0),
                    Fill::Bytes(b) => b.get(done as usize + i).copied(),
                };
                let first_bad = chunk
                    .iter()
                    .enumerate()
                    .position(|(i, &b)| want(i) != Some(b))
                    .unwrap_or(0) as u64;
                return Err(VerifyError::Mismatch {
                    what: step.what.clone(),
                    lba: step.lba + (done + first_bad) / ss,
                });
            }
            done += n as u64;
        }
    }
    let found = read::read_in(dev, gpt.disk_sectors, gpt.sector_size)
        .map_err(|e| VerifyError::Table(e.to_string()))?
        .ok_or_else(|| VerifyError::Table("no GPT found".into()))?;
    if found.copy != GptCopy::Primary {
        return Err(VerifyError::Table("the primary GPT is not valid".into()));
    }
    if let Some(p) = &found.other_copy_problem {
        return Err(VerifyError::Table(p.clone()));
    }
    if found.header != gpt.header {
        return Err(VerifyError::Table("the primary header differs".into()));
    }
    if found.entries != gpt.entries {
        return Err(VerifyError::Table("the entries differ".into()));
    }
    Ok(found)
}

/// An in-memory disk that stores only non-zero 512-byte blocks: big enough
/// for any real size, small enough to self-check every GPT before writing
/// it.
struct SparseDisk {
    len: u64,
    pos: u64,
    sectors: BTreeMap<u64, Box<[u8; SECTOR]>>,
}

impl SparseDisk {
    fn new(bytes: u64) -> SparseDisk {
        SparseDisk {
            len: bytes,
            pos: 0,
            sectors: BTreeMap::new(),
        }
    }
}

impl Read for SparseDisk {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let lba = self.pos / SECTOR as u64;
        let off = (self.pos % SECTOR as u64) as usize;
        let n = buf
            .len()
            .min(SECTOR - off)
            .min(self.len.saturating_sub(self.pos) as usize);
        let src = self.sectors.get(&lba).map(|s| s.as_slice());
        for (i, b) in buf.iter_mut().take(n).enumerate() {
            *b = src.and_then(|s| s.get(off + i)).copied().unwrap_or(0);
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Write for SparseDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.pos >= self.len && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                "write past the end",
            ));
        }
        let lba = self.pos / SECTOR as u64;
        let off = (self.pos % SECTOR as u64) as usize;
        let n = buf
            .len()
            .min(SECTOR - off)
            .min((self.len - self.pos) as usize);
        let sector = self
            .sectors
            .entry(lba)
            .or_insert_with(|| Box::new([0u8; SECTOR]));
        for (i, b) in buf.iter().take(n).enumerate() {
            if let Some(d) = sector.get_mut(off + i) {
                *d = *b;
            }
        }
        if sector.iter().all(|&b| b == 0) {
            self.sectors.remove(&lba);
        }
        self.pos += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for SparseDisk {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Ok(self.pos)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::guid::EFI_SYSTEM;
    use crate::layout::Partition;
    use std::io::Cursor;

    /// 4 MiB: small enough to copy around, big enough for a real table.
    const N: u64 = 8192;

    fn part(number: u32, name: &str, first: u64, last: u64) -> Partition {
        Partition::basic_data(number, name, first, last)
    }

    /// Out of physical order, with a gap in the numbers (4 unused), one fixed
    /// GUID, one EFI type: what NVIDIA layouts look like.
    fn table(n: u64, first_usable: u64) -> PartitionTable {
        let mut esp = part(5, "esp", 3000, 3999);
        esp.type_guid = EFI_SYSTEM;
        let mut app = part(1, "APP", 4000, n - 34);
        app.unique_guid = Some(Guid::parse("11111111-2222-3333-4444-555555555555").unwrap());
        app.fills_disk = true;
        PartitionTable {
            sector_size: 512,
            disk_sectors: n,
            first_usable_lba: first_usable,
            last_usable_lba: n - 34,
            partitions: vec![
                app,
                part(2, "mts-bootpack", first_usable, first_usable + 999),
                part(3, "kernel", 2000, 2999),
                esp,
            ],
        }
    }

    /// A deterministic GUID source: 1, 2, 3, ... in the last byte.
    fn counter() -> impl FnMut() -> io::Result<Guid> {
        let mut i = 0u8;
        move || {
            i += 1;
            let mut b = [0u8; 16];
            b[15] = i;
            b[6] = 0x40;
            Ok(Guid::from_bytes(b))
        }
    }

    fn u64_at(b: &[u8], off: usize) -> u64 {
        crate::bytes::le64(b, off).unwrap()
    }

    fn u32_at(b: &[u8], off: usize) -> u32 {
        crate::bytes::le32(b, off).unwrap()
    }

    fn blank(n: u64) -> Cursor<Vec<u8>> {
        Cursor::new(vec![0u8; (n * 512) as usize])
    }

    fn write_onto(disk: &mut Cursor<Vec<u8>>, gpt: &NewGpt) -> GptWrites {
        let plan = plan_writes(disk, gpt).unwrap();
        write(disk, &plan, |_| Ok(())).unwrap();
        plan
    }

    fn sector(disk: &Cursor<Vec<u8>>, lba: u64) -> &[u8] {
        &disk.get_ref()[(lba * 512) as usize..((lba + 1) * 512) as usize]
    }

    #[test]
    fn header_and_entry_bytes_are_exact() {
        let gpt = build_with(&table(N, 40), None, &mut counter()).unwrap();
        let mut disk = blank(N);
        write_onto(&mut disk, &gpt);
        let img = disk.get_ref();

        // Protective MBR (bytes pinned in gpt::tests), sized for this disk.
        assert_eq!(sector(&disk, 0), &protective_mbr(N)[..]);
        assert_eq!(u32_at(img, 458), (N - 1) as u32);

        for (lba, my, alt, entries) in [(1, 1, N - 1, 2), (N - 1, N - 1, 1, N - 33)] {
            let h = sector(&disk, lba);
            assert_eq!(&h[0..8], b"EFI PART");
            assert_eq!(u32_at(h, 8), 0x0001_0000, "revision");
            assert_eq!(u32_at(h, 12), 92, "header size");
            assert_eq!(u32_at(h, 20), 0, "reserved");
            assert_eq!(u64_at(h, 24), my, "MyLBA");
            assert_eq!(u64_at(h, 32), alt, "AlternateLBA");
            assert_eq!(u64_at(h, 40), 40, "FirstUsableLBA: the layout's");
            assert_eq!(u64_at(h, 48), N - 34, "LastUsableLBA: UEFI-correct N-34");
            assert_eq!(u64_at(h, 72), entries, "PartitionEntryLBA");
            assert_eq!(u32_at(h, 80), 128);
            assert_eq!(u32_at(h, 84), 128);
            assert!(h[92..].iter().all(|&b| b == 0));
            // CRCs computed independently of the encoder.
            let mut covered = h[..92].to_vec();
            covered[16..20].fill(0);
            assert_eq!(u32_at(h, 16), crc32fast::hash(&covered), "header CRC");
            let array = &img[(entries * 512) as usize..((entries + 32) * 512) as usize];
            assert_eq!(u32_at(h, 88), crc32fast::hash(array), "entries CRC");
        }
        // Both arrays are the same bytes; entry n sits in slot n-1; slot 4
        // (number 4, unused) stays zero.
        let primary = &img[1024..1024 + 16384];
        let backup = &img[((N - 33) * 512) as usize..((N - 1) * 512) as usize];
        assert_eq!(primary, backup);
        let slot = |n: usize| &primary[(n - 1) * 128..n * 128];
        assert_eq!(u64_at(slot(1), 32), 4000);
        assert_eq!(u64_at(slot(1), 40), N - 34);
        assert_eq!(&slot(1)[16..20], &[0x11, 0x11, 0x11, 0x11]);
        assert_eq!(u64_at(slot(2), 32), 40);
        assert_eq!(&slot(2)[56..62], &[b'm', 0, b't', 0, b's', 0]);
        assert_eq!(
            &slot(5)[0..4],
            &[0x28, 0x73, 0x2a, 0xc1],
            "EFI type, mixed-endian"
        );
        assert!(slot(4).iter().all(|&b| b == 0));
        assert!(primary[5 * 128..].iter().all(|&b| b == 0));
        for n in 1..=5 {
            assert_eq!(u64_at(slot(n), 48), 0, "attributes");
        }
        // Gap 34..39 zero, nothing else written.
        assert!(img[34 * 512..40 * 512].iter().all(|&b| b == 0));
        assert!(img[40 * 512..((N - 33) * 512) as usize]
            .iter()
            .all(|&b| b == 0));
    }

    #[test]
    fn the_mbr_boot_code_area_is_kept_and_the_records_replaced() {
        let mut disk = blank(N);
        // Boot code (or the install journal) and a stale DOS record 2.
        disk.get_mut()[..440].fill(0x77);
        disk.get_mut()[462..478].fill(0x11);
        disk.get_mut()[510..512].copy_from_slice(&[0x55, 0xAA]);
        let gpt = build(&table(N, 34), None).unwrap();
        let plan = write_onto(&mut disk, &gpt);
        assert!(sector(&disk, 0)[..440].iter().all(|&b| b == 0x77));
        assert_eq!(&sector(&disk, 0)[440..], &protective_mbr(N)[440..]);
        assert!(plan.steps[0].what.contains("replaces the old one"));
        verify(&mut disk, &plan, &gpt).unwrap();
        assert_eq!(MBR_BOOT_CODE_BYTES, crate::install::journal::AREA);
    }

    #[test]
    fn round_trip_through_the_reader() {
        let t = table(N, 34);
        let gpt = build(&t, None).unwrap();
        let mut disk = blank(N);
        let plan = write_onto(&mut disk, &gpt);
        let back = verify(&mut disk, &plan, &gpt).unwrap();
        assert_eq!(back.copy, GptCopy::Primary);
        assert_eq!(back.other_copy_problem, None);
        let got: Vec<_> = back
            .entries
            .iter()
            .map(|(n, e)| (*n, e.name.as_str(), e.first_lba, e.last_lba, e.type_guid))
            .collect();
        let mut want: Vec<_> = t
            .partitions
            .iter()
            .map(|p| {
                (
                    p.number,
                    p.name.as_str(),
                    p.first_lba,
                    p.last_lba,
                    p.type_guid,
                )
            })
            .collect();
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn open_guids_are_random_and_distinct_fixed_ones_kept() {
        let t = table(N, 34);
        let a = build(&t, None).unwrap();
        let b = build(&t, None).unwrap();
        let guids: BTreeSet<Guid> = a.entries.iter().map(|(_, e)| e.unique_guid).collect();
        assert_eq!(guids.len(), 4);
        assert_eq!(
            a.entries[0].1.unique_guid.to_string(),
            "11111111-2222-3333-4444-555555555555"
        );
        for ((_, x), (_, y)) in a.entries.iter().zip(&b.entries).skip(1) {
            assert_ne!(x.unique_guid, y.unique_guid);
            assert_eq!(x.unique_guid.as_bytes()[6] >> 4, 4, "version 4");
        }
        assert_ne!(a.header.disk_guid, b.header.disk_guid);
    }

    #[test]
    fn a_random_guid_equal_to_a_fixed_one_is_drawn_again() {
        let mut t = table(N, 34);
        let mut b = [0u8; 16];
        b[15] = 1;
        b[6] = 0x40;
        t.partitions[1].unique_guid = Some(Guid::from_bytes(b)); // what counter() gives first
        let gpt = build_with(&t, None, &mut counter()).unwrap();
        let guids: BTreeSet<Guid> = gpt.entries.iter().map(|(_, e)| e.unique_guid).collect();
        assert_eq!(guids.len(), 4);
    }

    #[test]
    fn unchanged_partitions_keep_their_guids_on_rewrite() {
        let t = table(N, 34);
        let first = build(&t, None).unwrap();
        let mut disk = blank(N);
        write_onto(&mut disk, &first);
        let current = read::read(&mut disk, N).unwrap().unwrap();

        // Same table again: the very same bytes.
        let again = build(&t, Some(&current)).unwrap();
        assert_eq!(again, first);

        // kernel (3) moves: it gets a new GUID; the others keep theirs.
        let mut moved = t.clone();
        moved.partitions[2].first_lba = 2100;
        let m = build(&moved, Some(&current)).unwrap();
        let guid = |g: &NewGpt, n: u32| {
            g.entries
                .iter()
                .find(|(k, _)| *k == n)
                .unwrap()
                .1
                .unique_guid
        };
        assert_ne!(guid(&m, 3), guid(&first, 3));
        assert_eq!(guid(&m, 2), guid(&first, 2));
        assert_eq!(guid(&m, 5), guid(&first, 5));
        assert_eq!(m.header.disk_guid, first.header.disk_guid);
    }

    #[test]
    fn a_current_guid_is_not_reused_when_the_layout_fixes_it_elsewhere() {
        let t = table(N, 34);
        let first = build(&t, None).unwrap();
        let mut disk = blank(N);
        write_onto(&mut disk, &first);
        let current = read::read(&mut disk, N).unwrap().unwrap();
        let kernel_guid = first
            .entries
            .iter()
            .find(|(n, _)| *n == 3)
            .unwrap()
            .1
            .unique_guid;
        let mut t2 = t.clone();
        t2.partitions[1].unique_guid = Some(kernel_guid); // mts-bootpack now fixes it
        let g = build(&t2, Some(&current)).unwrap();
        let guids: BTreeSet<Guid> = g.entries.iter().map(|(_, e)| e.unique_guid).collect();
        assert_eq!(guids.len(), 4);
    }

    fn refusal(edit: impl FnOnce(&mut PartitionTable)) -> String {
        let mut t = table(N, 34);
        edit(&mut t);
        build(&t, None).unwrap_err().to_string()
    }

    #[test]
    fn every_rule_is_refused_with_a_message_naming_the_partition() {
        type Edit = Box<dyn FnOnce(&mut PartitionTable)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|t| t.sector_size = 1024), "sector size 1024"),
            (
                Box::new(|t| t.first_usable_lba = 33),
                "first usable LBA 33 is below 34",
            ),
            (
                Box::new(|t| {
                    t.disk_sectors = 60;
                    t.last_usable_lba = 26;
                    t.partitions.clear();
                }),
                "disk of 60 sectors is too small",
            ),
            (
                Box::new(|t| t.last_usable_lba = N - 33),
                "last usable LBA 8159 is not 8158",
            ),
            (
                Box::new(|t| t.partitions[1].number = 0),
                "'mts-bootpack': number 0",
            ),
            (
                Box::new(|t| t.partitions[1].number = 129),
                "'mts-bootpack': number 129",
            ),
            (
                Box::new(|t| t.partitions[2].number = 1),
                "'APP' and 'kernel' both have number 1",
            ),
            (
                Box::new(|t| t.partitions[2].name.clear()),
                "partition 3 has an empty name",
            ),
            (
                Box::new(|t| t.partitions[2].name = "x".repeat(37)),
                "37 UTF-16 code units",
            ),
            (
                Box::new(|t| t.partitions[2].name = "a\0b".into()),
                "partition 3: name contains a NUL",
            ),
            (
                Box::new(|t| t.partitions[2].name = "APP".into()),
                "partitions 1 and 3 are both named 'APP'",
            ),
            (
                Box::new(|t| t.partitions[2].type_guid = Guid::NIL),
                "'kernel': the type GUID is nil",
            ),
            (
                Box::new(|t| t.partitions[2].unique_guid = Some(Guid::NIL)),
                "'kernel': the unique GUID is nil",
            ),
            (
                Box::new(|t| t.partitions[2].unique_guid = t.partitions[0].unique_guid),
                "'APP' and 'kernel' have the same unique GUID",
            ),
            (
                Box::new(|t| t.partitions[2].last_lba = 1999),
                "'kernel': last LBA 1999 is before first LBA 2000",
            ),
            (
                Box::new(|t| t.partitions[1].first_lba = 33),
                "'mts-bootpack': sectors 33..=1033 are outside the usable range 34..=8158",
            ),
            (
                Box::new(|t| t.partitions[0].last_lba = N - 33),
                "'APP': sectors 4000..=8159 are outside",
            ),
            (
                Box::new(|t| t.partitions[2].last_lba = 3000),
                "'kernel' (2000..=3000) and 'esp' (3000..=3999) overlap",
            ),
            (
                Box::new(|t| {
                    t.partitions = (1..=129)
                        .map(|n| part(n, &format!("p{n}"), 34, 34))
                        .collect()
                }),
                "129 partitions do not fit",
            ),
        ];
        for (edit, want) in cases {
            let got = refusal(edit);
            assert!(got.contains(want), "got '{got}', want '{want}'");
        }
    }

    #[test]
    fn a_partition_inside_another_is_an_overlap() {
        let got = refusal(|t| t.partitions.push(part(9, "inner", 2100, 2200)));
        assert!(
            got.contains("'kernel' (2000..=2999) and 'inner' (2100..=2200) overlap"),
            "{got}"
        );
    }

    #[test]
    fn an_empty_table_is_a_valid_gpt() {
        let mut t = table(N, 34);
        t.partitions.clear();
        let gpt = build(&t, None).unwrap();
        assert!(gpt.entries.is_empty());
        assert!(gpt.entry_array().iter().all(|&b| b == 0));
    }

    /// Writes a GPT for an `old_n`-sector disk into `disk` as another tool
    /// would have (primary + backup at old_n − 1), with a pattern elsewhere.
    fn old_disk(n: u64, old_n: u64) -> (Cursor<Vec<u8>>, NewGpt) {
        let mut disk = Cursor::new(vec![0xA5u8; (n * 512) as usize]);
        let mut t = table(old_n, 34);
        t.partitions.truncate(2);
        t.partitions[0].last_lba = old_n - 34;
        let old = build(&t, None).unwrap();
        // Only the GPT structures, like sgdisk would; the rest keeps the pattern.
        let plan = plan_writes(&mut Cursor::new(vec![0u8; (old_n * 512) as usize]), &old).unwrap();
        write(&mut disk, &plan, |_| Ok(())).unwrap();
        (disk, old)
    }

    #[test]
    fn stale_backup_of_a_smaller_disk_is_wiped_and_nothing_else_touched() {
        let old_n = N - 2048;
        let (mut disk, _) = old_disk(N, old_n);
        assert_eq!(&sector(&disk, old_n - 1)[..8], b"EFI PART");

        let gpt = build(&table(N, 40), None).unwrap();
        let plan = write_onto(&mut disk, &gpt);
        let zaps: Vec<_> = plan
            .steps
            .iter()
            .filter(|s| s.zap)
            .map(|s| (s.lba, s.sectors))
            .collect();
        assert_eq!(zaps, [(old_n - 1, 1), (34, 6)]);
        assert!(plan
            .steps
            .iter()
            .any(|s| s.what.contains(&format!("{old_n}-sector disk"))));

        assert!(
            sector(&disk, old_n - 1).iter().all(|&b| b == 0),
            "stale header zeroed"
        );
        // Its old entry array (found only through that header) and every
        // sector the GPT does not own keep their bytes.
        let img = disk.get_ref();
        let untouched = |lba: u64| {
            img[(lba * 512) as usize..((lba + 1) * 512) as usize]
                .iter()
                .all(|&b| b == 0xA5)
        };
        for lba in (40..N - 33).filter(|&l| l != old_n - 1 && !(old_n - 33..old_n - 1).contains(&l))
        {
            assert!(untouched(lba), "LBA {lba} was changed");
        }
        assert!(
            !untouched(old_n - 33),
            "old backup array is still the old array"
        );
        verify(&mut disk, &plan, &gpt).unwrap();
        // sgdisk-like readers no longer find a second backup anywhere.
        assert!(GptHeader::decode(sector(&disk, old_n - 1)).is_err());
    }

    #[test]
    fn stale_backup_found_through_the_protective_mbr_alone() {
        // The old primary header is gone (damaged), but the old MBR still says
        // how big the disk was.
        let old_n = N - 1000;
        let (mut disk, _) = old_disk(N, old_n);
        disk.get_mut()[512..1024].fill(0);
        let plan = plan_writes(&mut disk, &build(&table(N, 34), None).unwrap()).unwrap();
        assert_eq!(
            plan.steps
                .iter()
                .filter(|s| s.zap)
                .map(|s| s.lba)
                .collect::<Vec<_>>(),
            [old_n - 1]
        );
    }

    #[test]
    fn data_that_is_not_a_gpt_header_is_never_zapped() {
        // The MBR and primary point at LBA 5000, which holds data: left alone.
        let (mut disk, old) = old_disk(N, N);
        let mut h = old.header.clone();
        h.alternate_lba = 5000;
        disk.get_mut()[512..1024].copy_from_slice(&h.encode());
        let plan = plan_writes(&mut disk, &build(&table(N, 34), None).unwrap()).unwrap();
        assert!(plan.steps.iter().all(|s| !s.zap));
        // A header copied to the wrong place (MyLBA says elsewhere) is not ours to zap either.
        let backup = sector(&disk, N - 1).to_vec();
        disk.get_mut()[5000 * 512..5001 * 512].copy_from_slice(&backup);
        let plan = plan_writes(&mut disk, &build(&table(N, 34), None).unwrap()).unwrap();
        assert!(plan.steps.iter().all(|s| !s.zap));
    }

    #[test]
    fn order_mbr_and_backup_then_primary_entries_then_primary_header() {
        let (mut disk, _) = old_disk(N, N - 2048);
        let plan = plan_writes(&mut disk, &build(&table(N, 40), None).unwrap()).unwrap();
        let order: Vec<_> = plan
            .steps
            .iter()
            .map(|s| (s.lba, s.barrier_after))
            .collect();
        assert_eq!(
            order,
            [
                (0, false),
                (N - 33, false),
                (N - 1, true),
                (N - 2049, false),
                (34, false),
                (2, true),
                (1, true)
            ]
        );
    }

    /// A tiny PRNG for shuffling (no dependency, reproducible).
    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    /// Power cut after any sector, with the writes of each stage reaching the
    /// disk in any order: the disk always holds a complete GPT, old or new.
    #[test]
    fn a_power_cut_at_any_sector_leaves_the_old_or_the_new_table() {
        for (old_n, first_usable) in [(N, 34), (N - 2048, 40)] {
            let (start, old) = old_disk(N, old_n);
            let new = build(&table(N, first_usable), None).unwrap();
            let plan = plan_writes(&mut start.clone(), &new).unwrap();

            // Sector writes grouped by stage.
            let mut stages: Vec<Vec<(u64, Vec<u8>)>> = vec![Vec::new()];
            for step in &plan.steps {
                for i in 0..step.sectors {
                    let bytes = match &step.content {
                        Fill::Bytes(b) => b[(i * 512) as usize..((i + 1) * 512) as usize].to_vec(),
                        Fill::Zeros => vec![0; 512],
                    };
                    stages.last_mut().unwrap().push((step.lba + i, bytes));
                }
                if step.barrier_after {
                    stages.push(Vec::new());
                }
            }
            for seed in 0..20u64 {
                let mut s = seed;
                let mut disk = start.clone();
                for stage in &stages {
                    let mut order = stage.clone();
                    for i in (1..order.len()).rev() {
                        order.swap(i, (lcg(&mut s) % (i as u64 + 1)) as usize);
                    }
                    for (lba, bytes) in order {
                        disk.get_mut()[(lba * 512) as usize..((lba + 1) * 512) as usize]
                            .copy_from_slice(&bytes);
                        let seen = read::read(&mut disk, N)
                            .unwrap_or_else(|e| panic!("after LBA {lba}: {e}"))
                            .unwrap_or_else(|| panic!("after LBA {lba}: no GPT"));
                        let names = |e: &[(u32, GptEntry)]| {
                            e.iter()
                                .map(|(n, e)| (*n, e.first_lba, e.last_lba))
                                .collect::<Vec<_>>()
                        };
                        let got = names(&seen.entries);
                        assert!(
                            got == names(&old.entries) || got == names(&new.entries),
                            "after LBA {lba} (seed {seed}): neither table"
                        );
                    }
                }
                verify(&mut disk, &plan, &new).unwrap();
            }
        }
    }

    #[test]
    fn verify_finds_a_sector_that_did_not_land() {
        let gpt = build(&table(N, 40), None).unwrap();
        let mut disk = blank(N);
        let plan = write_onto(&mut disk, &gpt);
        disk.get_mut()[((N - 20) * 512 + 7) as usize] ^= 1;
        match verify(&mut disk, &plan, &gpt) {
            Err(VerifyError::Mismatch { what, lba }) => {
                assert_eq!(lba, N - 20);
                assert!(what.contains("backup GPT entries"), "{what}");
            }
            other => panic!("{other:?}"),
        }
        let mut disk = blank(N);
        let plan = write_onto(&mut disk, &gpt);
        disk.get_mut()[36 * 512] = 1; // the zeroed gap
        assert!(matches!(
            verify(&mut disk, &plan, &gpt),
            Err(VerifyError::Mismatch { lba: 36, .. })
        ));
    }

    #[test]
    fn a_huge_disk_and_a_huge_primary_gpt_cost_no_memory() {
        // 2^40 sectors (512 TiB) with TX2 stock's 2 MiB primary_gpt: the
        // self-check runs on a sparse in-memory disk.
        let n = 1u64 << 40;
        let mut t = table(n, 4097);
        t.partitions.retain(|p| p.number == 1);
        t.partitions[0].first_lba = 4104;
        let gpt = build(&t, None).unwrap();
        assert_eq!(gpt.header.last_usable_lba, n - 34);
        assert_eq!(&gpt.mbr()[458..462], &[0xFF; 4]);
    }

    #[test]
    fn sparse_disk_reads_what_was_written() {
        let mut d = SparseDisk::new(4 * 512);
        d.seek(SeekFrom::Start(510)).unwrap();
        d.write_all(&[1, 2, 3, 4]).unwrap();
        d.seek(SeekFrom::Start(0)).unwrap();
        let mut all = vec![0u8; 2048];
        d.read_exact(&mut all).unwrap();
        assert_eq!(&all[508..516], &[0, 0, 1, 2, 3, 4, 0, 0]);
        assert!(d.read_exact(&mut [0u8; 1]).is_err(), "end of disk");
        d.seek(SeekFrom::Start(2048)).unwrap();
        assert!(d.write_all(&[1]).is_err());
    }

    /// The same table on a disk of 4096-byte sectors (a 4Kn NVMe): every
    /// structure in its own unit, bytes pinned field by field.
    #[test]
    fn header_entries_and_backup_at_4096_bytes_a_sector() {
        const SS: u64 = 4096;
        let n = 4096u64; // 16 MiB
        let mut t = table(n, 6);
        t.sector_size = SS;
        t.last_usable_lba = n - 6;
        t.partitions[0].last_lba = n - 6;
        let gpt = build_with(&t, None, &mut counter()).unwrap();
        assert_eq!(gpt.header.last_usable_lba, n - 6);
        assert_eq!(gpt.backup_entry_lba(), n - 5);
        let mut disk = Cursor::new(vec![0u8; (n * SS) as usize]);
        let plan = write_onto(&mut disk, &gpt);
        assert_eq!(plan.sector_size, SS);
        let img = disk.get_ref();
        let at = |lba: u64| &img[(lba * SS) as usize..((lba + 1) * SS) as usize];

        // LBA 0: the protective MBR in its first 512 bytes, zeros after.
        assert_eq!(&at(0)[..512], &protective_mbr(n)[..]);
        assert_eq!(u32_at(at(0), 458), (n - 1) as u32, "size in 4096-byte LBAs");
        assert!(at(0)[512..].iter().all(|&b| b == 0));
        for (lba, my, alt, entries) in [(1, 1, n - 1, 2), (n - 1, n - 1, 1, n - 5)] {
            let h = at(lba);
            assert_eq!(&h[0..8], b"EFI PART");
            assert_eq!(u32_at(h, 12), 92);
            assert_eq!(u64_at(h, 24), my, "MyLBA");
            assert_eq!(u64_at(h, 32), alt, "AlternateLBA");
            assert_eq!(u64_at(h, 40), 6, "FirstUsableLBA");
            assert_eq!(u64_at(h, 48), n - 6, "LastUsableLBA");
            assert_eq!(u64_at(h, 72), entries, "PartitionEntryLBA");
            assert!(
                h[92..].iter().all(|&b| b == 0),
                "the rest of the 4 KiB sector"
            );
            let mut covered = h[..92].to_vec();
            covered[16..20].fill(0);
            assert_eq!(u32_at(h, 16), crc32fast::hash(&covered));
            let array = &img[(entries * SS) as usize..((entries + 4) * SS) as usize];
            assert_eq!(u32_at(h, 88), crc32fast::hash(array));
        }
        let primary = &img[(2 * SS) as usize..(6 * SS) as usize];
        let backup = &img[((n - 5) * SS) as usize..((n - 1) * SS) as usize];
        assert_eq!(primary, backup);
        assert_eq!(
            u64_at(&primary[128..256], 32),
            6,
            "mts-bootpack at the first usable LBA"
        );
        // Nothing else was written.
        assert!(img[(6 * SS) as usize..((n - 5) * SS) as usize]
            .iter()
            .all(|&b| b == 0));
        // The reader in the same unit sees the table; in 512-byte units it
        // sees none (the structures are where a 4Kn reader looks).
        let back = verify(&mut disk, &plan, &gpt).unwrap();
        assert_eq!(back.entries, gpt.entries);
        assert!(read::read(&mut disk, n * 8).unwrap().is_none());
    }

    #[test]
    fn at_4096_a_larger_primary_gpt_leaves_a_zeroed_gap_and_the_order_holds() {
        const SS: u64 = 4096;
        let n = 4096u64;
        let mut t = table(n, 513); // a 2 MiB primary_gpt: 1 + 512 sectors
        t.sector_size = SS;
        t.last_usable_lba = n - 6;
        t.partitions[0].last_lba = n - 6;
        t.partitions[1].first_lba = 513;
        t.partitions[1].last_lba = 1000;
        t.partitions[2].first_lba = 1001;
        t.partitions[3].first_lba = 3000;
        let gpt = build(&t, None).unwrap();
        let mut disk = Cursor::new(vec![0xA5u8; (n * SS) as usize]);
        let plan = plan_writes(&mut disk, &gpt).unwrap();
        let order: Vec<_> = plan
            .steps
            .iter()
            .map(|s| (s.lba, s.sectors, s.barrier_after))
            .collect();
        assert_eq!(
            order,
            [
                (0, 1, false),
                (n - 5, 4, false),
                (n - 1, 1, true),
                (6, 507, false),
                (2, 4, true),
                (1, 1, true)
            ]
        );
        write(&mut disk, &plan, |_| Ok(())).unwrap();
        verify(&mut disk, &plan, &gpt).unwrap();
        let img = disk.get_ref();
        assert!(img[..440].iter().all(|&b| b == 0xA5), "boot code kept");
        assert!(img[(6 * SS) as usize..(513 * SS) as usize]
            .iter()
            .all(|&b| b == 0));
        assert!(img[(513 * SS) as usize..((n - 5) * SS) as usize]
            .iter()
            .all(|&b| b == 0xA5));
    }

    #[test]
    fn limits_at_4096_bytes_a_sector() {
        let mut t = table(N, 6);
        t.sector_size = 4096;
        t.last_usable_lba = N - 6;
        t.partitions[0].last_lba = N - 6;
        t.partitions[1].first_lba = 5;
        let e = build(&t, None).unwrap_err().to_string();
        assert!(
            e.contains("'mts-bootpack': sectors 5..=1005 are outside the usable range 6..="),
            "{e}"
        );
        t.first_usable_lba = 5;
        let e = build(&t, None).unwrap_err().to_string();
        assert!(e.contains("first usable LBA 5 is below 6"), "{e}");
        t.first_usable_lba = 6;
        t.last_usable_lba = N - 34;
        let e = build(&t, None).unwrap_err().to_string();
        assert!(
            e.contains(&format!("last usable LBA {} is not {}", N - 34, N - 6)),
            "{e}"
        );
        let mut big = table(N, 6);
        big.sector_size = 4096;
        big.disk_sectors = i64::MAX as u64 / 4096 + 1;
        let e = build(&big, None).unwrap_err().to_string();
        assert!(e.contains("larger than 2^63 bytes"), "{e}");
    }
}
