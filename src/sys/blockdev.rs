//! Block devices: naming, sizes, flushing, and making the kernel see a new
//! partition table.

use std::path::{Path, PathBuf};

/// The device node of partition `number` of `disk`, following the kernel's
/// naming: a `p` separator when the disk name ends in a digit
/// (`mmcblk0p1`, `nvme0n1p1`, `loop0p1`), none otherwise (`sda1`).
pub fn partition_path(disk: &Path, number: u32) -> PathBuf {
    let s = disk.as_os_str().to_string_lossy();
    let sep = if s.ends_with(|c: char| c.is_ascii_digit()) {
        "p"
    } else {
        ""
    };
    PathBuf::from(format!("{s}{sep}{number}"))
}

nix::ioctl_read!(
    /// BLKGETSIZE64 (linux/fs.h): the device size in bytes.
    blkgetsize64,
    0x12,
    114,
    u64
);

/// Size of a block device or regular file in 512-byte sectors (a file that is
/// not a whole number of sectors is refused).
pub fn size_in_sectors(path: &Path) -> anyhow::Result<u64> {
    use anyhow::Context as _;
    use std::os::unix::fs::FileTypeExt;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let meta = file
        .metadata()
        .with_context(|| format!("reading metadata of {}", path.display()))?;
    let bytes = if meta.file_type().is_block_device() {
        let mut size = 0u64;
        // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which is valid.
        unsafe { blkgetsize64(std::os::fd::AsRawFd::as_raw_fd(&file), &mut size) }
            .with_context(|| format!("reading the size of {} (BLKGETSIZE64)", path.display()))?;
        size
    } else if meta.is_file() {
        meta.len()
    } else {
        anyhow::bail!(
            "{} is neither a block device nor a regular file",
            path.display()
        );
    };
    if bytes % 512 != 0 {
        anyhow::bail!(
            "{} is {bytes} bytes, not a whole number of 512-byte sectors",
            path.display()
        );
    }
    Ok(bytes / 512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_follow_the_kernel() {
        for (disk, n, want) in [
            ("/dev/mmcblk0", 1, "/dev/mmcblk0p1"),
            ("/dev/nvme0n1", 12, "/dev/nvme0n1p12"),
            ("/dev/sda", 3, "/dev/sda3"),
            ("/dev/loop7", 2, "/dev/loop7p2"),
            ("/dev/vdb", 1, "/dev/vdb1"),
        ] {
            assert_eq!(partition_path(Path::new(disk), n), PathBuf::from(want));
        }
    }
}
