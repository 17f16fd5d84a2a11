#![allow(clippy::indexing_slicing)]

use super::*;

/// A target in memory; `zero` records how it was asked.
struct Mem {
    bytes: Vec<u8>,
    zeroed: Vec<(u64, u64)>,
}

impl Mem {
    fn new(len: usize, fill: u8) -> Mem {
        Mem {
            bytes: vec![fill; len],
            zeroed: Vec::new(),
        }
    }
}

impl Target for Mem {
    fn name(&self) -> String {
        "mem".into()
    }
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let o = offset as usize;
        self.bytes[o..o + buf.len()].copy_from_slice(buf);
        Ok(())
    }
    fn zero(&mut self, offset: u64, len: u64) -> io::Result<()> {
        assert_eq!(offset % ZERO_ALIGN, 0);
        assert_eq!(len % ZERO_ALIGN, 0);
        self.zeroed.push((offset, len));
        let o = offset as usize;
        self.bytes[o..o + len as usize].fill(0);
        Ok(())
    }
    fn sync(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let o = offset as usize;
        buf.copy_from_slice(&self.bytes[o..o + buf.len()]);
        Ok(())
    }
}

/// A sparse image builder (the format as img2simg writes it).
struct Simg {
    block: u32,
    chunks: Vec<Vec<u8>>,
    blocks: u32,
}

impl Simg {
    fn new(block: u32) -> Simg {
        Simg {
            block,
            chunks: Vec::new(),
            blocks: 0,
        }
    }
    fn chunk(&mut self, kind: u16, blocks: u32, body: &[u8]) -> &mut Simg {
        let mut c = Vec::new();
        c.extend_from_slice(&kind.to_le_bytes());
        c.extend_from_slice(&0u16.to_le_bytes());
        c.extend_from_slice(&blocks.to_le_bytes());
        c.extend_from_slice(&(12 + body.len() as u32).to_le_bytes());
        c.extend_from_slice(body);
        self.chunks.push(c);
        self.blocks += blocks;
        self
    }
    fn raw(&mut self, data: &[u8]) -> &mut Simg {
        let n = data.len() as u32 / self.block;
        self.chunk(0xCAC1, n, data)
    }
    fn fill(&mut self, blocks: u32, pattern: [u8; 4]) -> &mut Simg {
        self.chunk(0xCAC2, blocks, &pattern)
    }
    fn dont_care(&mut self, blocks: u32) -> &mut Simg {
        self.chunk(0xCAC3, blocks, &[])
    }
    fn bytes(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&sparse::MAGIC.to_le_bytes());
        b.extend_from_slice(&1u16.to_le_bytes());
        b.extend_from_slice(&0u16.to_le_bytes());
        b.extend_from_slice(&28u16.to_le_bytes());
        b.extend_from_slice(&12u16.to_le_bytes());
        b.extend_from_slice(&self.block.to_le_bytes());
        b.extend_from_slice(&self.blocks.to_le_bytes());
        b.extend_from_slice(&(self.chunks.len() as u32).to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        for c in &self.chunks {
            b.extend_from_slice(c);
        }
        b
    }
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ seed | 1)
        .collect()
}

fn write_into(image: &[u8], targets: &mut [Mem]) -> Result<Written> {
    let mut refs: Vec<&mut dyn Target> = targets.iter_mut().map(|t| t as &mut dyn Target).collect();
    write(&mut &image[..], &mut refs)
}

#[test]
fn a_raw_image_is_written_whole_and_its_zero_chunks_are_zeroed() {
    let mut image = pattern(CHUNK + 1000, 7);
    image.extend(vec![0u8; 2 * CHUNK]);
    image.extend(pattern(3000, 9));
    let mut t = [Mem::new(6 * CHUNK, 0xAA), Mem::new(5 * CHUNK, 0x55)];
    let w = write_into(&image, &mut t).unwrap();
    assert_eq!(w.shape.format, Format::Raw);
    assert_eq!(w.shape.size, image.len() as u64);
    for m in &mut t {
        assert_eq!(&m.bytes[..image.len()], &image[..]);
        // Past the image: untouched.
        assert!(m.bytes[image.len()..].iter().all(|b| *b != 0));
        verify(m, &w).unwrap();
    }
    // Chunks are cut at 1 MiB from the start: the second and the fourth
    // hold data and zeros, only the third is all zero.
    assert_eq!(t[0].zeroed, [(2 * CHUNK as u64, CHUNK as u64)]);
    assert_eq!(w.shape.zero, CHUNK as u64);
    assert_eq!(w.shape.data, image.len() as u64 - CHUNK as u64);
}

#[test]
fn a_sparse_image_expands_fills_and_leaves_holes_alone() {
    let block = 4096u32;
    let a = pattern(2 * block as usize, 1);
    let mut s = Simg::new(block);
    s.raw(&a)
        .dont_care(100)
        .fill(3, [0xDE, 0xAD, 0xBE, 0xEF])
        .fill(5, [0; 4])
        .raw(&pattern(block as usize, 2));
    let image = s.bytes();
    let total = 111 * block as usize;
    let mut t = [Mem::new(total + 4096, 0xAA)];
    let w = write_into(&image, &mut t).unwrap();
    assert_eq!(w.shape.format, Format::Sparse);
    assert_eq!(w.shape.size, total as u64);
    assert_eq!(w.shape.skipped, 100 * block as u64);
    assert_eq!(w.shape.zero, 5 * block as u64);
    let m = &t[0];
    let b = block as usize;
    assert_eq!(&m.bytes[..2 * b], &a[..]);
    assert!(
        m.bytes[2 * b..102 * b].iter().all(|x| *x == 0xAA),
        "a hole is not written"
    );
    assert!(m.bytes[102 * b..105 * b]
        .chunks(4)
        .all(|c| c == [0xDE, 0xAD, 0xBE, 0xEF]));
    assert!(m.bytes[105 * b..110 * b].iter().all(|x| *x == 0));
    assert_eq!(&m.bytes[110 * b..111 * b], &pattern(b, 2)[..]);
    verify(&mut t[0], &w).unwrap();
    // The head is the expanded image's, for the filesystem probe.
    assert_eq!(&w.shape.head[..], &a[..HEAD_LEN]);
}

#[test]
fn the_read_back_catches_a_changed_byte_and_a_dirty_zero_run() {
    let mut image = pattern(5000, 3);
    image.extend(vec![0u8; CHUNK * 2]);
    let mut t = [Mem::new(4 * CHUNK, 0)];
    let w = write_into(&image, &mut t).unwrap();
    t[0].bytes[4000] ^= 1;
    let e = verify(&mut t[0], &w).unwrap_err();
    assert!(e.is::<Mismatch>(), "{e:#}");
    t[0].bytes[4000] ^= 1;
    t[0].bytes[CHUNK + 17] = 1;
    let e = verify(&mut t[0], &w).unwrap_err().to_string();
    assert!(
        e.contains(&format!("byte {} is not zero", CHUNK + 17)),
        "{e}"
    );
}

#[test]
fn an_image_larger_than_its_target_is_refused_before_writing_past_it() {
    let image = pattern(3 * CHUNK, 4);
    let mut t = [Mem::new(2 * CHUNK, 0)];
    let e = write_into(&image, &mut t).unwrap_err().to_string();
    assert!(e.contains("larger than mem"), "{e}");
}

#[test]
fn ragged_zero_runs_are_written_not_zeroed_out() {
    // 700 bytes of data then a zero tail that is not a whole chunk: the
    // zero-out gets only the 512-aligned middle.
    let mut image = pattern(700, 5);
    image.extend(vec![0u8; CHUNK - 700]);
    image.extend(vec![0u8; 1500]);
    let mut t = [Mem::new(2 * CHUNK, 0xFF)];
    let w = write_into(&image, &mut t).unwrap();
    assert_eq!(&t[0].bytes[..image.len()], &image[..]);
    for (o, l) in &t[0].zeroed {
        assert_eq!((o % 512, l % 512), (0, 0));
    }
    verify(&mut t[0], &w).unwrap();
}

#[test]
fn broken_sparse_images_are_refused_with_the_chunk_named() {
    let block = 4096u32;
    let cases: Vec<(Vec<u8>, &str)> = vec![
        {
            // A RAW chunk that claims more blocks than it carries.
            let mut s = Simg::new(block);
            s.chunk(0xCAC1, 2, &pattern(block as usize, 1));
            (
                s.bytes(),
                "sparse chunk 0 (block 0): type 0xcac1 carries 4096 bytes, 8192 expected",
            )
        },
        {
            let mut s = Simg::new(block);
            s.chunk(0xCAC9, 1, &[]);
            (s.bytes(), "unknown chunk type 0xcac9")
        },
        {
            // Chunks that do not cover the header's blocks.
            let mut s = Simg::new(block);
            s.dont_care(4);
            let mut b = s.bytes();
            b[16..20].copy_from_slice(&9u32.to_le_bytes());
            (b, "cover 4 of its 9 blocks")
        },
        {
            let mut s = Simg::new(block);
            s.dont_care(4);
            let mut b = s.bytes();
            b[16..20].copy_from_slice(&2u32.to_le_bytes());
            (b, "4 blocks run past the image's 2")
        },
        {
            let mut s = Simg::new(block);
            s.dont_care(1);
            let mut b = s.bytes();
            b[12..16].copy_from_slice(&1001u32.to_le_bytes());
            (b, "sparse block size 1001")
        },
        {
            let mut s = Simg::new(block);
            s.raw(&pattern(block as usize, 1));
            let b = s.bytes();
            (b[..b.len() - 10].to_vec(), "sparse chunk 0")
        },
        {
            let mut s = Simg::new(block);
            s.dont_care(1);
            let mut b = s.bytes();
            b.push(0);
            (b, "bytes after the sparse image's last chunk")
        },
    ];
    for (image, want) in cases {
        let mut t = [Mem::new(1 << 24, 0)];
        let e = format!("{:#}", write_into(&image, &mut t).unwrap_err());
        assert!(e.contains(want), "{e}\nwanted: {want}");
    }
}

#[test]
fn the_measure_of_an_image_is_what_writing_it_finds() {
    let mut s = Simg::new(4096);
    s.raw(&pattern(8192, 1)).dont_care(7).fill(1, [1, 2, 3, 4]);
    let image = s.bytes();
    let measured = read(&mut &image[..], &mut Measure).unwrap();
    let mut t = [Mem::new(1 << 20, 0)];
    let written = write_into(&image, &mut t).unwrap();
    assert_eq!(measured, written.shape);
    assert_eq!(measured.size, 10 * 4096);
    assert_eq!(measured.data, 3 * 4096);
}
