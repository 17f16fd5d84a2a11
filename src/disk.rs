//! Partitioning a disk: where the pure GPT and planning code meets the device
//! layer. Used by `sysinstall partition`, `sysinstall plan` and the install.
//!
//! [`prepare`] does everything that does not write: it refuses a disk that is
//! in use (naming the holder), opens the device exclusively, reads and probes
//! what is there, plans the change and builds and self-checks the new GPT and
//! the ordered write steps. [`write()`] then marks the target changed, writes
//! in the safe order of [`crate::gpt::write`], flushes, reads everything back,
//! makes the kernel see the new partitions and waits for their nodes.
//! [`partition`] is both in one call; [`inspect`] is the read-only part for
//! `plan` and `--dry-run`.

use crate::events::Level;
use crate::events::{Events, Phase, Verdict};
use crate::exit::Changes;
use crate::gpt::read::{self as gpt_read, DiskGpt, ReadError};
use crate::gpt::write::{self as gpt_write, GptWrites, NewGpt};
use crate::gpt::GptEntry;
use crate::layout::PartitionTable;
use crate::repartition::{self, Content, Current, Plan};
use crate::sys::blockdev::{self, Access, KernelPartition, NodeOrigin, Target, TargetKind};
use crate::sys::holders;
use anyhow::{bail, Context as _};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long to wait for partition nodes after the kernel learned of them.
/// devtmpfs creates them before BLKPG returns; udev-only /dev needs longer
/// on a busy board.
pub const NODE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the system is, for tests that fake it.
#[derive(Debug, Clone)]
pub struct DiskEnv {
    /// Root under which `proc/` and `sys/` are read for the in-use checks.
    pub sys_root: PathBuf,
    /// Directory of device nodes.
    pub dev_dir: PathBuf,
    /// How long to wait for partition nodes.
    pub node_timeout: Duration,
}

impl Default for DiskEnv {
    fn default() -> Self {
        DiskEnv {
            sys_root: PathBuf::from("/"),
            dev_dir: PathBuf::from("/dev"),
            node_timeout: NODE_TIMEOUT,
        }
    }
}

/// What is on the disk now.
#[derive(Debug, Clone)]
pub enum Found {
    /// No GPT; what the disk starts with.
    Nothing(Content),
    /// A GPT and what each partition holds.
    Gpt(DiskGpt, BTreeMap<u32, Content>),
    /// A GPT signature, but neither copy is valid.
    Unreadable(String),
}

/// Everything decided before the first write.
#[derive(Debug)]
pub struct PreparedGpt {
    target: Target,
    /// True when made by [`prepare`]: checked, opened exclusively for writing.
    claimed: bool,
    /// What is on the disk now.
    pub found: Found,
    /// What changes.
    pub plan: Plan,
    /// The new GPT, validated and self-checked.
    pub gpt: NewGpt,
    /// The ordered writes, including what is zapped.
    pub writes: GptWrites,
}

impl PreparedGpt {
    /// The device or image path.
    pub fn path(&self) -> &Path {
        self.target.path()
    }
}

/// A partition node after writing.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartitionNode {
    /// GPT entry number.
    pub number: u32,
    /// Partition name.
    pub name: String,
    /// Device node.
    pub path: PathBuf,
    /// How the node came to be.
    pub origin: NodeOrigin,
}

/// How the kernel learned of the new table.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "method", rename_all = "snake_case")]
pub enum KernelUpdate {
    /// BLKRRPART: the kernel parsed the table itself.
    Reread,
    /// Registered partition by partition with BLKPG.
    Blkpg {
        /// Why BLKRRPART did not do.
        reason: String,
        /// Partitions removed from the kernel's view.
        removed: Vec<u32>,
        /// Partitions added.
        added: Vec<u32>,
    },
}

/// The result of [`write()`].
#[derive(Debug, Clone)]
pub struct WrittenTable {
    /// The device or image path.
    pub device: PathBuf,
    /// The table as read back from the device.
    pub gpt: DiskGpt,
    /// How the kernel was told (block devices only).
    pub kernel: Option<KernelUpdate>,
    /// The partition nodes, in number order (block devices only).
    pub nodes: Vec<PartitionNode>,
}

/// Refuses when the disk or any of its partitions is in use, or when an
/// image file backs a loop device that is. [`prepare`] runs it; `--dry-run`
/// runs it on its own to predict the real outcome.
pub fn check_not_in_use(path: &Path, opts: &DiskEnv) -> anyhow::Result<()> {
    check_target_not_in_use(&Target::open(path, Access::ReadOnly)?, opts)
}

/// [`check_not_in_use`] for a target already open.
pub fn check_target_not_in_use(t: &Target, opts: &DiskEnv) -> anyhow::Result<()> {
    match t.kernel_name() {
        Some(name) => holders::check_unused(&opts.sys_root, name),
        None => holders::check_image_unused(&opts.sys_root, t.path()),
    }
    .with_context(|| format!("refusing to partition {}", t.path().display()))
}

/// Reads what is on the disk of `sectors` sectors of `ss` bytes: the GPT
/// (if any) and a probe of each partition.
fn find<R: Read + Seek>(dev: &mut R, sectors: u64, ss: u64) -> anyhow::Result<Found> {
    match gpt_read::read_in(dev, sectors, ss) {
        Ok(Some(g)) => {
            let contents = repartition::probe_partitions_in(dev, &g, sectors, ss)
                .context("probing the current partitions")?;
            Ok(Found::Gpt(g, contents))
        }
        Ok(None) => {
            let len = sectors
                .saturating_mul(ss)
                .min(crate::probe::PROBE_BYTES as u64) as usize;
            let mut buf = vec![0u8; len];
            dev.seek(SeekFrom::Start(0))?;
            dev.read_exact(&mut buf)?;
            Ok(Found::Nothing(crate::probe::identify(&buf)))
        }
        Err(ReadError::NoValidGpt { primary, backup }) => Ok(Found::Unreadable(format!(
            "primary: {primary}; backup: {backup}"
        ))),
        Err(ReadError::Io(e)) => Err(anyhow::Error::new(e).context("reading the current GPT")),
    }
}

/// Reads what is on `target` and plans `table` against it, after checking
/// that the table was placed for this disk (its sector size and size).
fn survey(target: &mut Target, table: &PartitionTable) -> anyhow::Result<(Found, Plan)> {
    let shown = target.path().display().to_string();
    // An image file stands in for a disk of the layout's sector size; a
    // block device has its own.
    let ss = table.sector_size;
    if let Some(l) = target.logical_sector_size().filter(|&l| l != ss) {
        bail!(
            "the layout was placed for {ss}-byte sectors, but {shown} has {l}-byte logical sectors"
        );
    }
    let bytes = target.bytes();
    if bytes % ss != 0 {
        bail!("{shown} is {bytes} bytes, not a whole number of {ss}-byte sectors");
    }
    let n = bytes / ss;
    if table.disk_sectors != n {
        bail!(
            "the layout was placed for a disk of {} sectors, but {shown} has {n} sectors of {ss} bytes",
            table.disk_sectors
        );
    }
    let found = find(target.file(), n, ss).with_context(|| format!("reading {shown}"))?;
    let plan = match &found {
        Found::Nothing(c) => repartition::plan(Current::None(c), table),
        Found::Gpt(g, contents) => repartition::plan(Current::Gpt(g, contents), table),
        Found::Unreadable(r) => repartition::plan(Current::Unreadable(r), table),
    };
    Ok((found, plan))
}

fn prepare_on(
    mut target: Target,
    claimed: bool,
    table: &PartitionTable,
) -> anyhow::Result<PreparedGpt> {
    let shown = target.path().display().to_string();
    let (found, plan) = survey(&mut target, table)?;
    let current = match &found {
        Found::Gpt(g, _) => Some(g),
        _ => None,
    };
    let gpt = gpt_write::build(table, current)
        .with_context(|| format!("building the GPT for {shown}"))?;
    let writes =
        gpt_write::plan_writes(target.file(), &gpt).with_context(|| format!("reading {shown}"))?;
    Ok(PreparedGpt {
        target,
        claimed,
        found,
        plan,
        gpt,
        writes,
    })
}

/// Reads, plans and builds without writing and without claiming the device:
/// for `plan` and `--dry-run`.
pub fn inspect(device: &Path, table: &PartitionTable) -> anyhow::Result<PreparedGpt> {
    prepare_on(Target::open(device, Access::ReadOnly)?, false, table)
}

/// The plan for `table` on a target already open (read only).
pub fn plan_on(target: &mut Target, table: &PartitionTable) -> anyhow::Result<Plan> {
    Ok(survey(target, table)?.1)
}

/// Everything before the first write: refuses a disk in use, opens it
/// exclusively (held until [`write()`] returns, so nobody can mount it in
/// between), reads, plans and builds.
pub fn prepare(
    device: &Path,
    table: &PartitionTable,
    opts: &DiskEnv,
) -> anyhow::Result<PreparedGpt> {
    check_not_in_use(device, opts)?;
    let target = Target::open(device, Access::Exclusive)
        .with_context(|| format!("refusing to partition {}", device.display()))?;
    prepare_claimed(target, table, opts)
}

/// [`prepare`] on a target the caller opened with [`Access::Exclusive`].
pub fn prepare_claimed(
    target: Target,
    table: &PartitionTable,
    opts: &DiskEnv,
) -> anyhow::Result<PreparedGpt> {
    check_target_not_in_use(&target, opts)?;
    prepare_on(target, true, table)
}

/// Writes a prepared GPT, verifies it and makes the kernel see it.
pub fn write(
    mut p: PreparedGpt,
    opts: &DiskEnv,
    changes: &Changes,
    events: &Events,
) -> anyhow::Result<WrittenTable> {
    let shown = p.target.path().display().to_string();
    if !p.claimed {
        bail!("{shown} was inspected, not prepared for writing (use disk::prepare)");
    }
    events.step_start(Phase::Partition, &format!("write GPT to {shown}"), None);
    let result = write_inner(&mut p, opts, changes, events, &shown);
    events.step_end(if result.is_ok() {
        Verdict::Ok
    } else {
        Verdict::Failed
    });
    result
}

fn write_inner(
    p: &mut PreparedGpt,
    opts: &DiskEnv,
    changes: &Changes,
    events: &Events,
    shown: &str,
) -> anyhow::Result<WrittenTable> {
    // Until the primary header lands, the disk holds the old table or the
    // new backup (see gpt::write); either way a re-run finishes the job.
    let rerun = "the disk holds the old or the new table; run the same command again";
    changes.mark();
    let barrier = |f: &mut std::fs::File| {
        blockdev::sync(f)?;
        crate::failpoint::hit("gpt-barrier");
        Ok(())
    };
    gpt_write::write(p.target.file(), &p.writes, barrier)
        .with_context(|| format!("writing the GPT to {shown} ({rerun})"))?;
    p.target
        .flush()
        .with_context(|| format!("flushing {shown} ({rerun})"))?;
    let gpt = gpt_write::verify(p.target.file(), &p.writes, &p.gpt)
        .with_context(|| format!("verifying the GPT on {shown} ({rerun})"))?;
    events.message(
        Level::Info,
        format!(
            "wrote and verified a GPT with {} partitions on {shown}",
            gpt.entries.len()
        ),
    );
    let (kernel, nodes) = match p.target.kind().clone() {
        TargetKind::ImageFile => (None, Vec::new()),
        TargetKind::BlockDevice { .. } => {
            let (update, seen) = tell_kernel(&p.target, &p.gpt.entries)
                .with_context(|| format!("making the kernel see the new partitions of {shown}"))?;
            if let KernelUpdate::Blkpg { reason, .. } = &update {
                events.message(
                    Level::Info,
                    format!("registered the partitions with BLKPG ({reason})"),
                );
            }
            let nodes = wait_for_nodes(&p.gpt.entries, &seen, opts)
                .with_context(|| format!("waiting for the partition nodes of {shown}"))?;
            (Some(update), nodes)
        }
    };
    Ok(WrittenTable {
        device: p.target.path().to_owned(),
        gpt,
        kernel,
        nodes,
    })
}

/// Checks, prepares and writes in one call (the install's entry point):
/// refuse-checks, zap + write, flush, read back, kernel update, nodes.
pub fn partition(
    device: &Path,
    table: &PartitionTable,
    changes: &Changes,
    events: &Events,
) -> anyhow::Result<WrittenTable> {
    let opts = DiskEnv::default();
    let p = prepare(device, table, &opts)?;
    write(p, &opts, changes, events)
}

/// Makes the kernel see the GPT already on `device` and waits for the
/// partition nodes, writing nothing to the disk: for a re-run that finds the
/// layout in place (the earlier run may have been cut before the kernel was
/// told, or on another boot). Image files have no nodes: empty list.
pub fn expose(device: &Path, opts: &DiskEnv) -> anyhow::Result<Vec<PartitionNode>> {
    expose_target(&mut Target::open(device, Access::ReadOnly)?, opts)
}

/// [`expose`] on a target already open.
pub fn expose_target(target: &mut Target, opts: &DiskEnv) -> anyhow::Result<Vec<PartitionNode>> {
    if matches!(target.kind(), TargetKind::ImageFile) {
        return Ok(Vec::new());
    }
    let shown = target.path().display().to_string();
    let sectors = target.sectors();
    let ss = target.sector_size();
    let gpt = gpt_read::read_in(target.file(), sectors, ss)
        .with_context(|| format!("reading the GPT of {shown}"))?
        .with_context(|| format!("{shown} has no GPT"))?;
    let (_, seen) = tell_kernel(target, &gpt.entries)
        .with_context(|| format!("making the kernel see the partitions of {shown}"))?;
    wait_for_nodes(&gpt.entries, &seen, opts)
        .with_context(|| format!("waiting for the partition nodes of {shown}"))
}

/// What the kernel must forget and learn so that it sees exactly `wanted`
/// (`(number, first_lba, sectors)`): partitions that differ in any way are
/// removed and added again.
fn kernel_changes(
    seen: &[KernelPartition],
    wanted: &[(u32, u64, u64)],
) -> (Vec<u32>, Vec<(u32, u64, u64)>) {
    let remove: Vec<u32> = seen
        .iter()
        .filter(|k| !wanted.contains(&(k.number, k.start, k.sectors)))
        .map(|k| k.number)
        .collect();
    let add = wanted
        .iter()
        .filter(|w| !seen.iter().any(|k| (k.number, k.start, k.sectors) == **w))
        .copied()
        .collect();
    (remove, add)
}

fn wanted_extents(entries: &[(u32, GptEntry)]) -> Vec<(u32, u64, u64)> {
    entries
        .iter()
        .map(|(n, e)| (*n, e.first_lba, e.last_lba - e.first_lba + 1))
        .collect()
}

/// BLKRRPART; where it fails or the kernel does not see exactly the new
/// table (no EFI partition support, a loop device without partition
/// scanning), BLKPG like `partx`. Returns the kernel's final view.
fn tell_kernel(
    target: &Target,
    entries: &[(u32, GptEntry)],
) -> anyhow::Result<(KernelUpdate, Vec<KernelPartition>)> {
    let wanted = wanted_extents(entries);
    let reread = target.reread_partition_table();
    let seen = target
        .kernel_partitions()
        .context("reading the kernel's partitions from sysfs")?;
    let (remove, add) = kernel_changes(&seen, &wanted);
    if reread.is_ok() && remove.is_empty() && add.is_empty() {
        return Ok((KernelUpdate::Reread, seen));
    }
    let reason = match reread {
        Err(e) => format!("BLKRRPART: {}", e.desc()),
        Ok(()) if seen.is_empty() => {
            "BLKRRPART found no partitions (kernel without EFI partition support?)".to_owned()
        }
        Ok(()) => "BLKRRPART left a different set of partitions".to_owned(),
    };
    let name = |n: u32| {
        seen.iter()
            .find(|k| k.number == n)
            .map(|k| k.name.clone())
            .unwrap_or_else(|| format!("partition {n}"))
    };
    for &n in &remove {
        target.delete_partition(n).map_err(|e| {
            anyhow::anyhow!(
                "removing {} from the kernel's view (BLKPG): {}{}",
                name(n),
                e.desc(),
                if e == nix::Error::EBUSY {
                    " (it is open or mounted)"
                } else {
                    ""
                }
            )
        })?;
    }
    for &(n, first, sectors) in &add {
        target.add_partition(n, first, sectors).map_err(|e| {
            anyhow::anyhow!(
                "adding partition {n} (sectors {first}..{}) with BLKPG: {}",
                first + sectors - 1,
                e.desc()
            )
        })?;
    }
    let seen = target
        .kernel_partitions()
        .context("reading the kernel's partitions from sysfs")?;
    let (still_remove, still_add) = kernel_changes(&seen, &wanted);
    if !still_remove.is_empty() || !still_add.is_empty() {
        bail!(
            "after BLKPG the kernel still differs from the table (extra: {still_remove:?}, missing: {:?})",
            still_add.iter().map(|a| a.0).collect::<Vec<_>>()
        );
    }
    Ok((
        KernelUpdate::Blkpg {
            reason,
            removed: remove,
            added: add.iter().map(|a| a.0).collect(),
        },
        seen,
    ))
}

fn wait_for_nodes(
    entries: &[(u32, GptEntry)],
    seen: &[KernelPartition],
    opts: &DiskEnv,
) -> anyhow::Result<Vec<PartitionNode>> {
    let mut wanted = Vec::new();
    for (n, e) in entries {
        let k = seen
            .iter()
            .find(|k| k.number == *n)
            .with_context(|| format!("the kernel does not know partition {n} ('{}')", e.name))?;
        wanted.push((k.name.clone(), k.dev));
    }
    let made = blockdev::wait_for_nodes(&opts.dev_dir, &wanted, opts.node_timeout)?;
    Ok(entries
        .iter()
        .zip(made)
        .map(|((n, e), (path, origin))| PartitionNode {
            number: *n,
            name: e.name.clone(),
            path,
            origin,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys::blockdev::DevNum;

    fn k(number: u32, start: u64, sectors: u64) -> KernelPartition {
        KernelPartition {
            number,
            start,
            sectors,
            name: format!("loop0p{number}"),
            dev: DevNum {
                major: 259,
                minor: number,
            },
        }
    }

    #[test]
    fn kernel_changes_remove_what_differs_and_add_what_is_missing() {
        let seen = [k(1, 2048, 100), k(2, 4096, 100), k(5, 9000, 10)];
        let wanted = [(1, 2048, 100), (2, 4096, 200), (3, 8000, 10)];
        let (remove, add) = kernel_changes(&seen, &wanted);
        assert_eq!(remove, [2, 5]);
        assert_eq!(add, [(2, 4096, 200), (3, 8000, 10)]);
        let (remove, add) = kernel_changes(&[], &wanted);
        assert!(remove.is_empty());
        assert_eq!(add.len(), 3);
        let (remove, add) = kernel_changes(&seen[..1], &wanted[..1]);
        assert!(remove.is_empty() && add.is_empty());
    }
}
