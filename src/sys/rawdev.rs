//! Opening block devices, partition nodes and image files for byte-exact
//! positional I/O, and dropping their cached pages so that a read-back
//! really reads the medium.

use nix::fcntl::{posix_fadvise, PosixFadviseAdvice};
use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// True when `path` is (or links to) a block device.
pub fn is_block_device(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device())
}

/// Opens an existing device or image read-only, or read-write. A block
/// device opened for writing is opened exclusively (`O_EXCL`), so a mounted
/// or otherwise claimed partition is refused instead of overwritten. Never
/// creates a file.
pub fn open(path: &Path, writable: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.read(true).write(writable);
    if writable && is_block_device(path) {
        o.custom_flags(libc::O_EXCL);
    }
    o.open(path)
}

/// Size in bytes of an open device or file (block devices report 0 in
/// their metadata, so this seeks to the end).
pub fn size(mut file: &File) -> io::Result<u64> {
    let len = file.seek(SeekFrom::End(0))?;
    file.seek(SeekFrom::Start(0))?;
    Ok(len)
}

/// Drops the page cache of a byte range after it was written and synced,
/// so the next read of it comes from the device, not from memory.
pub fn drop_cache(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let off = i64::try_from(offset).map_err(io::Error::other)?;
    let len = i64::try_from(len).map_err(io::Error::other)?;
    posix_fadvise(file, off, len, PosixFadviseAdvice::POSIX_FADV_DONTNEED).map_err(io::Error::from)
}

/// `BLKZEROOUT` (<linux/fs.h>): `{offset, length}` in bytes, 512-aligned.
mod ioctl {
    nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);
}

/// A partition node (or an image file) an image is written into, opened
/// exclusively. Zero runs become `BLKZEROOUT` on a block device (the kernel
/// uses the device's write-zeroes or discard when it zeroes, else writes
/// zeros) and a punched hole in a file.
pub struct ImageTarget {
    path: std::path::PathBuf,
    file: File,
    len: u64,
    block: bool,
}

impl ImageTarget {
    /// Opens `path` for writing (exclusively when it is a block device).
    pub fn open(path: &Path) -> io::Result<ImageTarget> {
        ImageTarget::from_file(path, open(path, true)?)
    }

    /// A target over `file`, already open for writing at `path`.
    pub fn from_file(path: &Path, file: File) -> io::Result<ImageTarget> {
        Ok(ImageTarget {
            len: size(&file)?,
            block: is_block_device(path),
            path: path.to_owned(),
            file,
        })
    }
}

impl crate::image::Target for ImageTarget {
    fn name(&self) -> String {
        self.path.display().to_string()
    }
    fn size(&self) -> u64 {
        self.len
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.file, buf, offset)
    }
    fn zero(&mut self, offset: u64, len: u64) -> io::Result<()> {
        if self.block {
            let range = [offset, len];
            // SAFETY: the descriptor is open and `range` outlives the call.
            unsafe { ioctl::blkzeroout(self.file.as_raw_fd(), &range) }.map_err(io::Error::from)?;
            return Ok(());
        }
        let off = i64::try_from(offset).map_err(io::Error::other)?;
        let l = i64::try_from(len).map_err(io::Error::other)?;
        nix::fcntl::fallocate(
            &self.file,
            nix::fcntl::FallocateFlags::FALLOC_FL_PUNCH_HOLE
                | nix::fcntl::FallocateFlags::FALLOC_FL_KEEP_SIZE,
            off,
            l,
        )
        .map_err(io::Error::from)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()?;
        drop_cache(&self.file, 0, self.len)
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.file, buf, offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn images_open_without_creating_and_report_their_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("boot0.img");
        assert!(open(&p, true).is_err(), "must not create");
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        let f = open(&p, true).unwrap();
        assert_eq!(size(&f).unwrap(), 4096);
        drop_cache(&f, 0, 4096).unwrap();
        assert!(!is_block_device(&p));
    }
}
