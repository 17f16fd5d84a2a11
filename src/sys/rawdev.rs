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

/// Alignment of direct I/O: the largest logical block size of the devices
/// we write (512-byte eMMC and SD cards, 4096-byte NVMe namespaces).
const DIRECT_ALIGN: usize = 4096;
/// The largest direct transfer (an image piece).
const DIRECT_MAX: usize = crate::image::CHUNK;

/// A partition node (or an image file) an image is written into, opened
/// exclusively. Zero runs become `BLKZEROOUT` on a block device (the kernel
/// uses the device's write-zeroes or discard when it zeroes, else writes
/// zeros) and a punched hole in a file.
///
/// On a block device, aligned pieces are written and read back with
/// `O_DIRECT` through a second descriptor: no copy into the page cache and
/// no writeback of a whole slot at the flush (measured: the buffered copy
/// was the largest cost of an image install), and a read-back that comes
/// from the device by construction. Ragged pieces use the buffered
/// descriptor; the kernel flushes cached pages of a range before a direct
/// read of it.
pub struct ImageTarget {
    path: std::path::PathBuf,
    file: File,
    len: u64,
    block: bool,
    direct: Option<File>,
    bounce: Vec<u8>,
}

impl ImageTarget {
    /// The aligned window of the bounce buffer for `len` bytes, when the
    /// transfer at `offset` can go direct.
    fn direct_buf(&mut self, offset: u64, len: usize) -> Option<(&File, &mut [u8])> {
        let direct = self.direct.as_ref()?;
        if len == 0
            || len > DIRECT_MAX
            || len % DIRECT_ALIGN != 0
            || offset % DIRECT_ALIGN as u64 != 0
        {
            return None;
        }
        if self.bounce.is_empty() {
            self.bounce = vec![0u8; DIRECT_MAX + DIRECT_ALIGN];
        }
        let skip = self.bounce.as_ptr().align_offset(DIRECT_ALIGN);
        Some((direct, self.bounce.get_mut(skip..skip + len)?))
    }
}

impl ImageTarget {
    /// Opens `path` for writing (exclusively when it is a block device).
    pub fn open(path: &Path) -> io::Result<ImageTarget> {
        ImageTarget::from_file(path, open(path, true)?)
    }

    /// A target over `file`, already open for writing at `path`.
    pub fn from_file(path: &Path, file: File) -> io::Result<ImageTarget> {
        let block = is_block_device(path);
        // Not exclusive: `file` holds the claim. Without O_DIRECT support the
        // buffered descriptor does everything.
        let direct = block
            .then(|| {
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .custom_flags(libc::O_DIRECT)
                    .open(path)
                    .ok()
            })
            .flatten();
        Ok(ImageTarget {
            len: size(&file)?,
            block,
            path: path.to_owned(),
            file,
            direct,
            bounce: Vec::new(),
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
        use std::os::unix::fs::FileExt;
        if let Some((direct, b)) = self.direct_buf(offset, buf.len()) {
            b.copy_from_slice(buf);
            return direct.write_all_at(b, offset);
        }
        self.file.write_all_at(buf, offset)
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
        use std::os::unix::fs::FileExt;
        if let Some((direct, b)) = self.direct_buf(offset, buf.len()) {
            direct.read_exact_at(b, offset)?;
            buf.copy_from_slice(b);
            return Ok(());
        }
        self.file.read_exact_at(buf, offset)
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
