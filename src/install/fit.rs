//! Whether what a tarball holds fits the filesystem it is unpacked into:
//! its members' blocks and inodes (estimated on the generous side by
//! [`EntryCounts::blocks_needed`]) against the free blocks and inodes of
//! the filesystem (the one mke2fs will make, or the one already there).
//! Pure; the preflight finds both sides.

use crate::probe::ExtSuperblock;
use crate::rootfs::EntryCounts;

/// The members do not fit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} does not fit {into}: it needs about {need_blocks} blocks of {block_size} bytes and {need_inodes} inodes; {into} has {free_blocks} free blocks and {free_inodes} free inodes")]
pub struct NoSpace {
    /// The tarball.
    pub what: String,
    /// The partition.
    pub into: String,
    /// Block size of the filesystem.
    pub block_size: u64,
    /// Blocks needed.
    pub need_blocks: u64,
    /// Inodes needed.
    pub need_inodes: u64,
    /// Free blocks (root may use the reserved ones, and the unpack runs as root).
    pub free_blocks: u64,
    /// Free inodes.
    pub free_inodes: u64,
}

/// Checks that `counts` fit `fs`.
pub fn check(
    what: &str,
    into: &str,
    counts: &EntryCounts,
    fs: &ExtSuperblock,
) -> Result<(), NoSpace> {
    let need_blocks = counts.blocks_needed(fs.block_size);
    let need_inodes = counts.inodes_needed();
    if need_blocks <= fs.free_blocks && need_inodes <= fs.free_inodes {
        return Ok(());
    }
    Err(NoSpace {
        what: what.to_owned(),
        into: into.to_owned(),
        block_size: fs.block_size,
        need_blocks,
        need_inodes,
        free_blocks: fs.free_blocks,
        free_inodes: fs.free_inodes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fs(block_size: u64, free_blocks: u64, free_inodes: u64) -> ExtSuperblock {
        ExtSuperblock {
            block_size,
            free_blocks,
            free_inodes,
            ..ExtSuperblock::default()
        }
    }

    fn counts(files: u64, bytes_each: u64) -> EntryCounts {
        EntryCounts {
            files,
            file_bytes: files * bytes_each,
            data_blocks: [1024, 2048, 4096].map(|bs| files * bytes_each.div_ceil(bs)),
            dirent_bytes: files * 16,
            ..EntryCounts::default()
        }
    }

    #[test]
    fn blocks_and_inodes_both_count() {
        // 240,000 one-byte files: tiny in bytes, a block and an inode each.
        let many = counts(240_000, 1);
        assert!(many.file_bytes < 1 << 20);
        let err = check("t", "APP", &many, &fs(4096, 200_000, 1_000_000)).unwrap_err();
        assert!(err.need_blocks > 240_000, "{err}");
        check("t", "APP", &many, &fs(4096, 260_000, 1_000_000)).unwrap();
        // 270,000 empty files: no data, but more inodes than there are.
        let empty = counts(270_000, 0);
        let err = check("t", "APP", &empty, &fs(4096, 1 << 20, 262_133)).unwrap_err();
        assert_eq!(err.need_inodes, 270_000);
        // One big file: its blocks.
        let big = counts(1, 966_000_000);
        assert!(check("t", "APP", &big, &fs(4096, 236_000, 65_000)).is_err());
        assert!(check("t", "APP", &big, &fs(4096, 240_000, 65_000)).is_ok());
    }

    #[test]
    fn the_filesystems_block_size_is_used() {
        let c = counts(1000, 1500);
        // 1 KiB blocks: 2 per file; 4 KiB: 1 per file.
        assert!(c.blocks_needed(1024) > 2 * c.blocks_needed(4096) - 100);
        // An unusual size is bounded from above.
        assert!(c.blocks_needed(65536) >= c.blocks_needed(4096) / 16);
    }
}
