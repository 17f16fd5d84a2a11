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
