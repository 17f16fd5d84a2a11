//! What a partition holds, read from its first bytes: ext2/3/4 (with the
//! superblock fields the installer uses), vfat, swap, LUKS, or nothing known.
//!
//! Pure: give it the first [`PROBE_BYTES`] of a partition.

#![deny(clippy::indexing_slicing)]

use crate::bytes::{le16, le32};
use crate::guid::Guid;
use serde::Serialize;

/// Bytes to read from the start of a partition to identify it: enough for
/// swap made with 64 KiB pages (arm64 kernels may use them), whose signature
/// ends the first page. Fewer is fine for a smaller partition.
pub const PROBE_BYTES: usize = 64 * 1024;

/// Byte offset of the ext2/3/4 superblock.
const EXT_SB: usize = 1024;
/// `s_magic` offset within the superblock and its value.
const EXT_MAGIC_OFF: usize = 0x38;
const EXT_MAGIC: u16 = 0xEF53;
const EXT_BLOCKS_LO: usize = 0x04;
const EXT_LOG_BLOCK_SIZE: usize = 0x18;
const EXT_FEATURE_COMPAT: usize = 0x5C;
const EXT_FEATURE_INCOMPAT: usize = 0x60;
const EXT_UUID: usize = 0x68;
const EXT_VOLUME_NAME: usize = 0x78;
const EXT_LAST_MOUNTED: usize = 0x88;
const EXT_BLOCKS_HI: usize = 0x150;
const EXT_INODES_COUNT: usize = 0x00;
const EXT_R_BLOCKS_LO: usize = 0x08;
const EXT_FREE_BLOCKS_LO: usize = 0x0C;
const EXT_FREE_INODES: usize = 0x10;
const EXT_R_BLOCKS_HI: usize = 0x154;
const EXT_FREE_BLOCKS_HI: usize = 0x158;
/// COMPAT_HAS_JOURNAL: ext3 or later.
const EXT_COMPAT_JOURNAL: u32 = 0x4;
/// INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG: ext4 features.
const EXT_INCOMPAT_EXT4: u32 = 0x40 | 0x80 | 0x200;
const EXT_INCOMPAT_64BIT: u32 = 0x80;

/// An ext2/3/4 superblock, the fields we use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct ExtSuperblock {
    /// "ext2", "ext3" or "ext4".
    pub kind: &'static str,
    /// Filesystem UUID.
    pub uuid: Guid,
    /// Volume label (`s_volume_name`).
    pub label: String,
    /// `s_last_mounted`: the last mount point, or a marker we wrote.
    pub last_mounted: String,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Block size in bytes.
    #[serde(skip)]
    pub block_size: u64,
    /// Inodes in all (`s_inodes_count`).
    #[serde(skip)]
    pub inodes: u64,
    /// Free blocks (`s_free_blocks_count`; root may use the reserved ones).
    #[serde(skip)]
    pub free_blocks: u64,
    /// Free inodes (`s_free_inodes_count`).
    #[serde(skip)]
    pub free_inodes: u64,
    /// Blocks reserved for root (`s_r_blocks_count`).
    #[serde(skip)]
    pub reserved_blocks: u64,
}

/// What a partition holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Content {
    /// An ext2/3/4 filesystem.
    Ext(ExtSuperblock),
    /// A FAT filesystem.
    Vfat,
    /// Linux swap.
    Swap,
    /// A LUKS container.
    Luks,
    /// All zeros as far as we looked.
    Empty,
    /// Something we do not recognise (raw firmware, garbage).
    Unknown,
}

impl Content {
    /// A short description for plans and logs.
    pub fn describe(&self) -> String {
        match self {
            Content::Ext(sb) if sb.label.is_empty() => sb.kind.to_owned(),
            Content::Ext(sb) => format!("{} '{}'", sb.kind, sb.label),
            Content::Vfat => "vfat".into(),
            Content::Swap => "swap".into(),
            Content::Luks => "LUKS".into(),
            Content::Empty => "empty".into(),
            Content::Unknown => "unknown data".into(),
        }
    }

    /// The ext superblock, if this is ext2/3/4.
    pub fn ext(&self) -> Option<&ExtSuperblock> {
        match self {
            Content::Ext(sb) => Some(sb),
            _ => None,
        }
    }
}

fn cstr(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(b.get(..end).unwrap_or(&[])).into_owned()
}

/// Parses an ext2/3/4 superblock from the first bytes of a partition.
pub fn ext_superblock(head: &[u8]) -> Option<ExtSuperblock> {
    let sb = head.get(EXT_SB..EXT_SB + 1024)?;
    if le16(sb, EXT_MAGIC_OFF)? != EXT_MAGIC {
        return None;
    }
    let compat = le32(sb, EXT_FEATURE_COMPAT)?;
    let incompat = le32(sb, EXT_FEATURE_INCOMPAT)?;
    let kind = if incompat & EXT_INCOMPAT_EXT4 != 0 {
        "ext4"
    } else if compat & EXT_COMPAT_JOURNAL != 0 {
        "ext3"
    } else {
        "ext2"
    };
    let log = le32(sb, EXT_LOG_BLOCK_SIZE)?;
    let block = 1024u64.checked_shl(log.min(16))?;
    let wide = incompat & EXT_INCOMPAT_64BIT != 0;
    let count = |lo: usize, hi: usize| -> Option<u64> {
        let mut v = u64::from(le32(sb, lo)?);
        if wide {
            v |= u64::from(le32(sb, hi)?) << 32;
        }
        Some(v)
    };
    let blocks = count(EXT_BLOCKS_LO, EXT_BLOCKS_HI)?;
    let uuid: [u8; 16] = sb.get(EXT_UUID..EXT_UUID + 16)?.try_into().ok()?;
    Some(ExtSuperblock {
        kind,
        uuid: Guid::from_bytes(uuid),
        label: cstr(sb.get(EXT_VOLUME_NAME..EXT_VOLUME_NAME + 16)?),
        last_mounted: cstr(sb.get(EXT_LAST_MOUNTED..EXT_LAST_MOUNTED + 64)?),
        size_bytes: blocks.saturating_mul(block),
        block_size: block,
        inodes: u64::from(le32(sb, EXT_INODES_COUNT)?),
        free_blocks: count(EXT_FREE_BLOCKS_LO, EXT_FREE_BLOCKS_HI)?,
        free_inodes: u64::from(le32(sb, EXT_FREE_INODES)?),
        reserved_blocks: count(EXT_R_BLOCKS_LO, EXT_R_BLOCKS_HI)?,
    })
}

/// Identifies the content of a partition from its first bytes.
pub fn identify(head: &[u8]) -> Content {
    if let Some(sb) = ext_superblock(head) {
        return Content::Ext(sb);
    }
    if head.get(..6) == Some(b"LUKS\xba\xbe") {
        return Content::Luks;
    }
    // Swap: "SWAPSPACE2" at the end of the first page (4 KiB pages; arm64
    // kernels may use larger pages, checked as far as we have bytes).
    for page in [4096usize, 8192, 16384, 65536] {
        if head.get(page - 10..page) == Some(b"SWAPSPACE2") {
            return Content::Swap;
        }
    }
    if head.get(510..512) == Some(&[0x55, 0xAA])
        && (head.get(54..59) == Some(b"FAT12")
            || head.get(54..59) == Some(b"FAT16")
            || head.get(82..87) == Some(b"FAT32"))
    {
        return Content::Vfat;
    }
    if head.iter().all(|&b| b == 0) {
        return Content::Empty;
    }
    Content::Unknown
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn ext4_head(label: &str, last: &str) -> Vec<u8> {
        let mut h = vec![0u8; PROBE_BYTES];
        let sb = &mut h[1024..2048];
        sb[0x38..0x3A].copy_from_slice(&EXT_MAGIC.to_le_bytes());
        sb[0x04..0x08].copy_from_slice(&1000u32.to_le_bytes());
        sb[0x18..0x1C].copy_from_slice(&2u32.to_le_bytes()); // 4096-byte blocks
        sb[0x60..0x64].copy_from_slice(&0x2C2u32.to_le_bytes());
        sb[0x68..0x78].copy_from_slice(&[7u8; 16]);
        sb[0x78..0x78 + label.len()].copy_from_slice(label.as_bytes());
        sb[0x88..0x88 + last.len()].copy_from_slice(last.as_bytes());
        h
    }

    #[test]
    fn reads_ext4_fields() {
        let sb = ext_superblock(&ext4_head("APP_b", "/mnt/x")).unwrap();
        assert_eq!(sb.kind, "ext4");
        assert_eq!(sb.label, "APP_b");
        assert_eq!(sb.last_mounted, "/mnt/x");
        assert_eq!(sb.size_bytes, 4096 * 1000);
        assert_eq!(sb.uuid, Guid::from_bytes([7; 16]));
        assert_eq!(identify(&ext4_head("", "")).describe(), "ext4");
    }

    #[test]
    fn recognises_other_content_and_never_panics_on_short_input() {
        let mut luks = vec![0u8; 100];
        luks[..6].copy_from_slice(b"LUKS\xba\xbe");
        assert_eq!(identify(&luks), Content::Luks);
        let mut swap = vec![0u8; 4096];
        swap[4086..].copy_from_slice(b"SWAPSPACE2");
        assert_eq!(identify(&swap), Content::Swap);
        assert_eq!(identify(&[0u8; 4096]), Content::Empty);
        assert_eq!(identify(&[1u8; 4096]), Content::Unknown);
        for n in 0..2100 {
            let _ = identify(&ext4_head("A", "B")[..n]);
        }
    }
}
