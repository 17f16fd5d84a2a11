//! The preflight: every fact the install depends on, found and checked
//! before anything is written, one function per fact, in the order the
//! report shows them. It ends with the [`Decision`] and the report text.
//!
//! ```text
//! target → layout → in use? plan → journal → boot devices → running slot
//!   → decide (mode, slot, data, erased) → tools → rootfs (a local file is
//!   read through once) → payload → boot devices checked → DATA listed and
//!   a place for its copy chosen (or saved in RAM; or the interrupted run's
//!   copy checked) → data tarball → content → resume?
//! ```

use super::decide::{self, DataHandling, Decision, Facts, RunningSlot};
use super::journal::{self, InstallMode, Record};
use super::payload::{self, BupSource};
use super::report::{
    self, refuse, Coded, DataCopy, FailCode, PayloadFinding, PreflightView, RootfsFinding,
};
use super::stage;
use super::{filesystems, fit, images, t234, Fs, FsRole, InstallOptions};
use crate::bup::board::{self as bboard, Slot};
use crate::bup::update::{self, Request, UpdateOptions};
use crate::disk;
use crate::events::Events;
use crate::events::Level;
use crate::layout::{self, Layout, LoadOptions, Soc};
use crate::probe::ExtSuperblock;
use crate::repartition::Plan;
use crate::rootfs::{
    self, tree::Node, tree::SavedTree, EntryCounts, Source, SourceOptions, UnpackOptions,
};
use crate::sys::blockdev::{Disk, StorageId};
use crate::sys::{self, mkfs, mount::Mount};
use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// Share of available memory `--keep-data` may use to hold DATA.
pub const KEEP_DATA_MEM_PERCENT: u64 = 50;
/// Tools the install runs.
pub const TOOLS: &[&str] = &["mke2fs", "e2fsck", "tune2fs"];

/// What the preflight found and decided.
pub struct Preflight {
    /// The target, open (and locked) for the whole run.
    pub disk: Disk,
    /// This run's mount points and scratch files.
    pub rundir: PathBuf,
    /// The layout, placed for the disk.
    pub layout: Layout,
    /// The disk's table against the layout's.
    pub plan: Plan,
    /// The layout's filesystems.
    pub fs: Vec<Fs>,
    /// SoC family, when known.
    pub soc: Option<Soc>,
    /// The boot devices (empty: from the board configuration).
    pub boot_devices: Vec<PathBuf>,
    /// Mode, slot, data, what is erased.
    pub decision: Decision,
    /// The interrupted install this run finishes.
    pub resume: Option<Record>,
    /// What is being installed (the journal's content id).
    pub content: [u8; 32],
    /// The rootfs's SHA-256, when known before the unpack.
    pub rootfs_sha256: Option<[u8; 32]>,
    /// Where that hash came from, for the message when the unpack reads
    /// other bytes.
    pub rootfs_sha256_from: String,
    /// The rootfs, when it can be read only once (opened, not read yet).
    pub rootfs_stream: Option<Source>,
    /// Where the payload comes from.
    pub bup: BupSource,
    /// The Orin part of the install (kernel partitions, ESP, variables).
    pub orin: Option<t234::Orin>,
    /// The machine-id new slots without one get.
    pub machine_id: Option<[u8; 16]>,
    /// DATA, saved in memory for `--keep-data` (no partition has room for
    /// a staged copy).
    pub saved_data: Option<SavedTree>,
    /// DATA's copy staged on the disk for `--keep-data`.
    pub staging: Option<Staging>,
    /// Where DATA's copy is kept, for the plan and the summary.
    pub data_copy: Option<DataCopy>,
    /// The slots' image, as the preflight read it (`--image APP=`).
    pub slot_image: Option<images::Measured>,
    /// The other partitions' images: name, source, what the preflight read.
    pub images: Vec<(Fs, String, images::Measured)>,
    /// The key of the `crypt-` partitions, when the layout has any.
    pub luks_key: Option<super::crypt::KeyFile>,
    /// The report shown before the confirmation.
    pub report: String,
}

/// DATA's copy staged in a partition of the new layout (`--keep-data`
/// where DATA moves; docs/spec/data-stage.md).
pub struct Staging {
    /// Where it goes, or is.
    pub area: stage::Area,
    /// What to copy: the old DATA's partition number and its listing;
    /// `None` when the interrupted run's copy is used.
    pub source: Option<(u32, Vec<Node>)>,
}

/// What reading the rootfs before the install found.
struct RootfsCheck {
    finding: RootfsFinding,
    /// Its SHA-256, when known before the unpack (read by the preflight,
    /// given, or beside it).
    sha256: Option<[u8; 32]>,
    /// `sha256:…` when the hash is known, else the source itself.
    identity: String,
    /// What it holds, when the preflight read it.
    counts: Option<EntryCounts>,
    captured: Vec<rootfs::Captured>,
    /// True when the preflight read it through (a file or a URL).
    scanned: bool,
    /// A source that can be read only once, opened and not read: the
    /// unpack reads this very one (reopening a pipe would find no writer).
    stream: Option<Source>,
    /// The slots' image (`--image APP=`), as the preflight read it.
    image: Option<images::Measured>,
}

impl RootfsCheck {
    /// Where the hash the unpack must meet comes from, for its message.
    fn sha256_from(&self, opts: &InstallOptions) -> String {
        if self.scanned {
            format!("the preflight's read of {}", opts.rootfs)
        } else {
            "--rootfs-sha256".into()
        }
    }
}

/// Finds and checks everything; nothing is written.
pub fn preflight(opts: &InstallOptions, events: &Events) -> anyhow::Result<Preflight> {
    let shown = opts.device.display().to_string();
    let mut disk = open_target(&opts.device)?;
    let rundir = run_dir(opts, &disk, events)?;
    let layout = load_layout(opts, &disk, events)?;
    let fs = filesystems(&layout.user)?;
    let plan = survey(&mut disk, &layout, opts)?;
    let journal = read_journal(&mut disk)?;
    let soc = opts.soc.or(layout.soc);
    let orin = t234::is_t234(soc);
    let (board, boot_devices, running) = the_board(opts, &disk, &layout, orin)?;
    let mismatch = boot_mismatch(&layout, soc, &plan, &boot_devices);
    let mut facts = Facts {
        device: &shown,
        plan: &plan,
        filesystems: &fs,
        soc,
        journal: journal.as_ref(),
        running: running.as_ref(),
        boot_mismatch: mismatch.as_deref(),
    };
    let mut decision = decide::decide(&facts, &opts.request())?;
    check_tools(opts)?;
    let luks_key = check_encryption(opts, &rundir, &disk, &plan, &fs, &decision)?;
    let captures = match (orin, &opts.bup) {
        (true, _) => t234::captures(),
        (false, None) => payload::captures(),
        (false, Some(_)) => Vec::new(),
    };
    let mut rootfs = check_rootfs(opts, events, captures)?;
    let images = check_images(opts, events, &layout, &fs, &decision)?;
    // An interrupted install of something else is not finished: decided
    // again as if there were no journal.
    let content = content_id(opts, &layout, &rootfs.identity, &images);
    let resume = decide::resume(&decision, &content);
    if decision.journal.is_some() && resume.is_none() {
        let why = "the interrupted install was of another image or layout: starting over";
        events.message(Level::Warn, why);
        facts.journal = None;
        decision = decide::decide(&facts, &opts.request())?;
        decision.why = format!("{why}; {}", decision.why);
    }
    // The only copy of DATA is on the disk, staged by an interrupted install
    // this run would not finish (--restart, or other content): formatting
    // its partition would lose it.
    let staged = journal.as_ref().and_then(|r| r.stage.as_ref());
    if let Some(st) = staged.filter(|s| !s.restored) {
        if resume.is_none() && !opts.discard_data {
            refuse!(
                FailCode::ModeRefused,
                "the interrupted install holds the only copy of DATA, staged in {}: run it again \
                 as it was (same rootfs and layout, --keep-data, no --restart) to restore it, \
                 or give --discard-data to let it go",
                st.partition
            );
        }
    }
    check_slots_fit(opts, &rundir, &fs, &decision, &rootfs)?;
    let boot = BootInputs {
        opts,
        disk: &disk,
        rundir: &rundir,
        layout: &layout,
        plan: &plan,
        soc,
        boot_devices: &boot_devices,
        decision: &decision,
        rootfs: &rootfs,
    };
    let (bup, payload_finding, boot_line, orin) = match (orin, &board) {
        (true, board) => orin_boot_chain(&boot, board.as_ref())?,
        (false, _) => boot_partitions(&boot)?,
    };
    // An image is written byte for byte: nothing is carried into it.
    let machine_id = (!opts.slot_image)
        .then(|| {
            machine_id(
                opts,
                &rundir,
                &mut disk,
                &plan,
                &fs,
                &decision,
                resume.as_ref(),
            )
        })
        .flatten();
    let (saved_data, staging, data_copy) = match decision.data {
        Some(DataHandling::SaveAndRestore) => keep_data(
            opts,
            events,
            &rundir,
            &mut disk,
            &layout,
            &plan,
            &fs,
            &decision,
            resume.as_ref(),
        )?,
        _ => (None, None, None),
    };
    check_data_tarball(opts, events, &rundir, &fs, &plan, &decision)?;
    let mut report = report::preflight(&PreflightView {
        device: &shown,
        sectors: layout.user.disk_sectors,
        layout_source: &layout.source,
        partitions: layout.user.partitions.len(),
        decision: &decision,
        rootfs: &rootfs.finding,
        payload: &payload_finding,
        boot: boot_line.as_deref(),
        data_name: fs
            .iter()
            .find(|f| f.role == FsRole::Data)
            .map(|d| d.name.as_str()),
        data_tarball: opts.data.as_deref(),
        data_copy: data_copy.as_ref(),
        plan: &plan,
        resume: resume.as_ref(),
        target_name: super::slot_name(&fs, decision.target),
    });
    let encrypted: Vec<String> = super::crypt::encrypted(&fs).map(Fs::shown).collect();
    if !encrypted.is_empty() {
        report.push_str(&format!("\nEncrypted: {}", encrypted.join(", ")));
    }
    for (f, spec, m) in &images {
        report.push_str(&format!(
            "\nImage:    {} from {spec}: {}",
            f.name,
            m.describe()
        ));
    }
    Ok(Preflight {
        disk,
        rundir,
        layout,
        plan,
        fs,
        soc,
        boot_devices,
        decision,
        resume,
        content,
        rootfs_sha256: rootfs.sha256,
        rootfs_sha256_from: rootfs.sha256_from(opts),
        rootfs_stream: rootfs.stream.take(),
        bup,
        orin,
        machine_id,
        saved_data,
        staging,
        data_copy,
        slot_image: rootfs.image.take(),
        images,
        luks_key,
        report,
    })
}

/// The `crypt-` partitions: a key, cryptsetup and dm-crypt, and the key
/// tried on the containers the run keeps (`crypt.rs`). `--keep-data` cannot
/// save an encrypted DATA that moves (the preflight reads DATA before the
/// key has a container to open): refused.
fn check_encryption(
    opts: &InstallOptions,
    rundir: &Path,
    disk: &Disk,
    plan: &Plan,
    fs: &[Fs],
    decision: &Decision,
) -> anyhow::Result<Option<super::crypt::KeyFile>> {
    if let Some(d) = fs.iter().find(|f| f.role == FsRole::Data && f.crypt) {
        if decision.data == Some(DataHandling::SaveAndRestore) {
            refuse!(
                FailCode::ModeRefused,
                "--keep-data: {} moves and is encrypted; saving it is not supported (keep it in place, or --discard-data)",
                d.name
            );
        }
    }
    let tested: Vec<(&Fs, PathBuf)> = super::crypt::to_test(fs, plan, decision)
        .into_iter()
        .map(|f| (f, disk.partition_path(f.number)))
        .collect();
    super::crypt::check(&opts.luks_key, &opts.sysroot.path("/"), rundir, fs, &tested)
}

/// Who the board is and which slot it runs, and where its boot chain is
/// written. On an Orin the boot firmware is on the QSPI, which is never
/// written: no boot devices; the board and its running chain come from UEFI.
type TheBoard = (
    Option<crate::bup::t234_check::Board>,
    Vec<PathBuf>,
    Option<RunningSlot>,
);

fn the_board(
    opts: &InstallOptions,
    disk: &Disk,
    layout: &Layout,
    orin: bool,
) -> anyhow::Result<TheBoard> {
    if orin {
        let board = if opts.no_bootloader {
            t234::read_board(opts, layout).ok()
        } else {
            Some(t234::read_board(opts, layout)?)
        };
        let running = board.as_ref().and_then(t234::running_slot);
        return Ok((board, Vec::new(), running));
    }
    let boot_devices = boot_devices(opts, disk.path(), layout)?;
    let running = running_slot(opts, &boot_devices, layout);
    Ok((None, boot_devices, running))
}

/// What deciding the boot chain's part of the install looks at.
struct BootInputs<'a> {
    opts: &'a InstallOptions,
    disk: &'a Disk,
    rundir: &'a Path,
    layout: &'a Layout,
    plan: &'a Plan,
    soc: Option<Soc>,
    boot_devices: &'a [PathBuf],
    decision: &'a Decision,
    rootfs: &'a RootfsCheck,
}

/// The payload, its finding, the boot devices' line, and the Orin part.
type BootChain = (
    BupSource,
    PayloadFinding,
    Option<String>,
    Option<t234::Orin>,
);

/// T186/T194/T210: the payload for the boot partitions, checked for this
/// board and against the boot devices.
fn boot_partitions(b: &BootInputs) -> anyhow::Result<BootChain> {
    let (bup, finding) =
        locate_payload(b.opts, b.rundir, b.layout, b.soc, b.rootfs, b.decision.mode)?;
    let line = match bup {
        BupSource::None => None,
        _ => Some(check_boot(
            b.opts,
            b.disk,
            b.layout,
            b.soc,
            b.boot_devices,
            &bup,
            b.decision,
        )?),
    };
    Ok((bup, finding, line, None))
}

/// Orin: kernel partitions, ESP and UEFI variables (or none of them with
/// `--no-bootloader`).
fn orin_boot_chain(
    b: &BootInputs,
    board: Option<&crate::bup::t234_check::Board>,
) -> anyhow::Result<BootChain> {
    let orin = match board {
        Some(board) if !b.opts.no_bootloader => t234::prepare(
            b.opts,
            b.plan,
            b.rundir,
            b.layout,
            board,
            b.decision,
            &b.rootfs.captured,
            b.rootfs.scanned,
        )?,
        _ => t234::left_alone(b.opts),
    };
    let finding = PayloadFinding::Orin {
        lines: orin.lines.clone(),
    };
    Ok((BupSource::None, finding, None, Some(orin)))
}

/// The target: a whole-disk block device, opened once and locked for the
/// run, and writable.
pub(super) fn open_target(device: &Path) -> anyhow::Result<Disk> {
    let disk = Disk::open(device).map_err(report::recode(
        FailCode::DeviceInvalid,
        &[FailCode::Failed, FailCode::InputMissing],
    ))?;
    if !sys::rawdev::is_block_device(disk.path()) {
        refuse!(
            FailCode::DeviceInvalid,
            "{} is not a block device; attach an image with `losetup -f --show IMAGE` and install onto that",
            device.display()
        );
    }
    disk.lock()?;
    disk.check_writable()?;
    Ok(disk)
}

/// This run's directory: one per disk, so that installs onto two disks do
/// not share mount points. What a killed run of ours left mounted there is
/// unmounted (the disk's lock says no live run owns it).
fn run_dir(opts: &InstallOptions, disk: &Disk, events: &Events) -> anyhow::Result<PathBuf> {
    let dir = opts.rundir.join(disk.kernel_name().unwrap_or("image"));
    let stale = sys::mount::unmount_under(&dir)?;
    if !stale.is_empty() {
        events.message(
            Level::Warn,
            format!(
                "unmounted what an interrupted run left mounted: {}",
                stale
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
    }
    // Containers an interrupted run of ours left open hold the partitions:
    // closed (the disk's lock says no live run owns them); anyone else's
    // holder is refused by the in-use check.
    if let Some(name) = disk.kernel_name() {
        for m in sys::luks::ours_open(&opts.sysroot.path("/"), name) {
            sys::luks::close(&m)?;
            events.message(
                Level::Warn,
                format!("closed /dev/mapper/{m}, which an interrupted run left open"),
            );
        }
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// The layout, placed for the disk's real size and sector size; its notes
/// become warnings.
fn load_layout(opts: &InstallOptions, disk: &Disk, events: &Events) -> anyhow::Result<Layout> {
    let layout = layout::load_on(
        &opts.layout,
        &LoadOptions {
            set: opts.set.clone(),
            disk_sectors: None,
        },
        Some(&disk.size()),
    )?;
    for n in &layout.notes {
        events.message(Level::Warn, format!("{}: {n}", layout.source));
    }
    Ok(layout)
}

/// Refuses a disk in use; plans the layout against what is on it.
fn survey(disk: &mut Disk, layout: &Layout, opts: &InstallOptions) -> anyhow::Result<Plan> {
    disk::check_target_not_in_use(disk.target(), &opts.disk_env())?;
    disk::plan_on(disk.target(), &layout.user)
}

/// An interrupted install recorded on the disk.
fn read_journal(disk: &mut Disk) -> anyhow::Result<Option<Record>> {
    let lba0 = disk.read_head(512)?;
    Ok(Record::decode(&lba0).filter(|r| r.state == journal::State::Running))
}

/// The boot devices: given, else named by the board configuration, else
/// boot0 and boot1 of the same eMMC or the SPI flash, as the layout says.
fn boot_devices(
    opts: &InstallOptions,
    device: &Path,
    layout: &Layout,
) -> anyhow::Result<Vec<PathBuf>> {
    use crate::layout::BootDeviceKind as K;
    if !opts.boot_devices.is_empty() {
        return Ok(opts.boot_devices.clone());
    }
    let configured = update::configured_boot_devices(&opts.sysroot)?;
    if !configured.is_empty() {
        return Ok(configured);
    }
    let name = device.display().to_string();
    Ok(match layout.boot.as_ref().map(|b| b.kind) {
        Some(K::Spi) => vec![PathBuf::from(update::SPI_BOOT)],
        Some(K::SdmmcBoot | K::T210Sdmmc) if name.contains("mmcblk") => {
            vec![
                PathBuf::from(format!("{name}boot0")),
                PathBuf::from(format!("{name}boot1")),
            ]
        }
        _ => Vec::new(),
    })
}

/// The slot the board runs from: `boot.slot_suffix=` on the kernel command
/// line, else the slot metadata on the boot device.
fn running_slot(opts: &InstallOptions, boot: &[PathBuf], layout: &Layout) -> Option<RunningSlot> {
    if let Ok(cmdline) = opts.sysroot.cmdline() {
        if cmdline
            .split_whitespace()
            .any(|w| w.starts_with("boot.slot_suffix="))
        {
            if let Ok(slot) = bboard::current_slot(&cmdline) {
                return Some(RunningSlot {
                    slot,
                    source: "boot.slot_suffix on the kernel command line".into(),
                });
            }
        }
    }
    let area = layout.boot.as_ref()?;
    if boot.is_empty() {
        return None;
    }
    match update::active_slot(boot, area) {
        Ok(Some(slot)) => Some(RunningSlot {
            slot,
            source: "slot metadata on the boot device".into(),
        }),
        _ => None,
    }
}

/// Why the boot device's table is not the layout's (an update writes by
/// that table, so a release that moved boot partitions needs them
/// initialized). A boot device that cannot be opened is reported when the
/// payload is checked.
fn boot_mismatch(
    layout: &Layout,
    soc: Option<Soc>,
    plan: &Plan,
    boot_devices: &[PathBuf],
) -> Option<String> {
    match &layout.boot {
        Some(area) if soc != Some(Soc::T210) && plan.in_place && !boot_devices.is_empty() => {
            update::boot_table_mismatch(boot_devices, area)
                .ok()
                .flatten()
        }
        _ => None,
    }
}

/// The commands the install runs are on PATH.
fn check_tools(opts: &InstallOptions) -> anyhow::Result<()> {
    let grow = (opts.slot_image || !opts.images.is_empty()).then_some("resize2fs");
    for t in TOOLS.iter().copied().chain(grow) {
        if !tool_exists(t) {
            refuse!(
                FailCode::ToolMissing,
                "{t} is not installed (needed to create and check filesystems)"
            );
        }
    }
    Ok(())
}

/// True when `tool` is on PATH (where `Command` will look for it).
pub(super) fn tool_exists(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(tool).is_file()))
}

/// Opens the rootfs. What can be read twice (a file, an http(s) URL) is
/// read through once now: its hash, every member, the payload inside, the
/// size against the slots; the install then checks that it reads the same
/// bytes again. Standard input and pipes are read once, by the install.
fn check_rootfs(
    opts: &InstallOptions,
    events: &Events,
    captures: Vec<rootfs::Capture>,
) -> anyhow::Result<RootfsCheck> {
    if opts.slot_image {
        return check_slot_image(opts, events);
    }
    let source = Source::open(
        &opts.rootfs,
        &SourceOptions {
            sha256: opts.rootfs_sha256.clone(),
            net: opts.net.clone(),
            events: events.clone(),
            ..SourceOptions::default()
        },
    )
    .map_err(report::or_code(FailCode::InputInvalid))?;
    let described = source.describe();
    let identity = |sha: Option<[u8; 32]>| match sha {
        Some(h) => format!("sha256:{}", crate::bytes::hex(&h)),
        None => format!("source:{}", opts.rootfs),
    };
    if !source.rereadable() {
        let sha256 = source.expected_sha256();
        return Ok(RootfsCheck {
            finding: RootfsFinding::Streamed {
                described,
                checked: sha256.is_some(),
            },
            sha256,
            identity: identity(sha256),
            counts: None,
            captured: Vec::new(),
            scanned: false,
            stream: Some(source),
            image: None,
        });
    }
    let scan = rootfs::scan(
        source,
        &UnpackOptions {
            capture: captures,
            ..UnpackOptions::default()
        },
        events,
    )
    .with_context(|| format!("checking {described}"))
    .map_err(report::or_code(FailCode::RootfsInvalid))?;
    let sha256 = rootfs::source::parse_hex(&scan.sha256);
    Ok(RootfsCheck {
        finding: RootfsFinding::Scanned {
            described,
            format: scan.format.to_string(),
            files: scan.entries.files,
            tar_bytes: scan.tar_bytes,
            sha256: scan.sha256.clone(),
            verified: scan.verified,
        },
        sha256,
        identity: identity(sha256),
        counts: Some(scan.entries.clone()),
        captured: scan.captured,
        scanned: true,
        stream: None,
        image: None,
    })
}

/// The slots' image (`--image APP=`), read through once; its fit is
/// checked against the slots with the others.
fn check_slot_image(opts: &InstallOptions, events: &Events) -> anyhow::Result<RootfsCheck> {
    let m = images::measure(
        images::SLOTS,
        &opts.rootfs,
        opts.rootfs_sha256.clone(),
        u64::MAX,
        opts,
        events,
    )?;
    let sha256 = m.decoded.sha256;
    Ok(RootfsCheck {
        finding: RootfsFinding::Image {
            described: opts.rootfs.clone(),
            line: m.describe(),
        },
        sha256: Some(sha256),
        identity: format!("image:sha256:{}", crate::bytes::hex(&sha256)),
        counts: None,
        captured: Vec::new(),
        scanned: true,
        stream: None,
        image: Some(m),
    })
}

/// The other partitions' images: each names a filesystem partition of the
/// layout (DATA, LOGS, ...) that this run creates and that nothing else
/// fills, and fits it. Other partitions are the boot chain's: the payload
/// writes them, an image must not.
fn check_images(
    opts: &InstallOptions,
    events: &Events,
    layout: &Layout,
    fs: &[Fs],
    decision: &Decision,
) -> anyhow::Result<Vec<(Fs, String, images::Measured)>> {
    let mut out = Vec::new();
    for (name, spec) in &opts.images {
        if !layout.user.partitions.iter().any(|p| p.name == *name) {
            refuse!(
                FailCode::InputInvalid,
                "--image {name}={spec}: the layout has no partition {name}"
            );
        }
        let Some(target) = fs
            .iter()
            .find(|f| f.name == *name && !matches!(f.role, FsRole::Slot(_)))
            .cloned()
        else {
            let names: Vec<&str> = fs
                .iter()
                .filter(|f| !matches!(f.role, FsRole::Slot(_)))
                .map(|f| f.name.as_str())
                .collect();
            refuse!(
                FailCode::InputInvalid,
                "--image {name}={spec}: {name} belongs to the boot chain (the payload writes it); \
                 images go into APP (every slot) or a filesystem partition ({})",
                names.join(", ")
            );
        };
        let is_data = target.role == FsRole::Data;
        if is_data && (opts.keep_data || opts.data.is_some()) {
            refuse!(
                FailCode::InputInvalid,
                "--image {name}={spec}: {name} is also {}",
                if opts.keep_data {
                    "kept (--keep-data)"
                } else {
                    "filled from the DATA tarball"
                }
            );
        }
        if !decision.create.contains(name) {
            refuse!(
                FailCode::ModeRefused,
                "--image {name}={spec}: this {} install does not re-create {name}",
                match decision.mode {
                    InstallMode::Initial => "initial",
                    InstallMode::Update => "update",
                }
            );
        }
        let m = images::measure(name, spec, None, target.size, opts, events)?;
        out.push((target, spec.clone(), m));
    }
    Ok(out)
}

/// The rootfs against the smallest slot this run creates: the filesystem
/// mke2fs will make there (with the run's options), blocks and inodes.
fn check_slots_fit(
    opts: &InstallOptions,
    rundir: &Path,
    fs: &[Fs],
    decision: &Decision,
    rootfs: &RootfsCheck,
) -> anyhow::Result<()> {
    let smallest = fs
        .iter()
        .filter(|f| matches!(f.role, FsRole::Slot(_)) && decision.create.contains(&f.name))
        .min_by_key(|f| f.size);
    let Some(slot) = smallest else {
        return Ok(());
    };
    if let Some(m) = &rootfs.image {
        if m.shape.size > slot.size {
            refuse!(
                FailCode::NoSpace,
                "--image APP={}: the image is {} bytes, slot {} holds {}",
                opts.rootfs,
                m.shape.size,
                slot.name,
                slot.size
            );
        }
        return Ok(());
    }
    let Some(counts) = &rootfs.counts else {
        return Ok(());
    };
    let cap = capacity(opts, rundir, slot)?;
    fit::check(&opts.rootfs, &slot.name, counts, &cap)?;
    Ok(())
}

/// The filesystem mke2fs will make on `f`, with the run's options.
fn capacity(opts: &InstallOptions, rundir: &Path, f: &Fs) -> anyhow::Result<ExtSuperblock> {
    let mut o = mkfs::Ext4Options::for_partition(&f.name);
    o.extra = super::mkfs_extra(&opts.mkfs_options, &f.name);
    mkfs::capacity(f.size, &o, rundir)
}

/// The payload: given, or inside the rootfs the preflight read, checked
/// for this board now. Without one the board would go on booting its old
/// boot chain, so that takes `--no-bootloader`.
fn locate_payload(
    opts: &InstallOptions,
    rundir: &Path,
    layout: &Layout,
    soc: Option<Soc>,
    rootfs: &RootfsCheck,
    mode: InstallMode,
) -> anyhow::Result<(BupSource, PayloadFinding)> {
    let found = match (&opts.bup, opts.no_bootloader) {
        (_, true) => None,
        (Some(p), false) => Some(p.clone()),
        (None, false) => match payload::pick(&rootfs.captured, mode) {
            Some(bytes) => Some(payload::stash(rundir, &bytes)?),
            None if rootfs.image.is_some() => refuse!(
                FailCode::InputMissing,
                "--image APP={}: the payload inside an image is not read before the disk is \
                 written; give the same build's payload with --bup FILE, or --no-bootloader to \
                 leave the boot partitions alone",
                opts.rootfs
            ),
            None if rootfs.scanned => refuse!(
                FailCode::PayloadMismatch,
                "{} has no bootloader update payload ({}) and none was given with --bup: \
                 the board would not boot the new release; give --bup FILE, or --no-bootloader \
                 to install without writing the boot partitions",
                opts.rootfs,
                payload::paths(mode).join(" or ")
            ),
            None => refuse!(
                FailCode::PayloadMismatch,
                "{} can be read only once, so the payload inside it cannot be checked for this \
                 board before the disk is erased: give the payload with --bup FILE (or \
                 --no-bootloader to leave the boot partitions alone)",
                opts.rootfs
            ),
        },
    };
    Ok(match found {
        Some(p) => {
            let summary = payload::check(opts, layout, soc, &p)?;
            (
                BupSource::File(p.clone()),
                PayloadFinding::Checked { path: p, summary },
            )
        }
        None => (BupSource::None, PayloadFinding::None),
    })
}

/// The boot devices the payload goes to: opened, sized, and in update mode
/// the whole boot write planned against them. Returns the report's line.
fn check_boot(
    opts: &InstallOptions,
    disk: &Disk,
    layout: &Layout,
    soc: Option<Soc>,
    boot_devices: &[PathBuf],
    bup: &BupSource,
    decision: &Decision,
) -> anyhow::Result<String> {
    check_boot_devices(boot_devices, layout, disk)?;
    if let (InstallMode::Update, BupSource::File(p)) = (decision.mode, bup) {
        // Everything is in place already: the whole boot write can be
        // planned now, against the devices, and is planned again (cheaply)
        // after the slot is written.
        update::prepare(&boot_update_options(
            opts,
            disk,
            layout,
            soc,
            boot_devices,
            p,
            Request::UpdateAndActivate(decision.target),
        ))
        .context("planning the boot partition update")?;
    }
    let mut line = if boot_devices.is_empty() && layout.boot.is_some() {
        "boot devices from the board configuration".into()
    } else {
        boot_devices
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ")
    };
    if let Some(dev) = bootinfo_device(soc, layout, boot_devices, bup) {
        line.push_str(&format!(
            "; tegra-bootinfo store initialized at the end of {}",
            dev.display()
        ));
    }
    Ok(line)
}

/// The device of the tegra-bootinfo store this install initializes
/// (docs/spec/bup-format.md §9.1), if it does.
pub fn bootinfo_device<'a>(
    soc: Option<Soc>,
    layout: &Layout,
    boot_devices: &'a [PathBuf],
    bup: &BupSource,
) -> Option<&'a Path> {
    let medium = crate::bup::BootMedium::of(layout.boot.as_ref()?.kind);
    match bup {
        BupSource::File(_) if crate::bup::bootinfo::kept_on(soc?, medium) => {
            boot_devices.last().map(PathBuf::as_path)
        }
        _ => None,
    }
}

/// The options of the boot-partition update of this install.
pub fn boot_update_options(
    opts: &InstallOptions,
    disk: &Disk,
    layout: &Layout,
    soc: Option<Soc>,
    boot_devices: &[PathBuf],
    payload: &Path,
    request: Request,
) -> UpdateOptions {
    UpdateOptions {
        payload: payload.to_owned(),
        request,
        soc,
        layout: Some(layout.clone()),
        boot_devices: boot_devices.to_vec(),
        user_device: Some(disk.path().to_owned()),
        tnspec: opts.tnspec.clone(),
        machine: opts.machine.clone(),
        sysroot: opts.sysroot.clone(),
    }
}

/// The boot devices make the layout's boot medium (boot0 + boot1, or the
/// SPI flash), are distinct storage that is not the target disk, exist, can
/// be read, and are large enough for the layout's boot partitions (before
/// anything is written).
fn check_boot_devices(devices: &[PathBuf], layout: &Layout, disk: &Disk) -> anyhow::Result<()> {
    if devices.is_empty() {
        return Ok(());
    }
    update::boot_medium(devices.len(), layout.boot.as_ref().map(|b| b.kind)).map_err(|e| {
        Coded {
            code: FailCode::DeviceInvalid,
            message: e.to_string(),
        }
    })?;
    let target =
        StorageId::of(disk.path()).with_context(|| format!("reading {}", disk.path().display()))?;
    let mut seen: Vec<(&PathBuf, StorageId)> = Vec::new();
    let mut total = 0u64;
    for d in devices {
        let id = StorageId::of(d)
            .with_context(|| format!("opening boot device {}", d.display()))
            .map_err(report::recode(
                FailCode::DeviceInvalid,
                &[FailCode::Failed, FailCode::InputMissing],
            ))?;
        if id.overlaps(&target) {
            refuse!(
                FailCode::DeviceInvalid,
                "boot device {} is the target disk {} or part of it",
                d.display(),
                disk.path().display()
            );
        }
        if let Some((other, _)) = seen.iter().find(|(_, o)| o.overlaps(&id)) {
            refuse!(
                FailCode::DeviceInvalid,
                "boot devices {} and {} are the same storage",
                other.display(),
                d.display()
            );
        }
        let f = sys::rawdev::open(d, false)
            .with_context(|| format!("opening boot device {}", d.display()))?;
        total += sys::rawdev::size(&f)
            .with_context(|| format!("reading the size of {}", d.display()))?;
        seen.push((d, id));
    }
    if let Some(area) = &layout.boot {
        let end = area
            .partitions
            .iter()
            .map(|p| p.offset + p.size)
            .max()
            .unwrap_or(0);
        if end > total {
            refuse!(
                FailCode::DeviceInvalid,
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

type Kept = (Option<SavedTree>, Option<Staging>, Option<DataCopy>);

/// Where `--keep-data` keeps DATA while it moves: the copy an interrupted
/// run staged (checked now, unless DATA was already restored from it), else
/// a new copy staged in a partition of the new layout with room for it
/// outside the old DATA and the GPT, else memory.
#[allow(clippy::too_many_arguments)]
fn keep_data(
    opts: &InstallOptions,
    events: &Events,
    rundir: &Path,
    disk: &mut Disk,
    layout: &Layout,
    plan: &Plan,
    fs: &[Fs],
    decision: &Decision,
    resume: Option<&Record>,
) -> anyhow::Result<Kept> {
    let ss = layout.user.sector_size;
    let staged = |area: stage::Area, source| {
        let copy = DataCopy {
            kept_in: area.partition.clone(),
            survives_power_cut: true,
            bytes: Some(area.len),
        };
        (None, Some(Staging { area, source }), Some(copy))
    };
    if let Some(st) = resume.and_then(|r| r.stage.as_ref()) {
        let p = layout.user.by_name(&st.partition).with_context(|| {
            format!(
                "the journal's copy of DATA is in {}, which the layout lacks",
                st.partition
            )
        })?;
        let area = stage::Area {
            partition: st.partition.clone(),
            partition_start: p.first_lba * ss,
            offset: st.offset,
            len: stage::HEADER_LEN + st.len,
        };
        if !st.restored {
            let want = stage::Header {
                len: st.len,
                sha256: st.sha256,
                tree: [0; 32],
            };
            let mut t = disk.reopen(sys::blockdev::Access::ReadOnly)?;
            if let Err(e) = stage::verify(t.file(), area.disk_offset(), Some(&want)) {
                refuse!(
                    FailCode::ChecksumMismatch,
                    "the copy of DATA the interrupted install staged in {} (byte {}) cannot be used: {e:#}; \
                     DATA cannot be restored (--discard-data installs with an empty DATA)",
                    st.partition,
                    st.offset
                );
            }
        }
        return Ok(staged(area, None));
    }
    let data = fs
        .iter()
        .find(|f| f.role == FsRole::Data)
        .context("the layout has no DATA to keep")?;
    let old = plan
        .partitions
        .iter()
        .find(|p| p.name == data.name)
        .and_then(|p| p.current.as_ref())
        .with_context(|| format!("{} is not on the disk now", data.name))?;
    let (path, m) = inspect(opts, disk, old.number, &rundir.join("keep-data"))?;
    let nodes = rootfs::tree::manifest(m.path())
        .with_context(|| format!("--keep-data: listing {} ({})", data.name, path.display()))?;
    m.unmount()?;
    let need = stage::HEADER_LEN + rootfs::tree::tar_len(&nodes);
    let cands: Vec<stage::Candidate> = stage::candidates(fs, &decision.create)
        .filter_map(|f| layout.user.by_name(&f.name))
        .map(|p| stage::Candidate {
            name: p.name.clone(),
            start: p.first_lba * ss,
            len: p.size_bytes(ss),
        })
        .collect();
    let end = layout.user.disk_sectors * ss;
    let avoid = [
        (old.first_lba * ss, (old.last_lba + 1) * ss),
        (0, ss + layout::min_primary_gpt_bytes(ss)),
        (end.saturating_sub(layout::gpt_sectors(ss) * ss), end),
    ];
    if let Some(area) = stage::choose(&cands, &avoid, need) {
        return Ok(staged(area, Some((old.number, nodes))));
    }
    events.message(
        Level::Warn,
        format!(
            "--keep-data: no partition of the new layout has room for a copy of {} ({need} bytes) \
             outside the old one: it is held in RAM, and a power cut before the restore loses it",
            data.name
        ),
    );
    let saved = save_data(opts, rundir, disk, plan, fs)?;
    let copy = DataCopy {
        kept_in: "ram".into(),
        survives_power_cut: false,
        bytes: None,
    };
    Ok((Some(saved), None, Some(copy)))
}

/// Reads the current DATA into memory for `--keep-data` (read-only mount
/// without journal replay; refused when it does not fit).
fn save_data(
    opts: &InstallOptions,
    rundir: &Path,
    disk: &mut Disk,
    plan: &Plan,
    fs: &[Fs],
) -> anyhow::Result<SavedTree> {
    let data = fs
        .iter()
        .find(|f| f.role == FsRole::Data)
        .context("the layout has no DATA to keep")?;
    let number = plan
        .partitions
        .iter()
        .find(|p| p.name == data.name)
        .and_then(|p| p.current.as_ref())
        .map(|c| c.number)
        .with_context(|| format!("{} is not on the disk now", data.name))?;
    let limit = sys::blockdev::mem_available().unwrap_or(0) / 100 * KEEP_DATA_MEM_PERCENT;
    let (path, m) = inspect(opts, disk, number, &rundir.join("keep-data"))?;
    let saved = rootfs::tree::save(m.path(), limit)
        .with_context(|| format!("--keep-data: saving {} ({})", data.name, path.display()))?;
    m.unmount()?;
    Ok(saved)
}

/// Partition `number` as it is on the disk now, mounted read-only without
/// replaying its journal (the kernel is shown the table first). Returns its
/// node and the mount.
fn inspect(
    opts: &InstallOptions,
    disk: &mut Disk,
    number: u32,
    mountpoint: &Path,
) -> anyhow::Result<(PathBuf, Mount)> {
    let nodes = disk::expose_target(disk.target(), &opts.disk_env())?;
    let path = super::node(disk, &nodes, number);
    let m = Mount::ext4_inspect(&path, mountpoint)?;
    Ok((path, m))
}

/// The board's machine-id, for new slots whose rootfs has none: the one an
/// interrupted run of this install recorded, else the one in the slot the
/// board ran (the running one for an update, APP for an initial install),
/// read from a read-only mount before anything is written. Not the running
/// system's: that is the upgrader's own, not the board's. None with
/// `--new-machine-id`, or when nothing has one.
fn machine_id(
    opts: &InstallOptions,
    rundir: &Path,
    disk: &mut Disk,
    plan: &Plan,
    fs: &[Fs],
    decision: &Decision,
    resume: Option<&Record>,
) -> Option<[u8; 16]> {
    if opts.new_machine_id {
        return None;
    }
    if let Some(id) = resume.and_then(|r| r.machine_id) {
        return Some(id);
    }
    let old = match decision.mode {
        InstallMode::Update => decision.target.other(),
        InstallMode::Initial => Slot::A,
    };
    let slot = fs.iter().find(|f| f.role == FsRole::Slot(old))?;
    let current = plan.partitions.iter().find(|p| p.name == slot.name)?;
    if !matches!(current.content, Some(crate::probe::Content::Ext(_))) {
        return None;
    }
    let number = current.current.as_ref()?.number;
    let (_, m) = inspect(opts, disk, number, &rundir.join("machine-id")).ok()?;
    let id = rootfs::post::read_machine_id(m.path());
    m.unmount().ok()?;
    id
}

/// A data tarball that can be read twice is read through once now (hash,
/// format, every member) and must fit DATA: the filesystem mke2fs will
/// make, or the one kept in place; a stream is checked as it is unpacked.
fn check_data_tarball(
    opts: &InstallOptions,
    events: &Events,
    rundir: &Path,
    fs: &[Fs],
    plan: &Plan,
    decision: &Decision,
) -> anyhow::Result<()> {
    let Some(t) = &opts.data else {
        return Ok(());
    };
    let s = Source::open(
        t,
        &SourceOptions {
            net: opts.net.clone(),
            ..SourceOptions::default()
        },
    )
    .map_err(report::or_code(FailCode::InputInvalid))?;
    if !s.rereadable() {
        return Ok(());
    }
    let scan = rootfs::scan(s, &UnpackOptions::default(), events)
        .with_context(|| format!("checking data tarball {t}"))
        .map_err(report::or_code(FailCode::RootfsInvalid))?;
    let Some(data) = fs.iter().find(|f| f.role == FsRole::Data) else {
        return Ok(());
    };
    let now = plan
        .partitions
        .iter()
        .find(|p| p.name == data.name)
        .and_then(|p| p.content.as_ref())
        .and_then(|c| c.ext().cloned());
    let target = match (decision.data, now) {
        (Some(DataHandling::InPlace), Some(sb)) => sb,
        _ => capacity(opts, rundir, data)?,
    };
    fit::check(t, &data.name, &scan.entries, &target)?;
    Ok(())
}

/// What is being installed, for the journal: the table, the rootfs, the
/// data tarball and whether DATA is kept.
fn content_id(
    opts: &InstallOptions,
    layout: &Layout,
    rootfs_identity: &str,
    images: &[(Fs, String, images::Measured)],
) -> [u8; 32] {
    let images: Vec<String> = images
        .iter()
        .map(|(f, _, m)| format!("{}=sha256:{}", f.name, crate::bytes::hex(&m.decoded.sha256)))
        .collect();
    journal::content_id(&[
        &layout::render::json(&layout.user, None),
        rootfs_identity,
        opts.data.as_deref().unwrap_or(""),
        if opts.keep_data { "keep" } else { "" },
        &images.join(" "),
    ])
}

/// The slot an update writes, as the journal stores it.
pub fn slot_byte(s: Slot) -> u8 {
    u8::from(s == Slot::B)
}
