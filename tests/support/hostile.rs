//! Hostile inputs as pure byte generators, written from the documented
//! formats (docs/spec/bup-format.md §1, §6.1; POSIX ustar/pax, GNU tar sparse
//! formats) and independent of the parsers that will read them, so the BUP
//! and tar engineers' code can be wired to them (issue 8's resource bounds):
//!
//! * [`bup_entry_claiming_4gib`], [`bup_entry_count_claiming`],
//!   [`bup_entry_wrapping_u32`]: BUP payloads whose entries claim sizes the
//!   file does not have.
//! * [`tar_pax_header_claiming`]: a tar whose PAX extended header claims
//!   1 GiB (the bytes are not there); [`PaxStream`]: one that really has it,
//!   generated on the fly (never held in memory).
//! * [`tar_gnu_sparse`] and [`tar_pax_sparse_1_0`]: a 10 GiB sparse file
//!   holding 512 bytes of data, old-GNU and PAX 1.0 flavours.

use std::io::Read;

/// BUP header magic of the V2 format (docs/spec/bup-format.md §1.2).
pub const BUP_MAGIC_V2: &[u8; 16] = b"NVIDIA__BLOB__V2";
/// Size of the fixed BUP header.
pub const BUP_HEADER: usize = 40;
/// Size of one V2 entry.
pub const BUP_ENTRY: usize = 120;

/// One BUP entry as the generator (`BUP_generator.py`) describes it.
pub struct BupEntry<'a> {
    /// Partition name (at most 40 bytes, NUL-padded).
    pub partition: &'a str,
    /// The data; its offset and length are filled in.
    pub data: &'a [u8],
    /// Entry version.
    pub version: u32,
    /// 0 common, 1 pre-production, 2 production.
    pub op_mode: u32,
    /// TNSPEC, empty for common entries (at most 64 bytes).
    pub spec: &'a str,
}

fn fixed<const N: usize>(s: &str) -> [u8; N] {
    let mut b = [0u8; N];
    b[..s.len()].copy_from_slice(s.as_bytes());
    b
}

/// A V2 update payload laid out as `BUP_generator.py` writes it: header,
/// accessory, entry table, then the data in entry order (doc §6.1 `mkbup`).
pub fn bup_v2(entries: &[BupEntry<'_>], version: u32, accessory: &[u8]) -> Vec<u8> {
    let header_size = BUP_HEADER + accessory.len();
    let mut offset = header_size + BUP_ENTRY * entries.len();
    let mut table = Vec::new();
    let mut data = Vec::new();
    for e in entries {
        table.extend_from_slice(&fixed::<40>(e.partition));
        table.extend_from_slice(&(offset as u32).to_le_bytes());
        table.extend_from_slice(&(e.data.len() as u32).to_le_bytes());
        table.extend_from_slice(&e.version.to_le_bytes());
        table.extend_from_slice(&e.op_mode.to_le_bytes());
        table.extend_from_slice(&fixed::<64>(e.spec));
        data.extend_from_slice(e.data);
        offset += e.data.len();
    }
    let total = (header_size + table.len() + data.len()) as u32;
    let mut out = BUP_MAGIC_V2.to_vec();
    for v in [
        version,
        total,
        header_size as u32,
        entries.len() as u32,
        0,
        total,
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(accessory);
    out.extend_from_slice(&table);
    out.extend_from_slice(&data);
    out
}

/// Sets field `at` (a byte offset) of a payload to `v`, little-endian.
pub fn bup_set_u32(bup: &mut [u8], at: usize, v: u32) {
    bup[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// A one-entry payload whose entry claims 0xFFFF_FFFF bytes (4 GiB − 1) of
/// data the 312-byte file does not have. A reader that allocates the claim
/// first asks for 4 GiB.
pub fn bup_entry_claiming_4gib() -> Vec<u8> {
    let e = BupEntry {
        partition: "mb2",
        data: b"MB2DATA!",
        version: 0x3275,
        op_mode: 0,
        spec: "",
    };
    let mut b = bup_v2(&[e], 0x0102_0621, &[0; 8]);
    bup_set_u32(&mut b, 48 + 44, u32::MAX);
    b
}

/// A payload whose header claims `count` entries (× 120 bytes) but has none.
pub fn bup_entry_count_claiming(count: u32) -> Vec<u8> {
    let mut b = bup_v2(&[], 0x0102_0621, &[0; 8]);
    bup_set_u32(&mut b, 28, count);
    b
}

/// The reference reader's u32 wrap (doc §1.8): offset 100, length
/// 0xFFFF_FFF0, so `offset + length` wraps to 84 and looks in bounds.
pub fn bup_entry_wrapping_u32() -> Vec<u8> {
    let e = BupEntry {
        partition: "mb2",
        data: b"MB2DATA!",
        version: 2,
        op_mode: 0,
        spec: "",
    };
    let mut b = bup_v2(&[e], 0x0002_0000, &[]);
    bup_set_u32(&mut b, 40 + 40, 100);
    bup_set_u32(&mut b, 40 + 44, 0xFFFF_FFF0);
    b
}

/// A 512-byte ustar header with a correct checksum. `size` above 8 GiB − 1
/// is written in GNU base-256 (the octal field holds 11 digits).
pub fn tar_header(name: &str, typeflag: u8, size: u64) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    h[100..108].copy_from_slice(b"0000644\0");
    h[108..116].copy_from_slice(b"0000000\0");
    h[116..124].copy_from_slice(b"0000000\0");
    put_number(&mut h[124..136], size);
    h[136..148].copy_from_slice(b"14577000000\0");
    h[156] = typeflag;
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    set_checksum(&mut h);
    h
}

/// Writes a numeric field: octal with a NUL when it fits, else base-256.
fn put_number(field: &mut [u8], v: u64) {
    let digits = field.len() - 1;
    if v < 1u64 << (3 * digits) {
        let s = format!("{v:0digits$o}\0");
        field.copy_from_slice(s.as_bytes());
    } else {
        field.fill(0);
        field[0] = 0x80;
        let n = field.len();
        field[n - 8..].copy_from_slice(&v.to_be_bytes());
    }
}

fn set_checksum(h: &mut [u8; 512]) {
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
}

/// One PAX record, `"<len> key=value\n"`, whose length counts itself.
pub fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = key.len() + value.len() + 3; // space, '=', newline
    let mut len = body + 1;
    while len != body + len.to_string().len() {
        len = body + len.to_string().len();
    }
    format!("{len} {key}={value}\n").into_bytes()
}

fn pad(v: &mut Vec<u8>) {
    let rem = v.len() % 512;
    if rem != 0 {
        v.resize(v.len() + 512 - rem, 0);
    }
}

/// A tar whose PAX extended header claims `size` bytes but carries only one
/// short record before the archive ends. A reader that sizes its buffer by
/// the claim allocates `size` up front.
pub fn tar_pax_header_claiming(size: u64) -> Vec<u8> {
    let mut out = tar_header("PaxHeaders/big", b'x', size).to_vec();
    out.extend_from_slice(&pax_record("path", "big"));
    pad(&mut out);
    out
}

/// A complete tar, generated as it is read, whose PAX extended header really
/// is `size` bytes (one `comment` record of that length), followed by a
/// 5-byte file and the end-of-archive blocks. Holding the header in memory
/// is what a bounded reader must refuse.
pub struct PaxStream {
    parts: Vec<Box<dyn Read>>,
}

impl PaxStream {
    /// A stream whose PAX header data is exactly `size` bytes (≥ 32).
    pub fn new(size: u64) -> PaxStream {
        let digits = size.to_string();
        let prefix = format!("{digits} comment=");
        let filler = size - prefix.len() as u64 - 1;
        let pad_len = (512 - size % 512) % 512;
        let file = {
            let mut f = tar_header("small", b'0', 5).to_vec();
            f.extend_from_slice(b"hello");
            pad(&mut f);
            f.extend_from_slice(&[0u8; 1024]);
            f
        };
        let parts: Vec<Box<dyn Read>> = vec![
            Box::new(std::io::Cursor::new(
                tar_header("PaxHeaders/small", b'x', size).to_vec(),
            )),
            Box::new(std::io::Cursor::new(prefix.into_bytes())),
            Box::new(std::io::repeat(b'a').take(filler)),
            Box::new(std::io::Cursor::new(b"\n".to_vec())),
            Box::new(std::io::repeat(0).take(pad_len)),
            Box::new(std::io::Cursor::new(file)),
        ];
        PaxStream { parts }
    }
}

impl Read for PaxStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while let Some(p) = self.parts.first_mut() {
            let n = p.read(buf)?;
            if n > 0 {
                return Ok(n);
            }
            self.parts.remove(0);
        }
        Ok(0)
    }
}

/// 10 GiB: the apparent size of the sparse files below.
pub const SPARSE_SIZE: u64 = 10 << 30;

/// The 512 data bytes of the sparse files below, at `SPARSE_SIZE − 512`.
pub fn sparse_data() -> Vec<u8> {
    (0..512u32).map(|i| (i % 251) as u8).collect()
}

/// An old-GNU sparse file (`tar --format=gnu -S`, typeflag `S`): 10 GiB
/// apparent size, one 512-byte data chunk at its end, the rest a hole.
pub fn tar_gnu_sparse() -> Vec<u8> {
    let mut h = tar_header("sparse.bin", b'S', 512);
    h[257..265].copy_from_slice(b"ustar  \0"); // GNU magic and version
                                               // Sparse map at 386: (offset, numbytes) pairs of 12 bytes each.
    put_number(&mut h[386..398], SPARSE_SIZE - 512);
    put_number(&mut h[398..410], 512);
    h[482] = 0; // isextended
    put_number(&mut h[483..495], SPARSE_SIZE); // realsize
    set_checksum(&mut h);
    let mut out = h.to_vec();
    out.extend_from_slice(&sparse_data());
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// A PAX sparse 1.0 file (`tar --format=posix -S`): `GNU.sparse.*` records,
/// then the map (`1\n<offset>\n<size>\n`, padded to a block) and the data.
pub fn tar_pax_sparse_1_0() -> Vec<u8> {
    let mut pax = Vec::new();
    for (k, v) in [
        ("GNU.sparse.major", "1".to_owned()),
        ("GNU.sparse.minor", "0".to_owned()),
        ("GNU.sparse.name", "sparse.bin".to_owned()),
        ("GNU.sparse.realsize", SPARSE_SIZE.to_string()),
    ] {
        pax.extend_from_slice(&pax_record(k, &v));
    }
    let mut out = tar_header("./PaxHeaders/sparse.bin", b'x', pax.len() as u64).to_vec();
    out.extend_from_slice(&pax);
    pad(&mut out);
    let mut body = format!("1\n{}\n512\n", SPARSE_SIZE - 512).into_bytes();
    pad(&mut body);
    body.extend_from_slice(&sparse_data());
    out.extend_from_slice(&tar_header(
        "./GNUSparseFile.0/sparse.bin",
        b'0',
        body.len() as u64,
    ));
    out.extend_from_slice(&body);
    out.extend_from_slice(&[0u8; 1024]);
    out
}
