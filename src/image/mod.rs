//! Partition images (`--image NAME=SOURCE`): a raw image or an Android
//! sparse one, already decompressed, turned into the pieces a writer
//! carries out (docs/spec/image-format.md).
//!
//! ```text
//! bytes ──► raw: 1 MiB chunks, an all-zero chunk is a Zero piece
//!       └─► sparse: RAW → Data, FILL 0 → Zero, FILL x → Data, DONT_CARE → Skip
//!                   ──► Pieces (adjacent Zero/Skip merged) ──► a sink
//! ```
//!
//! [`write`] hands every piece to each [`Target`] (both slots from one
//! stream), keeps a SHA-256 of what it wrote and the extents it covered,
//! and [`verify`] reads those extents back from each target.
#![deny(clippy::indexing_slicing)]

pub mod bmap;
pub mod sparse;
pub mod whole;

use anyhow::{Context as _, Result};
use std::io::{self, Read};

/// The size of a raw image's pieces, and of every read and write.
pub const CHUNK: usize = 1 << 20;
/// How much of the expanded image is kept to identify its filesystem.
pub const HEAD_LEN: usize = 8192;
/// `BLKZEROOUT` works in 512-byte units; a zero run off that grid is written.
pub const ZERO_ALIGN: u64 = 512;

/// One stretch of the expanded image.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece<'a> {
    /// Bytes to write at `offset`.
    #[allow(missing_docs)]
    Data { offset: u64, bytes: &'a [u8] },
    /// Zeros: written as a zero-out (discard where the device can).
    #[allow(missing_docs)]
    Zero { offset: u64, len: u64 },
    /// "Don't care" (a sparse image's holes): nothing is written.
    #[allow(missing_docs)]
    Skip { offset: u64, len: u64 },
}

/// The image's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// The partition's bytes as they are.
    Raw,
    /// Android sparse.
    Sparse,
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Format::Raw => "raw",
            Format::Sparse => "sparse",
        })
    }
}

/// What reading an image found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shape {
    /// Raw or sparse.
    pub format: Format,
    /// Bytes of the expanded image (what it needs of the partition).
    pub size: u64,
    /// Bytes written as data.
    pub data: u64,
    /// Bytes zeroed.
    pub zero: u64,
    /// Bytes left alone (sparse "don't care").
    pub skipped: u64,
    /// The expanded image's first [`HEAD_LEN`] bytes (zeros where it has none).
    pub head: Vec<u8>,
}

impl Shape {
    /// The ext2/3/4 filesystem the image holds, when it holds one.
    pub fn ext(&self) -> Option<crate::probe::ExtSuperblock> {
        crate::probe::ext_superblock(&self.head)
    }
}

/// Receives pieces in order.
pub trait Sink {
    /// One piece.
    fn piece(&mut self, p: &Piece<'_>) -> Result<()>;
}

/// The pieces of one image on their way to a sink: merges adjacent zero
/// and skipped runs, keeps the head and the counts.
pub struct Pieces<'a> {
    sink: &'a mut dyn Sink,
    pending: Option<(bool, u64, u64)>,
    buf: Vec<u8>,
    shape: Shape,
}

impl<'a> Pieces<'a> {
    fn new(sink: &'a mut dyn Sink, format: Format) -> Pieces<'a> {
        Pieces {
            sink,
            pending: None,
            buf: Vec::new(),
            shape: Shape {
                format,
                size: 0,
                data: 0,
                zero: 0,
                skipped: 0,
                head: vec![0; HEAD_LEN],
            },
        }
    }

    /// Hands a piece on (zero and skipped runs wait for their neighbours).
    pub fn push(&mut self, p: Piece<'_>) -> Result<()> {
        let (offset, len) = match p {
            Piece::Data { offset, bytes } => (offset, bytes.len() as u64),
            Piece::Zero { offset, len } | Piece::Skip { offset, len } => (offset, len),
        };
        anyhow::ensure!(offset == self.shape.size, "image piece out of order");
        self.shape.size = offset
            .checked_add(len)
            .context("image larger than 2^64 bytes")?;
        match p {
            Piece::Data { offset, bytes } => {
                self.flush()?;
                self.shape.data += len;
                if let Some(room) = self.shape.head.get_mut(offset as usize..) {
                    let n = room.len().min(bytes.len());
                    if let (Some(d), Some(s)) = (room.get_mut(..n), bytes.get(..n)) {
                        d.copy_from_slice(s);
                    }
                }
                self.sink.piece(&Piece::Data { offset, bytes })
            }
            Piece::Zero { .. } | Piece::Skip { .. } => {
                let zero = matches!(p, Piece::Zero { .. });
                match &mut self.pending {
                    Some((z, _, l)) if *z == zero => *l += len,
                    _ => {
                        self.flush()?;
                        self.pending = Some((zero, offset, len));
                    }
                }
                Ok(())
            }
        }
    }

    fn flush(&mut self) -> Result<()> {
        let Some((zero, offset, len)) = self.pending.take() else {
            return Ok(());
        };
        if zero {
            self.shape.zero += len;
            self.sink.piece(&Piece::Zero { offset, len })
        } else {
            self.shape.skipped += len;
            self.sink.piece(&Piece::Skip { offset, len })
        }
    }

    /// `len` bytes of data read from `r`, in pieces of at most [`CHUNK`];
    /// an all-zero piece becomes a zero run.
    pub fn data_from(&mut self, offset: u64, len: u64, r: &mut dyn Read) -> Result<()> {
        let mut buf = std::mem::take(&mut self.buf);
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            buf.resize(n, 0);
            r.read_exact(&mut buf)?;
            self.chunk(offset + done, &buf)?;
            done += n as u64;
        }
        self.buf = buf;
        Ok(())
    }

    /// `len` bytes of a repeated 4-byte pattern.
    pub fn fill(&mut self, offset: u64, len: u64, pattern: [u8; 4]) -> Result<()> {
        if pattern == [0; 4] {
            return self.push(Piece::Zero { offset, len });
        }
        let mut buf: Vec<u8> = pattern
            .iter()
            .copied()
            .cycle()
            .take((len.min(CHUNK as u64)) as usize)
            .collect();
        let mut done = 0;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            buf.truncate(n);
            self.push(Piece::Data {
                offset: offset + done,
                bytes: &buf,
            })?;
            done += n as u64;
        }
        Ok(())
    }

    fn chunk(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        if is_zero(bytes) {
            self.push(Piece::Zero {
                offset,
                len: bytes.len() as u64,
            })
        } else {
            self.push(Piece::Data { offset, bytes })
        }
    }
}

/// True when every byte is zero (word by word: a byte loop cost 8% of an
/// image install's time).
fn is_zero(bytes: &[u8]) -> bool {
    let (words, rest) = bytes.split_at(bytes.len() / 8 * 8);
    words
        .chunks_exact(8)
        .all(|w| u64::from_ne_bytes(w.try_into().unwrap_or([1; 8])) == 0)
        && rest.iter().all(|b| *b == 0)
}

/// Reads a decompressed image to its end, raw or sparse (told by its first
/// bytes), and hands its pieces to `sink` in order.
pub fn read(r: &mut dyn Read, sink: &mut dyn Sink) -> Result<Shape> {
    let mut first = [0u8; sparse::FILE_HEADER_LEN];
    let got = read_full(r, &mut first)?;
    let magic = crate::bytes::le32(&first, 0);
    if got == first.len() && magic == Some(sparse::MAGIC) {
        let header = sparse::Header::parse(&first)?;
        let mut out = Pieces::new(sink, Format::Sparse);
        sparse::read(&header, r, &mut out)?;
        out.flush()?;
        // Anything after the last chunk is not part of the image.
        let mut extra = [0u8; 1];
        anyhow::ensure!(
            read_full(r, &mut extra)? == 0,
            "bytes after the sparse image's last chunk"
        );
        return Ok(out.shape);
    }
    let mut out = Pieces::new(sink, Format::Raw);
    let mut buf = vec![0u8; CHUNK];
    let mut have = got;
    if let (Some(d), Some(s)) = (buf.get_mut(..got), first.get(..got)) {
        d.copy_from_slice(s);
    }
    let mut offset = 0u64;
    loop {
        let n = have + read_full(r, buf.get_mut(have..).unwrap_or_default())?;
        if n == 0 {
            break;
        }
        out.chunk(offset, buf.get(..n).unwrap_or_default())?;
        offset += n as u64;
        have = 0;
        if n < CHUNK {
            break;
        }
    }
    out.flush()?;
    Ok(out.shape)
}

/// Reads until `buf` is full or the stream ends; the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..).filter(|b| !b.is_empty()) {
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// A sink that writes nothing: the preflight's read of an image.
pub struct Measure;

impl Sink for Measure {
    fn piece(&mut self, _: &Piece<'_>) -> Result<()> {
        Ok(())
    }
}

/// Where an image is written: a partition (or, in tests, a file).
pub trait Target {
    /// Its name in messages.
    fn name(&self) -> String;
    /// Its size in bytes.
    fn size(&self) -> u64;
    /// Writes `buf` at `offset`.
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes `len` bytes at `offset` read as zeros (aligned to [`ZERO_ALIGN`]).
    fn zero(&mut self, offset: u64, len: u64) -> io::Result<()>;
    /// Flushes what was written to the medium and drops its cached pages.
    fn sync(&mut self) -> io::Result<()>;
    /// Reads `buf.len()` bytes at `offset`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

/// A stretch of the image that was written (data) or zeroed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// Where it starts.
    pub offset: u64,
    /// How long it is.
    pub len: u64,
    /// True for a zeroed stretch.
    pub zero: bool,
    /// CRC-32 of a data stretch's bytes (0 for a zeroed one).
    pub crc: u32,
}

/// What [`write`] wrote.
#[derive(Debug, Clone)]
pub struct Written {
    /// The image's shape.
    pub shape: Shape,
    /// What was written or zeroed, in order (skipped runs are not).
    pub extents: Vec<Extent>,
}

/// Writes every piece into every target.
pub struct Writer<'a, 'b> {
    targets: &'a mut [&'b mut dyn Target],
    /// The CRC of the last extent while it is data.
    crc: crc32fast::Hasher,
    extents: Vec<Extent>,
    zeros: Vec<u8>,
}

impl<'a, 'b> Writer<'a, 'b> {
    /// A writer into `targets` (each gets the same bytes).
    pub fn new(targets: &'a mut [&'b mut dyn Target]) -> Writer<'a, 'b> {
        Writer {
            targets,
            crc: crc32fast::Hasher::new(),
            extents: Vec::new(),
            zeros: Vec::new(),
        }
    }

    /// Syncs the targets; what was written, for [`verify`].
    pub fn finish(mut self, shape: Shape) -> Result<Written> {
        for t in self.targets.iter_mut() {
            t.sync().with_context(|| format!("flushing {}", t.name()))?;
        }
        self.close_crc();
        Ok(Written {
            shape,
            extents: self.extents,
        })
    }

    /// Records the CRC of the last extent, when it is data.
    fn close_crc(&mut self) {
        let crc = std::mem::take(&mut self.crc).finalize();
        if let Some(e) = self.extents.last_mut().filter(|e| !e.zero) {
            e.crc = crc;
        }
    }

    fn extent(&mut self, offset: u64, bytes: Option<&[u8]>, len: u64) {
        let zero = bytes.is_none();
        match self.extents.last_mut() {
            Some(e) if e.zero == zero && e.offset + e.len == offset => e.len += len,
            _ => {
                self.close_crc();
                self.extents.push(Extent {
                    offset,
                    len,
                    zero,
                    crc: 0,
                });
            }
        }
        if let Some(b) = bytes {
            self.crc.update(b);
        }
    }
}

impl Sink for Writer<'_, '_> {
    fn piece(&mut self, p: &Piece<'_>) -> Result<()> {
        crate::interrupt::check()?;
        match *p {
            Piece::Data { offset, bytes } => {
                let end = offset + bytes.len() as u64;
                for t in self.targets.iter_mut() {
                    fits(&**t, end)?;
                    t.write_at(offset, bytes)
                        .with_context(|| format!("writing {} at byte {offset}", t.name()))?;
                }
                self.extent(offset, Some(bytes), bytes.len() as u64);
            }
            Piece::Zero { offset, len } => {
                for t in self.targets.iter_mut() {
                    fits(&**t, offset + len)?;
                    zero_run(*t, offset, len, &mut self.zeros)
                        .with_context(|| format!("zeroing {} at byte {offset}", t.name()))?;
                }
                self.extent(offset, None, len);
            }
            Piece::Skip { .. } => {}
        }
        Ok(())
    }
}

fn fits(t: &dyn Target, end: u64) -> Result<()> {
    anyhow::ensure!(
        end <= t.size(),
        "the image is larger than {} ({} bytes)",
        t.name(),
        t.size()
    );
    Ok(())
}

/// Zeroes a run: the aligned middle through [`Target::zero`], the ragged
/// ends (if any) written as zero bytes.
fn zero_run(t: &mut dyn Target, offset: u64, len: u64, zeros: &mut Vec<u8>) -> io::Result<()> {
    let start = offset.next_multiple_of(ZERO_ALIGN);
    let end = (offset + len) / ZERO_ALIGN * ZERO_ALIGN;
    if start < end {
        write_zeros(t, offset, start - offset, zeros)?;
        t.zero(start, end - start)?;
        write_zeros(t, end, offset + len - end, zeros)
    } else {
        write_zeros(t, offset, len, zeros)
    }
}

fn write_zeros(
    t: &mut dyn Target,
    mut offset: u64,
    mut len: u64,
    zeros: &mut Vec<u8>,
) -> io::Result<()> {
    while len > 0 {
        let n = len.min(CHUNK as u64) as usize;
        zeros.resize(n, 0);
        t.write_at(offset, zeros)?;
        offset += n as u64;
        len -= n as u64;
    }
    Ok(())
}

/// Writes the image read from `r` into every target (one stream, every
/// target the same bytes), then syncs them.
pub fn write(r: &mut dyn Read, targets: &mut [&mut dyn Target]) -> Result<Written> {
    let mut w = Writer::new(targets);
    let shape = read(r, &mut w)?;
    w.finish(shape)
}

/// A target whose read-back differs from what was written.
#[derive(Debug, thiserror::Error)]
#[error("{target} reads back other bytes than were written: {what}")]
pub struct Mismatch {
    /// The target.
    pub target: String,
    /// Where.
    pub what: String,
}

/// Reads back what [`write`] wrote into `t`: each data extent's CRC-32,
/// and zeros where it zeroed. (The source's own SHA-256 was checked as it
/// was read; the read-back looks for what the device lost or changed.)
pub fn verify(t: &mut dyn Target, w: &Written) -> Result<()> {
    let mut buf = vec![0u8; CHUNK];
    for e in &w.extents {
        let mut crc = crc32fast::Hasher::new();
        let mut done = 0;
        while done < e.len {
            crate::interrupt::check()?;
            let n = (e.len - done).min(CHUNK as u64) as usize;
            let b = buf.get_mut(..n).unwrap_or_default();
            t.read_at(e.offset + done, b)
                .with_context(|| format!("reading {} back", t.name()))?;
            if e.zero {
                // The word-wise test first; the position only on a miss.
                if let Some(i) = (!is_zero(b))
                    .then(|| b.iter().position(|x| *x != 0))
                    .flatten()
                {
                    return Err(Mismatch {
                        target: t.name(),
                        what: format!("byte {} is not zero", e.offset + done + i as u64),
                    }
                    .into());
                }
            } else {
                crc.update(b);
            }
            done += n as u64;
        }
        let got = crc.finalize();
        if !e.zero && got != e.crc {
            return Err(Mismatch {
                target: t.name(),
                what: format!(
                    "bytes {}..{}: CRC-32 {got:08x}, written {:08x}",
                    e.offset,
                    e.offset + e.len,
                    e.crc
                ),
            }
            .into());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
