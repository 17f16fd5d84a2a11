//! Android sparse images (`simg`, what `img2simg` and Yocto's tegraflash
//! make), read as a stream (docs/spec/image-format.md §2): a 28-byte file
//! header, then chunks that are raw data, a 4-byte fill pattern, "don't
//! care" (nothing to write) or a CRC-32 record.
#![deny(clippy::indexing_slicing)]

use super::{Piece, Pieces};
use anyhow::{bail, ensure, Context as _, Result};
use std::io::Read;

/// `SPARSE_HEADER_MAGIC`, little-endian at offset 0.
pub const MAGIC: u32 = 0xED26_FF3A;
/// The file header this reader knows (version 1.0, 28 bytes).
pub const FILE_HEADER_LEN: usize = 28;
/// The chunk header (12 bytes).
pub const CHUNK_HEADER_LEN: usize = 12;

/// Chunk types.
const RAW: u16 = 0xCAC1;
const FILL: u16 = 0xCAC2;
const DONT_CARE: u16 = 0xCAC3;
const CRC32: u16 = 0xCAC4;

/// A header's extra bytes beyond those this reader knows are skipped; more
/// than this is not a sparse image.
const MAX_HEADER_LEN: u16 = 1024;

/// The file header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Bytes per block (a multiple of 4).
    pub block_size: u32,
    /// Blocks in the expanded image.
    pub blocks: u32,
    /// Chunks that follow.
    pub chunks: u32,
    file_header_len: u16,
    chunk_header_len: u16,
}

impl Header {
    /// Parses the first 28 bytes; the magic must already be known to match.
    pub fn parse(b: &[u8; FILE_HEADER_LEN]) -> Result<Header> {
        let le16 = |at: usize| crate::bytes::le16(b, at).unwrap_or(0);
        let le32 = |at: usize| crate::bytes::le32(b, at).unwrap_or(0);
        ensure!(le32(0) == MAGIC, "no sparse image magic");
        let (major, minor) = (le16(4), le16(6));
        ensure!(
            major == 1,
            "sparse image version {major}.{minor} (this reader knows 1.x)"
        );
        let h = Header {
            file_header_len: le16(8),
            chunk_header_len: le16(10),
            block_size: le32(12),
            blocks: le32(16),
            chunks: le32(20),
        };
        ensure!(
            (FILE_HEADER_LEN as u16..=MAX_HEADER_LEN).contains(&h.file_header_len),
            "sparse file header length {} (at least {FILE_HEADER_LEN})",
            h.file_header_len
        );
        ensure!(
            (CHUNK_HEADER_LEN as u16..=MAX_HEADER_LEN).contains(&h.chunk_header_len),
            "sparse chunk header length {} (at least {CHUNK_HEADER_LEN})",
            h.chunk_header_len
        );
        ensure!(
            h.block_size >= 512 && h.block_size % 4 == 0,
            "sparse block size {} (a multiple of 4, at least 512)",
            h.block_size
        );
        Ok(h)
    }

    /// Bytes of the expanded image.
    pub fn expanded(&self) -> u64 {
        u64::from(self.blocks) * u64::from(self.block_size)
    }
}

/// Reads the chunks after `header` (its 28 bytes already read from `r`)
/// and hands `out` their pieces in order. Every chunk's length is checked
/// against its type, and the chunks must cover exactly the header's blocks.
pub fn read(header: &Header, r: &mut dyn Read, out: &mut Pieces<'_>) -> Result<()> {
    skip(r, usize::from(header.file_header_len) - FILE_HEADER_LEN)?;
    let bs = u64::from(header.block_size);
    let mut block: u64 = 0;
    for index in 0..header.chunks {
        let at = || format!("sparse chunk {index} (block {block})");
        let mut h = [0u8; CHUNK_HEADER_LEN];
        r.read_exact(&mut h).with_context(at)?;
        skip(r, usize::from(header.chunk_header_len) - CHUNK_HEADER_LEN).with_context(at)?;
        let kind = crate::bytes::le16(&h, 0).unwrap_or(0);
        let count = u64::from(crate::bytes::le32(&h, 4).unwrap_or(0));
        let total = u64::from(crate::bytes::le32(&h, 8).unwrap_or(0));
        let body = total
            .checked_sub(u64::from(header.chunk_header_len))
            .with_context(|| format!("{}: total size {total} is below its header", at()))?;
        let end = block
            .checked_add(count)
            .filter(|e| *e <= u64::from(header.blocks))
            .with_context(|| {
                format!(
                    "{}: {count} blocks run past the image's {}",
                    at(),
                    header.blocks
                )
            })?;
        let offset = block * bs;
        let len = count * bs;
        let want_body = match kind {
            RAW => len,
            FILL | CRC32 => 4,
            DONT_CARE => 0,
            other => bail!("{}: unknown chunk type {other:#06x}", at()),
        };
        if body != want_body {
            bail!(
                "{}: type {kind:#06x} carries {body} bytes, {want_body} expected",
                at()
            );
        }
        match kind {
            RAW => out.data_from(offset, len, r).with_context(at)?,
            FILL => {
                let mut p = [0u8; 4];
                r.read_exact(&mut p).with_context(at)?;
                out.fill(offset, len, p)?;
            }
            DONT_CARE => out.push(Piece::Skip { offset, len })?,
            // The record of a CRC-32 over what came before; the stream's
            // SHA-256 and the read-back are what this installer checks.
            _ => {
                ensure!(count == 0, "{}: a CRC chunk covers no blocks", at());
                skip(r, 4).with_context(at)?;
            }
        }
        block = end;
    }
    if block != u64::from(header.blocks) {
        bail!(
            "the sparse image's chunks cover {block} of its {} blocks",
            header.blocks
        );
    }
    Ok(())
}

fn skip(r: &mut dyn Read, n: usize) -> std::io::Result<()> {
    let copied = std::io::copy(&mut r.take(n as u64), &mut std::io::sink())?;
    if copied != n as u64 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
