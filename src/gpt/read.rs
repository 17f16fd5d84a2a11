//! Reading a disk's GPT: the primary at LBA 1, or the backup at the last LBA
//! when the primary is damaged.
//!
//! Used by `plan` (what is on the disk now), by the post-write verification,
//! and to find user-area partitions by name where there is no udev.

use super::{GptEntry, GptError, GptHeader, SECTOR};
use std::io::{Read, Seek, SeekFrom};

/// Which copy a table was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum GptCopy {
    /// The primary header at LBA 1.
    Primary,
    /// The backup header at the last LBA.
    Backup,
}

/// A GPT as found on a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskGpt {
    /// The header the table was taken from.
    pub header: GptHeader,
    /// Used entries, in number order.
    pub entries: Vec<(u32, GptEntry)>,
    /// Which copy that was.
    pub copy: GptCopy,
    /// Why the other copy was not used or does not agree, if so.
    pub other_copy_problem: Option<String>,
}

/// Why no GPT could be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading the device failed.
    #[error("reading the disk: {0}")]
    Io(#[from] std::io::Error),
    /// Neither copy is valid; both reasons given.
    #[error("no valid GPT (primary: {primary}; backup: {backup})")]
    NoValidGpt {
        /// Why the primary is invalid.
        primary: String,
        /// Why the backup is invalid.
        backup: String,
    },
}

/// Reads `len` bytes from sector `lba` of `ss` bytes (an LBA whose byte
/// offset does not fit a u64 is an error, not an overflow).
fn read_at<R: Read + Seek>(r: &mut R, lba: u64, ss: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let offset = lba.checked_mul(ss).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("LBA {lba} lies beyond 2^64 bytes"),
        )
    })?;
    r.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    r.read_exact(&mut buf)?;
    Ok(buf)
}

/// Reads and validates the header at `lba` and its entry array.
fn read_copy<R: Read + Seek>(
    r: &mut R,
    lba: u64,
    disk_sectors: u64,
    ss: u64,
) -> Result<(GptHeader, Vec<(u32, GptEntry)>), String> {
    let sector = read_at(r, lba, ss, SECTOR).map_err(|e| e.to_string())?;
    let h = GptHeader::decode(&sector).map_err(|e| e.to_string())?;
    if h.my_lba != lba {
        return Err(format!(
            "header at LBA {lba} says it is at LBA {}",
            h.my_lba
        ));
    }
    let last = disk_sectors.saturating_sub(1);
    let array_end = h
        .partition_entry_lba
        .checked_add(h.entry_array_sectors_in(ss))
        .ok_or_else(|| "entry array LBA overflows".to_string())?;
    if h.partition_entry_lba < 2 || array_end > last + 1 {
        return Err(format!(
            "entry array at LBA {}..{} is outside the disk of {disk_sectors} sectors",
            h.partition_entry_lba, array_end
        ));
    }
    if h.first_usable_lba > h.last_usable_lba.saturating_add(1) || h.last_usable_lba >= last {
        return Err(format!(
            "usable range {}..={} does not fit a disk of {disk_sectors} sectors",
            h.first_usable_lba, h.last_usable_lba
        ));
    }
    let len = usize::try_from(h.entry_array_bytes()).map_err(|e| e.to_string())?;
    let array = read_at(r, h.partition_entry_lba, ss, len).map_err(|e| e.to_string())?;
    let entries = h
        .decode_entries(&array)
        .map_err(|e: GptError| e.to_string())?;
    check_entries(&h, &entries)?;
    Ok((h, entries))
}

/// UEFI 2.10 §5.3.3: a used entry starts no later than it ends, lies in the
/// header's usable range, and overlaps no other entry. A copy that breaks
/// this is as unusable as one with a bad CRC (and `plan` must never compute
/// with a partition that ends before it starts).
fn check_entries(h: &GptHeader, entries: &[(u32, GptEntry)]) -> Result<(), String> {
    let mut spans: Vec<(u64, u64, u32)> = Vec::with_capacity(entries.len());
    for (number, e) in entries {
        if e.first_lba > e.last_lba
            || e.first_lba < h.first_usable_lba
            || e.last_lba > h.last_usable_lba
        {
            return Err(format!(
                "partition {number} ('{}') spans LBA {}..={}, outside the usable range {}..={}",
                e.name, e.first_lba, e.last_lba, h.first_usable_lba, h.last_usable_lba
            ));
        }
        spans.push((e.first_lba, e.last_lba, *number));
    }
    spans.sort_unstable();
    for pair in spans.windows(2) {
        if let [(_, a_last, a), (b_first, _, b)] = pair {
            if a_last >= b_first {
                return Err(format!("partitions {a} and {b} overlap"));
            }
        }
    }
    Ok(())
}

/// Reads the GPT of a disk of `disk_sectors` 512-byte sectors:
/// [`read_in`] for 512.
pub fn read<R: Read + Seek>(r: &mut R, disk_sectors: u64) -> Result<Option<DiskGpt>, ReadError> {
    read_in(r, disk_sectors, SECTOR as u64)
}

/// Reads the GPT of a disk of `disk_sectors` sectors of `sector_size` bytes:
/// the primary if it is valid, else the backup at the last LBA. `Ok(None)`
/// when the disk has no GPT signature in either place (a blank or MBR-only
/// disk, or one whose GPT counts sectors of another size).
pub fn read_in<R: Read + Seek>(
    r: &mut R,
    disk_sectors: u64,
    sector_size: u64,
) -> Result<Option<DiskGpt>, ReadError> {
    if disk_sectors < 3 {
        return Ok(None);
    }
    let ss = sector_size.max(SECTOR as u64);
    let primary = read_copy(r, 1, disk_sectors, ss);
    let backup_lba = disk_sectors - 1;
    let backup = read_copy(r, backup_lba, disk_sectors, ss);
    match (primary, backup) {
        (Ok((header, entries)), b) => {
            let other_copy_problem = match b {
                Err(e) => Some(format!("backup GPT: {e}")),
                Ok((bh, be)) if be != entries || bh.disk_guid != header.disk_guid => {
                    Some("backup GPT differs from the primary".to_string())
                }
                Ok(_) if header.alternate_lba != backup_lba => Some(format!(
                    "primary GPT points to a backup at LBA {}, not at the last LBA {backup_lba}",
                    header.alternate_lba
                )),
                Ok(_) => None,
            };
            Ok(Some(DiskGpt {
                header,
                entries,
                copy: GptCopy::Primary,
                other_copy_problem,
            }))
        }
        (Err(p), Ok((header, entries))) => Ok(Some(DiskGpt {
            header,
            entries,
            copy: GptCopy::Backup,
            other_copy_problem: Some(format!("primary GPT: {p}")),
        })),
        (Err(p), Err(b)) => {
            if p == GptError::NoSignature.to_string() && b == GptError::NoSignature.to_string() {
                Ok(None)
            } else {
                Err(ReadError::NoValidGpt {
                    primary: p,
                    backup: b,
                })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::super::{
        crc32, encode_entries, GptHeader, ENTRY_COUNT, ENTRY_SIZE, HEADER_SIZE, REVISION_1_0,
    };
    use super::*;
    use crate::guid::Guid;
    use std::io::{Cursor, Write};

    const N: u64 = 4096;

    fn entry(name: &str, first: u64, last: u64) -> GptEntry {
        GptEntry::basic_data(name, first, last)
    }

    fn image(entries: &[(u32, GptEntry)]) -> Cursor<Vec<u8>> {
        let mut img = Cursor::new(vec![0u8; (N * 512) as usize]);
        let arr = encode_entries(entries, ENTRY_COUNT).unwrap();
        let disk_guid = Guid::random().unwrap();
        let h = |my: u64, alt: u64, elba: u64| GptHeader {
            revision: REVISION_1_0,
            header_size: HEADER_SIZE,
            my_lba: my,
            alternate_lba: alt,
            first_usable_lba: 34,
            last_usable_lba: N - 34,
            disk_guid,
            partition_entry_lba: elba,
            num_partition_entries: ENTRY_COUNT,
            sizeof_partition_entry: ENTRY_SIZE,
            partition_entry_array_crc32: crc32(&arr),
        };
        for (lba, bytes) in [
            (1, h(1, N - 1, 2).encode().to_vec()),
            (2, arr.clone()),
            (N - 33, arr.clone()),
            (N - 1, h(N - 1, 1, N - 33).encode().to_vec()),
        ] {
            img.seek(SeekFrom::Start(lba * 512)).unwrap();
            img.write_all(&bytes).unwrap();
        }
        img
    }

    #[test]
    fn blank_disk_has_no_gpt() {
        let mut img = Cursor::new(vec![0u8; (N * 512) as usize]);
        assert!(read(&mut img, N).unwrap().is_none());
    }

    #[test]
    fn reads_primary_and_notes_agreement() {
        let mut img = image(&[(5, entry("EXTRA", 100, 200)), (1, entry("APP", 34, 99))]);
        let g = read(&mut img, N).unwrap().unwrap();
        assert_eq!(g.copy, GptCopy::Primary);
        assert_eq!(g.other_copy_problem, None);
        assert_eq!(g.entries.len(), 2);
        assert_eq!(g.entries[1].0, 5);
        assert_eq!(g.entries[1].1.name, "EXTRA");
    }

    #[test]
    fn falls_back_to_backup_when_primary_is_damaged() {
        let mut img = image(&[(1, entry("APP", 34, 99))]);
        img.get_mut()[512 + 40] ^= 0xFF; // first_usable in primary header: CRC breaks
        let g = read(&mut img, N).unwrap().unwrap();
        assert_eq!(g.copy, GptCopy::Backup);
        assert!(g.other_copy_problem.unwrap().contains("CRC"));
        assert_eq!(g.entries[0].1.name, "APP");
    }

    #[test]
    fn damaged_entries_are_detected_by_crc() {
        let mut img = image(&[(1, entry("APP", 34, 99))]);
        img.get_mut()[2 * 512 + 56] = b'X'; // primary entry name
        let g = read(&mut img, N).unwrap().unwrap();
        assert_eq!(g.copy, GptCopy::Backup);
        let last = (N - 33) as usize * 512 + 56;
        img.get_mut()[last] = b'Y';
        let err = read(&mut img, N).unwrap_err().to_string();
        assert!(err.contains("entry array CRC"), "{err}");
    }

    /// Fuzz regression (gpt_read): a disk claiming 2^60 sectors made the
    /// byte offset of its last LBA overflow.
    #[test]
    fn fuzz_disk_whose_last_lba_is_beyond_2_64_bytes_is_an_error() {
        let mut img = image(&[(1, entry("APP", 34, 99))]);
        let g = read(&mut img, 1 << 60).unwrap().unwrap();
        let why = g.other_copy_problem.unwrap();
        assert!(
            why.contains("LBA 1152921504606846975 lies beyond 2^64 bytes"),
            "{why}"
        );
        let mut blank = Cursor::new(vec![0u8; 4096]);
        let e = read(&mut blank, u64::MAX).unwrap_err().to_string();
        assert!(e.contains("beyond 2^64 bytes"), "{e}");
    }

    /// Fuzz regression (gpt_read): an entry at LBA 0..=0, outside the usable
    /// range, was returned as a partition of the disk.
    #[test]
    fn fuzz_entries_outside_the_usable_range_or_overlapping_are_refused() {
        for (entries, want) in [
            (
                vec![(83, entry("X", 0, 0))],
                "partition 83 ('X') spans LBA 0..=0, outside the usable range 34..=4062",
            ),
            (vec![(1, entry("X", 100, 99))], "spans LBA 100..=99"),
            (
                vec![(1, entry("X", 34, N - 33))],
                "outside the usable range",
            ),
            (
                vec![(2, entry("A", 34, 99)), (1, entry("B", 99, 200))],
                "partitions 2 and 1 overlap",
            ),
        ] {
            let e = read(&mut image(&entries), N).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
        // Touching is not overlapping; the last usable sector is usable.
        let ok = [(1, entry("A", 34, 99)), (2, entry("B", 100, N - 34))];
        assert_eq!(read(&mut image(&ok), N).unwrap().unwrap().entries.len(), 2);
    }

    #[test]
    fn a_backup_for_another_disk_size_is_reported() {
        // A table written for a smaller disk, read on a bigger one: the primary
        // is fine but its backup is not at our last LBA.
        let mut img = image(&[(1, entry("APP", 34, 99))]);
        img.get_mut().resize(((N + 2048) * 512) as usize, 0);
        let g = read(&mut img, N + 2048).unwrap().unwrap();
        assert_eq!(g.copy, GptCopy::Primary);
        assert!(g.other_copy_problem.is_some());
    }
}
