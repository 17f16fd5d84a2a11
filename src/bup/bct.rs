//! The boot configuration table (BCT): where its redundant copies go and
//! whether a new one may replace the current one
//! (docs/spec/bup-format.md §4.6–4.7).
//!
//! The boot ROM searches block 0 slot 0, block 0 slot 1, then slot 0 of the
//! following blocks, and boots the first valid copy. Copies are therefore
//! written backups first, so an interruption always leaves one complete copy
//! where the ROM finds it.

#![deny(clippy::indexing_slicing)]

use super::BootMedium;
use crate::layout::Soc;

/// Most BCT copies a T210 boot ROM looks at.
pub const T210_MAX_COPIES: u64 = 64;

/// Block and page size the boot ROM assumes for a medium (hard-coded in
/// REF, not read from the BCT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    /// Boot ROM block size in bytes.
    pub block: u64,
    /// Page size in bytes.
    pub page: u64,
}

/// The boot ROM geometry of a boot medium: eMMC 16 KiB / 512 B, SPI NOR
/// 32 KiB / 2 KiB.
pub fn geometry(medium: BootMedium) -> Geometry {
    match medium {
        BootMedium::Emmc => Geometry {
            block: 16384,
            page: 512,
        },
        BootMedium::Spi => Geometry {
            block: 32768,
            page: 2048,
        },
    }
}

/// Why a BCT cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BctError {
    /// The copies do not fit the partition or overlap each other.
    #[error("a {length}-byte BCT does not fit three copies ({block}-byte blocks) in the {size}-byte BCT partition")]
    DoesNotFit {
        /// BCT length.
        length: u64,
        /// Block size.
        block: u64,
        /// Partition size.
        size: u64,
    },
    /// A BCT too short to hold the fields the check compares.
    #[error("BCT of {0} bytes is too short to be checked")]
    TooShort(usize),
    /// A field differs between the current and the new BCT.
    #[error("validation check failed for BCT update: {field} differs (current {current:#x}, new {new:#x})")]
    Incompatible {
        /// Field name from nvboot_bct.h.
        field: &'static str,
        /// Value on the device.
        current: u32,
        /// Value in the payload.
        new: u32,
    },
    /// T210: length not a whole number of pages.
    #[error("BCT update payload of {length} bytes is not a multiple of the {page}-byte page")]
    NotPageMultiple {
        /// BCT length.
        length: u64,
        /// Page size.
        page: u64,
    },
    /// T210: the copies in block 0 do not fit a block.
    #[error("{copies} BCT payload(s) of {length} bytes are too large for the {block}-byte block")]
    TooLargeForBlock {
        /// Copies in block 0.
        copies: u64,
        /// BCT length.
        length: u64,
        /// Block size.
        block: u64,
    },
    /// T210: fewer than two blocks in the partition.
    #[error("the {size}-byte BCT partition holds fewer than two {block}-byte blocks")]
    TooFewBlocks {
        /// Partition size.
        size: u64,
        /// Block size.
        block: u64,
    },
}

/// T186/T194: offsets of the three copies within the BCT partition, in the
/// order they are written: block 0 slot 1, block 1 slot 0, block 0 slot 0.
/// A slot is the BCT length rounded up to a page (TX2: 3584, 16384, 0).
pub fn copy_offsets(g: Geometry, length: u64, part_size: u64) -> Result<[u64; 3], BctError> {
    let slot = length.div_ceil(g.page) * g.page;
    // Both block-0 copies must fit block 0, block 1's copy the partition.
    if slot == 0 || 2 * slot > g.block || g.block + slot > part_size {
        return Err(BctError::DoesNotFit {
            length,
            block: g.block,
            size: part_size,
        });
    }
    Ok([slot, g.block, 0])
}

/// Bytes cleared for one T186/T194 copy: its slot (REF zeroes the slot,
/// then writes the BCT).
pub fn slot_size(g: Geometry, length: u64) -> u64 {
    length.div_ceil(g.page) * g.page
}

/// The fields REF compares between the current and the new BCT (offsets
/// from NVIDIA's nvboot_bct.h for T18x and T19x).
fn checked_fields(soc: Soc) -> [(&'static str, usize, u32); 4] {
    let (data_version, block_log2, page_log2) = match soc {
        Soc::T194 => (2360, 2364, 2368),
        _ => (1696, 1700, 1704),
    };
    [
        ("BctSize", 0, 0),
        ("BootDataVersion", data_version, 24),
        ("BlockSizeLog2", block_log2, 0),
        ("PageSizeLog2", page_log2, 0),
    ]
}

/// T186/T194: a new BCT may replace the current one only if size, boot data
/// version (major byte), block size and page size agree (REF's
/// `bct_update_valid_t18x/t19x`). `current` is read from offset 0 of the
/// BCT partition.
pub fn check_update(soc: Soc, current: &[u8], new: &[u8]) -> Result<(), BctError> {
    for (field, off, shift) in checked_fields(soc) {
        let get = |b: &[u8]| {
            b.get(off..off + 4)
                .and_then(|s| <[u8; 4]>::try_from(s).ok())
                .map(|w| u32::from_le_bytes(w) >> shift)
                .ok_or(BctError::TooShort(b.len()))
        };
        let (c, n) = (get(current)?, get(new)?);
        if c != n {
            return Err(BctError::Incompatible {
                field,
                current: c,
                new: n,
            });
        }
    }
    Ok(())
}

/// T210: the copies as REF's three calls write them, each a list of
/// offsets within the BCT partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct T210Copies {
    /// The last block's copy, written first.
    pub last: u64,
    /// Blocks `count − 2` down to 1, written after the backups.
    pub middle: Vec<u64>,
    /// Block 0 (and, on SPI, a second copy right after it), written last.
    pub first: Vec<u64>,
}

/// T210: up to 64 copies, one per block (two in block 0 on SPI); the BCT
/// must be a whole number of pages and block 0's copies must fit a block.
pub fn t210_copies(
    medium: BootMedium,
    length: u64,
    part_size: u64,
) -> Result<T210Copies, BctError> {
    let g = geometry(medium);
    let in_block0: u64 = match medium {
        BootMedium::Emmc => 1,
        BootMedium::Spi => 2,
    };
    if length % g.page != 0 {
        return Err(BctError::NotPageMultiple {
            length,
            page: g.page,
        });
    }
    if length == 0 || length * in_block0 > g.block {
        return Err(BctError::TooLargeForBlock {
            copies: in_block0,
            length,
            block: g.block,
        });
    }
    let count = (part_size / g.block).min(T210_MAX_COPIES);
    // With one block the "last" and the "first" copy would be the same one,
    // written twice; no real layout is like that.
    if count < 2 {
        return Err(BctError::TooFewBlocks {
            size: part_size,
            block: g.block,
        });
    }
    let mut first = vec![0];
    if in_block0 == 2 {
        first.push(length);
    }
    Ok(T210Copies {
        last: (count - 1) * g.block,
        middle: (1..count - 1).rev().map(|i| i * g.block).collect(),
        first,
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn tx2_copies_are_at_3584_16384_0() {
        let g = geometry(BootMedium::Emmc);
        assert_eq!(copy_offsets(g, 3584, 32768).unwrap(), [3584, 16384, 0]);
        assert_eq!(slot_size(g, 3584), 3584);
        // T19x BCT (2888 bytes) rounds up to 3072-byte slots.
        assert_eq!(copy_offsets(g, 2888, 32768).unwrap(), [3072, 16384, 0]);
        // Xavier NX on SPI: 2 KiB pages, 32 KiB blocks; needs 64 KiB + a slot.
        let spi = geometry(BootMedium::Spi);
        assert_eq!(copy_offsets(spi, 2888, 65536).unwrap(), [4096, 32768, 0]);
        assert!(copy_offsets(spi, 2888, 32768).is_err());
        assert!(copy_offsets(g, 9000, 1 << 20).is_err());
        assert!(copy_offsets(g, 0, 32768).is_err());
    }

    fn bct(soc: Soc, size: u32, data_version: u32, block: u32, page: u32) -> Vec<u8> {
        let mut b = vec![0u8; if soc == Soc::T194 { 2888 } else { 3584 }];
        let offs = if soc == Soc::T194 {
            [2360, 2364, 2368]
        } else {
            [1696, 1700, 1704]
        };
        b[0..4].copy_from_slice(&size.to_le_bytes());
        b[offs[0]..offs[0] + 4].copy_from_slice(&data_version.to_le_bytes());
        b[offs[1]..offs[1] + 4].copy_from_slice(&block.to_le_bytes());
        b[offs[2]..offs[2] + 4].copy_from_slice(&page.to_le_bytes());
        b
    }

    #[test]
    fn bct_update_check_compares_the_four_fields() {
        for soc in [Soc::T186, Soc::T194] {
            let cur = bct(soc, 3584, 0x0007_0001, 14, 9);
            // Only the top byte of BootDataVersion counts.
            assert_eq!(
                check_update(soc, &cur, &bct(soc, 3584, 0x0007_ffff, 14, 9)),
                Ok(())
            );
            for (new, field) in [
                (bct(soc, 2888, 0x0007_0001, 14, 9), "BctSize"),
                (bct(soc, 3584, 0x0107_0001, 14, 9), "BootDataVersion"),
                (bct(soc, 3584, 0x0007_0001, 15, 9), "BlockSizeLog2"),
                (bct(soc, 3584, 0x0007_0001, 14, 11), "PageSizeLog2"),
            ] {
                assert!(
                    matches!(check_update(soc, &cur, &new), Err(BctError::Incompatible { field: f, .. }) if f == field),
                    "{soc:?} {field}"
                );
            }
            assert_eq!(
                check_update(soc, &cur[..100], &cur),
                Err(BctError::TooShort(100))
            );
        }
    }

    #[test]
    fn nano_copies() {
        // Nano eMMC: a 1 MiB BCT partition holds 64 copies at 16 KiB.
        let c = t210_copies(BootMedium::Emmc, 2560, 1 << 20).unwrap();
        assert_eq!(c.last, 63 * 16384);
        assert_eq!(c.middle.len(), 62);
        assert_eq!(c.middle[0], 62 * 16384);
        assert_eq!(*c.middle.last().unwrap(), 16384);
        assert_eq!(c.first, [0]);
        // Nano SPI: 256 KiB = 8 blocks of 32 KiB, two copies in block 0.
        let c = t210_copies(BootMedium::Spi, 4096, 262144).unwrap();
        assert_eq!(c.last, 7 * 32768);
        assert_eq!(
            c.middle,
            (1..7).rev().map(|i| i * 32768).collect::<Vec<_>>()
        );
        assert_eq!(c.first, [0, 4096]);
        assert_eq!(1 + c.middle.len() + c.first.len(), 9);
    }

    #[test]
    fn t210_rejections() {
        assert!(matches!(
            t210_copies(BootMedium::Emmc, 2561, 1 << 20),
            Err(BctError::NotPageMultiple { .. })
        ));
        assert!(matches!(
            t210_copies(BootMedium::Spi, 18432, 262144),
            Err(BctError::TooLargeForBlock { copies: 2, .. })
        ));
        assert!(matches!(
            t210_copies(BootMedium::Emmc, 2560, 16384),
            Err(BctError::TooFewBlocks { .. })
        ));
        // More than 64 blocks: still 64 copies.
        assert_eq!(
            t210_copies(BootMedium::Emmc, 512, 4 << 20).unwrap().last,
            63 * 16384
        );
    }
}
