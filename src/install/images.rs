//! Partition images in an install (`--image NAME=SOURCE`): `APP` fills
//! every slot the run writes from one stream, any other name its own
//! partition. The preflight reads each image through once (its hash, its
//! expanded size, the filesystem it holds); the step writes it, reads it
//! back, and grows an ext4 filesystem to its partition.

use super::report::{refuse, FailCode};
use super::InstallOptions;
use crate::events::{Events, Level};
use crate::image::bmap::{self, Bmap, Filter};
use crate::image::{self, Measure, Shape, Sink, Target, Writer};
use crate::rootfs::{self, Decoded, Source, SourceOptions};
use crate::sys::{mkfs, rawdev::ImageTarget};
use anyhow::Context as _;
use sha2::{Digest, Sha256};
use std::io::Read as _;
use std::path::Path;
use std::path::PathBuf;

/// The partition name whose image fills the slots.
pub const SLOTS: &str = "APP";

/// An image the preflight read.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Its shape (format, sizes, head).
    pub shape: Shape,
    /// The bmap found beside it, and its path.
    pub bmap: Option<(String, Bmap)>,
    /// Its source's compression and SHA-256.
    pub decoded: Decoded,
}

impl Measured {
    /// One line for the report: format, sizes, filesystem, hash.
    pub fn describe(&self) -> String {
        let fs = self
            .shape
            .ext()
            .map(|sb| format!(", {} of {} bytes", sb.kind, sb.size_bytes))
            .unwrap_or_default();
        let map = self
            .bmap
            .as_ref()
            .map(|(p, m)| format!(", bmap {p}: {} bytes mapped", m.mapped_bytes()))
            .unwrap_or_default();
        format!(
            "{} image ({}), {} bytes expanded ({} data, {} zero, {} skipped){fs}{map}, sha256 {}",
            self.shape.format,
            self.decoded.format,
            self.shape.size,
            self.shape.data,
            self.shape.zero,
            self.shape.skipped,
            crate::bytes::hex(&self.decoded.sha256)
        )
    }
}

/// Opens an image source with the run's network options; `sha256` (and
/// where it came from) is what it must hash to.
pub(super) fn open(
    spec: &str,
    sha256: Option<String>,
    from: Option<String>,
    opts: &InstallOptions,
    events: &Events,
) -> anyhow::Result<Source> {
    Source::open(
        spec,
        &SourceOptions {
            sha256,
            sha256_from: from,
            net: opts.net.clone(),
            events: events.clone(),
            ..SourceOptions::default()
        },
    )
}

/// Bmap files looked for beside a local image: NAME.bmap, then NAME less
/// its compression suffix, plus .bmap (bmaptool's own search).
pub(super) fn bmap_beside(image: &Path) -> Option<String> {
    let name = image.file_name()?.to_str()?;
    let stem = [".xz", ".gz", ".zst", ".bz2"]
        .iter()
        .find_map(|s| name.strip_suffix(s));
    [Some(name), stem]
        .into_iter()
        .flatten()
        .map(|n| image.with_file_name(format!("{n}.bmap")))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}

/// Reads and checks the bmap file; its bytes' SHA-256 too.
pub(super) fn load_bmap(
    spec: &str,
    opts: &InstallOptions,
    events: &Events,
) -> anyhow::Result<(Bmap, [u8; 32])> {
    let mut s = super::images::open(spec, None, None, opts, events)
        .map_err(super::report::or_code(FailCode::InputInvalid))?;
    let mut bytes = Vec::new();
    s.take_reader()?
        .take(bmap::MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("reading the bmap {spec}"))?;
    if bytes.len() as u64 > bmap::MAX_BYTES {
        refuse!(
            FailCode::InputInvalid,
            "bmap {spec}: larger than {} bytes",
            bmap::MAX_BYTES
        );
    }
    match Bmap::parse(&bytes) {
        Ok(m) => Ok((m, Sha256::digest(&bytes).into())),
        Err(e) => refuse!(FailCode::InputInvalid, "bmap {spec}: {e}"),
    }
}

/// Hands pieces through the bmap's filter when there is a map.
pub(super) fn through(
    map: Option<&Bmap>,
    r: &mut dyn std::io::Read,
    sink: &mut dyn Sink,
) -> anyhow::Result<Shape> {
    match map {
        Some(m) => {
            let mut f = Filter::new(m, sink);
            let shape = image::read(r, &mut f)?;
            f.finish()?;
            Ok(shape)
        }
        None => image::read(r, sink),
    }
}

/// Reads the image `spec` for partition `name` through once, writing
/// nothing, and checks it fits `room` bytes.
pub fn measure(
    name: &str,
    spec: &str,
    sha256: Option<String>,
    room: u64,
    opts: &InstallOptions,
    events: &Events,
) -> anyhow::Result<Measured> {
    let source = open(spec, sha256, None, opts, events)
        .map_err(super::report::or_code(FailCode::InputInvalid))?;
    if !source.rereadable() {
        refuse!(
            FailCode::InputInvalid,
            "--image {name}={spec}: an image is read twice (checked, then written), so it must be a file or a URL, not a stream"
        );
    }
    let bmap = match (!opts.no_bmap)
        .then(|| bmap_beside(Path::new(spec)))
        .flatten()
    {
        Some(path) => Some((path.clone(), load_bmap(&path, opts, events)?.0)),
        None => None,
    };
    let (shape, decoded) = rootfs::read_decoded(source, events, |r| {
        through(bmap.as_ref().map(|b| &b.1), r, &mut Measure)
    })
    .with_context(|| format!("checking the image for {name}"))
    .map_err(super::report::or_code(FailCode::RootfsInvalid))?;
    if shape.size > room {
        refuse!(
            FailCode::NoSpace,
            "--image {name}={spec}: the image is {} bytes, partition {name} holds {room}",
            shape.size
        );
    }
    Ok(Measured {
        shape,
        bmap,
        decoded,
    })
}

/// Writes the image `spec` into every node (one stream), reads each back,
/// and grows an ext2/3/4 filesystem smaller than its partition. The source
/// must have the SHA-256 the preflight found.
pub fn write(
    spec: &str,
    measured: &Measured,
    nodes: &[PathBuf],
    opts: &InstallOptions,
    events: &Events,
) -> anyhow::Result<()> {
    let source = open(
        spec,
        Some(crate::bytes::hex(&measured.decoded.sha256)),
        Some(format!("the preflight's read of {spec}")),
        opts,
        events,
    )?;
    let mut targets = nodes
        .iter()
        .map(|n| ImageTarget::open(n).with_context(|| format!("opening {}", n.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut refs: Vec<&mut dyn Target> = targets.iter_mut().map(|t| t as &mut dyn Target).collect();
    let t0 = std::time::Instant::now();
    let map = measured.bmap.as_ref().map(|b| &b.1);
    let (written, _) = rootfs::read_decoded(source, events, |r| {
        let mut w = Writer::new(&mut refs);
        let shape = through(map, r, &mut w)?;
        w.finish(shape)
    })?;
    let t1 = std::time::Instant::now();
    // Each slot is read back on a thread of its own: the reads of two
    // partitions overlap, and each CRC runs on its own core.
    std::thread::scope(|scope| {
        let checks: Vec<_> = targets
            .iter_mut()
            .map(|t| scope.spawn(|| image::verify(t, &written)))
            .collect();
        checks.into_iter().try_for_each(|c| {
            c.join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a read-back thread failed")))
        })
    })?;
    log::debug!(
        "image: written and flushed in {:.2?}, read back in {:.2?}",
        t1 - t0,
        t1.elapsed()
    );
    // The partitions' sizes, as the targets found them when they opened;
    // closed before resize2fs opens them.
    let rooms: Vec<u64> = targets.iter().map(|t| t.size()).collect();
    drop(targets);
    if let Some(sb) = written.shape.ext() {
        let grow: Vec<&PathBuf> = nodes
            .iter()
            .zip(rooms)
            .filter(|(_, room)| sb.size_bytes < *room)
            .map(|(n, room)| {
                events.message(
                    Level::Info,
                    format!(
                        "growing the {} filesystem on {} from {} to {room} bytes",
                        sb.kind,
                        n.display(),
                        sb.size_bytes
                    ),
                );
                n
            })
            .collect();
        // e2fsck and resize2fs of the slots at once, a process each.
        std::thread::scope(|scope| {
            let runs: Vec<_> = grow.iter().map(|n| scope.spawn(|| mkfs::grow(n))).collect();
            runs.into_iter().try_for_each(|r| {
                r.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("a resize thread failed")))
            })
        })?;
    }
    Ok(())
}
