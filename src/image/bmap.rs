//! Block maps (`bmaptool create`'s XML, docs/spec/image-format.md §5): which
//! blocks of a whole-disk image hold data, each range with its SHA-256.
//!
//! [`Bmap::parse`] reads and checks a map (its own checksum too);
//! [`Filter`] sits between the image reader and a writer: it passes on only
//! the mapped ranges, hashes each one as it flows and fails at the first
//! range whose bytes are not the ones the map was made from.
#![deny(clippy::indexing_slicing)]

use super::{Piece, Sink, CHUNK};
use anyhow::{bail, ensure, Result};
use quick_xml::events::Event;
use sha2::{Digest, Sha256};

/// Largest bmap file read (a map of a 1 TB image with a range every other
/// block would still be smaller).
pub const MAX_BYTES: u64 = 64 << 20;
/// Most ranges a map may list.
const MAX_RANGES: usize = 4 << 20;

/// A range of blocks holding data (both ends included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// First block.
    pub first: u64,
    /// Last block.
    pub last: u64,
    /// SHA-256 of the range's bytes in the image.
    pub sha256: [u8; 32],
}

/// A parsed, checked block map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    /// The format version, as written (`2.0`).
    pub version: String,
    /// Bytes of the image.
    pub image_size: u64,
    /// Bytes per block.
    pub block_size: u64,
    /// The mapped ranges, in order.
    pub ranges: Vec<Range>,
}

/// The text of the elements a map is made of, as found.
#[derive(Default)]
struct Raw {
    version: Option<String>,
    fields: Vec<(String, String)>,
    ranges: Vec<(String, Option<String>)>,
}

impl Raw {
    fn field(&self, name: &str) -> Result<&str> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .ok_or_else(|| anyhow::anyhow!("no <{name}> element"))
    }

    fn number(&self, name: &str) -> Result<u64> {
        let text = self.field(name)?;
        text.parse()
            .map_err(|_| anyhow::anyhow!("<{name}> is {text:?}, not a number"))
    }
}

fn read_raw(text: &str) -> Result<Raw> {
    let mut reader = quick_xml::Reader::from_str(text);
    let mut raw = Raw::default();
    let mut path: Vec<String> = Vec::new();
    let mut chksum: Option<String> = None;
    let mut body = String::new();
    loop {
        let event = reader
            .read_event()
            .map_err(|e| anyhow::anyhow!("malformed XML: {e}"))?;
        match event {
            Event::Eof => break,
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                let attr = |key: &str| -> Result<Option<String>> {
                    for a in e.attributes() {
                        let a = a.map_err(|err| anyhow::anyhow!("<{name}>: {err}"))?;
                        if a.key.as_ref() == key.as_bytes() {
                            let v = a
                                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .map_err(|err| anyhow::anyhow!("<{name} {key}>: {err}"))?;
                            return Ok(Some(v.into_owned()));
                        }
                    }
                    Ok(None)
                };
                match (path.len(), name.as_str()) {
                    (0, "bmap") => raw.version = attr("version")?,
                    (0, other) => bail!("the root element is <{other}>, not <bmap>"),
                    (2, "Range") => chksum = attr("chksum")?,
                    _ => {}
                }
                path.push(name);
                body.clear();
            }
            Event::Text(t) => body.push_str(
                &t.xml10_content()
                    .map_err(|e| anyhow::anyhow!("malformed text: {e}"))?,
            ),
            Event::End(_) => {
                let Some(name) = path.pop() else {
                    bail!("an end tag without a start")
                };
                match (path.len(), name.as_str()) {
                    (1, _) => raw.fields.push((name, std::mem::take(&mut body))),
                    (2, "Range") => {
                        ensure!(
                            raw.ranges.len() < MAX_RANGES,
                            "more than {MAX_RANGES} ranges"
                        );
                        raw.ranges.push((std::mem::take(&mut body), chksum.take()));
                    }
                    _ => body.clear(),
                }
            }
            _ => {}
        }
    }
    ensure!(raw.version.is_some(), "no <bmap version=...> root element");
    Ok(raw)
}

fn hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

impl Bmap {
    /// Parses a bmap file's bytes and checks it: the format (2.x, or 1.4
    /// which is the same, with SHA-256 checksums), the file's own checksum,
    /// the sizes, and ranges in order inside the image.
    pub fn parse(bytes: &[u8]) -> Result<Bmap> {
        let text = std::str::from_utf8(bytes).map_err(|_| anyhow::anyhow!("not UTF-8 text"))?;
        let raw = read_raw(text)?;
        let version = raw.version.clone().unwrap_or_default();
        let (major, minor) = version
            .trim()
            .split_once('.')
            .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("version {version:?} is not MAJOR.MINOR"))?;
        ensure!(
            major == 2 || (major, minor) == (1, 4),
            "format version {version} is not supported (2.x, with SHA-256 checksums, is: \
             `bmaptool create` has written it since 2014)"
        );
        let kind = raw.field("ChecksumType")?;
        ensure!(
            kind == "sha256",
            "<ChecksumType> is {kind}; only sha256 is supported"
        );
        let stored = raw.field("BmapFileChecksum")?;
        let want =
            hex32(stored).ok_or_else(|| anyhow::anyhow!("<BmapFileChecksum> is not a SHA-256"))?;
        // The checksum is taken with its own text replaced by zeros.
        let at = text
            .find(stored)
            .ok_or_else(|| anyhow::anyhow!("<BmapFileChecksum> not found in the text"))?;
        let mut h = Sha256::new();
        h.update(bytes.get(..at).unwrap_or_default());
        h.update([b'0'; 64]);
        h.update(bytes.get(at + 64..).unwrap_or_default());
        let got: [u8; 32] = h.finalize().into();
        ensure!(
            got == want,
            "the file's checksum is {}, <BmapFileChecksum> says {stored}: the file was changed or cut",
            crate::bytes::hex(&got)
        );
        let image_size = raw.number("ImageSize")?;
        let block_size = raw.number("BlockSize")?;
        ensure!(
            block_size >= 512 && block_size.is_power_of_two() && block_size <= 1 << 20,
            "<BlockSize> {block_size} is not a power of two from 512 to 1 MiB"
        );
        let blocks = raw.number("BlocksCount")?;
        ensure!(
            blocks == image_size.div_ceil(block_size),
            "<BlocksCount> {blocks} does not cover <ImageSize> {image_size} in blocks of {block_size}"
        );
        let mut ranges: Vec<Range> = Vec::with_capacity(raw.ranges.len());
        for (text, sum) in &raw.ranges {
            let shown = text.trim();
            let (a, b) = shown.split_once('-').unwrap_or((shown, shown));
            let (Ok(first), Ok(last)) = (a.trim().parse::<u64>(), b.trim().parse::<u64>()) else {
                bail!("<Range> {shown:?} is not FIRST-LAST");
            };
            ensure!(first <= last, "<Range> {shown} ends before it starts");
            ensure!(
                last < blocks,
                "<Range> {shown} is not inside the image's {blocks} blocks"
            );
            if let Some(prev) = ranges.last() {
                ensure!(
                    first > prev.last,
                    "<Range> {shown} overlaps or comes before {}-{}",
                    prev.first,
                    prev.last
                );
            }
            let sha256 = sum
                .as_deref()
                .and_then(hex32)
                .ok_or_else(|| anyhow::anyhow!("<Range> {shown} has no SHA-256 chksum"))?;
            ranges.push(Range {
                first,
                last,
                sha256,
            });
        }
        let mapped: u64 = ranges.iter().map(|r| r.last - r.first + 1).sum();
        let said = raw.number("MappedBlocksCount")?;
        ensure!(
            mapped == said,
            "<MappedBlocksCount> is {said}, the ranges hold {mapped} blocks"
        );
        Ok(Bmap {
            version,
            image_size,
            block_size,
            ranges,
        })
    }

    /// Bytes of image range `r` (the last block may be cut by the image's end).
    pub fn span(&self, r: &Range) -> (u64, u64) {
        let start = r.first * self.block_size;
        let end = ((r.last + 1) * self.block_size).min(self.image_size);
        (start, end)
    }

    /// Bytes the ranges hold.
    pub fn mapped_bytes(&self) -> u64 {
        self.ranges
            .iter()
            .map(|r| {
                let (a, b) = self.span(r);
                b - a
            })
            .sum()
    }
}

/// Passes on the mapped ranges of an image's pieces (the rest become
/// skipped runs) and checks each range's SHA-256 as it completes.
pub struct Filter<'a> {
    map: &'a Bmap,
    inner: &'a mut dyn Sink,
    next: usize,
    hash: Sha256,
    zeros: Vec<u8>,
    seen: u64,
}

impl<'a> Filter<'a> {
    /// A filter handing the mapped pieces to `inner`.
    pub fn new(map: &'a Bmap, inner: &'a mut dyn Sink) -> Filter<'a> {
        Filter {
            map,
            inner,
            next: 0,
            hash: Sha256::new(),
            zeros: Vec::new(),
            seen: 0,
        }
    }

    /// Checks that the image was as long as the map says and held every
    /// range.
    pub fn finish(self) -> Result<()> {
        ensure!(
            self.seen == self.map.image_size,
            "the image is {} bytes, its bmap says {}",
            self.seen,
            self.map.image_size
        );
        ensure!(
            self.next == self.map.ranges.len(),
            "the image ended before the bmap's last range"
        );
        Ok(())
    }

    fn hash_zeros(&mut self, mut len: u64) {
        self.zeros.resize(CHUNK, 0);
        while len > 0 {
            let n = len.min(CHUNK as u64) as usize;
            self.hash.update(self.zeros.get(..n).unwrap_or_default());
            len -= n as u64;
        }
    }
}

impl Sink for Filter<'_> {
    fn piece(&mut self, p: &Piece<'_>) -> Result<()> {
        let (offset, len) = match *p {
            Piece::Data { offset, bytes } => (offset, bytes.len() as u64),
            Piece::Zero { offset, len } | Piece::Skip { offset, len } => (offset, len),
        };
        let end = offset + len;
        self.seen = self.seen.max(end);
        let mut pos = offset;
        while pos < end {
            let Some(range) = self.map.ranges.get(self.next) else {
                return self.inner.piece(&Piece::Skip {
                    offset: pos,
                    len: end - pos,
                });
            };
            let (start, stop) = self.map.span(range);
            if pos < start {
                let n = end.min(start);
                self.inner.piece(&Piece::Skip {
                    offset: pos,
                    len: n - pos,
                })?;
                pos = n;
                continue;
            }
            let n = end.min(stop);
            match *p {
                Piece::Data { bytes, .. } => {
                    let part = bytes
                        .get((pos - offset) as usize..(n - offset) as usize)
                        .unwrap_or_default();
                    self.hash.update(part);
                    self.inner.piece(&Piece::Data {
                        offset: pos,
                        bytes: part,
                    })?;
                }
                Piece::Zero { .. } => {
                    self.hash_zeros(n - pos);
                    self.inner.piece(&Piece::Zero {
                        offset: pos,
                        len: n - pos,
                    })?;
                }
                Piece::Skip { .. } => bail!(
                    "the image leaves bytes {pos}..{n} undefined, inside the bmap's range {}-{}",
                    range.first,
                    range.last
                ),
            }
            pos = n;
            if pos == stop {
                let got: [u8; 32] = std::mem::take(&mut self.hash).finalize().into();
                if got != range.sha256 {
                    bail!(
                        "blocks {}-{} of the image do not match their bmap checksum \
                         (SHA-256 {}, the bmap says {}): the image is not the one the bmap was made from",
                        range.first,
                        range.last,
                        crate::bytes::hex(&got),
                        crate::bytes::hex(&range.sha256)
                    );
                }
                self.next += 1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A map of `image` in blocks of `bs` (as `bmaptool create` writes it):
    /// every block that is not all zeros is mapped.
    pub(crate) fn make(image: &[u8], bs: usize) -> String {
        let blocks = image.len().div_ceil(bs);
        let mapped: Vec<bool> = (0..blocks)
            .map(|b| {
                image[b * bs..((b + 1) * bs).min(image.len())]
                    .iter()
                    .any(|x| *x != 0)
            })
            .collect();
        let mut ranges = String::new();
        let mut count = 0;
        let mut b = 0;
        while b < blocks {
            if !mapped[b] {
                b += 1;
                continue;
            }
            let first = b;
            while b < blocks && mapped[b] {
                b += 1;
            }
            count += b - first;
            let bytes = &image[first * bs..(b * bs).min(image.len())];
            let sum = crate::bytes::hex(&Sha256::digest(bytes));
            let text = if b - 1 == first {
                format!("{first}")
            } else {
                format!("{first}-{}", b - 1)
            };
            ranges.push_str(&format!(
                "        <Range chksum=\"{sum}\"> {text} </Range>\n"
            ));
        }
        let body = |sum: &str| {
            format!(
                "<?xml version=\"1.0\" ?>\n<bmap version=\"2.0\">\n    <ImageSize> {} </ImageSize>\n    \
                 <BlockSize> {bs} </BlockSize>\n    <BlocksCount> {blocks} </BlocksCount>\n    \
                 <MappedBlocksCount> {count} </MappedBlocksCount>\n    <ChecksumType> sha256 </ChecksumType>\n    \
                 <BmapFileChecksum> {sum} </BmapFileChecksum>\n    <BlockMap>\n{ranges}    </BlockMap>\n</bmap>\n",
                image.len()
            )
        };
        let zero = "0".repeat(64);
        let sum = crate::bytes::hex(&Sha256::digest(body(&zero).as_bytes()));
        body(&sum)
    }

    fn image() -> Vec<u8> {
        let mut v = vec![0u8; 10 * 4096 + 100];
        v[0] = 1;
        v[4096 * 3 + 7] = 2;
        v[4096 * 4] = 3;
        v[10 * 4096 + 99] = 4;
        v
    }

    /// (offset, length, bytes) of each piece handed on.
    type Pieces = Vec<(u64, u64, Vec<u8>)>;

    struct Collect(Pieces);
    impl Sink for Collect {
        fn piece(&mut self, p: &Piece<'_>) -> Result<()> {
            match *p {
                Piece::Data { offset, bytes } => {
                    self.0.push((offset, bytes.len() as u64, bytes.to_vec()))
                }
                Piece::Zero { offset, len } => self.0.push((offset, len, vec![0; len as usize])),
                Piece::Skip { .. } => {}
            }
            Ok(())
        }
    }

    fn run(map: &Bmap, image: &[u8]) -> Result<Pieces> {
        let mut out = Collect(Vec::new());
        let mut f = Filter::new(map, &mut out);
        super::super::read(&mut &image[..], &mut f)?;
        f.finish()?;
        Ok(out.0)
    }

    #[test]
    fn parses_what_it_made_and_passes_only_mapped_ranges() {
        let img = image();
        let map = Bmap::parse(make(&img, 4096).as_bytes()).unwrap();
        assert_eq!(map.version, "2.0");
        assert_eq!(map.image_size, img.len() as u64);
        let spans: Vec<(u64, u64)> = map.ranges.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(spans, [(0, 0), (3, 4), (10, 10)]);
        assert_eq!(map.mapped_bytes(), 4096 * 3 + 100);
        let got = run(&map, &img).unwrap();
        // Every byte handed on is the image's own, and only mapped bytes are.
        let total: u64 = got.iter().map(|g| g.1).sum();
        assert_eq!(total, map.mapped_bytes());
        for (off, len, bytes) in &got {
            assert_eq!(&img[*off as usize..(*off + *len) as usize], &bytes[..]);
            assert!(map.ranges.iter().any(|r| {
                let (a, b) = map.span(r);
                a <= *off && *off + *len <= b
            }));
        }
    }

    #[test]
    fn a_changed_image_or_map_is_refused() {
        let img = image();
        let text = make(&img, 4096);
        let map = Bmap::parse(text.as_bytes()).unwrap();
        let mut bad = img.clone();
        bad[4096 * 4 + 1] = 9;
        let e = run(&map, &bad).unwrap_err().to_string();
        assert!(e.contains("blocks 3-4"), "{e}");
        // Shorter than the map says.
        let e = run(&map, &img[..4096 * 5]).unwrap_err().to_string();
        assert!(e.contains("bmap says"), "{e}");
        // A byte of the map changed: its own checksum catches it.
        let edited = text.replacen("<Range chksum", "<Range  chksum", 1);
        let e = Bmap::parse(edited.as_bytes()).unwrap_err().to_string();
        assert!(e.contains("BmapFileChecksum"), "{e}");
    }

    #[test]
    fn unsupported_or_inconsistent_maps_are_refused() {
        let fix = |t: String| {
            // Re-seal a map after editing it, so only the edit is judged.
            let start = t.find("<BmapFileChecksum> ").unwrap() + 19;
            let old = t[start..start + 64].to_owned();
            let zeroed = t.replace(&old, &"0".repeat(64));
            let sum = crate::bytes::hex(&Sha256::digest(zeroed.as_bytes()));
            zeroed.replace(&"0".repeat(64), &sum)
        };
        let text = make(&image(), 4096);
        for (edit, want) in [
            (
                text.replace("version=\"2.0\"", "version=\"1.3\""),
                "not supported",
            ),
            (text.replace("> sha256 <", "> sha1 <"), "only sha256"),
            (
                text.replace("<BlocksCount> 11", "<BlocksCount> 12"),
                "BlocksCount",
            ),
            (
                text.replace("<MappedBlocksCount> 4", "<MappedBlocksCount> 5"),
                "MappedBlocksCount",
            ),
            (
                text.replace("> 10 </Range>", "> 11 </Range>"),
                "inside the image",
            ),
            (
                text.replace("> 3-4 </Range>", "> 4-3 </Range>"),
                "ends before",
            ),
            (
                text.replace("<BlockSize> 4096", "<BlockSize> 4000"),
                "BlockSize",
            ),
        ] {
            let e = Bmap::parse(fix(edit).as_bytes()).unwrap_err().to_string();
            assert!(e.contains(want), "{want}: {e}");
        }
        let e = Bmap::parse(b"<layout/>").unwrap_err().to_string();
        assert!(e.contains("root element"), "{e}");
    }
}
