//! Orin (T234): what an install writes besides the GPT and the filesystems.
//!
//! On T234 the boot firmware lives on the QSPI flash, which Linux does not
//! write: the firmware updates its inactive chain itself from a capsule
//! staged in the ESP, and boots the rootfs slot of the chain it runs
//! (docs/spec/t234-boot-chain.md §3.5, §8). So after the slots are unpacked:
//!
//! ```text
//!  kernel    A_kernel, A_kernel-dtb (and B_) from the kernel payload's
//!            entries for this board, compared, written, read back
//!  esp       FAT (initial install), EFI/BOOT/BOOTAA64.efi and
//!            EFI/UpdateCapsule/TEGRA_BL.Cap, fsynced, read back
//!  variables uefi::varplan, one operation at a time, each read back
//! ```
//!
//! [`prepare`] decides and checks all of it in the preflight (the board's
//! specs from the variables, the kernel payload and the capsule against
//! them, the launcher, the ESP partition), so nothing here is found wrong
//! after the disk was touched. [`write`] is idempotent, step by step: the
//! same command after a power cut repeats it and ends in the same state.

use super::decide::{Decision, RunningSlot};
use super::journal::InstallMode;
use super::report::{refuse, FailCode};
use super::{payload, InstallOptions};
use crate::bup::board::Slot;
use crate::bup::t234::{KernelWrite, PayloadKind};
use crate::bup::t234_check::{self, Board, CheckInput, Opened};
use crate::bup::update::IdentityRequest;
use crate::events::Level;
use crate::events::{Events, Phase, Verdict};
use crate::exit::Changes;
use crate::layout::{Layout, Soc};
use crate::probe::Content;
use crate::repartition::Plan;
use crate::rootfs::{Capture, Captured};
use crate::sys::efivarfs::{self, Efivarfs};
use crate::sys::vfat::{self, EspFile, VfatOptions};
use crate::uefi::preflight::QspiLayout;
use crate::uefi::varplan::{self, Applied, Finish, Op, PlanInput};
use anyhow::Context as _;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// The capsule meta-tegra installs in the rootfs (`tegra-uefi-capsules`).
pub const CAPSULE_MEMBER: &str = "opt/nvidia/UpdateCapsule/tegra-bl.cap";
/// Where the kernel payload is looked for in the rootfs, in this order:
/// meta-tegra's kernel capsule (its tail is the BUP), NVIDIA's OTA name.
pub const KERNEL_MEMBERS: [&str; 2] = [
    "opt/nvidia/UpdateCapsule/tegra-kernel.cap",
    "opt/ota_package/kernel_only_payload",
];
/// The launcher in the rootfs, where an ESP mounted at /boot/efi has it.
pub const LAUNCHER_MEMBER: &str = "boot/efi/EFI/BOOT/BOOTAA64.efi";
/// The launcher the upgrader image may carry itself.
pub const LAUNCHER_IN_INITRAMFS: &str = "/usr/share/sysinstall/BOOTAA64.efi";
/// The ESP's name in NVIDIA's T234 layouts.
pub const ESP: &str = "esp";

/// A capsule holds one boot chain's images: the QSPI is 64 MiB.
const MAX_CAPSULE_BYTES: u64 = 96 << 20;
/// Two kernels of at most 128 MiB and their DTBs.
const MAX_KERNEL_BYTES: u64 = 288 << 20;
const MAX_LAUNCHER_BYTES: u64 = 16 << 20;

/// What to capture from the rootfs while the preflight reads it.
pub fn captures() -> Vec<Capture> {
    let mut out = vec![
        Capture {
            path: CAPSULE_MEMBER.into(),
            max_bytes: MAX_CAPSULE_BYTES,
        },
        Capture {
            path: LAUNCHER_MEMBER.into(),
            max_bytes: MAX_LAUNCHER_BYTES,
        },
    ];
    out.extend(KERNEL_MEMBERS.iter().map(|p| Capture {
        path: (*p).into(),
        max_bytes: MAX_KERNEL_BYTES,
    }));
    out
}

/// True when this install is for an Orin.
pub fn is_t234(soc: Option<Soc>) -> bool {
    soc == Some(Soc::T234)
}

/// The board as its firmware sees it (the variables, the ESRT), or the
/// identity when the variables are not set yet.
pub fn read_board(opts: &InstallOptions, layout: &Layout) -> anyhow::Result<Board> {
    let efivars = opts.sysroot.path(efivarfs::EFIVARS);
    if !Efivarfs::new(&efivars).present() {
        refuse!(
            FailCode::ModeRefused,
            "{} is not mounted: an Orin install finishes by setting UEFI variables \
             (mount -t efivarfs efivarfs {0}; the board must have booted through UEFI), \
             or give --no-bootloader",
            efivars.display()
        );
    }
    t234_check::read_board(
        &opts.sysroot,
        &IdentityRequest {
            soc: Some(Soc::T234),
            tnspec: opts.tnspec.clone(),
            machine: opts.machine.clone(),
            layout_soc: layout.soc,
        },
    )
    .map_err(super::report::or_code(FailCode::PayloadMismatch))
}

/// The chain the board runs, which is also its rootfs slot: L4TLauncher
/// boots `APP` on chain A and `APP_b` on chain B.
pub fn running_slot(board: &Board) -> Option<RunningSlot> {
    let slot = board.firmware.as_ref()?.current_chain?;
    Some(RunningSlot {
        slot,
        source: "BootChainFwCurrent".into(),
    })
}

/// The kernel payload and where its entries go.
#[derive(Debug, Clone)]
pub struct Kernel {
    /// The payload (or kernel capsule).
    pub path: PathBuf,
    /// Where the payload starts in the file.
    pub base: u64,
    /// Partition writes, in payload order.
    pub writes: Vec<KernelWrite>,
}

/// The ESP: made anew or kept, and the files put on it.
#[derive(Debug, Clone)]
pub struct Esp {
    /// GPT number.
    pub number: u32,
    /// `mkfs.vfat` first (an initial install).
    pub format: bool,
    /// What goes on it.
    pub files: Vec<EspFile>,
}

/// Everything the T234 part of the install does, decided in the preflight.
#[derive(Debug, Clone)]
pub struct Orin {
    /// The efivarfs directory.
    pub efivars: PathBuf,
    /// `None` with `--no-bootloader`.
    pub kernel: Option<Kernel>,
    /// `None` with `--no-bootloader`.
    pub esp: Option<Esp>,
    /// The capsule staged, if any.
    pub capsule: Option<PathBuf>,
    /// The variable operations, in order.
    pub ops: Vec<Op>,
    /// The preflight report's lines.
    pub lines: Vec<String>,
}

/// The slots an install writes.
fn written_slots(opts_mode: InstallMode, target: Slot, has_b: bool) -> Vec<Slot> {
    match opts_mode {
        InstallMode::Initial if has_b => vec![Slot::A, Slot::B],
        InstallMode::Initial => vec![Slot::A],
        InstallMode::Update => vec![target],
    }
}

/// A file given on the command line, else a member the preflight captured
/// from the rootfs (stashed in the run directory), else `fallback`.
fn locate(
    given: Option<&PathBuf>,
    captured: &[Captured],
    members: &[&str],
    rundir: &Path,
    stash_as: &str,
) -> anyhow::Result<Option<PathBuf>> {
    if let Some(p) = given {
        return Ok(Some(p.clone()));
    }
    for m in members {
        if let Some(c) = captured.iter().find(|c| c.path == *m) {
            return payload::stash_as(rundir, stash_as, &c.data).map(Some);
        }
    }
    Ok(None)
}

/// `--no-bootloader`: kernel partitions, ESP and variables are left alone.
pub fn left_alone(opts: &InstallOptions) -> Orin {
    Orin {
        efivars: opts.sysroot.path(efivarfs::EFIVARS),
        kernel: None,
        esp: None,
        capsule: None,
        ops: Vec::new(),
        lines: vec!["--no-bootloader: kernel partitions, ESP and UEFI variables left alone".into()],
    }
}

/// What the parts of [`prepare`] share.
struct Inputs<'a> {
    opts: &'a InstallOptions,
    /// The disk now and what becomes of it.
    plan: &'a Plan,
    rundir: &'a Path,
    layout: &'a Layout,
    board: &'a Board,
    captured: &'a [Captured],
    /// Said when a file is missing and the rootfs is a stream.
    stream_hint: &'static str,
}

impl Inputs<'_> {
    /// A file given on the command line, else a member the preflight
    /// captured from the rootfs.
    fn locate(
        &self,
        given: Option<&PathBuf>,
        members: &[&str],
        stash_as: &str,
    ) -> anyhow::Result<Option<PathBuf>> {
        locate(given, self.captured, members, self.rundir, stash_as)
    }

    fn board_name(&self) -> &str {
        let s = &self.board.specs;
        s.full.as_deref().unwrap_or(&s.compat)
    }
}

/// Decides and checks the T234 part; nothing is written.
#[allow(clippy::too_many_arguments)]
pub fn prepare(
    opts: &InstallOptions,
    plan: &Plan,
    rundir: &Path,
    layout: &Layout,
    board: &Board,
    decision: &Decision,
    captured: &[Captured],
    scanned: bool,
) -> anyhow::Result<Orin> {
    if opts.no_bootloader {
        return Ok(left_alone(opts));
    }
    let inputs = Inputs {
        opts,
        plan,
        rundir,
        layout,
        board,
        captured,
        stream_hint: if scanned {
            ""
        } else {
            " (the rootfs is read only once, so files inside it cannot be used: give them)"
        },
    };
    let has_b = layout.user.by_name("APP_b").is_some();
    let slots = written_slots(decision.mode, decision.target, has_b);
    let mut lines = Vec::new();
    let kernel = kernel_payload(&inputs, &slots, &mut lines)?;
    let capsule = capsule(&inputs, &mut lines)?;
    let esp = esp(&inputs, decision.mode, capsule.as_ref(), &mut lines)?;
    // INFER (§8 step 5): with a capsule, the firmware updates the chain it
    // does not run and boots it, so the capsule is the switch; the boot
    // chain's rootfs slot then follows (FACT, §1.3).
    let finish = match (&capsule, decision.mode) {
        (Some(_), _) => Finish::Capsule,
        (None, InstallMode::Update) => Finish::SwitchTo(decision.target),
        (None, InstallMode::Initial) => Finish::SwitchTo(Slot::A),
    };
    let ops = varplan::plan(&PlanInput {
        written_slots: slots,
        platform_spec: board.derived_spec.clone(),
        compat_spec: board.derived_compat.clone(),
        finish,
        current_chain: board.firmware.as_ref().and_then(|f| f.current_chain),
    });
    lines.push(format!(
        "UEFI variables: {}",
        ops.iter().map(Op::to_string).collect::<Vec<_>>().join("; ")
    ));
    Ok(Orin {
        efivars: opts.sysroot.path(efivarfs::EFIVARS),
        kernel: Some(kernel),
        esp,
        capsule,
        ops,
        lines,
    })
}

/// The kernel payload: found, for this board, an entry for each kernel
/// partition of the slots written, each fitting.
fn kernel_payload(i: &Inputs, slots: &[Slot], lines: &mut Vec<String>) -> anyhow::Result<Kernel> {
    let Some(path) = i.locate(i.opts.bup.as_ref(), &KERNEL_MEMBERS, "kernel-payload")? else {
        refuse!(
            FailCode::PayloadMismatch,
            "no kernel payload: give --bup FILE (kernel_only_payload or tegra-kernel.cap){}, \
             or --no-bootloader; the rootfs has none of {}",
            i.stream_hint,
            KERNEL_MEMBERS.join(", ")
        );
    };
    let user = &i.layout.user;
    let sizes: Vec<(String, u64)> = user
        .partitions
        .iter()
        .map(|p| (p.name.clone(), p.size_bytes(user.sector_size)))
        .collect();
    let mut k = open(&path)?;
    let outcome = t234_check::check(
        &mut k,
        &CheckInput {
            specs: &i.board.specs,
            firmware: i.board.firmware.as_ref(),
            qspi_layout: QspiLayout::Unknown,
            kernel_slots: slots,
            partition_sizes: Some(&sizes),
        },
    )
    .with_context(|| path.display().to_string())?;
    if outcome.kind != PayloadKind::Kernel {
        refuse!(
            FailCode::PayloadMismatch,
            "{}: a firmware payload, not a kernel payload (the firmware goes in a capsule, --capsule)",
            path.display()
        );
    }
    if let Some(p) = outcome.problems.first() {
        refuse!(
            FailCode::PayloadMismatch,
            "{}: {p} (board {})",
            path.display(),
            i.board_name()
        );
    }
    let names: Vec<&str> = outcome
        .kernel_writes
        .iter()
        .map(|w| w.partition.as_str())
        .collect();
    lines.push(format!(
        "kernel payload {}: {}",
        path.display(),
        names.join(", ")
    ));
    Ok(Kernel {
        path,
        base: k.range.start,
        writes: outcome.kernel_writes,
    })
}

/// The capsule, unless `--no-capsule`: a UEFI capsule of boot firmware
/// the running firmware will take for this board.
fn capsule(i: &Inputs, lines: &mut Vec<String>) -> anyhow::Result<Option<PathBuf>> {
    if i.opts.no_capsule {
        lines.push("--no-capsule: the boot firmware stays as it is".into());
        return Ok(None);
    }
    let Some(path) = i.locate(i.opts.capsule.as_ref(), &[CAPSULE_MEMBER], "capsule")? else {
        refuse!(
            FailCode::PayloadMismatch,
            "no capsule for the boot firmware: give --capsule FILE (tegra-bl.cap){}, \
             or --no-capsule to keep the firmware; the rootfs has no {CAPSULE_MEMBER}",
            i.stream_hint
        );
    };
    let mut c = open(&path)?;
    if c.capsule.is_none() {
        refuse!(
            FailCode::PayloadMismatch,
            "{}: not a UEFI capsule (a bare payload is not taken by the firmware)",
            path.display()
        );
    }
    let outcome = t234_check::check(
        &mut c,
        &CheckInput {
            specs: &i.board.specs,
            firmware: i.board.firmware.as_ref(),
            // The running firmware's QSPI layout cannot be read from Linux:
            // a change of major release is taken as a change.
            qspi_layout: QspiLayout::Unknown,
            kernel_slots: &[],
            partition_sizes: None,
        },
    )
    .with_context(|| path.display().to_string())?;
    if outcome.kind != PayloadKind::Firmware {
        refuse!(
            FailCode::PayloadMismatch,
            "{}: the capsule holds a kernel payload, not the boot firmware",
            path.display()
        );
    }
    if let Some(p) = outcome.problems.first() {
        refuse!(FailCode::PayloadMismatch, "{}: {p}", path.display());
    }
    lines.push(format!(
        "capsule {}: {} images for this board",
        path.display(),
        outcome.selection.selected.len()
    ));
    lines.extend(outcome.notes.iter().map(|n| format!("capsule: {n}")));
    Ok(Some(path))
}

/// The ESP: made anew by an initial install (which then needs the
/// launcher), kept by an update; the launcher and the capsule on it.
fn esp(
    i: &Inputs,
    mode: InstallMode,
    capsule: Option<&PathBuf>,
    lines: &mut Vec<String>,
) -> anyhow::Result<Option<Esp>> {
    let launcher = launcher(i)?;
    let format = mode == InstallMode::Initial;
    if format && !super::preflight::tool_exists("mkfs.vfat") {
        refuse!(
            FailCode::ToolMissing,
            "mkfs.vfat is not installed (dosfstools; needed to make the ESP)"
        );
    }
    if format && launcher.is_none() {
        refuse!(
            FailCode::PayloadMismatch,
            "no UEFI launcher for the new ESP: give --launcher FILE (L4TLauncher, \
             EFI/BOOT/BOOTAA64.efi){}; the rootfs has no {LAUNCHER_MEMBER} \
             and there is no {LAUNCHER_IN_INITRAMFS}",
            i.stream_hint
        );
    }
    let (files, need) = esp_files(&[
        (vfat::LAUNCHER, launcher.as_ref()),
        (vfat::CAPSULE, capsule),
    ])?;
    let Some(p) = i.layout.user.by_name(ESP) else {
        if files.is_empty() {
            return Ok(None);
        }
        refuse!(
            FailCode::LayoutInvalid,
            "the layout has no partition named {ESP} for the launcher and the capsule"
        );
    };
    let now = i
        .plan
        .partitions
        .iter()
        .find(|p| p.name == ESP)
        .and_then(|p| p.content.as_ref());
    if !format && !matches!(now, Some(Content::Vfat)) {
        refuse!(
            FailCode::ModeRefused,
            "an update keeps the ESP ({ESP}), but it holds {}, not a FAT filesystem: \
             install with --mode initial",
            now.map_or("nothing readable".into(), Content::describe)
        );
    }
    // FAT32 structures and cluster slack: a generous margin.
    let room = p.size_bytes(i.layout.user.sector_size);
    if need + (4 << 20) > room {
        refuse!(
            FailCode::NoSpace,
            "partition {ESP} ({room} bytes) cannot hold {need} bytes of launcher and capsule"
        );
    }
    let names: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    lines.push(format!(
        "ESP ({ESP}): {}{}",
        if format { "made anew, " } else { "kept, " },
        names.join(", ")
    ));
    Ok(Some(Esp {
        number: p.number,
        format,
        files,
    }))
}

/// The launcher for the ESP: given, else in the rootfs, else in the
/// upgrader.
fn launcher(i: &Inputs) -> anyhow::Result<Option<PathBuf>> {
    // INFER (docs/spec/t234-boot-chain.md §1.3): the launcher must suit the
    // firmware that runs it. The new release's launcher is taken, as
    // meta-tegra's ESP image pairs it with the same release's capsule; with
    // --no-capsule on older firmware, give the matching one with --launcher.
    let given = i.locate(i.opts.launcher.as_ref(), &[LAUNCHER_MEMBER], "BOOTAA64.efi")?;
    let upgrader = i.opts.sysroot.path(LAUNCHER_IN_INITRAMFS);
    Ok(given.or_else(|| upgrader.is_file().then_some(upgrader)))
}

/// The files for the ESP (those given) and how many bytes they hold.
fn esp_files(sources: &[(&str, Option<&PathBuf>)]) -> anyhow::Result<(Vec<EspFile>, u64)> {
    let mut files = Vec::new();
    let mut need = 0u64;
    for (path, source) in sources {
        let Some(s) = source else { continue };
        let meta = std::fs::metadata(s).with_context(|| s.display().to_string())?;
        if !meta.is_file() {
            refuse!(FailCode::InputInvalid, "{} is not a file", s.display());
        }
        need += meta.len();
        files.push(EspFile {
            path: (*path).into(),
            source: (*s).clone(),
        });
    }
    Ok((files, need))
}

fn open(path: &Path) -> anyhow::Result<Opened> {
    t234_check::open(path).map_err(|e| {
        let code = match super::report::failure_code(&e) {
            FailCode::InputMissing => FailCode::InputMissing,
            _ => FailCode::PayloadMismatch,
        };
        anyhow::Error::new(super::report::Coded {
            code,
            message: format!("{e:#}"),
        })
    })
}

/// What [`write`] did, for the summary.
#[derive(Debug, Default)]
pub struct Written {
    /// Partitions and ESP files written.
    pub written: Vec<String>,
    /// Partitions already holding their image.
    pub skipped: Vec<String>,
    /// Variable operations and their outcome.
    pub variables: Vec<String>,
}

/// Writes the kernel partitions, the ESP, then the variables. `node` gives
/// a partition's device node by GPT number.
pub fn write(
    orin: &Orin,
    layout: &Layout,
    node: &dyn Fn(u32) -> PathBuf,
    mountpoint: &Path,
    changes: &Changes,
    events: &Events,
) -> anyhow::Result<Written> {
    let mut out = Written::default();
    if let Some(k) = &orin.kernel {
        for w in &k.writes {
            crate::interrupt::check()?;
            let Some(p) = layout.user.by_name(&w.partition) else {
                anyhow::bail!("partition {} is not in the layout", w.partition);
            };
            let dev = node(p.number);
            events.step_start(
                Phase::Boot,
                &format!("write {}", w.partition),
                Some(&w.partition),
            );
            let image = read_range(&k.path, k.base + u64::from(w.offset), w.length)?;
            let wrote = write_verified(&dev, &image, changes)
                .with_context(|| format!("writing {} ({})", w.partition, dev.display()))?;
            events.step_end(if wrote { Verdict::Ok } else { Verdict::Skipped });
            if wrote {
                out.written.push(w.partition.clone());
            } else {
                out.skipped.push(w.partition.clone());
            }
            crate::failpoint::hit("boot-step");
        }
    }
    if let Some(e) = &orin.esp {
        crate::interrupt::check()?;
        let dev = node(e.number);
        events.step_start(Phase::Boot, "ESP", Some(ESP));
        if e.format {
            changes.mark();
            vfat::mkfs_vfat(&dev, &VfatOptions::default())?;
        }
        changes.mark();
        vfat::populate(&dev, mountpoint, &e.files)?;
        vfat::verify(&dev, mountpoint, &e.files)?;
        events.step_end(Verdict::Ok);
        out.written
            .extend(e.files.iter().map(|f| format!("{ESP}:{}", f.path)));
        crate::failpoint::hit("esp-written");
    }
    // The last chance to stop before the firmware is told anything.
    crate::interrupt::check()?;
    let mut store = Efivarfs::new(&orin.efivars);
    events.step_start(Phase::Commit, "UEFI variables", None);
    for op in &orin.ops {
        changes.mark();
        let applied = varplan::apply(&mut store, op)
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("{op} in {}", orin.efivars.display()))?;
        let how = match applied {
            Applied::Changed => "done",
            Applied::AlreadyDone => "already so",
            Applied::Kept { same: true } => "exists",
            Applied::Kept { same: false } => "exists with another value, kept",
        };
        events.message(Level::Info, format!("{op}: {how}"));
        out.variables.push(format!("{op}: {how}"));
        crate::failpoint::hit("variable");
    }
    events.step_end(Verdict::Ok);
    Ok(out)
}

fn read_range(path: &Path, offset: u64, len: u32) -> anyhow::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path).with_context(|| path.display().to_string())?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len as usize];
    f.read_exact(&mut buf)
        .with_context(|| format!("{}: reading {len} bytes at {offset}", path.display()))?;
    Ok(buf)
}

/// Bytes compared or written at a time.
const CHUNK: usize = 1 << 20;

/// Makes `dev` hold `image` and zeros after it to its end, as a boot
/// partition is left by tegra-bootloader-update (docs/spec/bup-format.md
/// §4.5): so no bytes of an older, longer kernel survive. Compared first
/// and not written when already so; else written, flushed and read back
/// from the device. Returns whether it wrote.
fn write_verified(dev: &Path, image: &[u8], changes: &Changes) -> anyhow::Result<bool> {
    let mut f = OpenOptions::new().read(true).write(true).open(dev)?;
    let size = crate::sys::rawdev::size(&f)?;
    if (image.len() as u64) > size {
        anyhow::bail!("{} bytes do not fit in {size}", image.len());
    }
    if holds(&mut f, image, size)? {
        return Ok(false);
    }
    changes.mark();
    f.seek(SeekFrom::Start(0))?;
    f.write_all(image)?;
    let zeros = vec![0u8; CHUNK];
    let mut at = image.len() as u64;
    while at < size {
        let n = (size - at).min(CHUNK as u64) as usize;
        f.write_all(zeros.get(..n).unwrap_or_default())?;
        at += n as u64;
    }
    f.sync_all()?;
    // Read back from the device, not from the page cache.
    crate::sys::rawdev::drop_cache(&f, 0, size)?;
    if !holds(&mut f, image, size)? {
        anyhow::bail!("read back differs from what was written");
    }
    Ok(true)
}

/// True when `f` holds `image` and then zeros up to `size`.
fn holds(f: &mut std::fs::File, image: &[u8], size: u64) -> std::io::Result<bool> {
    f.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; CHUNK];
    let mut at = 0u64;
    while at < size {
        let n = (size - at).min(CHUNK as u64) as usize;
        let got = buf.get_mut(..n).unwrap_or_default();
        f.read_exact(got)?;
        let start = at as usize;
        let want = image
            .get(start.min(image.len())..(start + n).min(image.len()))
            .unwrap_or_default();
        let (head, tail) = got.split_at(want.len());
        if head != want || tail.iter().any(|&x| x != 0) {
            return Ok(false);
        }
        at += n as u64;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_per_mode() {
        assert_eq!(
            written_slots(InstallMode::Initial, Slot::B, true),
            [Slot::A, Slot::B]
        );
        assert_eq!(
            written_slots(InstallMode::Initial, Slot::B, false),
            [Slot::A]
        );
        assert_eq!(written_slots(InstallMode::Update, Slot::B, true), [Slot::B]);
    }

    #[test]
    fn a_kernel_image_is_written_once_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("A_kernel");
        std::fs::write(&dev, vec![0u8; 8192]).unwrap();
        let changes = Changes::new();
        let image: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        assert!(write_verified(&dev, &image, &changes).unwrap());
        assert!(changes.any());
        let now = std::fs::read(&dev).unwrap();
        assert_eq!(&now[..5000], &image[..]);
        assert_eq!(now.len(), 8192, "the partition keeps its size");
        // A shorter image later: nothing of the longer one stays behind.
        let short = vec![9u8; 100];
        assert!(write_verified(&dev, &short, &Changes::new()).unwrap());
        let now = std::fs::read(&dev).unwrap();
        assert_eq!(&now[..100], &short[..]);
        assert!(now[100..].iter().all(|&b| b == 0), "a stale tail survived");
        assert!(write_verified(&dev, &vec![1u8; 9000], &Changes::new()).is_err());
        assert!(write_verified(&dev, &image, &Changes::new()).unwrap());
        let again = Changes::new();
        assert!(!write_verified(&dev, &image, &again).unwrap());
        assert!(!again.any(), "an image in place is not written again");
    }

    #[test]
    fn captures_cover_every_default_location() {
        let paths: Vec<String> = captures().into_iter().map(|c| c.path).collect();
        for p in [CAPSULE_MEMBER, LAUNCHER_MEMBER]
            .into_iter()
            .chain(KERNEL_MEMBERS)
        {
            assert!(paths.iter().any(|c| c == p), "{p}");
        }
    }
}
