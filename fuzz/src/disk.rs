//! Disk images for the GPT targets: a plain byte vector, or a sparse disk of
//! any size (head and tail bytes, zeros between) so that a few KiB of fuzz
//! input can describe a 32 GB eMMC or an absurd 2^63-byte one. Plus CRC
//! fix-ups, so that mutated headers and entries get past their CRC checks.

use std::io::{self, Read, Seek, SeekFrom};
use sysinstall::gpt::{self, SECTOR};

/// Random access to an image's bytes.
pub trait Image {
    /// Reads `len` bytes at `off`; bytes past the end read as zeros.
    fn read_at(&self, off: u64, len: usize) -> Vec<u8>;
    /// Writes `bytes` at `off` where the image stores bytes (elsewhere: dropped).
    fn write_at(&mut self, off: u64, bytes: &[u8]);
}

/// A plain image in memory.
pub struct VecImage<'a>(pub &'a mut Vec<u8>);

impl Image for VecImage<'_> {
    fn read_at(&self, off: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        copy_from(&mut out, off, 0, self.0);
        out
    }
    fn write_at(&mut self, off: u64, bytes: &[u8]) {
        copy_into(self.0, 0, off, bytes);
    }
}

/// A disk of `len` bytes: `head` at offset 0, `tail` ending at `len`, zeros
/// between. Reads past `len` fail like a device's would.
pub struct SparseDisk {
    len: u64,
    head: Vec<u8>,
    tail: Vec<u8>,
    pos: u64,
}

impl SparseDisk {
    /// A disk of `len` bytes (head and tail are cut to fit).
    pub fn new(len: u64, head: &[u8], tail: &[u8]) -> SparseDisk {
        let cap = usize::try_from(len).unwrap_or(usize::MAX);
        let head = head[..head.len().min(cap)].to_vec();
        let tail = tail[tail.len().saturating_sub(cap)..].to_vec();
        SparseDisk {
            len,
            head,
            tail,
            pos: 0,
        }
    }

    fn tail_start(&self) -> u64 {
        self.len - self.tail.len() as u64
    }
}

/// Copies the part of `src` (which sits at `src_off`) that overlaps
/// `[off, off + out.len())` into `out`.
fn copy_from(out: &mut [u8], off: u64, src_off: u64, src: &[u8]) {
    let (a, b) = (
        off.max(src_off),
        (off.saturating_add(out.len() as u64)).min(src_off + src.len() as u64),
    );
    if a < b {
        let (n, from, to) = ((b - a) as usize, (a - src_off) as usize, (a - off) as usize);
        out[to..to + n].copy_from_slice(&src[from..from + n]);
    }
}

/// Copies the part of `bytes` (meant for `off`) that overlaps `dst` (which
/// sits at `dst_off`) into `dst`.
fn copy_into(dst: &mut [u8], dst_off: u64, off: u64, bytes: &[u8]) {
    let (a, b) = (
        off.max(dst_off),
        (off.saturating_add(bytes.len() as u64)).min(dst_off + dst.len() as u64),
    );
    if a < b {
        let (n, from, to) = ((b - a) as usize, (a - off) as usize, (a - dst_off) as usize);
        dst[to..to + n].copy_from_slice(&bytes[from..from + n]);
    }
}

impl Image for SparseDisk {
    fn read_at(&self, off: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        copy_from(&mut out, off, 0, &self.head);
        copy_from(&mut out, off, self.tail_start(), &self.tail);
        out
    }
    fn write_at(&mut self, off: u64, bytes: &[u8]) {
        copy_into(&mut self.head, 0, off, bytes);
        let start = self.tail_start();
        copy_into(&mut self.tail, start, off, bytes);
    }
}

impl Read for SparseDisk {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.len.saturating_sub(self.pos)).min(buf.len() as u64) as usize;
        let bytes = self.read_at(self.pos, n);
        buf[..n].copy_from_slice(&bytes);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for SparseDisk {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(o) => Some(o),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = target.ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad seek"))?;
        Ok(self.pos)
    }
}

/// Recomputes the header CRC of a header sector whose `header_size` is sane.
pub fn fix_header_crc(sector: &mut [u8]) {
    let Some(size) = sector.get(12..16) else {
        return;
    };
    let size = u32::from_le_bytes(size.try_into().unwrap_or([0; 4])) as usize;
    if !(92..=SECTOR).contains(&size) || sector.len() < size {
        return;
    }
    sector[16..20].fill(0);
    let crc = gpt::crc32(&sector[..size]);
    sector[16..20].copy_from_slice(&crc.to_le_bytes());
}

/// Makes the headers at LBA 1 and at the last LBA of an `n`-sector disk
/// carry the right CRCs for their entry arrays and themselves (where the
/// header's own fields allow computing them at all).
pub fn fix_gpt_crcs(img: &mut impl Image, n: u64) {
    for lba in [1, n.saturating_sub(1)] {
        let Some(at) = lba.checked_mul(SECTOR as u64) else {
            continue;
        };
        let mut sector = img.read_at(at, SECTOR);
        if sector[..8] != gpt::SIGNATURE {
            continue;
        }
        let le32 =
            |b: &[u8], o: usize| u32::from_le_bytes(b[o..o + 4].try_into().unwrap_or([0; 4]));
        let entry_lba = u64::from_le_bytes(sector[72..80].try_into().unwrap_or([0; 8]));
        let bytes = u64::from(le32(&sector, 80)) * u64::from(le32(&sector, 84));
        if bytes <= gpt::MAX_ENTRY_ARRAY_BYTES {
            if let Some(off) = entry_lba.checked_mul(SECTOR as u64) {
                let crc = gpt::crc32(&img.read_at(off, bytes as usize));
                sector[88..92].copy_from_slice(&crc.to_le_bytes());
            }
        }
        fix_header_crc(&mut sector);
        img.write_at(at, &sector);
    }
}
