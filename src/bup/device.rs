//! The targets a write plan is carried out on, behind one small trait: the
//! linear boot device (eMMC boot0 + boot1, or the SPI flash) and the
//! user-area partitions. Files are opened by [`crate::sys::rawdev`]; this
//! module only does positional I/O on them and keeps every access inside
//! its window.

#![deny(clippy::indexing_slicing)]

use crate::sys::rawdev;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// A byte-addressed target.
pub trait Device {
    /// Size in bytes.
    fn len(&self) -> u64;
    /// True when the device has no bytes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Fills `buf` from `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes writes durable (fsync) and drops cached copies, so the next
    /// read of the range comes from the medium.
    fn sync(&mut self, offset: u64, len: u64) -> io::Result<()>;
}

fn outside(offset: u64, len: usize, size: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("access at {offset}+{len} is outside the {size}-byte device"),
    )
}

fn check(offset: u64, len: usize, size: u64) -> io::Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(outside(offset, len, size)),
    }
}

/// A window `[start, start + len)` of an open file: a whole device, a
/// partition node, or a partition inside an image file.
#[derive(Debug)]
pub struct FileWindow {
    file: File,
    start: u64,
    len: u64,
}

impl FileWindow {
    /// A window of `file`.
    pub fn new(file: File, start: u64, len: u64) -> FileWindow {
        FileWindow { file, start, len }
    }

    /// The whole of a device or image, opened through `sys::rawdev`.
    pub fn open(path: &Path, writable: bool) -> io::Result<FileWindow> {
        let file = rawdev::open(path, writable)?;
        let len = rawdev::size(&file)?;
        Ok(FileWindow::new(file, 0, len))
    }
}

impl Device for FileWindow {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check(offset, buf.len(), self.len)?;
        self.file.read_exact_at(buf, self.start + offset)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        check(offset, buf.len(), self.len)?;
        self.file.write_all_at(buf, self.start + offset)
    }

    fn sync(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.file.sync_data()?;
        rawdev::drop_cache(&self.file, self.start + offset, len)
    }
}

/// Devices used back to back as one: eMMC boot0 then boot1. An access may
/// not cross from one device into the next (REF would write past the end
/// of boot0; docs/spec/bup-format.md §3.4 REC).
pub struct Linear {
    parts: Vec<Box<dyn Device>>,
}

impl Linear {
    /// The devices, in order.
    pub fn new(parts: Vec<Box<dyn Device>>) -> Linear {
        Linear { parts }
    }

    /// Sizes of the devices, in order.
    pub fn segment_sizes(&self) -> Vec<u64> {
        self.parts.iter().map(|p| p.len()).collect()
    }

    fn locate(&mut self, offset: u64, len: usize) -> io::Result<(&mut Box<dyn Device>, u64)> {
        let total = self.len();
        let mut start = 0u64;
        for p in &mut self.parts {
            let size = p.len();
            if offset < start + size {
                let inner = offset - start;
                return if inner + len as u64 <= size {
                    Ok((p, inner))
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!(
                            "access at {offset}+{len} crosses from one boot device into the next"
                        ),
                    ))
                };
            }
            start += size;
        }
        Err(outside(offset, len, total))
    }
}

impl Device for Linear {
    fn len(&self) -> u64 {
        self.parts.iter().map(|p| p.len()).sum()
    }

    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let (p, at) = self.locate(offset, buf.len())?;
        p.read_at(at, buf)
    }

    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let (p, at) = self.locate(offset, buf.len())?;
        p.write_at(at, buf)
    }

    fn sync(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let mut start = 0u64;
        for p in &mut self.parts {
            let size = p.len();
            let from = offset.max(start);
            let to = (offset + len).min(start + size);
            if from < to {
                p.sync(from - start, to - from)?;
            }
            start += size;
        }
        Ok(())
    }
}

/// One user-area partition, found by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserPartition {
    /// GPT name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Node or image file that holds it.
    pub path: PathBuf,
    /// Where it starts in `path` (0 for a partition node).
    pub base: u64,
}

/// The user-area partitions, by name: from `/dev/disk/by-partlabel`, or
/// from the user device's GPT (nodes, or windows of an image file).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserArea {
    /// The partitions.
    pub partitions: Vec<UserPartition>,
    /// Where they were found, for messages.
    pub source: String,
}

impl UserArea {
    /// The partition with this exact name.
    pub fn get(&self, name: &str) -> Option<&UserPartition> {
        self.partitions.iter().find(|p| p.name == name)
    }

    /// Opens a partition as a device.
    pub fn open(&self, name: &str, writable: bool) -> io::Result<FileWindow> {
        let p = self.get(name).ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("no user partition {name}"))
        })?;
        let file = rawdev::open(&p.path, writable)?;
        let have = rawdev::size(&file)?;
        if p.base + p.size > have {
            return Err(outside(p.base, p.size as usize, have));
        }
        Ok(FileWindow::new(file, p.base, p.size))
    }
}

/// A device in memory, for tests: optionally fails writes after a number of
/// bytes, or corrupts what it stores (a medium that lies).
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub struct MemDevice {
    /// The bytes.
    pub data: Vec<u8>,
    /// Writes fail once this many bytes were written.
    pub fail_after: Option<u64>,
    /// Flip the first byte of every write.
    pub corrupt: bool,
    /// Bytes written so far.
    pub written: u64,
}

#[cfg(test)]
impl MemDevice {
    /// Zeros of this size.
    pub fn new(len: usize) -> MemDevice {
        MemDevice {
            data: vec![0; len],
            ..Default::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
impl Device for MemDevice {
    fn len(&self) -> u64 {
        self.data.len() as u64
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        check(offset, buf.len(), self.len())?;
        let o = offset as usize;
        buf.copy_from_slice(&self.data[o..o + buf.len()]);
        Ok(())
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        check(offset, buf.len(), self.len())?;
        if self
            .fail_after
            .is_some_and(|n| self.written + buf.len() as u64 > n)
        {
            return Err(io::Error::other("injected write failure"));
        }
        let o = offset as usize;
        self.data[o..o + buf.len()].copy_from_slice(buf);
        if self.corrupt && !buf.is_empty() {
            self.data[o] ^= 0xFF;
        }
        self.written += buf.len() as u64;
        Ok(())
    }
    fn sync(&mut self, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }
}

/// A shared handle to a [`MemDevice`], so a test can look at it after the
/// code under test took the device.
#[cfg(test)]
#[derive(Debug, Clone, Default)]
pub struct SharedMem(pub std::rc::Rc<std::cell::RefCell<MemDevice>>);

#[cfg(test)]
impl Device for SharedMem {
    fn len(&self) -> u64 {
        self.0.borrow().len()
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.borrow_mut().read_at(offset, buf)
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.0.borrow_mut().write_at(offset, buf)
    }
    fn sync(&mut self, offset: u64, len: u64) -> io::Result<()> {
        self.0.borrow_mut().sync(offset, len)
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn linear_maps_offsets_and_refuses_to_straddle() {
        let boot0 = SharedMem(std::rc::Rc::new(MemDevice::new(1024).into()));
        let boot1 = SharedMem(std::rc::Rc::new(MemDevice::new(1024).into()));
        let mut lin = Linear::new(vec![Box::new(boot0.clone()), Box::new(boot1.clone())]);
        assert_eq!(lin.len(), 2048);
        lin.write_at(1024 + 10, b"boot1").unwrap();
        lin.write_at(0, b"boot0").unwrap();
        assert_eq!(&boot1.0.borrow().data[10..15], b"boot1");
        assert_eq!(&boot0.0.borrow().data[..5], b"boot0");
        let mut buf = [0u8; 5];
        lin.read_at(1034, &mut buf).unwrap();
        assert_eq!(&buf, b"boot1");
        let err = lin.write_at(1020, b"straddle").unwrap_err();
        assert!(err.to_string().contains("crosses"), "{err}");
        assert!(lin.write_at(2047, b"xy").is_err());
        assert!(lin.read_at(4096, &mut buf).is_err());
        lin.sync(1000, 100).unwrap();
    }

    #[test]
    fn file_windows_stay_inside() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("user.img");
        std::fs::write(&img, vec![0u8; 4096]).unwrap();
        let area = UserArea {
            partitions: vec![UserPartition {
                name: "kernel".into(),
                size: 1024,
                path: img.clone(),
                base: 2048,
            }],
            source: "test".into(),
        };
        let mut w = area.open("kernel", true).unwrap();
        w.write_at(0, b"KERNEL").unwrap();
        assert!(w.write_at(1020, b"too far").is_err());
        w.sync(0, 1024).unwrap();
        let bytes = std::fs::read(&img).unwrap();
        assert_eq!(&bytes[2048..2054], b"KERNEL");
        assert!(area.open("kernel_b", false).is_err());
        let mut whole = FileWindow::open(&img, false).unwrap();
        assert_eq!(whole.len(), 4096);
        assert!(whole.write_at(0, b"x").is_err(), "opened read-only");
    }
}
