//! Compression chosen by magic bytes, never by the name.
//!
//! zstd (every frame, including pzstd's skippable ones), gzip (every member:
//! pigz and concatenations), xz (every stream), bzip2 (pure Rust, every
//! stream) and plain tar. A stream that is corrupt, truncated or followed by
//! garbage is an error that names the format and the compressed offset near
//! which it broke.
#![deny(clippy::indexing_slicing)]

use super::tar::is_tar_header;
use anyhow::{bail, Result};
use std::fmt;
use std::io::{self, BufRead, BufReader, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Bytes looked at to recognise the format (a whole tar header).
pub const SNIFF_LEN: usize = 512;
/// Buffer between the compressed source and the decoder.
const INPUT_BUFFER: usize = 256 << 10;
/// zstd's default window limit (2^27 = 128 MiB, `ZSTD_WINDOWLOG_LIMIT_DEFAULT`):
/// enough for `zstd -19` and `--long`; larger windows are refused by zstd.
const ZSTD_WINDOW_LOG_MAX: u32 = 27;

/// A compression format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// Zstandard.
    Zstd,
    /// gzip.
    Gzip,
    /// xz.
    Xz,
    /// bzip2.
    Bzip2,
    /// Uncompressed tar.
    Tar,
    /// Uncompressed bytes of any other kind (a partition image).
    None,
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Compression::Zstd => "zstd",
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Bzip2 => "bzip2",
            Compression::Tar => "tar",
            Compression::None => "none",
        })
    }
}

/// The lz4 frame magic (recognised only to say it is not supported).
const LZ4: [u8; 4] = [0x04, 0x22, 0x4d, 0x18];

/// Recognises the format from the first bytes of a stream.
pub fn detect(head: &[u8]) -> Result<Compression> {
    const ZSTD: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
    const GZIP: [u8; 2] = [0x1f, 0x8b];
    const XZ: [u8; 6] = [0xfd, b'7', b'z', b'X', b'Z', 0];
    let zstd_skippable =
        |h: &[u8]| matches!(h.get(..4), Some([b0, 0x2a, 0x4d, 0x18]) if b0 & 0xf0 == 0x50);
    if head.starts_with(&ZSTD) || zstd_skippable(head) {
        Ok(Compression::Zstd)
    } else if head.starts_with(&GZIP) {
        Ok(Compression::Gzip)
    } else if head.starts_with(&XZ) {
        Ok(Compression::Xz)
    } else if matches!(head.get(..4), Some([b'B', b'Z', b'h', b'1'..=b'9'])) {
        Ok(Compression::Bzip2)
    } else if head.get(..SNIFF_LEN).is_some_and(is_tar_header) {
        Ok(Compression::Tar)
    } else if head.starts_with(&LZ4) {
        bail!("lz4 is not supported: recompress with zstd (same speed, smaller)")
    } else if head.is_empty() {
        bail!("the source is empty")
    } else if head.len() < SNIFF_LEN {
        bail!("the source is only {} bytes: not a tarball", head.len())
    } else {
        bail!(
            "not a tar archive, nor zstd, gzip, xz or bzip2 compressed (first bytes {:02x?})",
            head.get(..8).unwrap_or(head)
        )
    }
}

/// Counts the compressed bytes the decoder has pulled, for error offsets.
struct Counted<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

type Input = BufReader<Counted<io::Chain<io::Cursor<Vec<u8>>, Box<dyn Read + Send>>>>;

/// A decoder that can give back its compressed input buffer, to check that
/// nothing follows the end of the data.
trait Decode: Read + Send {
    fn input(&mut self) -> &mut Input;
}

impl Decode for Input {
    fn input(&mut self) -> &mut Input {
        self
    }
}
impl Decode for flate2::bufread::MultiGzDecoder<Input> {
    fn input(&mut self) -> &mut Input {
        self.get_mut()
    }
}
impl Decode for liblzma::bufread::XzDecoder<Input> {
    fn input(&mut self) -> &mut Input {
        self.get_mut()
    }
}
impl Decode for bzip2::bufread::MultiBzDecoder<Input> {
    fn input(&mut self) -> &mut Input {
        self.get_mut()
    }
}
impl Decode for zstd::stream::read::Decoder<'static, Input> {
    fn input(&mut self) -> &mut Input {
        self.get_mut()
    }
}

/// A decompressing reader whose errors say which format broke where.
pub struct Decoder {
    format: Compression,
    inner: Box<dyn Decode>,
    consumed: Arc<AtomicU64>,
    produced: u64,
}

impl Decoder {
    /// Recognises the format of `source` (a tarball) and decodes it.
    pub fn new(source: Box<dyn Read + Send>) -> Result<Decoder> {
        Decoder::open(source, false)
    }

    /// Like [`Decoder::new`], for any bytes (a partition image): what is
    /// not compressed in a known format is passed on as it is.
    pub fn any(source: Box<dyn Read + Send>) -> Result<Decoder> {
        Decoder::open(source, true)
    }

    fn open(mut source: Box<dyn Read + Send>, any: bool) -> Result<Decoder> {
        let mut head = Vec::with_capacity(SNIFF_LEN);
        while head.len() < SNIFF_LEN {
            // A pipe or socket may deliver the head in pieces.
            let before = head.len();
            (&mut source)
                .take((SNIFF_LEN - before) as u64)
                .read_to_end(&mut head)?;
            if head.len() == before {
                break;
            }
        }
        let format = match detect(&head) {
            Ok(Compression::Tar) if any => Compression::None,
            Err(_) if any && !head.is_empty() && !head.starts_with(&LZ4) => Compression::None,
            f => f?,
        };
        let consumed = Arc::new(AtomicU64::new(0));
        let counted = Counted {
            inner: io::Cursor::new(head).chain(source),
            count: consumed.clone(),
        };
        let input: Input = BufReader::with_capacity(INPUT_BUFFER, counted);
        let inner: Box<dyn Decode> = match format {
            Compression::Tar | Compression::None => Box::new(input),
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(input)),
            Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(input)),
            Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(input)),
            Compression::Zstd => {
                let mut d = zstd::stream::read::Decoder::with_buffer(input)?;
                d.window_log_max(ZSTD_WINDOW_LOG_MAX)?;
                Box::new(d)
            }
        };
        Ok(Decoder {
            format,
            inner,
            consumed,
            produced: 0,
        })
    }

    /// The recognised format.
    pub fn format(&self) -> Compression {
        self.format
    }

    /// Compressed bytes read from the source so far.
    pub fn consumed(&self) -> u64 {
        self.consumed.load(Ordering::Relaxed)
    }

    /// Call after the decoder reported the end: fails if compressed input is
    /// left over (garbage after the last frame or member).
    pub fn finish(&mut self) -> Result<()> {
        let format = self.format;
        let at = self.consumed();
        let left = self.inner.input().fill_buf()?.len();
        if left > 0 {
            bail!(
                "{format} data is followed by garbage (near compressed byte {})",
                at.saturating_sub(left as u64)
            );
        }
        Ok(())
    }
}

/// An error of the source itself (a download that failed, a disk error),
/// passed through the decoder unchanged instead of being called corruption.
#[derive(Debug)]
pub struct SourceError(pub io::Error);

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for SourceError {}

impl Read for Decoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.produced += n as u64;
                Ok(n)
            }
            Err(e) if e.get_ref().is_some_and(|i| i.is::<SourceError>()) => Err(e),
            Err(e) => {
                let what = if e.kind() == io::ErrorKind::UnexpectedEof {
                    "the stream is truncated".to_owned()
                } else {
                    e.to_string()
                };
                Err(io::Error::new(
                    e.kind(),
                    format!(
                        "{} data is corrupt: {what} (near compressed byte {}, after {} bytes of tar)",
                        self.format,
                        self.consumed(),
                        self.produced
                    ),
                ))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;
    use std::io::Write;

    fn payload() -> Vec<u8> {
        // A valid tar: one 100 KiB file of varied bytes and the end marker.
        let mut ar = ::tar::Builder::new(Vec::new());
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 253) as u8).collect();
        let mut h = ::tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        ar.append_data(&mut h, "f", data.as_slice()).unwrap();
        ar.into_inner().unwrap()
    }

    fn compress(format: Compression, data: &[u8]) -> Vec<u8> {
        match format {
            Compression::Tar | Compression::None => data.to_vec(),
            Compression::Zstd => zstd::encode_all(data, 3).unwrap(),
            Compression::Gzip => {
                let mut e =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Xz => {
                let mut e = liblzma::write::XzEncoder::new(Vec::new(), 6);
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
            Compression::Bzip2 => {
                let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::default());
                e.write_all(data).unwrap();
                e.finish().unwrap()
            }
        }
    }

    fn decode(bytes: Vec<u8>) -> Result<(Compression, Vec<u8>)> {
        let mut d = Decoder::new(Box::new(io::Cursor::new(bytes)))?;
        let mut out = Vec::new();
        d.read_to_end(&mut out)?;
        d.finish()?;
        Ok((d.format(), out))
    }

    const ALL: [Compression; 5] = [
        Compression::Tar,
        Compression::Zstd,
        Compression::Gzip,
        Compression::Xz,
        Compression::Bzip2,
    ];

    #[test]
    fn every_format_is_recognised_and_decoded() {
        let tar = payload();
        for f in ALL {
            let (got, out) = decode(compress(f, &tar)).unwrap();
            assert_eq!(got, f);
            assert!(out == tar, "{f}");
        }
    }

    #[test]
    fn concatenated_members_and_frames_are_all_read() {
        let tar = payload();
        let (a, b) = tar.split_at(12_345);
        for f in [
            Compression::Zstd,
            Compression::Gzip,
            Compression::Xz,
            Compression::Bzip2,
        ] {
            let mut two = compress(f, a);
            two.extend(compress(f, b));
            let (_, out) = decode(two).unwrap();
            assert!(out == tar, "{f}: {} of {} bytes", out.len(), tar.len());
        }
    }

    #[test]
    fn truncated_streams_are_errors_naming_the_format() {
        let tar = payload();
        for f in [
            Compression::Zstd,
            Compression::Gzip,
            Compression::Xz,
            Compression::Bzip2,
        ] {
            let full = compress(f, &tar);
            let cut = full[..full.len() * 2 / 3].to_vec();
            let err = format!("{:#}", decode(cut).unwrap_err());
            assert!(err.contains(&f.to_string()), "{f}: {err}");
            assert!(err.contains("byte"), "{f}: {err}");
        }
    }

    #[test]
    fn garbage_after_the_data_is_an_error() {
        let tar = payload();
        for f in [
            Compression::Zstd,
            Compression::Gzip,
            Compression::Xz,
            Compression::Bzip2,
        ] {
            let mut bytes = compress(f, &tar);
            bytes.extend_from_slice(b"GARBAGE!");
            let err = format!("{:#}", decode(bytes).unwrap_err());
            assert!(err.contains(&f.to_string()), "{f}: {err}");
        }
    }

    #[test]
    fn unknown_input_is_refused() {
        assert!(detect(b"").unwrap_err().to_string().contains("empty"));
        assert!(detect(&[0x04, 0x22, 0x4d, 0x18, 0])
            .unwrap_err()
            .to_string()
            .contains("lz4"));
        let err = detect(&[b'x'; 600]).unwrap_err().to_string();
        assert!(err.contains("not a tar archive"), "{err}");
        assert_eq!(
            detect(&[0x50, 0x2a, 0x4d, 0x18]).unwrap(),
            Compression::Zstd
        );
    }

    #[test]
    fn an_image_decoder_passes_unknown_bytes_on_but_a_tarball_decoder_refuses_them() {
        let image: Vec<u8> = (0..5000u32).map(|i| (i % 13) as u8 + 1).collect();
        assert!(Decoder::new(Box::new(io::Cursor::new(image.clone()))).is_err());
        let mut d = Decoder::any(Box::new(io::Cursor::new(image.clone()))).unwrap();
        assert_eq!(d.format(), Compression::None);
        let mut out = Vec::new();
        d.read_to_end(&mut out).unwrap();
        assert_eq!(out, image);
        let z = compress(Compression::Zstd, &image);
        let mut d = Decoder::any(Box::new(io::Cursor::new(z))).unwrap();
        assert_eq!(d.format(), Compression::Zstd);
        out.clear();
        d.read_to_end(&mut out).unwrap();
        assert_eq!(out, image);
        // lz4 stays refused by name, images too.
        let lz4 = [0x04, 0x22, 0x4d, 0x18, 0, 0, 0, 0];
        let e = Decoder::any(Box::new(io::Cursor::new(lz4.to_vec())))
            .err()
            .unwrap();
        assert!(e.to_string().contains("lz4"), "{e}");
    }
}
