//! The install: what `sysinstall` (alone, or `sysinstall install`) does.
//!
//! ```text
//! preflight (nothing written)                      execute (in this order)
//!   device, layout placed for its real size          journal: "running"   (LBA 0 boot code)
//!   in use? current GPT → plan → mode                GPT (initial, unless in place)
//!   rootfs opened; a local file is scanned once:     mkfs the filesystems not yet done
//!     SHA-256, every member, size, the BUP inside    unpack both slots from one stream
//!   BUP checked for this board against the layout    data (kept, restored, or unpacked)
//!   data tarball, --keep-data saved to RAM           boot partitions (verified)
//!   tools present                                    slot metadata  ← the bootloader switch
//!   plan shown, confirmation                         journal cleared
//! ```
//!
//! Modes: **initial** re-lays-out the disk (or keeps the layout when it is
//! already in place) and installs everything; **update** writes only the
//! slot the board does not run from and its boot partitions, then makes it
//! active. `auto` picks update when the layout is in place and the board has
//! an active slot with a root filesystem, else initial.
//!
//! Power cuts: every step is idempotent (the GPT and boot partitions by
//! comparison, filesystems by their completion marker), and
//! [`journal`] records the mode and what is being installed, so that running
//! `sysinstall` again resumes the interrupted install and redoes only what
//! was not finished. The bootloader is switched (slot metadata) only after
//! everything it will boot is written and verified.

pub mod config;
pub mod journal;

use crate::bup::board::{self as bboard, Slot};
use crate::bup::exec::StepAction;
use crate::bup::update::{self, IdentityRequest, Request, UpdateOptions};
use crate::cli::{InstallArgs, ModeArg, SocArg};
use crate::disk::{self, PartitionNode};
use crate::events::{Event, EventKind, Events, Phase, Sink, Verdict};
use crate::exit::{Changes, UsageError};
use crate::failpoint;
use crate::layout::{self, Layout, LoadOptions, Soc};
use crate::probe::{self, Content};
use crate::repartition::{PartitionAction, Plan};
use crate::rootfs::{self, tree::SavedTree, Capture, Source, SourceOptions, UnpackOptions};
use crate::sys::{self, board::SysRoot, mkfs, mount::Mount};
use anyhow::{anyhow, bail, Context as _};
use journal::{InstallMode, Record};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Rootfs tarballs looked for when none is given, in order.
pub const DEFAULT_ROOTFS: &[&str] = &["/installer/image.tar.gz", "/installer/image.tar.zst"];
/// Data tarball used when present and none is given.
pub const DEFAULT_DATA: &str = "/installer/data.tar.gz";
/// Layouts looked for when neither `--layout` nor the site config names one:
/// ours, then the old tool's `partition_table` (which the Yocto class installs).
pub const DEFAULT_LAYOUTS: &[&str] = &[
    "/etc/sysinstall/layout.xml",
    "/usr/share/sysinstall/layout.xml",
    "/usr/share/tegra-sysinstall/partition_table",
];
/// The eMMC user area of a Jetson.
pub const DEFAULT_DEVICE: &str = "/dev/mmcblk0";
/// Mount points and the extracted payload live here (tmpfs in the initramfs);
/// `SYSINSTALL_RUNDIR` overrides it.
pub const DEFAULT_RUNDIR: &str = "/run/sysinstall";
/// The payload an initial install writes, inside the new rootfs.
pub const BUP_INITIALIZE: &str = "opt/ota_package/full_init_payload";
/// The payload an update writes (and the fallback for an initial install).
pub const BUP_UPDATE: &str = "opt/ota_package/bl_update_payload";
/// Largest payload taken from the rootfs (real ones are about 30–50 MB).
pub const MAX_BUP_BYTES: u64 = 256 << 20;
/// A slot is refused when the tarball's contents exceed this share of it
/// (ext4 metadata, journal and reserved blocks need the rest).
pub const SLOT_FILL_PERCENT: u64 = 90;
/// Share of available memory `--keep-data` may use to hold DATA.
pub const KEEP_DATA_MEM_PERCENT: u64 = 50;
/// Tools the install runs.
pub const TOOLS: &[&str] = &["mke2fs", "e2fsck", "tune2fs"];

/// Everything the install needs, resolved from the command line, the site
/// configuration and the defaults.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Rootfs source.
    pub rootfs: String,
    /// Expected SHA-256 of the rootfs.
    pub rootfs_sha256: Option<String>,
    /// Data tarball source.
    pub data: Option<String>,
    /// Layout file.
    pub layout: PathBuf,
    /// `--set` values.
    pub set: Vec<String>,
    /// Target disk.
    pub device: PathBuf,
    /// Payload file, when given.
    pub bup: Option<PathBuf>,
    /// Boot devices, when given.
    pub boot_devices: Vec<PathBuf>,
    /// SoC override.
    pub soc: Option<Soc>,
    /// Mode asked for.
    pub mode: ModeArg,
    /// Keep DATA.
    pub keep_data: bool,
    /// Skip the confirmation.
    pub yes: bool,
    /// Stop after the preflight.
    pub dry_run: bool,
    /// Skip `e2fsck -p` after unpacking.
    pub no_fsck: bool,
    /// `--mkfs-options`: `[NAME:]ARGS`.
    pub mkfs_options: Vec<String>,
    /// `--verify-slots`: compare the two slot trees after unpacking.
    pub verify_slots: bool,
    /// Ignore an interrupted install's journal.
    pub restart: bool,
    /// TNSPEC override.
    pub tnspec: Option<String>,
    /// MACHINE override.
    pub machine: Option<String>,
    /// Where /proc, /sys and board.conf are read.
    pub sysroot: SysRoot,
    /// Mount points and scratch files.
    pub rundir: PathBuf,
    /// The site configuration file that was read, if any.
    pub config_file: Option<PathBuf>,
}

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

fn soc_of(arg: SocArg) -> Soc {
    match arg {
        SocArg::T186 => Soc::T186,
        SocArg::T194 => Soc::T194,
        SocArg::T210 => Soc::T210,
    }
}

impl InstallOptions {
    /// Resolves the command line against the site configuration and defaults.
    pub fn resolve(cli: &InstallArgs) -> anyhow::Result<InstallOptions> {
        let mut a = cli.clone();
        let config_file = config::load_into(cli.config.as_deref(), &mut a)?;
        let rootfs = match a.rootfs.clone() {
            Some(r) => r,
            None => first_existing(DEFAULT_ROOTFS)
                .map(|p| p.display().to_string())
                .ok_or_else(|| {
                    anyhow!(
                        "no rootfs tarball given and none of {} exists",
                        DEFAULT_ROOTFS.join(", ")
                    )
                })?,
        };
        let data = a.data.clone().or_else(|| {
            Path::new(DEFAULT_DATA)
                .exists()
                .then(|| DEFAULT_DATA.to_owned())
        });
        let layout = match a.layout.layout.clone() {
            Some(l) => l,
            None => first_existing(DEFAULT_LAYOUTS).ok_or_else(|| {
                anyhow!(
                    "no layout given (--layout, or layout= in {}) and none of {} exists",
                    config::DEFAULT_PATH,
                    DEFAULT_LAYOUTS.join(", ")
                )
            })?,
        };
        if a.events_fd.is_some() && a.events.is_none() {
            return Err(UsageError("--events-fd needs --events json".into()).into());
        }
        Ok(InstallOptions {
            rootfs,
            rootfs_sha256: a.rootfs_sha256.clone(),
            data,
            layout,
            set: a.layout.set.clone(),
            device: a
                .device
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DEVICE)),
            bup: a.bup.clone(),
            boot_devices: a.boot_devices.clone(),
            soc: a.soc.map(soc_of),
            mode: a.mode.unwrap_or_default(),
            keep_data: a.keep_data,
            yes: a.yes,
            dry_run: a.dry_run,
            no_fsck: a.no_fsck,
            mkfs_options: a.mkfs_options.clone(),
            verify_slots: a.verify_slots,
            restart: a.restart,
            tnspec: a.board.tnspec.clone(),
            machine: a.board.machine.clone(),
            sysroot: SysRoot::new(a.sysroot.clone().unwrap_or_else(|| PathBuf::from("/"))),
            rundir: std::env::var_os("SYSINSTALL_RUNDIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_RUNDIR)),
            config_file,
        })
    }
}

/// What a filesystem partition is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsRole {
    /// A root filesystem slot.
    Slot(Slot),
    /// DATA (or UDA when there is no DATA): user data.
    Data,
    /// Any other filesystem the install creates (LOGS, EXTRA, UDA).
    Scratch,
}

/// The partition holding slot `s`'s root filesystem.
pub fn slot_partition(s: Slot) -> &'static str {
    match s {
        Slot::A => "APP",
        Slot::B => "APP_b",
    }
}

/// A filesystem partition of the layout.
#[derive(Debug, Clone, Serialize)]
pub struct Fs {
    /// Partition name (also the ext4 label).
    pub name: String,
    /// GPT number.
    pub number: u32,
    /// Size in bytes.
    pub size: u64,
    /// What it is for.
    pub role: FsRole,
}

/// The filesystems a layout asks for: APP, APP_b, DATA, LOGS, EXTRA, UDA.
pub fn filesystems(table: &layout::PartitionTable) -> anyhow::Result<Vec<Fs>> {
    let data_name = if table.by_name("DATA").is_some() {
        "DATA"
    } else {
        "UDA"
    };
    let mut out = Vec::new();
    for name in ["APP", "APP_b", "DATA", "LOGS", "EXTRA", "UDA"] {
        let Some(p) = table.by_name(name) else {
            continue;
        };
        let role = match name {
            "APP" => FsRole::Slot(Slot::A),
            "APP_b" => FsRole::Slot(Slot::B),
            n if n == data_name => FsRole::Data,
            _ => FsRole::Scratch,
        };
        out.push(Fs {
            name: name.to_owned(),
            number: p.number,
            size: p.size_bytes(),
            role,
        });
    }
    if !out.iter().any(|f| f.name == "APP") {
        bail!("the layout has no APP partition to install the rootfs into");
    }
    Ok(out)
}

/// Where the payload for the boot partitions comes from.
#[derive(Debug, Clone)]
enum BupSource {
    /// None given and none in the rootfs: the boot partitions are left alone.
    None,
    /// A file (`--bup`, or the payload extracted from the rootfs).
    File(PathBuf),
    /// In a streamed rootfs: captured during the unpack, checked before the
    /// boot partitions are written.
    Deferred,
}

/// What the preflight found and decided.
struct Preflight {
    layout: Layout,
    plan: Plan,
    fs: Vec<Fs>,
    mode: InstallMode,
    /// The slot written in update mode.
    target: Slot,
    /// The journal to continue, when resuming.
    resume: Option<Record>,
    content: [u8; 32],
    rootfs_sha256: Option<[u8; 32]>,
    bup: BupSource,
    boot_devices: Vec<PathBuf>,
    soc: Option<Soc>,
    /// DATA stays as it is (same place, `--keep-data`, or update mode).
    data_in_place: bool,
    saved_data: Option<SavedTree>,
    report: Vec<String>,
}

/// The final record of a run (also the JSON summary).
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    /// "pass", "fail", or "dry_run".
    pub result: String,
    /// Exit code class (filled in by the caller).
    pub exit: u8,
    /// "initial" or "update".
    pub mode: Option<InstallMode>,
    /// The disk.
    pub device: String,
    /// What was installed (artifact name), when known.
    pub artifact: Option<String>,
    /// SHA-256 of the rootfs tarball.
    pub rootfs_sha256: Option<String>,
    /// Per slot written: partition → `sha256:` of the verified stream it holds.
    pub slots: Vec<(String, String)>,
    /// Boot partitions written.
    pub boot_written: Vec<String>,
    /// Boot partitions already equal (skipped).
    pub boot_skipped: Vec<String>,
    /// Why the boot partitions were not touched, if they were not.
    pub boot_note: Option<String>,
    /// Seconds.
    pub duration: f64,
    /// What an earlier run had finished and this one kept.
    pub resumed: Vec<String>,
}

/// Forwards progress events to the failpoints, so the interruption tests can
/// cut power in the middle of the unpack or between boot partitions.
struct FailpointSink;

impl Sink for FailpointSink {
    fn emit(&mut self, e: &Event) {
        match (&e.kind, e.phase) {
            (EventKind::Progress, Some(Phase::Unpack)) => failpoint::hit("unpack-progress"),
            (EventKind::StepEnd, Some(Phase::Boot)) => failpoint::hit("boot-step"),
            (EventKind::StepEnd, Some(Phase::Commit)) => failpoint::hit("commit-step"),
            _ => {}
        }
    }
}

/// A sink to add to the run's events (interruption tests).
pub fn failpoint_sink() -> Box<dyn Sink> {
    Box::new(FailpointSink)
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn node(device: &Path, nodes: &[PartitionNode], number: u32) -> PathBuf {
    nodes
        .iter()
        .find(|n| n.number == number)
        .map(|n| n.path.clone())
        .unwrap_or_else(|| sys::blockdev::partition_path(device, number))
}

fn content_of(path: &Path) -> Content {
    sys::blockdev::read_head(path, probe::PROBE_BYTES)
        .map(|b| probe::identify(&b))
        .unwrap_or(Content::Unknown)
}

/// The boot devices for a layout on `device` unless given: boot0 and boot1
/// of the same eMMC, or the SPI flash.
fn default_boot_devices(device: &Path, layout: &Layout) -> Vec<PathBuf> {
    use crate::layout::BootDeviceKind as K;
    let name = device.display().to_string();
    match layout.boot.as_ref().map(|b| b.kind) {
        Some(K::Spi) => vec![PathBuf::from(update::SPI_BOOT)],
        Some(K::SdmmcBoot | K::T210Sdmmc) if name.contains("mmcblk") => {
            vec![
                PathBuf::from(format!("{name}boot0")),
                PathBuf::from(format!("{name}boot1")),
            ]
        }
        _ => Vec::new(),
    }
}

/// The slot the board runs from: `boot.slot_suffix=` on the kernel command
/// line, else the slot metadata on the boot device.
fn running_slot(
    opts: &InstallOptions,
    boot: &[PathBuf],
    layout: &Layout,
) -> Option<(Slot, String)> {
    if let Ok(cmdline) = opts.sysroot.cmdline() {
        if cmdline
            .split_whitespace()
            .any(|w| w.starts_with("boot.slot_suffix="))
        {
            if let Ok(s) = bboard::current_slot(&cmdline) {
                return Some((s, "boot.slot_suffix on the kernel command line".into()));
            }
        }
    }
    let area = layout.boot.as_ref()?;
    if boot.is_empty() {
        return None;
    }
    match update::active_slot(boot, area) {
        Ok(Some(s)) => Some((s, "slot metadata on the boot device".into())),
        _ => None,
    }
}

/// The whole install. `confirm` is asked (with the plan's text) before the
/// first write unless `--yes`; it returns false to cancel.
pub fn run(
    opts: &InstallOptions,
    changes: &Changes,
    events: &Events,
    confirm: &mut dyn FnMut(&str) -> anyhow::Result<bool>,
) -> anyhow::Result<Summary> {
    let started = Instant::now();
    let mut summary = Summary {
        result: "fail".into(),
        exit: 0,
        mode: None,
        device: opts.device.display().to_string(),
        artifact: None,
        rootfs_sha256: None,
        slots: Vec::new(),
        boot_written: Vec::new(),
        boot_skipped: Vec::new(),
        boot_note: None,
        duration: 0.0,
        resumed: Vec::new(),
    };
    events.step_start(Phase::Preflight, "preflight", None);
    let pre = match preflight(opts, events) {
        Ok(p) => p,
        Err(e) => {
            events.step_end(Verdict::Failed);
            return Err(e);
        }
    };
    events.step_end(Verdict::Ok);
    summary.mode = Some(pre.mode);
    summary.rootfs_sha256 = pre.rootfs_sha256.map(|h| rootfs::source::hex(&h));
    let text = pre.report.join("\n");
    if opts.dry_run {
        eprintln!("{text}\n\n--dry-run: nothing was written.");
        summary.result = "dry_run".into();
        summary.duration = started.elapsed().as_secs_f64();
        return Ok(summary);
    }
    if !confirm(&text)? {
        return Err(crate::exit::Declined.into());
    }
    execute(opts, pre, changes, events, &mut summary)?;
    summary.result = "pass".into();
    summary.duration = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn preflight(opts: &InstallOptions, events: &Events) -> anyhow::Result<Preflight> {
    let dev = &opts.device;
    let shown = dev.display().to_string();
    let mut report = Vec::new();

    // The disk and the layout placed for its real size.
    let sectors = sys::blockdev::size_in_sectors(dev)?;
    if !sys::rawdev::is_block_device(dev) {
        bail!(
            "{shown} is not a block device; attach an image with `losetup -f --show IMAGE` and install onto that"
        );
    }
    let layout = layout::load(
        &opts.layout,
        &LoadOptions {
            set: layout::subst::parse_assignments(&opts.set).map_err(UsageError)?,
            disk_sectors: Some(sectors),
        },
    )?;
    for n in &layout.notes {
        events.message("warn", format!("{}: {n}", layout.source));
    }
    let fs = filesystems(&layout.user)?;
    disk::check_not_in_use(dev, &disk::DiskEnv::default())?;
    let inspected = disk::inspect(dev, &layout.user)?;
    let plan = inspected.plan.clone();
    drop(inspected);

    // An interrupted install recorded on the disk.
    let lba0 = sys::blockdev::read_head(dev, 512)?;
    let found = Record::decode(&lba0).filter(|r| r.state == journal::State::Running);
    let soc = opts.soc.or(layout.soc);
    let boot_devices = if opts.boot_devices.is_empty() {
        default_boot_devices(dev, &layout)
    } else {
        opts.boot_devices.clone()
    };

    // The mode.
    let running = running_slot(opts, &boot_devices, &layout);
    let has_b = fs.iter().any(|f| f.name == "APP_b");
    // An update writes the boot partitions where the boot device's table
    // puts them: a release whose boot partitions moved needs them
    // initialized. (A boot device that cannot be opened is reported when the
    // payload is checked.)
    let boot_mismatch = match &layout.boot {
        Some(area) if soc != Some(Soc::T210) && plan.in_place && !boot_devices.is_empty() => {
            update::boot_table_mismatch(&boot_devices, area)
                .ok()
                .flatten()
        }
        _ => None,
    };
    let auto = || -> (InstallMode, String) {
        if !plan.in_place {
            return (InstallMode::Initial, "the layout is not in place".into());
        }
        if soc == Some(Soc::T210) || !has_b {
            return (InstallMode::Initial, "the layout has no second slot".into());
        }
        if let Some(why) = &boot_mismatch {
            return (InstallMode::Initial, why.clone());
        }
        match &running {
            Some((s, from)) => {
                let app = layout.user.by_name(slot_partition(*s));
                let has_root = app
                    .and_then(|p| plan.partitions.iter().find(|q| q.name == p.name))
                    .and_then(|q| q.content.as_ref())
                    .is_some_and(|c| matches!(c, Content::Ext(_)));
                if has_root {
                    (
                        InstallMode::Update,
                        format!(
                            "the layout is in place and the board runs slot {} ({from})",
                            s.letter()
                        ),
                    )
                } else {
                    (
                        InstallMode::Initial,
                        format!("the active slot {} has no root filesystem", s.letter()),
                    )
                }
            }
            None => (InstallMode::Initial, "no active slot found".into()),
        }
    };
    let asked = match opts.mode {
        ModeArg::Auto => None,
        ModeArg::Initial => Some(InstallMode::Initial),
        ModeArg::Update => Some(InstallMode::Update),
    };
    let (mode, why, resume_candidate) = match (&found, opts.restart, asked) {
        (Some(r), false, Some(m)) if m != r.mode => {
            return Err(UsageError(format!(
                "{shown} records an interrupted {:?} install; --mode {m:?} would not finish it (use --restart to start over)",
                r.mode
            ))
            .into())
        }
        (Some(r), false, _) => (r.mode, "resuming the interrupted install".to_string(), Some(r.clone())),
        (_, _, Some(m)) => (m, "--mode".to_string(), None),
        (_, _, None) => {
            let (m, w) = auto();
            (m, w, None)
        }
    };
    let target = match mode {
        InstallMode::Initial => Slot::A,
        InstallMode::Update => {
            if !plan.in_place {
                bail!("update mode needs the layout in place on {shown}; it is not (see the plan): install with --mode initial");
            }
            if !has_b {
                bail!("update mode needs two slots (APP and APP_b); the layout has one");
            }
            if soc == Some(Soc::T210) {
                bail!("T210 boards have no A/B boot slots: install with --mode initial");
            }
            if let (None, Some(why)) = (&resume_candidate, &boot_mismatch) {
                bail!(
                    "update mode cannot move boot partitions: {why}; install with --mode initial"
                );
            }
            match (&resume_candidate, &running) {
                (Some(r), _) => {
                    if r.target_slot == 1 {
                        Slot::B
                    } else {
                        Slot::A
                    }
                }
                (None, Some((s, _))) => s.other(),
                (None, None) => bail!(
                    "update mode needs to know which slot the board runs (boot.slot_suffix= or slot metadata); none found"
                ),
            }
        }
    };
    report.push(format!("Target:   {shown} ({sectors} sectors)"));
    report.push(format!(
        "Layout:   {} ({} partitions)",
        layout.source,
        layout.user.partitions.len()
    ));
    report.push(format!(
        "Mode:     {} ({why})",
        match mode {
            InstallMode::Initial => "initial install".to_string(),
            InstallMode::Update => format!(
                "update of slot {} ({})",
                target.letter(),
                slot_partition(target)
            ),
        }
    ));

    // Tools.
    for t in TOOLS {
        if !tool_exists(t) {
            bail!("{t} is not installed (needed to create and check filesystems)");
        }
    }

    // The rootfs: opened, and a local file scanned once (hash, every member,
    // the payload inside, the size).
    let src_opts = SourceOptions {
        sha256: opts.rootfs_sha256.clone(),
        events: events.clone(),
        ..SourceOptions::default()
    };
    let source = Source::open(&opts.rootfs, &src_opts)?;
    let want_bup = opts.bup.is_none();
    let captures = if want_bup {
        payload_captures()
    } else {
        Vec::new()
    };
    let local = source.local_path().is_some();
    let mut rootfs_sha256 = source.expected_sha256();
    let mut captured = Vec::new();
    if local {
        let described = source.describe();
        let scan = rootfs::scan(
            source,
            &UnpackOptions {
                capture: captures.clone(),
                ..UnpackOptions::default()
            },
            events,
        )
        .with_context(|| format!("checking {described}"))?;
        rootfs_sha256 = rootfs::source::parse_hex(&scan.sha256);
        let slot_size = fs
            .iter()
            .filter(|f| matches!(f.role, FsRole::Slot(_)))
            .map(|f| f.size)
            .min()
            .unwrap_or(0);
        let limit = slot_size / 100 * SLOT_FILL_PERCENT;
        if scan.tar_bytes > limit {
            bail!(
                "{described} unpacks to {} bytes; the slots ({} bytes) hold at most {limit} with room for ext4's own structures",
                scan.tar_bytes,
                slot_size
            );
        }
        report.push(format!(
            "Rootfs:   {described}: {} {} files, {} bytes, SHA-256 {} ({})",
            scan.format,
            scan.entries.files,
            scan.tar_bytes,
            scan.sha256,
            if scan.verified {
                "verified"
            } else {
                "no checksum given"
            }
        ));
        captured = scan.captured;
    } else {
        report.push(format!(
            "Rootfs:   {} (streamed; {})",
            source.describe(),
            if rootfs_sha256.is_some() {
                "SHA-256 checked as it flows, before the boot partitions are written"
            } else {
                "no checksum given"
            }
        ));
    }
    let rootfs_identity = match rootfs_sha256 {
        Some(h) => format!("sha256:{}", rootfs::source::hex(&h)),
        None => format!("source:{}", opts.rootfs),
    };

    // The payload: given, inside the rootfs, or (streams) later.
    std::fs::create_dir_all(&opts.rundir)
        .with_context(|| format!("creating {}", opts.rundir.display()))?;
    let bup = match (&opts.bup, local) {
        (Some(p), _) => BupSource::File(p.clone()),
        (None, true) => match pick_payload(&captured, mode) {
            Some(bytes) => BupSource::File(stash_payload(&opts.rundir, &bytes)?),
            None => BupSource::None,
        },
        (None, false) => BupSource::Deferred,
    };
    match &bup {
        BupSource::File(p) => {
            let checked = check_payload(opts, &layout, soc, p)?;
            report.push(format!("Payload:  {} — {checked}", p.display()));
        }
        BupSource::Deferred => report.push(
            "Payload:  taken from the rootfs as it is unpacked; checked before the boot partitions are written".into(),
        ),
        BupSource::None => report.push(format!(
            "Payload:  none (no --bup, and the rootfs has no {BUP_UPDATE}): the boot partitions are left alone"
        )),
    }
    if !matches!(bup, BupSource::None) {
        check_boot_devices(&boot_devices, &layout)?;
        if let (InstallMode::Update, BupSource::File(p)) = (mode, &bup) {
            // Everything is in place already: the whole boot write can be
            // planned now, against the devices, and is planned again (cheaply)
            // after the slot is written.
            update::prepare(&UpdateOptions {
                payload: p.clone(),
                request: Request::UpdateAndActivate(target),
                soc,
                layout: Some(layout.clone()),
                boot_devices: boot_devices.clone(),
                user_device: Some(dev.clone()),
                tnspec: opts.tnspec.clone(),
                machine: opts.machine.clone(),
                sysroot: opts.sysroot.clone(),
            })
            .context("planning the boot partition update")?;
        }
        if boot_devices.is_empty() && layout.boot.is_some() {
            report.push("Boot:     boot devices from the board configuration".into());
        } else {
            report.push(format!(
                "Boot:     {}",
                boot_devices
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" + ")
            ));
        }
    }

    // Data.
    let data_fs = fs.iter().find(|f| f.role == FsRole::Data);
    let data_plan = data_fs.and_then(|d| plan.partitions.iter().find(|p| p.name == d.name));
    let data_has_fs = data_plan
        .and_then(|p| p.content.as_ref())
        .is_some_and(|c| matches!(c, Content::Ext(_)));
    let data_in_place = mode == InstallMode::Update
        || (opts.keep_data
            && data_has_fs
            && data_plan.is_some_and(|p| p.action == PartitionAction::Keep));
    let mut saved_data = None;
    if let (Some(d), Some(p)) = (data_fs, data_plan) {
        if mode == InstallMode::Initial
            && !data_in_place
            && opts.keep_data
            && data_has_fs
            && resume_candidate.is_none()
        {
            saved_data = Some(save_data(opts, dev, p, &d.name)?);
        }
    }
    if let Some(d) = data_fs {
        report.push(format!(
            "Data:     {} {}{}",
            d.name,
            if data_in_place {
                "kept as it is"
            } else if saved_data.is_some() {
                "saved in memory, re-created and restored (a power cut before the restore loses it)"
            } else {
                "re-created empty"
            },
            match &opts.data {
                Some(t) => format!("; then {t} unpacked into it, keeping newer files"),
                None => String::new(),
            }
        ));
    }
    if let Some(t) = &opts.data {
        // A local data tarball is read through once now (hash, format, every
        // member), like the rootfs; a stream is checked as it is unpacked.
        let s = Source::open(t, &SourceOptions::default())?;
        if s.local_path().is_some() {
            rootfs::scan(s, &UnpackOptions::default(), events)
                .with_context(|| format!("checking data tarball {t}"))?;
        }
    }

    // What the disk holds now and what will be lost.
    if mode == InstallMode::Initial {
        report.push(String::new());
        report.push(crate::repartition::render_table(&plan, &shown));
        let lost: Vec<String> = fs
            .iter()
            .filter(|f| !(f.role == FsRole::Data && data_in_place))
            .filter_map(|f| {
                let p = plan.partitions.iter().find(|p| p.name == f.name)?;
                let c = p.content.as_ref()?;
                (!matches!(c, Content::Empty)).then(|| format!("{} ({})", f.name, c.describe()))
            })
            .chain(
                plan.data_lost()
                    .filter(|p| !fs.iter().any(|f| f.name == p.name))
                    .map(|p| {
                        format!(
                            "{} ({})",
                            p.name,
                            p.content
                                .as_ref()
                                .map_or("unknown".into(), |c| c.describe())
                        )
                    }),
            )
            .collect();
        if !lost.is_empty() {
            report.push(format!("Erased:   {}", lost.join(", ")));
        }
    } else {
        report.push(format!(
            "Erased:   {} (slot {}; the running slot is not touched)",
            slot_partition(target),
            target.letter()
        ));
    }

    let content = journal::content_id(&[
        &layout::render::json(&layout.user, None),
        &rootfs_identity,
        opts.data.as_deref().unwrap_or(""),
        if opts.keep_data { "keep" } else { "" },
    ]);
    let resume = resume_candidate.filter(|r| {
        let ok = r.content == content;
        if !ok {
            events.message(
                "warn",
                "the interrupted install was of another image or layout: starting over",
            );
        }
        ok
    });
    if let Some(r) = &resume {
        report.push(format!(
            "Resuming: the {:?} install started at unix time {} (journal {}): finished steps are kept",
            r.mode,
            r.started,
            r.nonce_hex()
        ));
    }
    Ok(Preflight {
        layout,
        plan,
        fs,
        mode,
        target,
        resume,
        content,
        rootfs_sha256,
        bup,
        boot_devices,
        soc,
        data_in_place,
        saved_data,
        report,
    })
}

/// The mke2fs arguments `--mkfs-options` gives partition `name`: those
/// without a `NAME:` prefix apply to every filesystem, the others to theirs.
pub fn mkfs_extra(options: &[String], name: &str) -> Vec<String> {
    let mut out = Vec::new();
    for o in options {
        let (target, args) = match o.split_once(':') {
            Some((t, a))
                if !t.is_empty() && !t.starts_with('-') && !t.contains(char::is_whitespace) =>
            {
                (Some(t), a)
            }
            _ => (None, o.as_str()),
        };
        if target.map_or(true, |t| t == name) {
            out.extend(args.split_whitespace().map(str::to_owned));
        }
    }
    out
}

/// The boot devices exist, can be read, and are large enough for the
/// layout's boot partitions (before anything is written).
fn check_boot_devices(devices: &[PathBuf], layout: &Layout) -> anyhow::Result<()> {
    let mut total = 0u64;
    for d in devices {
        let f = sys::rawdev::open(d, false)
            .with_context(|| format!("opening boot device {}", d.display()))?;
        total += sys::rawdev::size(&f)
            .with_context(|| format!("reading the size of {}", d.display()))?;
    }
    if let (Some(area), false) = (&layout.boot, devices.is_empty()) {
        let end = area
            .partitions
            .iter()
            .map(|p| p.offset + p.size)
            .max()
            .unwrap_or(0);
        if end > total {
            bail!(
                "the boot devices ({}) hold {total} bytes; the layout's boot partitions need {end}",
                devices
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
    }
    Ok(())
}

/// True when `tool` is on PATH (where `Command` will look for it).
fn tool_exists(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
}

/// Where a mode takes its payload from inside the rootfs, in order of preference.
fn payload_paths(mode: InstallMode) -> &'static [&'static str] {
    match mode {
        InstallMode::Initial => &[BUP_INITIALIZE, BUP_UPDATE],
        InstallMode::Update => &[BUP_UPDATE],
    }
}

/// The members to capture while reading the rootfs, to get its payload.
fn payload_captures() -> Vec<Capture> {
    [BUP_INITIALIZE, BUP_UPDATE]
        .iter()
        .map(|p| Capture {
            path: (*p).into(),
            max_bytes: MAX_BUP_BYTES,
        })
        .collect()
}

/// The payload for `mode` among the captured members.
fn pick_payload(captured: &[rootfs::Captured], mode: InstallMode) -> Option<Vec<u8>> {
    payload_paths(mode).iter().find_map(|p| {
        captured
            .iter()
            .find(|c| c.path == *p)
            .map(|c| c.data.clone())
    })
}

/// Writes a payload extracted from the rootfs where the boot-partition update can open it.
fn stash_payload(rundir: &Path, bytes: &[u8]) -> anyhow::Result<PathBuf> {
    let p = rundir.join("bup-payload");
    std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
    Ok(p)
}

/// Runs `bup check` for this board against the layout; an error when an
/// install would fail.
fn check_payload(
    opts: &InstallOptions,
    layout: &Layout,
    soc: Option<Soc>,
    path: &Path,
) -> anyhow::Result<String> {
    let (mut file, payload) = update::open_payload(path)?;
    let identity = update::identify(
        &opts.sysroot,
        &IdentityRequest {
            soc,
            tnspec: opts.tnspec.clone(),
            machine: opts.machine.clone(),
            layout_soc: layout.soc,
        },
    )?;
    let sel = crate::bup::tnspec::select(&payload.entries, &identity.tnspec);
    let outcome = crate::bup::check::check(&payload, &mut file, &sel, identity.soc, Some(layout));
    if let Some(p) = outcome.problems.first() {
        bail!("{}: {p} (TNSPEC {})", path.display(), identity.tnspec);
    }
    Ok(format!(
        "{} entries selected for TNSPEC {} ({})",
        sel.selected.len(),
        identity.tnspec,
        identity.tnspec_source
    ))
}

/// Reads the current DATA into memory for `--keep-data` (read-only mount
/// without journal replay; refused when it does not fit).
fn save_data(
    opts: &InstallOptions,
    dev: &Path,
    p: &crate::repartition::PartitionPlan,
    name: &str,
) -> anyhow::Result<SavedTree> {
    let number = p
        .current
        .as_ref()
        .map(|c| c.number)
        .ok_or_else(|| anyhow!("{name} is not on the disk now"))?;
    let nodes = disk::expose(dev, &disk::DiskEnv::default())?;
    let path = node(dev, &nodes, number);
    let limit = sys::blockdev::mem_available().unwrap_or(0) / 100 * KEEP_DATA_MEM_PERCENT;
    let m = Mount::ext4_inspect(&path, &opts.rundir.join("keep-data"))?;
    let saved = rootfs::tree::save(m.path(), limit)
        .with_context(|| format!("--keep-data: saving {name} ({})", path.display()))?;
    m.unmount()?;
    Ok(saved)
}

/// Writes the journal record (or clears it) into LBA 0's boot-code area.
fn store_journal(dev: &Path, record: Option<&Record>, changes: &Changes) -> anyhow::Result<()> {
    changes.mark();
    sys::blockdev::update_sector0(dev, |s| journal::store(s, record))
        .with_context(|| format!("writing the install journal to {}", dev.display()))
}

fn execute(
    opts: &InstallOptions,
    pre: Preflight,
    changes: &Changes,
    events: &Events,
    summary: &mut Summary,
) -> anyhow::Result<()> {
    let dev = &opts.device;
    let record = match &pre.resume {
        Some(r) => r.clone(),
        None => Record::start(
            pre.mode,
            u8::from(pre.target == Slot::B),
            pre.content,
            now_secs(),
        )?,
    };
    store_journal(dev, Some(&record), changes)?;
    failpoint::hit("journal-written");

    // 1. The GPT.
    let nodes = if pre.mode == InstallMode::Initial && !pre.plan.in_place {
        let dopts = disk::DiskEnv::default();
        let prepared = disk::prepare(dev, &pre.layout.user, &dopts)?;
        let written = disk::write(prepared, &dopts, changes, events)?;
        written.nodes
    } else {
        events.message("info", "the layout is in place: the GPT is not rewritten");
        disk::expose(dev, &disk::DiskEnv::default())?
    };
    failpoint::hit("partitioned");

    // 2. Filesystems: which ones this install (re)creates, and which an
    // earlier run of it already finished.
    let wanted: Vec<&Fs> = pre
        .fs
        .iter()
        .filter(|f| match (pre.mode, f.role) {
            (InstallMode::Update, FsRole::Slot(s)) => s == pre.target,
            (InstallMode::Update, _) => false,
            (InstallMode::Initial, FsRole::Data) => !pre.data_in_place,
            (InstallMode::Initial, _) => true,
        })
        .collect();
    let mut todo: Vec<&Fs> = Vec::new();
    for f in &wanted {
        let path = node(dev, &nodes, f.number);
        let done = content_of(&path)
            .ext()
            .is_some_and(|sb| record.is_done(&sb.last_mounted) && sb.label == f.name);
        if done {
            summary.resumed.push(f.name.clone());
        } else {
            todo.push(f);
        }
    }
    if !summary.resumed.is_empty() {
        events.message(
            "info",
            format!(
                "finished by the earlier run, kept: {}",
                summary.resumed.join(", ")
            ),
        );
    }
    for f in &todo {
        let path = node(dev, &nodes, f.number);
        events.step_start(Phase::Mkfs, &format!("mkfs {}", f.name), Some(&f.name));
        let mut o = mkfs::Ext4Options::for_partition(&f.name);
        o.extra = mkfs_extra(&opts.mkfs_options, &f.name);
        if f.role == FsRole::Scratch {
            // Nothing goes into it: formatted is finished.
            o.extra.extend(["-M".to_owned(), record.done_marker()]);
        }
        changes.mark();
        mkfs::mkfs_ext4(&path, &o)?;
        events.step_end(Verdict::Ok);
        failpoint::hit(&format!("mkfs-{}", f.name));
    }

    // 3. The slots, from one stream.
    let slots: Vec<&Fs> = todo
        .iter()
        .copied()
        .filter(|f| matches!(f.role, FsRole::Slot(_)))
        .collect();
    let mut captured = Vec::new();
    let mut slots_done: Vec<(String, PathBuf)> = Vec::new();
    if !slots.is_empty() {
        let names: Vec<&str> = slots.iter().map(|f| f.name.as_str()).collect();
        let mounts: Vec<Mount> = slots
            .iter()
            .map(|f| {
                Mount::ext4(
                    &node(dev, &nodes, f.number),
                    &opts.rundir.join("mnt").join(&f.name),
                    false,
                )
            })
            .collect::<anyhow::Result<_>>()?;
        let dirs: Vec<PathBuf> = mounts.iter().map(|m| m.path().to_owned()).collect();
        events.step_start(
            Phase::Unpack,
            &format!("unpack {}", names.join(", ")),
            names.first().copied(),
        );
        let source = Source::open(
            &opts.rootfs,
            &SourceOptions {
                sha256: pre
                    .rootfs_sha256
                    .map(|h| rootfs::source::hex(&h))
                    .or_else(|| opts.rootfs_sha256.clone()),
                events: events.clone(),
                ..SourceOptions::default()
            },
        )?;
        let capture = if matches!(pre.bup, BupSource::Deferred) {
            payload_captures()
        } else {
            Vec::new()
        };
        let rep = rootfs::unpack(
            source,
            &dirs,
            &UnpackOptions {
                capture,
                ..UnpackOptions::default()
            },
            events,
        )
        .with_context(|| format!("unpacking {} into {}", opts.rootfs, names.join(", ")))?;
        events.step_end(Verdict::Ok);
        summary.rootfs_sha256 = Some(rep.sha256.clone());
        captured = rep.captured;
        failpoint::hit("unpacked");
        let now = SystemTime::now();
        for f in &slots {
            summary
                .slots
                .push((f.name.clone(), format!("sha256:{}", rep.sha256)));
        }
        for m in &mounts {
            rootfs::post::refresh_timestamp_at(m.path(), now)?;
            summary.artifact = summary
                .artifact
                .take()
                .or_else(|| rootfs::post::artifact_name(m.path()));
        }
        if opts.verify_slots {
            verify_slots(&slots, &mounts, events)?;
        }
        for (f, m) in slots.iter().zip(mounts) {
            m.unmount()?;
            slots_done.push((f.name.clone(), node(dev, &nodes, f.number)));
        }
        for (name, path) in &slots_done {
            if !opts.no_fsck {
                events.step_start(Phase::Unpack, &format!("e2fsck -p {name}"), Some(name));
                mkfs::e2fsck_preen(path)?;
                events.step_end(Verdict::Ok);
            }
            failpoint::hit(&format!("before-mark-{name}"));
            mkfs::set_last_mounted(path, &record.done_marker())?;
        }
    }

    // 4. DATA.
    if let Some(d) = pre.fs.iter().find(|f| f.role == FsRole::Data) {
        let path = node(dev, &nodes, d.number);
        let recreated = todo.iter().any(|f| f.name == d.name);
        if recreated || (pre.data_in_place && opts.data.is_some()) {
            events.step_start(Phase::Data, &format!("data into {}", d.name), Some(&d.name));
            let m = Mount::ext4(&path, &opts.rundir.join("mnt").join(&d.name), false)?;
            if let Some(saved) = &pre.saved_data {
                rootfs::tree::restore(saved, m.path())?;
                let got = rootfs::tree::hash(m.path())?;
                if got != saved.hash {
                    bail!(
                        "{}: restored contents differ from what was saved ({got} vs {})",
                        d.name,
                        saved.hash
                    );
                }
                events.message(
                    "info",
                    format!("{} restored and verified ({} entries)", d.name, saved.len()),
                );
            }
            if let Some(t) = &opts.data {
                let s = Source::open(t, &SourceOptions::default())?;
                rootfs::unpack(
                    s,
                    &[m.path().to_owned()],
                    &UnpackOptions {
                        keep_newer_files: true,
                        ..UnpackOptions::default()
                    },
                    events,
                )
                .with_context(|| format!("unpacking {t} into {}", d.name))?;
            }
            m.unmount()?;
            if recreated {
                mkfs::set_last_mounted(&path, &record.done_marker())?;
            }
            events.step_end(Verdict::Ok);
        }
        failpoint::hit("data");
    }

    // 5. Boot partitions, then 6. the switch.
    let payload = match &pre.bup {
        BupSource::File(p) => Some(p.clone()),
        BupSource::None => None,
        BupSource::Deferred => {
            let bytes = pick_payload(&captured, pre.mode).or_else(|| {
                read_payload_from_slot(opts, dev, &nodes, &pre, payload_paths(pre.mode))
            });
            match bytes {
                Some(b) => {
                    let p = stash_payload(&opts.rundir, &b)?;
                    check_payload(opts, &pre.layout, pre.soc, &p)?;
                    Some(p)
                }
                None => None,
            }
        }
    };
    match payload {
        None => {
            summary.boot_note =
                Some("no bootloader update payload: the boot partitions were left alone".into());
            events.message(
                "warn",
                "no bootloader update payload: the boot partitions were left alone",
            );
        }
        Some(p) => {
            let mut s = update::prepare(&UpdateOptions {
                payload: p,
                request: match pre.mode {
                    InstallMode::Initial => Request::Initialize,
                    InstallMode::Update => Request::UpdateAndActivate(pre.target),
                },
                soc: pre.soc,
                layout: Some(pre.layout.clone()),
                boot_devices: pre.boot_devices.clone(),
                user_device: Some(dev.clone()),
                tnspec: opts.tnspec.clone(),
                machine: opts.machine.clone(),
                sysroot: opts.sysroot.clone(),
            })?;
            let mut reports = s.execute_partitions(changes, events)?;
            failpoint::hit("boot-written");
            reports.extend(s.commit_slot_metadata(changes, events)?);
            for r in reports {
                match r.action {
                    StepAction::Skip => summary.boot_skipped.push(r.label),
                    StepAction::Write => summary.boot_written.push(r.label),
                }
            }
        }
    }
    failpoint::hit("committed");
    store_journal(dev, None, changes)?;
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

/// The payload from a slot an earlier run finished (a streamed rootfs that
/// is not unpacked again on resume).
fn read_payload_from_slot(
    opts: &InstallOptions,
    dev: &Path,
    nodes: &[PartitionNode],
    pre: &Preflight,
    order: &[&str],
) -> Option<Vec<u8>> {
    let slot = match pre.mode {
        InstallMode::Initial => Slot::A,
        InstallMode::Update => pre.target,
    };
    let f = pre.fs.iter().find(|f| f.name == slot_partition(slot))?;
    let m = Mount::ext4_inspect(
        &node(dev, nodes, f.number),
        &opts.rundir.join("mnt").join("payload"),
    )
    .ok()?;
    let bytes = order.iter().find_map(|p| {
        let full = rootfs::post::resolve_in_tree(m.path(), Path::new(p)).ok()?;
        let meta = std::fs::metadata(&full).ok()?;
        (meta.len() <= MAX_BUP_BYTES)
            .then(|| std::fs::read(&full).ok())
            .flatten()
    });
    let _ = m.unmount();
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkfs_options_apply_to_all_or_one() {
        let o = vec![
            "-E nodiscard".to_owned(),
            "DATA:-O ^metadata_csum -m 0".to_owned(),
            "-E lazy_itable_init=1".to_owned(),
        ];
        assert_eq!(
            mkfs_extra(&o, "APP"),
            ["-E", "nodiscard", "-E", "lazy_itable_init=1"]
        );
        assert_eq!(
            mkfs_extra(&o, "DATA"),
            [
                "-E",
                "nodiscard",
                "-O",
                "^metadata_csum",
                "-m",
                "0",
                "-E",
                "lazy_itable_init=1"
            ]
        );
        // An option value with a colon is not a partition prefix.
        assert_eq!(
            mkfs_extra(&["-E root_owner=0:0".to_owned()], "LOGS"),
            ["-E", "root_owner=0:0"]
        );
    }

    #[test]
    fn filesystems_of_the_demo_layout() {
        let l = crate::layout::load(
            std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/layouts/demo.xml")),
            &LoadOptions::default(),
        )
        .unwrap();
        let fs = filesystems(&l.user).unwrap();
        let names: Vec<(&str, FsRole)> = fs.iter().map(|f| (f.name.as_str(), f.role)).collect();
        assert_eq!(
            names,
            [
                ("APP", FsRole::Slot(Slot::A)),
                ("APP_b", FsRole::Slot(Slot::B)),
                ("DATA", FsRole::Data),
                ("LOGS", FsRole::Scratch),
                ("EXTRA", FsRole::Scratch)
            ]
        );
    }
}
