//! Carrying out a write plan on devices, and reading what the checks need
//! from them beforehand.
//!
//! Each step: compare its whole span (the data, then zeros to the end of the
//! span, which is the whole partition for a partition write) with what the
//! device holds and skip it when equal; otherwise write the data and the
//! zero tail, fsync, drop the cached pages, read the range back and compare
//! SHA-256 with the plan's and the tail with zeros. Payload bytes are hashed
//! again as they stream by, so a payload file that changed since it was
//! planned is caught too. Memory stays at two 1 MiB buffers whatever the
//! partition sizes; a partition already in place is only read.
//!
//! So after any run the devices hold what a fresh tegra-bootloader-update
//! run leaves (REF erases a partition, then writes the data): a zero-length
//! entry leaves its partition all zeros (docs/spec/bup-format.md §4.5), and no stale
//! bytes survive after the data. Deviations from REF, so that a re-run
//! writes nothing, a write is known to have landed, and the result does not
//! depend on what was there before: REF compares a boot partition's data
//! only (its old tail survives when the data matches, and a zero-length
//! entry leaves the partition as it was), rewrites user-area partitions
//! without comparing, and every BCT copy when initializing (on T210
//! always); here every step is compared in full first. REF never reads
//! back; here every write is verified.

#![deny(clippy::indexing_slicing)]

use super::boot_plan::{other_copy, BootStep, Inventory, StepData, WriteArea};
use super::bootgpt;
use super::device::{Device, FileWindow, UserArea};
use super::BootMedium;
use crate::bytes::hex;
use crate::events::{Events, Phase, Verdict};
use crate::exit::Changes;
use crate::layout::{BootPartition, Soc};
use anyhow::{bail, Context as _};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::io::{self, Read, Seek, SeekFrom};

/// Bytes moved per read or write.
const CHUNK: usize = 1 << 20;
/// Most bytes of a BCT partition read for the update check.
const BCT_READ: u64 = 64 * 1024;
/// Most bytes of a VER partition read.
const VER_READ: u64 = 1 << 20;

/// Reads the boot device's partition table (docs/spec/bup-format.md §3.3).
pub fn read_table(boot: &mut dyn Device) -> anyhow::Result<Vec<BootPartition>> {
    let len = boot.len();
    let mut sector = vec![0u8; bootgpt::SECTOR as usize];
    boot.read_at(bootgpt::header_offset(len), &mut sector)
        .context("reading the partition table header")?;
    let (header, at, size) = bootgpt::decode_header(&sector, len)?;
    let mut array = vec![0u8; size as usize];
    boot.read_at(at, &mut array)
        .context("reading the partition entries")?;
    Ok(bootgpt::decode_entries(&header, &array, len)?)
}

fn read_part(boot: &mut dyn Device, p: &BootPartition, max: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; p.size.min(max) as usize];
    boot.read_at(p.offset, &mut buf).ok().map(|_| buf)
}

fn crc_part(boot: &mut dyn Device, p: &BootPartition) -> Option<u32> {
    let mut h = crc32fast::Hasher::new();
    let mut buf = vec![0u8; CHUNK];
    let mut pos = 0;
    while pos < p.size {
        let n = (p.size - pos).min(CHUNK as u64) as usize;
        let chunk = buf.get_mut(..n)?;
        boot.read_at(p.offset + pos, chunk).ok()?;
        h.update(chunk);
        pos += n as u64;
    }
    Some(h.finalize())
}

/// Reads what the plan's checks need from the boot device: its partition
/// table, slot metadata, the current BCT, and on T210 the VER records and
/// the NVC checksums. `partitions` is the table in force. Unreadable parts
/// are left `None`; the checks that need them then refuse.
pub fn survey(
    boot: &mut dyn Device,
    soc: Soc,
    medium: BootMedium,
    partitions: &[BootPartition],
) -> Inventory {
    let get = |n: &str| partitions.iter().find(|p| p.name == n);
    let mut inv = Inventory {
        table: if soc == Soc::T210 {
            None
        } else {
            read_table(boot).ok()
        },
        ..Default::default()
    };
    for (slot, name) in inv.smd.iter_mut().zip(["SMD", "SMD_b"]) {
        *slot = get(name).and_then(|p| read_part(boot, p, super::smd::SMD_LEN as u64));
    }
    inv.bct = get("BCT").and_then(|p| read_part(boot, p, BCT_READ));
    if soc == Soc::T210 {
        for (slot, name) in inv.ver.iter_mut().zip(["VER", "VER_b"]) {
            *slot = get(name).and_then(|p| read_part(boot, p, VER_READ));
        }
        let backup = other_copy(soc, medium, "NVC");
        for (slot, name) in inv.nvc_crc.iter_mut().zip(["NVC", backup.as_str()]) {
            *slot = get(name).and_then(|p| crc_part(boot, p));
        }
    }
    inv
}

/// Opens user-area partitions for the executor.
pub trait UserDevices {
    /// The partition `name`, for reading or writing.
    fn open(&mut self, name: &str, writable: bool) -> io::Result<Box<dyn Device>>;
}

impl UserDevices for UserArea {
    fn open(&mut self, name: &str, writable: bool) -> io::Result<Box<dyn Device>> {
        UserArea::open(self, name, writable).map(|w: FileWindow| Box::new(w) as Box<dyn Device>)
    }
}

/// What the steps are carried out on.
pub struct Targets<'a> {
    /// The linear boot device.
    pub boot: &'a mut dyn Device,
    /// The user-area partitions.
    pub user: &'a mut dyn UserDevices,
}

/// How a run goes.
pub struct Execution<'a> {
    /// Compare only; write nothing.
    pub dry_run: bool,
    /// Marked right before the first write.
    pub changes: &'a Changes,
    /// Progress.
    pub events: &'a Events,
    /// Phase for the events.
    pub phase: Phase,
}

/// What happened to (or, in a dry run, would happen to) a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepAction {
    /// Written and verified (dry run: would be written).
    Write,
    /// Already holds the data; not written.
    Skip,
}

/// One step's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepReport {
    /// The step's label.
    pub label: String,
    /// The partition.
    pub partition: String,
    /// The device.
    pub device: String,
    /// Offset on the device.
    pub offset: u64,
    /// Bytes of data.
    pub length: u64,
    /// Bytes covered (data and zero tail).
    pub span: u64,
    /// SHA-256 of the data.
    pub sha256: String,
    /// Write or skip.
    pub action: StepAction,
}

/// Streams a step's data in chunks.
struct Source<'d, R> {
    data: &'d StepData,
    payload: &'d mut R,
    pos: u64,
    hash: Sha256,
}

impl<'d, R: Read + Seek> Source<'d, R> {
    fn new(data: &'d StepData, payload: &'d mut R) -> io::Result<Self> {
        if let StepData::Entry { offset, .. } = data {
            payload.seek(SeekFrom::Start(*offset))?;
        }
        Ok(Source {
            data,
            payload,
            pos: 0,
            hash: Sha256::new(),
        })
    }

    /// The next chunk into `buf`; returns its length (0 at the end).
    fn next(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.data.len() - self.pos;
        let n = left.min(buf.len() as u64) as usize;
        let chunk = buf.get_mut(..n).unwrap_or(&mut []);
        match self.data {
            StepData::Entry { .. } => self.payload.read_exact(chunk)?,
            StepData::Bytes { bytes } => {
                let from = self.pos as usize;
                chunk.copy_from_slice(bytes.get(from..from + n).unwrap_or(&[]));
            }
        }
        self.hash.update(&*chunk);
        self.pos += n as u64;
        Ok(n)
    }

    /// Fails unless the bytes streamed hash to the planned SHA-256.
    fn check(self, step: &BootStep) -> anyhow::Result<()> {
        let got = hex(&self.hash.finalize());
        if got != step.sha256 {
            bail!(
                "the payload data for {} changed since it was checked (SHA-256 {got}, planned {})",
                step.label,
                step.sha256
            );
        }
        Ok(())
    }
}

struct Buffers {
    a: Vec<u8>,
    b: Vec<u8>,
}

/// True when the device holds the step's whole span at its place: the
/// data, then zeros to the end of the span (what [`write`] leaves, and what
/// REF's erase-then-write leaves). Reading stops at the first difference;
/// the payload's data is still hashed to the end.
fn holds<R: Read + Seek>(
    dev: &mut dyn Device,
    pos: u64,
    step: &BootStep,
    payload: &mut R,
    buf: &mut Buffers,
) -> anyhow::Result<bool> {
    let mut src = Source::new(&step.data, payload)?;
    let mut at = pos;
    let mut same = true;
    loop {
        let n = src.next(&mut buf.a)?;
        if n == 0 {
            break;
        }
        if same {
            let (want, got) = (buf.a.get(..n), buf.b.get_mut(..n));
            let (Some(want), Some(got)) = (want, got) else {
                break;
            };
            dev.read_at(at, got)?;
            same = want == &*got;
        }
        at += n as u64;
    }
    src.check(step)?;
    let end = pos.saturating_add(step.span);
    while same && at < end {
        let n = (end - at).min(CHUNK as u64) as usize;
        let got = buf.b.get_mut(..n).unwrap_or(&mut []);
        dev.read_at(at, got)?;
        same = got.iter().all(|&b| b == 0);
        at += n as u64;
    }
    Ok(same)
}

/// Writes the data then zeros to the end of the span, and syncs.
fn write<R: Read + Seek>(
    dev: &mut dyn Device,
    pos: u64,
    step: &BootStep,
    payload: &mut R,
    buf: &mut Buffers,
    events: &Events,
) -> anyhow::Result<()> {
    let mut src = Source::new(&step.data, payload)?;
    let mut done = 0u64;
    loop {
        let n = src.next(&mut buf.a)?;
        if n == 0 {
            break;
        }
        dev.write_at(pos + done, buf.a.get(..n).unwrap_or(&[]))?;
        done += n as u64;
        events.progress(done, Some(step.span));
    }
    src.check(step)?;
    buf.b.fill(0);
    while done < step.span {
        let n = (step.span - done).min(CHUNK as u64) as usize;
        dev.write_at(pos + done, buf.b.get(..n).unwrap_or(&[]))?;
        done += n as u64;
        events.progress(done, Some(step.span));
    }
    dev.sync(pos, step.span)?;
    Ok(())
}

/// Reads the span back: the data must hash to the plan's SHA-256 and the
/// tail must be zeros.
fn verify(
    dev: &mut dyn Device,
    pos: u64,
    step: &BootStep,
    buf: &mut Buffers,
) -> anyhow::Result<()> {
    let len = step.data.len();
    let mut h = Sha256::new();
    let mut done = 0u64;
    let mut tail_ok = true;
    while done < step.span {
        let n = (step.span - done).min(CHUNK as u64) as usize;
        let chunk = buf.a.get_mut(..n).unwrap_or(&mut []);
        dev.read_at(pos + done, chunk)?;
        let data_part = (len.saturating_sub(done)).min(n as u64) as usize;
        let (data, tail) = chunk.split_at(data_part);
        h.update(data);
        tail_ok &= tail.iter().all(|&b| b == 0);
        done += n as u64;
    }
    let got = hex(&h.finalize());
    if got != step.sha256 {
        bail!(
            "verifying {} on {}: read back SHA-256 {got}, written {}",
            step.label,
            step.device,
            step.sha256
        );
    }
    if !tail_ok {
        bail!(
            "verifying {} on {}: the {} bytes after the data did not read back as zeros",
            step.label,
            step.device,
            step.span - len
        );
    }
    Ok(())
}

/// Carries out steps in order. A dry run compares and reports, writes
/// nothing. The first failure stops the run; what was written stays (the
/// order makes that safe, and a re-run skips what is already there).
pub fn execute<R: Read + Seek>(
    steps: &[BootStep],
    targets: &mut Targets<'_>,
    payload: &mut R,
    run: &Execution<'_>,
) -> anyhow::Result<Vec<StepReport>> {
    let mut buf = Buffers {
        a: vec![0; CHUNK],
        b: vec![0; CHUNK],
    };
    let mut reports = Vec::with_capacity(steps.len());
    for step in steps {
        let mut opened;
        let (dev, pos): (&mut dyn Device, u64) = match step.area {
            WriteArea::Boot => (&mut *targets.boot, step.partition_offset + step.at),
            WriteArea::User => {
                opened = targets
                    .user
                    .open(&step.partition, !run.dry_run)
                    .with_context(|| format!("opening {} ({})", step.partition, step.device))?;
                (opened.as_mut(), step.at)
            }
        };
        let what = || {
            format!(
                "{} on {} at {}",
                step.label, step.device, step.device_offset
            )
        };
        let same = holds(dev, pos, step, payload, &mut buf)
            .with_context(|| format!("comparing {}", what()))?;
        let action = if same {
            StepAction::Skip
        } else {
            StepAction::Write
        };
        if !run.dry_run {
            run.events.step_start(
                run.phase,
                &format!("write {}", step.label),
                Some(&step.partition),
            );
            if same {
                run.events.step_end(Verdict::Skipped);
            } else {
                run.changes.mark();
                let r = write(dev, pos, step, payload, &mut buf, run.events)
                    .with_context(|| format!("writing {}", what()))
                    .and_then(|()| verify(dev, pos, step, &mut buf));
                if let Err(e) = r {
                    run.events.step_end(Verdict::Failed);
                    return Err(e);
                }
                run.events.step_end(Verdict::Ok);
            }
        }
        reports.push(StepReport {
            label: step.label.clone(),
            partition: step.partition.clone(),
            device: step.device.clone(),
            offset: step.device_offset,
            length: step.data.len(),
            span: step.span,
            sha256: step.sha256.clone(),
            action,
        });
    }
    Ok(reports)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::super::device::{MemDevice, SharedMem};
    use super::*;
    use crate::events::MemorySink;
    use std::io::Cursor;

    struct NoUser;
    impl UserDevices for NoUser {
        fn open(&mut self, name: &str, _: bool) -> io::Result<Box<dyn Device>> {
            Err(io::Error::other(format!("no {name}")))
        }
    }

    struct MemUser(Vec<(String, SharedMem)>);
    impl UserDevices for MemUser {
        fn open(&mut self, name: &str, _: bool) -> io::Result<Box<dyn Device>> {
            self.0
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, d)| Box::new(d.clone()) as Box<dyn Device>)
                .ok_or_else(|| io::Error::other("none"))
        }
    }

    fn step(
        label: &str,
        area: WriteArea,
        part_off: u64,
        at: u64,
        span: u64,
        data: StepData,
        payload: &[u8],
    ) -> BootStep {
        let bytes = match &data {
            StepData::Bytes { bytes } => bytes.clone(),
            StepData::Entry { offset, length, .. } => {
                payload[*offset as usize..(*offset + *length) as usize].to_vec()
            }
        };
        BootStep {
            label: label.into(),
            partition: label.into(),
            area,
            partition_offset: part_off,
            partition_size: span + at,
            at,
            span,
            data,
            sha256: hex(&Sha256::digest(&bytes)),
            device: "mem".into(),
            device_offset: part_off + at,
        }
    }

    /// A step that writes all `len` bytes of `payload` (entry 0) at the
    /// start of a boot partition that begins at `part_off`.
    fn whole(label: &str, part_off: u64, len: u64, payload: &[u8]) -> BootStep {
        let data = StepData::Entry {
            index: 0,
            offset: 0,
            length: len,
        };
        step(label, WriteArea::Boot, part_off, 0, len, data, payload)
    }

    /// Executes `steps` against `dev` as the boot device; the result and
    /// whether anything counts as changed.
    fn execute_on(
        dev: &mut MemDevice,
        steps: &[BootStep],
        payload: &[u8],
    ) -> (anyhow::Result<Vec<StepReport>>, bool) {
        let changes = Changes::new();
        let events = Events::silent();
        let mut t = Targets {
            boot: dev,
            user: &mut NoUser,
        };
        let r = execute(
            steps,
            &mut t,
            &mut Cursor::new(payload),
            &run(false, &changes, &events),
        );
        (r, changes.any())
    }

    fn run<'a>(dry: bool, changes: &'a Changes, events: &'a Events) -> Execution<'a> {
        Execution {
            dry_run: dry,
            changes,
            events,
            phase: Phase::Boot,
        }
    }

    #[test]
    fn writes_zero_tail_verifies_and_skips_on_the_second_run() {
        let payload = b"....hello world....".to_vec();
        let steps = vec![
            step(
                "a",
                WriteArea::Boot,
                1024,
                0,
                512,
                StepData::Entry {
                    index: 0,
                    offset: 4,
                    length: 11,
                },
                &payload,
            ),
            step(
                "b",
                WriteArea::Boot,
                4096,
                100,
                3,
                StepData::Bytes {
                    bytes: b"xyz".to_vec(),
                },
                &payload,
            ),
            step(
                "k",
                WriteArea::User,
                0,
                0,
                64,
                StepData::Entry {
                    index: 0,
                    offset: 4,
                    length: 5,
                },
                &payload,
            ),
        ];
        let boot = SharedMem(std::rc::Rc::new(MemDevice::new(8192).into()));
        boot.0.borrow_mut().data[1024..2048].fill(0xEE);
        let k = SharedMem(std::rc::Rc::new(MemDevice::new(64).into()));
        k.0.borrow_mut().data.fill(0x11);
        let mut b: Box<dyn Device> = Box::new(boot.clone());
        let mut user = MemUser(vec![("k".into(), k.clone())]);
        let changes = Changes::new();
        let mem = MemorySink::default();
        let events = Events::new(vec![Box::new(mem.clone())]);

        // A dry run reads and reports, and writes nothing.
        let mut t = Targets {
            boot: b.as_mut(),
            user: &mut user,
        };
        let r = execute(
            &steps,
            &mut t,
            &mut Cursor::new(&payload),
            &run(true, &changes, &events),
        )
        .unwrap();
        assert!(r.iter().all(|s| s.action == StepAction::Write));
        assert!(!changes.any());
        assert_eq!(boot.0.borrow().written, 0);

        let r = execute(
            &steps,
            &mut t,
            &mut Cursor::new(&payload),
            &run(false, &changes, &events),
        )
        .unwrap();
        assert!(r.iter().all(|s| s.action == StepAction::Write));
        assert!(changes.any());
        let d = boot.0.borrow().data.clone();
        assert_eq!(&d[1024..1035], b"hello world");
        assert!(d[1035..1536].iter().all(|&x| x == 0), "zero tail");
        assert!(
            d[1536..2048].iter().all(|&x| x == 0xEE),
            "beyond the span untouched"
        );
        assert_eq!(&d[4196..4199], b"xyz");
        assert_eq!(&k.0.borrow().data[..5], b"hello");
        assert!(k.0.borrow().data[5..].iter().all(|&x| x == 0));
        let verdicts: Vec<_> = mem
            .0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|e| e.verdict)
            .collect();
        assert_eq!(verdicts, [Verdict::Ok; 3]);

        // Second run: everything is already there.
        let written = boot.0.borrow().written;
        let r = execute(
            &steps,
            &mut t,
            &mut Cursor::new(&payload),
            &run(false, &changes, &events),
        )
        .unwrap();
        assert!(r.iter().all(|s| s.action == StepAction::Skip));
        assert_eq!(boot.0.borrow().written, written);
    }

    /// Issue 12 items 7 and 8: the whole partition is compared, so stale
    /// bytes after data that already matches are cleared, and a zero-length
    /// entry erases its partition; a partition already right is left alone.
    #[test]
    fn stale_tails_are_cleared_zero_length_entries_erase_and_matches_are_skipped() {
        let payload = b"DATA".to_vec();
        let part = 3 * CHUNK as u64 + 100; // spans several chunks
        let data = StepData::Entry {
            index: 0,
            offset: 0,
            length: 4,
        };
        let empty = StepData::Entry {
            index: 1,
            offset: 0,
            length: 0,
        };
        let steps = vec![
            step("kernel", WriteArea::Boot, 0, 0, part, data, &payload),
            step("eks", WriteArea::Boot, part, 0, part, empty, &payload),
        ];
        let mut dev = MemDevice::new(2 * part as usize + 512);
        // kernel: the data in place, a stale byte far into the tail.
        dev.data[..4].copy_from_slice(b"DATA");
        dev.data[part as usize - 1] = 0x5A;
        // eks: old contents; its entry is empty.
        dev.data[part as usize..2 * part as usize].fill(0x77);
        dev.data[2 * part as usize..].fill(0x33);
        let (r, changed) = execute_on(&mut dev, &steps, &payload);
        let r = r.unwrap();
        assert!(changed);
        assert!(r.iter().all(|s| s.action == StepAction::Write), "{r:?}");
        assert_eq!(&dev.data[..4], b"DATA");
        assert!(dev.data[4..2 * part as usize].iter().all(|&b| b == 0));
        assert!(
            dev.data[2 * part as usize..].iter().all(|&b| b == 0x33),
            "past the partitions untouched"
        );
        // Now both are right in full: read, not written.
        let written = dev.written;
        let (r, changed) = execute_on(&mut dev, &steps, &payload);
        assert!(r.unwrap().iter().all(|s| s.action == StepAction::Skip));
        assert!(!changed);
        assert_eq!(dev.written, written);
    }

    #[test]
    fn a_medium_that_lies_fails_verification_naming_the_step() {
        let payload = b"0123456789".to_vec();
        let steps = vec![step(
            "mb1_b",
            WriteArea::Boot,
            0,
            0,
            16,
            StepData::Entry {
                index: 0,
                offset: 0,
                length: 10,
            },
            &payload,
        )];
        let mut dev = MemDevice::new(64);
        dev.corrupt = true;
        let (r, changed) = execute_on(&mut dev, &steps, &payload);
        let err = r.unwrap_err();
        assert!(
            format!("{err:#}").starts_with("verifying mb1_b on mem: read back SHA-256"),
            "{err:#}"
        );
        assert!(changed);
    }

    #[test]
    fn a_failing_write_stops_the_run_and_counts_as_a_change() {
        let payload = vec![7u8; 100];
        let steps = vec![
            whole("one", 0, 100, &payload),
            whole("two", 200, 100, &payload),
        ];
        let mut dev = MemDevice::new(512);
        dev.fail_after = Some(150);
        let (r, changed) = execute_on(&mut dev, &steps, &payload);
        assert_eq!(
            format!("{:#}", r.unwrap_err()),
            "writing two on mem at 200: injected write failure"
        );
        assert!(changed);
    }

    #[test]
    fn a_payload_changed_since_planning_is_caught_before_writing() {
        let payload = vec![1u8; 32];
        let steps = vec![whole("x", 0, 32, &payload)];
        let mut edited = payload.clone();
        edited[5] = 2;
        let mut dev = MemDevice::new(64);
        let (r, changed) = execute_on(&mut dev, &steps, &edited);
        let err = r.unwrap_err();
        assert!(
            format!("{err:#}").contains("changed since it was checked"),
            "{err:#}"
        );
        assert!(!changed);
        assert!(dev.data.iter().all(|&b| b == 0));
    }

    #[test]
    fn survey_reads_the_table_and_the_metadata() {
        let parts = crate::bup::fixtures::tx2_boot();
        let len = 8u64 << 20;
        let mut dev = MemDevice::new(len as usize);
        let e = bootgpt::encode(&parts, len, || crate::guid::Guid::NIL).unwrap();
        let at = bootgpt::entries_offset(len) as usize;
        dev.data[at..at + e.entries.len()].copy_from_slice(&e.entries);
        let h = bootgpt::header_offset(len) as usize;
        dev.data[h..h + 92].copy_from_slice(&e.header);
        let smd = super::super::smd::Smd::new_full().encode().unwrap();
        dev.data[2067456..2067456 + 191].copy_from_slice(&smd);
        let inv = survey(&mut dev, Soc::T186, BootMedium::Emmc, &parts);
        assert_eq!(inv.table.as_deref(), Some(&parts[..]));
        assert_eq!(inv.smd[1].as_deref(), Some(&smd[..]));
        assert_eq!(inv.smd[0].as_ref().map(|s| s.len()), Some(191));
        assert_eq!(inv.bct.as_ref().map(|b| b.len()), Some(32768));
        assert!(inv.ver[0].is_none() && inv.nvc_crc[0].is_none());
        // A blank device has no table.
        let mut blank = MemDevice::new(len as usize);
        assert!(read_table(&mut blank).is_err());
    }
}
