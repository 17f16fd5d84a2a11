//! The install's writes, as named steps in this order:
//!
//! ```text
//! journal → partition → open_containers (crypt-) → make_filesystems
//!         → unpack_slots → fill_data
//!         → write_boot (partitions, then slot metadata) → clear_journal
//! ```
//!
//! With a copy of DATA staged on the disk (`--keep-data` where DATA moves,
//! docs/spec/data-stage.md), the copy comes first and the partition holding
//! it is formatted only once DATA is restored:
//!
//! ```text
//! journal → stage_data (copy, read back, journal) → partition
//!   → make_filesystems (not the stage's) → fill_data (restore from the copy)
//!   → journal "restored" → make_filesystems (the stage's) → unpack_slots → …
//! ```
//!
//! Every step is idempotent: the GPT is rewritten only when the layout is
//! not in place, a filesystem carrying this install's completion marker is
//! kept, boot partitions are compared before they are written. So after a
//! power cut, the same command runs the same steps and redoes only what was
//! not finished. The bootloader is switched (slot metadata) last.

use super::journal::{self, InstallMode, Record, StageRecord};
use super::payload::BupSource;
use super::preflight::{boot_update_options, slot_byte, Preflight, Staging};
use super::stage;
use super::{node, Fs, FsRole, InstallOptions, Summary};
use crate::bup::exec::StepAction;
use crate::bup::update::{self, Request};
use crate::disk::{self, PartitionNode};
use crate::events::Level;
use crate::events::{Events, Phase, Verdict};
use crate::exit::Changes;
use crate::failpoint;
use crate::interrupt::{self, Interrupted};
use crate::probe;
use crate::rootfs::{self, Source, SourceOptions, UnpackOptions};
use crate::sys::blockdev::Access;
use crate::sys::{luks, mkfs, mount::Mount};
use anyhow::{anyhow, bail, Context as _};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// One install being carried out.
pub struct Run<'a> {
    opts: &'a InstallOptions,
    pre: Preflight,
    changes: &'a Changes,
    events: &'a Events,
    summary: &'a mut Summary,
    record: Record,
    nodes: Vec<PartitionNode>,
    /// The LUKS containers this run opened (closed when the run ends).
    opened: Opened,
}

/// Device-mapper names of the containers a run opened; closed, last first,
/// when dropped: at the end and on every failure (after the mounts on them,
/// which are dropped first).
#[derive(Default)]
struct Opened(Vec<String>);

impl Drop for Opened {
    fn drop(&mut self) {
        while let Some(name) = self.0.pop() {
            if let Err(e) = crate::sys::luks::close(&name) {
                log::warn!("{e:#}");
            }
        }
    }
}

/// Runs every step.
pub fn execute(
    opts: &InstallOptions,
    pre: Preflight,
    changes: &Changes,
    events: &Events,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let record = match &pre.resume {
        Some(r) => r.clone(),
        None => Record::start(
            pre.decision.mode,
            slot_byte(pre.decision.target),
            pre.content,
            now_secs(),
        )?,
    };
    let mut record = record;
    if record.machine_id.is_none() {
        record.machine_id = pre.machine_id;
    }
    let mut run = Run {
        opts,
        pre,
        changes,
        events,
        summary,
        record,
        nodes: Vec::new(),
        opened: Opened::default(),
    };
    run.steps().map_err(|e| match interrupt::received() {
        // A tool killed by the same Ctrl-C fails on its own; say why.
        Some(s) if !e.chain().any(|c| c.is::<Interrupted>()) => e.context(Interrupted(s)),
        _ => e,
    })
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Run<'_> {
    /// The steps, with a look for a signal before each.
    fn steps(&mut self) -> anyhow::Result<()> {
        self.store_journal(true)?;
        failpoint::hit("journal-written");
        interrupt::check()?;
        self.stage_data()?;
        interrupt::check()?;
        self.partition()?;
        failpoint::hit("partitioned");
        self.open_containers()?;
        let stage = self.pre.staging.as_ref().map(|s| s.area.partition.clone());
        let mut created = self.make_filesystems(|n| Some(n) != stage.as_deref())?;
        if let Some(p) = &stage {
            interrupt::check()?;
            self.fill_data(&created)?;
            self.mark_restored()?;
            created.extend(self.make_filesystems(|n| n == p)?);
        }
        interrupt::check()?;
        self.unpack_slots(&created)?;
        interrupt::check()?;
        if stage.is_none() {
            self.fill_data(&created)?;
        }
        interrupt::check()?;
        self.write_images()?;
        interrupt::check()?;
        self.write_boot()?;
        failpoint::hit("committed");
        super::install_log::write(&self.pre, &self.nodes, self.summary, self.events);
        self.store_journal(false)
    }

    /// Writes the journal record (or clears it) into LBA 0's boot-code area.
    fn store_journal(&mut self, running: bool) -> anyhow::Result<()> {
        let record = running.then_some(&self.record);
        self.changes.mark();
        self.pre
            .disk
            .update_sector0(|s| journal::store(s, record))
            .with_context(|| {
                format!(
                    "writing the install journal to {}",
                    self.opts.device.display()
                )
            })
    }

    /// The GPT, when an initial install finds the layout not in place; else
    /// the kernel is shown the table that is there.
    fn partition(&mut self) -> anyhow::Result<()> {
        let env = self.opts.disk_env();
        self.nodes = if self.pre.decision.mode == InstallMode::Initial && !self.pre.plan.in_place {
            let target = self.pre.disk.reopen(Access::Exclusive).with_context(|| {
                format!("refusing to partition {}", self.pre.disk.path().display())
            })?;
            let prepared = disk::prepare_claimed(target, &self.pre.layout.user, &env)?;
            disk::write(prepared, &env, self.changes, self.events)?.nodes
        } else {
            self.events.message(
                Level::Info,
                "the layout is in place: the GPT is not rewritten",
            );
            disk::expose_target(self.pre.disk.target(), &env)?
        };
        Ok(())
    }

    /// The containers of the `crypt-` filesystems this run writes: new ones
    /// (`luksFormat`), or, when resuming, those the key opens, so that what
    /// the earlier run finished in them is found. From here on the
    /// partition's node is the container's (`/dev/mapper/sysinstall-APP`).
    fn open_containers(&mut self) -> anyhow::Result<()> {
        let Some(key) = &self.pre.luks_key else {
            return Ok(());
        };
        let key = key.path().to_owned();
        let todo: Vec<Fs> =
            super::crypt::to_open(&self.pre.fs, &self.pre.decision, self.opts.data.is_some())
                .into_iter()
                .cloned()
                .collect();
        for f in &todo {
            interrupt::check()?;
            let dev = self.node_of(f);
            let name = super::crypt::mapper_name(f);
            let create = self.pre.decision.create.contains(&f.name);
            let reused = if create && self.pre.resume.is_none() {
                None
            } else {
                match luks::open(&dev, &name, &key) {
                    Ok(p) => Some(p),
                    Err(e) if create => {
                        log::info!("{e:#}: a new container is made");
                        None
                    }
                    Err(e) => return Err(e),
                }
            };
            let mapped = match reused {
                Some(p) => p,
                None => {
                    self.events.step_start(
                        Phase::Mkfs,
                        &format!("luksFormat {}", f.name),
                        Some(&f.name),
                    );
                    self.changes.mark();
                    luks::format(&dev, &key)?;
                    let p = luks::open(&dev, &name, &key)?;
                    self.events.step_end(Verdict::Ok);
                    p
                }
            };
            self.opened.0.push(name);
            let dm = PartitionNode {
                number: f.number,
                name: f.name.clone(),
                path: mapped,
                origin: crate::sys::blockdev::NodeOrigin::Appeared,
            };
            match self.nodes.iter_mut().find(|n| n.number == f.number) {
                Some(n) => *n = dm,
                None => self.nodes.push(dm),
            }
            failpoint::hit(&format!("luks-{}", f.label()));
        }
        Ok(())
    }

    fn node_of(&self, f: &Fs) -> PathBuf {
        node(&self.pre.disk, &self.nodes, f.number)
    }

    /// The filesystems this run creates (of those `which` names), minus
    /// those an earlier run of it finished (they carry its completion
    /// marker); mkfs for the others. Returns what was created now.
    fn make_filesystems(&mut self, which: impl Fn(&str) -> bool) -> anyhow::Result<Vec<Fs>> {
        let mut todo = Vec::new();
        for f in &self.pre.fs {
            if !which(&f.name) || !self.pre.decision.create.contains(&f.name) || self.imaged(f) {
                continue;
            }
            // A slot of a rootfs that cannot be identified before it is read
            // (standard input without a hash) is never kept: the stream may
            // not be the one the earlier run read, and slots of two images
            // must never be mixed.
            let keepable = self.pre.rootfs_sha256.is_some() || !matches!(f.role, FsRole::Slot(_));
            let finished = keepable
                && sys_probe(&self.node_of(f)).ext().is_some_and(|sb| {
                    self.record.is_done(&sb.last_mounted) && sb.label == f.label()
                });
            if finished {
                self.summary.resumed.push(f.name.clone());
            } else {
                todo.push(f.clone());
            }
        }
        let slot = |n: &String| {
            self.pre
                .fs
                .iter()
                .any(|f| f.name == *n && matches!(f.role, FsRole::Slot(_)))
        };
        if self.summary.resumed.iter().any(slot) {
            self.summary.artifact = self.record.artifact.clone();
        }
        if !self.summary.resumed.is_empty() {
            self.events.message(
                Level::Info,
                format!(
                    "finished by the earlier run, kept: {}",
                    self.summary.resumed.join(", ")
                ),
            );
        }
        for f in &todo {
            interrupt::check()?;
            self.events
                .step_start(Phase::Mkfs, &format!("mkfs {}", f.shown()), Some(&f.name));
            let mut o = mkfs::Ext4Options::for_partition(f.label());
            o.extra = super::mkfs_extra(&self.opts.mkfs_options, &f.name);
            if f.role == FsRole::Scratch {
                // Nothing goes into it: formatted is finished.
                o.extra.extend(["-M".to_owned(), self.record.done_marker()]);
            }
            self.changes.mark();
            mkfs::mkfs_ext4(&self.node_of(f), &o)?;
            self.events.step_end(Verdict::Ok);
            failpoint::hit(&format!("mkfs-{}", f.name));
        }
        Ok(todo)
    }

    /// True when an image fills `f` (it gets no mkfs).
    fn imaged(&self, f: &Fs) -> bool {
        match f.role {
            FsRole::Slot(_) => self.pre.slot_image.is_some(),
            _ => self.pre.images.iter().any(|(i, _, _)| i.name == f.name),
        }
    }

    /// The slots' image into every slot this run writes, from one stream,
    /// read back. A re-run after an interruption writes it again.
    fn write_slot_image(&mut self) -> anyhow::Result<()> {
        let Some(m) = &self.pre.slot_image else {
            return Ok(());
        };
        let slots: Vec<&Fs> = self
            .pre
            .fs
            .iter()
            .filter(|f| {
                matches!(f.role, FsRole::Slot(_)) && self.pre.decision.create.contains(&f.name)
            })
            .collect();
        let names: Vec<&str> = slots.iter().map(|f| f.name.as_str()).collect();
        let nodes: Vec<PathBuf> = slots.iter().map(|f| self.node_of(f)).collect();
        self.events.step_start(
            Phase::Unpack,
            &format!("image into {}", names.join(", ")),
            names.first().copied(),
        );
        self.changes.mark();
        super::images::write(&self.opts.rootfs, m, &nodes, self.opts, self.events)
            .with_context(|| format!("writing {} into {}", self.opts.rootfs, names.join(", ")))?;
        self.events.step_end(Verdict::Ok);
        failpoint::hit("unpacked");
        let sha = crate::bytes::hex(&m.decoded.sha256);
        self.summary.rootfs_sha256 = Some(sha.clone());
        for n in names {
            self.summary
                .slots
                .push((n.to_owned(), format!("sha256:{sha}")));
        }
        self.record.stream_sha256 = Some(m.decoded.sha256);
        self.store_journal(true)
    }

    /// The other partitions' images (`--image NAME=`), each read back.
    fn write_images(&mut self) -> anyhow::Result<()> {
        for (f, spec, m) in &self.pre.images {
            interrupt::check()?;
            self.events.step_start(
                Phase::Data,
                &format!("image into {}", f.name),
                Some(&f.name),
            );
            self.changes.mark();
            super::images::write(spec, m, &[self.node_of(f)], self.opts, self.events)
                .with_context(|| format!("writing {spec} into {}", f.name))?;
            self.events.step_end(Verdict::Ok);
            self.summary.images.push((
                f.name.clone(),
                format!("sha256:{}", crate::bytes::hex(&m.decoded.sha256)),
            ));
        }
        Ok(())
    }

    /// Both slots (or the one an update writes) from one stream; then each
    /// is unmounted, checked and marked finished.
    fn unpack_slots(&mut self, created: &[Fs]) -> anyhow::Result<()> {
        if self.pre.slot_image.is_some() {
            return self.write_slot_image();
        }
        let slots: Vec<&Fs> = created
            .iter()
            .filter(|f| matches!(f.role, FsRole::Slot(_)))
            .collect();
        if slots.is_empty() {
            return Ok(());
        }
        let names: Vec<&str> = slots.iter().map(|f| f.name.as_str()).collect();
        let mounts: Vec<Mount> = slots
            .iter()
            .map(|f| Mount::ext4(&self.node_of(f), &self.mountpoint(&f.name), false))
            .collect::<anyhow::Result<_>>()?;
        let dirs: Vec<PathBuf> = mounts.iter().map(|m| m.path().to_owned()).collect();
        self.events.step_start(
            Phase::Unpack,
            &format!("unpack {}", names.join(", ")),
            names.first().copied(),
        );
        let rep = rootfs::unpack(
            self.rootfs_source()?,
            &dirs,
            &UnpackOptions::default(),
            self.events,
        )
        .with_context(|| format!("unpacking {} into {}", self.opts.rootfs, names.join(", ")))?;
        self.events.step_end(Verdict::Ok);
        self.summary.rootfs_sha256 = Some(rep.sha256.clone());
        failpoint::hit("unpacked");
        let now = SystemTime::now();
        for f in &slots {
            self.summary
                .slots
                .push((f.name.clone(), format!("sha256:{}", rep.sha256)));
        }
        for m in &mounts {
            rootfs::post::refresh_timestamp_at(m.path(), now)?;
            if let Some(id) = &self.record.machine_id {
                if rootfs::post::carry_machine_id(m.path(), id)? {
                    self.summary.machine_id_carried = true;
                }
            }
            self.summary.artifact = self
                .summary
                .artifact
                .take()
                .or_else(|| rootfs::post::artifact_name(m.path()));
        }
        if self.opts.verify_slots {
            verify_slots(&slots, &mounts, self.events)?;
        }
        for m in mounts {
            m.unmount()?;
        }
        // What a re-run that keeps these slots reports.
        self.record.stream_sha256 = rootfs::source::parse_hex(&rep.sha256);
        self.record.artifact = self.summary.artifact.clone();
        self.store_journal(true)?;
        for f in &slots {
            self.check_and_mark(f)?;
        }
        Ok(())
    }

    fn mountpoint(&self, name: &str) -> PathBuf {
        self.pre.rundir.join("mnt").join(name)
    }

    /// The rootfs: the stream the preflight opened, or the file or URL
    /// again with the hash the preflight found (or was given), so that the
    /// unpack must read the same bytes.
    fn rootfs_source(&mut self) -> anyhow::Result<Source> {
        if let Some(s) = self.pre.rootfs_stream.take() {
            return Ok(s);
        }
        Source::open(
            &self.opts.rootfs,
            &SourceOptions {
                sha256: self
                    .pre
                    .rootfs_sha256
                    .map(|h| crate::bytes::hex(&h))
                    .or_else(|| self.opts.rootfs_sha256.clone()),
                sha256_from: Some(self.pre.rootfs_sha256_from.clone()),
                net: self.opts.net.clone(),
                events: self.events.clone(),
                ..SourceOptions::default()
            },
        )
    }

    /// `e2fsck -p` (unless `--no-fsck`), then the completion marker.
    fn check_and_mark(&self, f: &Fs) -> anyhow::Result<()> {
        interrupt::check()?;
        let path = self.node_of(f);
        if !self.opts.no_fsck {
            self.events.step_start(
                Phase::Unpack,
                &format!("e2fsck -p {}", f.name),
                Some(&f.name),
            );
            mkfs::e2fsck_preen(&path)?;
            self.events.step_end(Verdict::Ok);
        }
        failpoint::hit(&format!("before-mark-{}", f.name));
        mkfs::set_last_mounted(&path, &self.record.done_marker())
    }

    /// DATA, when this run re-created it (restored and/or the data tarball
    /// unpacked into it) or the data tarball goes into a DATA kept in place.
    fn fill_data(&mut self, created: &[Fs]) -> anyhow::Result<()> {
        let Some(d) = self.pre.fs.iter().find(|f| f.role == FsRole::Data) else {
            return Ok(());
        };
        let recreated = created.iter().any(|f| f.name == d.name);
        let in_place = self.pre.decision.data == Some(super::decide::DataHandling::InPlace);
        if recreated || (in_place && self.opts.data.is_some()) {
            self.events
                .step_start(Phase::Data, &format!("data into {}", d.name), Some(&d.name));
            let path = self.node_of(d);
            let m = Mount::ext4(&path, &self.mountpoint(&d.name), false)?;
            if let Some(saved) = &self.pre.saved_data {
                restore_data(saved, m.path(), &d.name, self.events)?;
            } else if let Some(st) = self.record.stage.clone() {
                if st.restored {
                    bail!(
                        "{}: the interrupted install restored it from {}, but it is not complete now",
                        d.name,
                        st.partition
                    );
                }
                self.restore_staged(&st, m.path(), &d.name)?;
            }
            if let Some(t) = &self.opts.data {
                rootfs::unpack(
                    Source::open(
                        t,
                        &SourceOptions {
                            net: self.opts.net.clone(),
                            ..SourceOptions::default()
                        },
                    )?,
                    &[m.path().to_owned()],
                    &UnpackOptions {
                        keep_newer_files: true,
                        ..UnpackOptions::default()
                    },
                    self.events,
                )
                .with_context(|| format!("unpacking {t} into {}", d.name))?;
            }
            m.unmount()?;
            if recreated {
                mkfs::set_last_mounted(&path, &self.record.done_marker())?;
            }
            self.events.step_end(Verdict::Ok);
        }
        failpoint::hit("data");
        Ok(())
    }

    /// `--keep-data` with a staged copy: DATA's files as one archive into
    /// the area the preflight chose, made durable, read back from the
    /// device and checked, and only then recorded in the journal; nothing
    /// else has been written yet but the journal. A copy the journal already
    /// records (a resumed run) is not made again.
    fn stage_data(&mut self) -> anyhow::Result<()> {
        let Some(Staging {
            area,
            source: Some((number, nodes)),
        }) = &self.pre.staging
        else {
            return Ok(());
        };
        let name = self
            .pre
            .fs
            .iter()
            .find(|f| f.role == FsRole::Data)
            .map_or("DATA", |f| f.name.as_str())
            .to_owned();
        let name = name.as_str();
        let what = format!("copy {name} into {}", area.partition);
        self.events.step_start(Phase::Data, &what, Some(name));
        let env = self.opts.disk_env();
        let nodes_now = disk::expose_target(self.pre.disk.target(), &env)?;
        let path = node(&self.pre.disk, &nodes_now, *number);
        let m = Mount::ext4_inspect(&path, &self.mountpoint("keep-data"))?;
        let tree = rootfs::source::parse_hex(&rootfs::tree::manifest_hash(nodes))
            .context("hashing the listing of DATA")?;
        let at = area.disk_offset();
        let mut t = self.pre.disk.reopen(Access::Write)?;
        self.changes.mark();
        let f = t.file();
        let header = stage::write(f, at, area.len - stage::HEADER_LEN, tree, |w| {
            rootfs::tree::write_tar(m.path(), nodes, w)
        })
        .with_context(|| format!("writing the copy of {name} into {}", area.partition))?;
        crate::sys::blockdev::sync(f)
            .and_then(|()| crate::sys::rawdev::drop_cache(f, at, area.len))
            .with_context(|| format!("flushing the copy of {name}"))?;
        stage::verify(f, at, Some(&header))
            .with_context(|| format!("reading back the copy of {name} in {}", area.partition))?;
        m.unmount()?;
        let said = format!(
            "{name} copied into {} ({} bytes at byte {}), read back and recorded",
            area.partition, header.len, area.offset
        );
        self.record.stage = Some(StageRecord {
            partition: area.partition.clone(),
            offset: area.offset,
            len: header.len,
            sha256: header.sha256,
            restored: false,
        });
        self.store_journal(true)?;
        self.events.step_end(Verdict::Ok);
        self.events.message(Level::Info, said);
        failpoint::hit("staged");
        Ok(())
    }

    /// DATA restored from its staged copy: checked again, unpacked, the
    /// tree compared with the one copied.
    fn restore_staged(
        &self,
        st: &StageRecord,
        root: &std::path::Path,
        name: &str,
    ) -> anyhow::Result<()> {
        let at = self
            .pre
            .staging
            .as_ref()
            .map(|s| s.area.disk_offset())
            .context("the staged copy of DATA has no place")?;
        let want = stage::Header {
            len: st.len,
            sha256: st.sha256,
            tree: [0; 32],
        };
        let mut t = self.pre.disk.reopen(Access::ReadOnly)?;
        let h = stage::verify(t.file(), at, Some(&want))
            .with_context(|| format!("checking the copy of {name} in {}", st.partition))?;
        let mut r = stage::payload(t.file(), at, &h)?;
        let n = rootfs::tree::restore_tar(&mut r, root, &crate::bytes::hex(&h.tree))
            .with_context(|| format!("restoring {name} from {}", st.partition))?;
        self.events.message(
            Level::Info,
            format!(
                "{name} restored from the copy in {} and verified ({n} entries)",
                st.partition
            ),
        );
        Ok(())
    }

    /// The journal says DATA was restored: the copy's partition may now be
    /// formatted.
    fn mark_restored(&mut self) -> anyhow::Result<()> {
        if let Some(s) = self.record.stage.as_mut().filter(|s| !s.restored) {
            s.restored = true;
            self.store_journal(true)?;
        }
        failpoint::hit("data-restored");
        Ok(())
    }

    /// The boot partitions, verified; then the slot metadata: the switch.
    fn write_boot(&mut self) -> anyhow::Result<()> {
        if self.pre.orin.is_some() {
            return self.write_orin();
        }
        let BupSource::File(p) = self.pre.bup.clone() else {
            let note = "--no-bootloader: the boot partitions were left alone";
            self.summary.boot_note = Some(note.into());
            self.events.message(Level::Warn, note);
            return Ok(());
        };
        let request = match self.pre.decision.mode {
            InstallMode::Initial => Request::Initialize,
            InstallMode::Update => Request::UpdateAndActivate(self.pre.decision.target),
        };
        let mut s = update::prepare(&boot_update_options(
            self.opts,
            &self.pre.disk,
            &self.pre.layout,
            self.pre.soc,
            &self.pre.boot_devices,
            &p,
            request,
        ))?;
        let mut reports = s.execute_partitions(self.changes, self.events)?;
        reports.extend(s.initialize_bootinfo(self.changes, self.events)?);
        failpoint::hit("boot-written");
        // The last chance to stop before the bootloader is switched.
        interrupt::check()?;
        reports.extend(s.commit_slot_metadata(self.changes, self.events)?);
        for r in reports {
            match r.action {
                StepAction::Skip => self.summary.boot_skipped.push(r.label),
                StepAction::Write => self.summary.boot_written.push(r.label),
            }
        }
        Ok(())
    }
}

impl Run<'_> {
    /// Orin: kernel partitions, ESP, then the UEFI variables.
    fn write_orin(&mut self) -> anyhow::Result<()> {
        let Some(orin) = &self.pre.orin else {
            return Ok(());
        };
        if self.opts.no_bootloader {
            let note = "--no-bootloader: kernel partitions, ESP and UEFI variables were left alone";
            self.summary.boot_note = Some(note.into());
            self.events.message(Level::Warn, note);
            return Ok(());
        }
        let node = |n: u32| node(&self.pre.disk, &self.nodes, n);
        let w = super::t234::write(
            orin,
            &self.pre.layout,
            &node,
            &self.mountpoint(super::t234::ESP),
            self.changes,
            self.events,
        )?;
        self.summary.boot_written.extend(w.written);
        self.summary.boot_skipped.extend(w.skipped);
        self.summary.variables = w.variables;
        if orin.capsule.is_some() {
            self.summary.boot_note = Some(
                "the capsule is staged: the firmware updates its other chain at the next boot \
                 and boots it; run `sysinstall status` on the new system afterwards"
                    .into(),
            );
        }
        Ok(())
    }
}

/// What a partition holds now (unknown when it cannot be read).
fn sys_probe(path: &std::path::Path) -> probe::Content {
    crate::sys::blockdev::read_head(path, probe::PROBE_BYTES)
        .map(|b| probe::identify(&b))
        .unwrap_or(probe::Content::Unknown)
}

/// Puts the saved DATA back and checks it against what was saved.
fn restore_data(
    saved: &rootfs::tree::SavedTree,
    root: &std::path::Path,
    name: &str,
    events: &Events,
) -> anyhow::Result<()> {
    rootfs::tree::restore(saved, root)?;
    let got = rootfs::tree::hash(root)?;
    if got != saved.hash {
        bail!(
            "{name}: restored contents differ from what was saved ({got} vs {})",
            saved.hash
        );
    }
    events.message(
        Level::Info,
        format!("{name} restored and verified ({} entries)", saved.len()),
    );
    Ok(())
}

/// `--verify-slots`: lists both slot trees (contents hashed, in parallel) and
/// fails when they differ. They came from one stream, so a difference means
/// a bug or a bad medium, and neither slot can be trusted.
fn verify_slots(slots: &[&Fs], mounts: &[Mount], events: &Events) -> anyhow::Result<()> {
    events.step_start(Phase::Unpack, "verify the slots against each other", None);
    let listed: Vec<anyhow::Result<Vec<rootfs::tree::Node>>> = std::thread::scope(|s| {
        let handles: Vec<_> = mounts
            .iter()
            .map(|m| s.spawn(|| rootfs::tree::content_manifest(m.path())))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow!("listing a slot panicked")))
            })
            .collect()
    });
    let mut manifests = Vec::new();
    for (f, l) in slots.iter().zip(listed) {
        manifests.push(l.with_context(|| format!("listing {}", f.name))?);
    }
    if let ([a, b], [ma, mb]) = (slots, manifests.as_slice()) {
        let d = rootfs::tree::diff(ma, mb, false);
        if !d.is_empty() {
            bail!(
                "{} and {} differ after unpacking the same stream: {}",
                a.name,
                b.name,
                d.iter().take(4).cloned().collect::<Vec<_>>().join("; ")
            );
        }
    }
    events.step_end(Verdict::Ok);
    Ok(())
}
