//! `--disk-image SOURCE [--bmap FILE]`: a whole-disk image (`.img`, `.raw`,
//! `.wic`, compressed or Android sparse) written over the target device
//! instead of a layout and a rootfs (docs/spec/image-format.md §4, §5).
//!
//! ```text
//! preflight: device free, locked, writable; bmap parsed and its checksum
//!            checked; the image read through once (SHA-256, size, every
//!            bmap range's checksum, GPT sector size); the report
//! steps:     zap the old tables, record in LBA 0 → body (from 1 MiB on),
//!            read back → head (MBR, GPT), read back → backup GPT moved to
//!            the device's end → kernel told of the partitions
//! ```
//!
//! A re-run after a cut finds the record: with the same image it resumes,
//! reading before writing and leaving bytes already in place alone.

use super::report::{refuse, FailCode, Outcome};
use super::{Confirm, InstallOptions, Summary};
use crate::events::{Events, Level, Phase, Verdict};
use crate::exit::Changes;
use crate::image::bmap::Bmap;
use crate::image::whole::{self, HeadLast, Held, SkipSame, HEAD};
use crate::image::{self, Measure, Shape, Target, Writer};
use crate::rootfs::{self, Decoded};
use crate::sys::blockdev::{Access, Disk};
use crate::sys::rawdev::ImageTarget;
use anyhow::Context as _;
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::path::Path;
use std::time::Instant;

/// What to write, from the command line.
#[derive(Debug, Clone)]
pub struct DiskImage {
    /// The image source.
    pub source: String,
    /// Its expected SHA-256.
    pub sha256: Option<String>,
    /// The bmap file, when given.
    pub bmap: Option<String>,
}

/// The summary's account of a whole-disk image.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The image source.
    pub source: String,
    /// SHA-256 of the image as read (compressed).
    pub sha256: String,
    /// Bytes of the expanded image.
    pub size: u64,
    /// The bmap used, when one was.
    pub bmap: Option<String>,
    /// Bytes written (data).
    pub written: u64,
    /// Bytes zeroed.
    pub zeroed: u64,
    /// Bytes a resumed run found already in place.
    pub in_place: u64,
    /// The backup GPT was moved to the end of the device.
    pub gpt_moved: bool,
}

/// Everything the preflight found.
struct Checked {
    disk: Disk,
    map: Option<(String, Bmap, [u8; 32])>,
    shape: Shape,
    decoded: Decoded,
    content: [u8; 32],
    resume: bool,
    report: String,
}

fn preflight(img: &DiskImage, opts: &InstallOptions, events: &Events) -> anyhow::Result<Checked> {
    let mut disk = super::preflight::open_target(&opts.device)?;
    crate::disk::check_target_not_in_use(disk.target(), &opts.disk_env())?;
    let device = disk.path().display().to_string();
    let bytes = disk.target().bytes();
    let map_spec = img.bmap.clone().or_else(|| {
        (!opts.no_bmap)
            .then(|| super::images::bmap_beside(Path::new(&img.source)))
            .flatten()
    });
    let map = match &map_spec {
        Some(spec) => {
            let (m, sum) = super::images::load_bmap(spec, opts, events)?;
            Some((spec.clone(), m, sum))
        }
        None => None,
    };
    let src = super::images::open(&img.source, img.sha256.clone(), None, opts, events)
        .map_err(super::report::or_code(FailCode::InputInvalid))?;
    if !src.rereadable() {
        refuse!(
            FailCode::InputInvalid,
            "--disk-image {}: an image is read twice (checked, then written), so it must be a file or a URL, not a stream",
            img.source
        );
    }
    let (shape, decoded) = rootfs::read_decoded(src, events, |r| {
        super::images::through(map.as_ref().map(|m| &m.1), r, &mut Measure)
    })
    .with_context(|| format!("checking the disk image {}", img.source))
    .map_err(super::report::or_code(FailCode::RootfsInvalid))?;
    if shape.size > bytes {
        refuse!(
            FailCode::NoSpace,
            "--disk-image {}: the image is {} bytes, {device} holds {bytes}",
            img.source,
            shape.size
        );
    }
    let ss = disk.target().sector_size();
    if let Some(gss) = whole::gpt_sector_size(&shape.head).filter(|g| *g != ss) {
        refuse!(
            FailCode::DeviceInvalid,
            "--disk-image {}: its GPT is made for {gss}-byte sectors, {device} has {ss}-byte sectors",
            img.source
        );
    }
    let mut id = Sha256::new();
    id.update(decoded.sha256);
    id.update(map.as_ref().map_or([0; 32], |m| m.2));
    id.update(bytes.to_le_bytes());
    let content: [u8; 32] = id.finalize().into();
    let lba0 = disk.read_head(512)?;
    let resume = !opts.restart && whole::decode_record(&lba0) == Some(content);
    let now = crate::gpt::read::read_in(disk.target().file(), bytes / ss, ss)
        .ok()
        .flatten()
        .map(|g| {
            g.entries
                .iter()
                .map(|(n, e)| format!("{n} {}", e.name))
                .collect::<Vec<_>>()
                .join(", ")
        });
    let human = crate::progress::human_bytes;
    let mut report = format!(
        "Target:     {device} ({})\nDisk image: {} — {} image ({}), {} expanded, sha256 {}\n",
        human(bytes),
        img.source,
        shape.format,
        decoded.format,
        human(shape.size),
        crate::bytes::hex(&decoded.sha256),
    );
    report.push_str(&match &map {
        Some((spec, m, _)) => format!(
            "bmap:       {spec} (format {}): {} of the image mapped; only that is written and read back\n",
            m.version,
            human(m.mapped_bytes())
        ),
        None => "bmap:       none; every byte is written (zero runs as zero-outs) and read back\n"
            .to_owned(),
    });
    report.push_str(&format!(
        "Erased:     everything on {device}{}\n",
        now.map(|n| format!(" (partitions now: {n})"))
            .unwrap_or_default()
    ));
    report.push_str(
        "Boot:       left alone: a disk image brings no payload (boot partitions, capsule,\n            UEFI variables and the slot switch stay as they are)\n",
    );
    if resume {
        report.push_str(
            "Resuming:   an interrupted write of this image; bytes already in place are kept\n",
        );
    }
    Ok(Checked {
        disk,
        map,
        shape,
        decoded,
        content,
        resume,
        report,
    })
}

/// The plan event.
fn plan_json(c: &Checked, img: &DiskImage) -> serde_json::Value {
    serde_json::json!({
        "device": c.disk.path().display().to_string(),
        "mode": "disk_image",
        "disk_image": {
            "source": img.source,
            "format": c.shape.format,
            "size": c.shape.size,
            "sha256": crate::bytes::hex(&c.decoded.sha256),
            "bmap": c.map.as_ref().map(|m| m.0.clone()),
            "mapped": c.map.as_ref().map(|m| m.1.mapped_bytes()),
        },
        "resume": c.resume,
    })
}

/// Runs one step: start and end events around `f`.
fn step<T>(
    events: &Events,
    phase: Phase,
    name: &str,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    events.step_start(phase, name, None);
    let r = f();
    events.step_end(if r.is_ok() {
        Verdict::Ok
    } else {
        Verdict::Failed
    });
    r
}

/// The whole run: preflight, confirmation, steps.
pub fn run(
    img: &DiskImage,
    opts: &InstallOptions,
    changes: &Changes,
    events: &Events,
    confirm: &mut Confirm<'_>,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut summary = Summary::new(opts.device.display().to_string());
    events.step_start(Phase::Preflight, "preflight", None);
    let checked = preflight(img, opts, events);
    events.step_end(if checked.is_ok() {
        Verdict::Ok
    } else {
        Verdict::Failed
    });
    let mut c = checked?;
    crate::interrupt::check()?;
    events.plan(plan_json(&c, img));
    summary.artifact = Path::new(&img.source)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    if opts.dry_run {
        eprintln!("{}\n--dry-run: nothing was written.", c.report);
        summary.result = Outcome::DryRun;
        summary.duration = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    if !confirm(&c.report)? {
        return Err(crate::exit::Declined.into());
    }
    let report = write(img, &mut c, opts, changes, events)?;
    if report.in_place > 0 {
        summary.resumed.push(format!(
            "{} bytes of the image were already in place",
            report.in_place
        ));
    }
    summary.disk_image = Some(report);
    summary.result = Outcome::Pass;
    summary.duration = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn write(
    img: &DiskImage,
    c: &mut Checked,
    opts: &InstallOptions,
    changes: &Changes,
    events: &Events,
) -> anyhow::Result<Report> {
    let path = c.disk.path().to_owned();
    let file = c.disk.reopen(Access::Exclusive)?.into_file();
    let mut dev = ImageTarget::from_file(&path, file)
        .with_context(|| format!("opening {}", path.display()))?;
    let size = dev.size();
    let image_size = c.shape.size;
    changes.mark();
    if !c.resume {
        step(
            events,
            Phase::Partition,
            "clear the partition tables",
            || {
                dev.zero(0, HEAD.min(size))?;
                let tail = image_size.max(size.saturating_sub(HEAD));
                if tail < size {
                    dev.zero(tail, size - tail)?;
                }
                dev.write_at(0, &whole::encode_record(&c.content))?;
                dev.sync()?;
                Ok(())
            },
        )
        .with_context(|| format!("clearing the partition tables of {}", path.display()))?;
    } else {
        events.message(Level::Info, "resuming the interrupted write of this image");
    }
    let map = c.map.as_ref().map(|m| &m.1);
    let mut in_place = 0;
    let (body, held) = step(events, Phase::Unpack, "write the image", || {
        let src = super::images::open(
            &img.source,
            Some(crate::bytes::hex(&c.decoded.sha256)),
            Some(format!("the preflight's read of {}", img.source)),
            opts,
            events,
        )?;
        let mut skip = SkipSame::new(&mut dev, c.resume);
        let (written, held) = {
            let mut targets: [&mut dyn Target; 1] = [&mut skip];
            let mut writer = Writer::new(&mut targets);
            let mut head = HeadLast::new(&mut writer);
            let (shape, _) =
                rootfs::read_decoded(src, events, |r| super::images::through(map, r, &mut head))?;
            let held = head.into_held();
            (writer.finish(shape)?, held)
        };
        in_place = skip.same;
        image::verify(&mut dev, &written)?;
        Ok((written, held))
    })?;
    crate::failpoint::hit("disk-image-body");
    let head = step(
        events,
        Phase::Partition,
        "write the image's partition table",
        || {
            let mut targets: [&mut dyn Target; 1] = [&mut dev];
            let mut writer = Writer::new(&mut targets);
            whole::replay(&held, &mut writer)?;
            let written = writer.finish(body.shape.clone())?;
            image::verify(&mut dev, &written)?;
            // An image whose first block is not mapped leaves the record.
            let mut lba0 = [0u8; 512];
            dev.read_at(0, &mut lba0)?;
            if whole::decode_record(&lba0).is_some() {
                dev.write_at(0, &[0; whole::RECORD_LEN])?;
                dev.sync()?;
            }
            Ok(written)
        },
    )?;
    let head_bytes = head_of(&held);
    let moved = match whole::relocate(&head_bytes, image_size, size)? {
        None => false,
        Some(r) => {
            step(
                events,
                Phase::Partition,
                "move the backup GPT to the end",
                || {
                    for group in &r.groups {
                        for (offset, bytes) in group {
                            dev.write_at(*offset, bytes)?;
                        }
                        dev.sync()?;
                    }
                    Ok(())
                },
            )?;
            true
        }
    };
    drop(dev);
    if whole::gpt_sector_size(&head_bytes).is_some() {
        step(events, Phase::Partition, "tell the kernel", || {
            let nodes = crate::disk::expose_target(c.disk.target(), &opts.disk_env())?;
            events.message(
                Level::Info,
                format!(
                    "{} has {} partitions: {}",
                    path.display(),
                    nodes.len(),
                    nodes
                        .iter()
                        .map(|n| n.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            Ok(())
        })?;
    }
    let count = |w: &image::Written, zero: bool| -> u64 {
        w.extents
            .iter()
            .filter(|e| e.zero == zero)
            .map(|e| e.len)
            .sum()
    };
    Ok(Report {
        source: img.source.clone(),
        sha256: crate::bytes::hex(&c.decoded.sha256),
        size: image_size,
        bmap: c.map.as_ref().map(|m| m.0.clone()),
        written: count(&body, false) + count(&head, false),
        zeroed: count(&body, true) + count(&head, true),
        in_place,
        gpt_moved: moved,
    })
}

/// The image's first [`HEAD`] bytes as the held pieces make them (zeros
/// where they have none, as the zap left the device).
fn head_of(held: &[Held]) -> Vec<u8> {
    let mut head = vec![0u8; HEAD as usize];
    for h in held {
        if let Held::Data(offset, bytes) = h {
            if let Some(dst) = head.get_mut(*offset as usize..*offset as usize + bytes.len()) {
                dst.copy_from_slice(bytes);
            }
        }
    }
    head
}
