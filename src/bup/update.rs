//! The glue between a caller (`sysinstall bup`, the installer) and the pure
//! modules: it reads the board's identity and opens the payload and the
//! devices through [`crate::sys`], surveys them and makes the plan; then it
//! carries the plan out in two calls, partitions first and slot metadata
//! last, so the installer can verify everything else in between.
//!
//! ```text
//! prepare()  identity → payload → SoC, mode → boot devices, table → user area
//!            → survey → select → plan           (reads only; nothing written)
//! execute_partitions()   force_ro off → table, partitions → force_ro back
//! commit_slot_metadata() force_ro off → SMD, SMD_b → force_ro back
//! ```

#![deny(clippy::indexing_slicing)]

use super::board::{self, BoardConfig, Slot};
use super::boot_plan::{self, BootMode, BootPlan, BootStep, BootTargets, PlanInput};
use super::bootinfo;
use super::device::{Device, FileWindow, Linear, UserArea, UserPartition};
use super::exec::{self, Execution, StepAction, StepReport, Targets};
use super::payload::{Payload, PayloadFormat};
use super::tnspec::{self, Selection};
use super::BootMedium;
use crate::events::{Events, Phase, Verdict};
use crate::exit::Changes;
use crate::guid::Guid;
use crate::layout::{BootDeviceKind, Layout, Soc};
use crate::sys::{self, board::SysRoot, rawdev};
use anyhow::{anyhow, bail, Context as _};
use serde::Serialize;
use std::fs::File;
use std::path::{Path, PathBuf};

/// eMMC boot partitions, as one linear device.
pub const EMMC_BOOT: [&str; 2] = ["/dev/mmcblk0boot0", "/dev/mmcblk0boot1"];
/// The QSPI flash.
pub const SPI_BOOT: &str = "/dev/mtdblock0";
/// The eMMC user area, read when there is no `/dev/disk/by-partlabel`.
pub const USER_DISK: &str = "/dev/mmcblk0";
/// udev's partition-label links.
pub const BY_PARTLABEL: &str = "/dev/disk/by-partlabel";

/// Who the board is, and where each fact came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// SoC family, when known.
    pub soc: Option<Soc>,
    /// Where the SoC came from.
    pub soc_source: String,
    /// The TNSPEC.
    pub tnspec: String,
    /// Where it came from.
    pub tnspec_source: String,
    /// The module part number, when read from the EEPROM.
    pub part_number: Option<String>,
    /// MACHINE.
    pub machine: Option<String>,
    /// ROOTFSDEV.
    pub rootfs_device: Option<String>,
    /// `tegra_prod_mode` (informational).
    pub prod_mode: Option<String>,
    /// The board configuration file, if one was read.
    pub config_file: Option<PathBuf>,
    /// `boot-device=` of the configuration.
    #[serde(skip)]
    pub config_boot_devices: Vec<PathBuf>,
}

/// Overrides and hints for [`identify`].
#[derive(Debug, Clone, Default)]
pub struct IdentityRequest {
    /// `--soc`.
    pub soc: Option<Soc>,
    /// `--tnspec`.
    pub tnspec: Option<String>,
    /// `--machine`.
    pub machine: Option<String>,
    /// The layout's SoC, the last resort.
    pub layout_soc: Option<Soc>,
}

/// The running SoC from `tegra_chip_id`, else the device tree.
pub fn detect_soc(root: &SysRoot) -> anyhow::Result<Option<(Soc, &'static str)>> {
    if let Some(id) = root.chip_id().context("reading tegra_chip_id")? {
        if let Some(soc) = board::soc_from_chip_id(&id) {
            return Ok(Some((soc, "tegra_chip_id")));
        }
    }
    let compat = root.compatible().context("reading the device tree")?;
    Ok(compat
        .as_deref()
        .and_then(board::soc_from_compatible)
        .map(|s| (s, "device tree")))
}

/// Works out the board's identity (docs/board-identity.md): the SoC from
/// `--soc`, the running system or the layout; the TNSPEC from `--tnspec`,
/// or from the CVM EEPROM plus MACHINE and ROOTFSDEV from `--machine` and
/// the board configuration.
pub fn identify(root: &SysRoot, req: &IdentityRequest) -> anyhow::Result<Identity> {
    let (config, config_file) = match root
        .board_config()
        .context("reading the board configuration")?
    {
        Some((path, text)) => (
            BoardConfig::parse(&text).with_context(|| path.display().to_string())?,
            Some(path),
        ),
        None => (BoardConfig::default(), None),
    };
    let (soc, soc_source) = match (req.soc, detect_soc(root)?, req.layout_soc) {
        (Some(s), ..) => (Some(s), "--soc".to_string()),
        (None, Some((s, from)), _) => (Some(s), from.to_string()),
        (None, None, Some(s)) => (Some(s), "layout".to_string()),
        (None, None, None) => (None, "unknown".to_string()),
    };
    let legacy = |name: &str| -> anyhow::Result<Option<String>> {
        Ok(root
            .legacy_config(name)
            .with_context(|| format!("reading {name}"))?
            .and_then(|(_, text)| board::legacy_value(&text)))
    };
    let machine = match (&req.machine, &config.machine) {
        (Some(m), _) | (None, Some(m)) => Some(m.clone()),
        (None, None) => legacy("machine-name.conf")?,
    };
    let rootfs_device = match &config.rootfs_device {
        Some(r) => Some(r.clone()),
        None => legacy("rootfsdev.conf")?,
    };
    let mut id = Identity {
        soc,
        soc_source,
        tnspec: String::new(),
        tnspec_source: String::new(),
        part_number: None,
        machine,
        rootfs_device,
        prod_mode: root.prod_mode().unwrap_or(None),
        config_file,
        config_boot_devices: config.boot_devices,
    };
    if let Some(t) = &req.tnspec {
        id.tnspec = t.clone();
        id.tnspec_source = "--tnspec".into();
        return Ok(id);
    }
    let soc = soc.ok_or_else(|| {
        anyhow!("cannot tell the SoC family (no tegra_chip_id, no device tree): give --soc, or --tnspec")
    })?;
    let (bus, addr) = board::cvm_eeprom_address(soc);
    let path = root.eeprom_path(bus, addr);
    let raw = root.cvm_eeprom(bus, addr).with_context(|| {
        format!(
            "reading the module EEPROM {} (give --tnspec if it is unreadable)",
            path.display()
        )
    })?;
    let pn = board::eeprom_part_number(&raw).with_context(|| path.display().to_string())?;
    let spec = board::boardspec(&pn, soc).with_context(|| path.display().to_string())?;
    let machine = id.machine.clone().ok_or_else(|| {
        anyhow!(
            "the machine name is not configured: set machine= in {} (docs/board-identity.md) or give --machine",
            root.path(sys::board::BOARD_CONF).display()
        )
    })?;
    let rootfs = id
        .rootfs_device
        .clone()
        .unwrap_or_else(|| board::DEFAULT_ROOTFS_DEVICE.into());
    id.tnspec = board::tnspec(&spec, &machine, &rootfs);
    id.tnspec_source = format!("EEPROM {}", path.display());
    id.part_number = Some(pn);
    Ok(id)
}

/// Reads and parses a payload file. A UEFI capsule is refused by name
/// ([`boot_plan::BootPlanError::Capsule`]); `bup list` and `bup check` open
/// capsules with [`super::t234_check::open`].
pub fn open_payload(path: &Path) -> anyhow::Result<(File, Payload)> {
    let mut f = File::open(path).with_context(|| path.display().to_string())?;
    let mut head = Vec::new();
    std::io::Read::read_to_end(&mut std::io::Read::take(&mut f, 16), &mut head)
        .with_context(|| path.display().to_string())?;
    if crate::uefi::capsule::detect(&head) == crate::uefi::capsule::FileKind::Capsule {
        return Err(boot_plan::BootPlanError::Capsule(path.display().to_string()).into());
    }
    let p = Payload::parse(&mut f).with_context(|| path.display().to_string())?;
    Ok((f, p))
}

/// What the caller wants written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Both slots, single partitions, table, fresh slot metadata (`--initialize`).
    Initialize,
    /// This slot only; slot metadata untouched (`--slot`; refused on T210, as REF).
    Slot(Slot),
    /// The slot not booted now (`boot.slot_suffix=`), then mark it active:
    /// `bup write` without options. On T210, which has no slots, every
    /// partition with VER last.
    Inactive,
    /// The installer's update: this slot, then mark it active. On T210 as
    /// [`Request::Inactive`].
    UpdateAndActivate(Slot),
}

/// Everything `bup write` (or the installer) decides.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    /// The payload file.
    pub payload: PathBuf,
    /// What to write.
    pub request: Request,
    /// `--soc`.
    pub soc: Option<Soc>,
    /// The layout: boot partitions for `--initialize` and T210, partition names.
    pub layout: Option<Layout>,
    /// `--boot-device` (boot0 and boot1, or the SPI flash).
    pub boot_devices: Vec<PathBuf>,
    /// `--user-device`: a disk or image whose GPT locates user partitions.
    pub user_device: Option<PathBuf>,
    /// `--tnspec`.
    pub tnspec: Option<String>,
    /// `--machine`.
    pub machine: Option<String>,
    /// Root for system files (`/`, or a fake board in tests).
    pub sysroot: SysRoot,
}

/// A validated plan and what is needed to carry it out.
pub struct BootUpdate {
    /// The plan.
    pub plan: BootPlan,
    /// The board.
    pub identity: Identity,
    /// Duplicates resolved and other selection facts.
    pub selection: Selection,
    /// Boot devices, in order.
    pub boot_devices: Vec<PathBuf>,
    /// User partitions.
    pub user: UserArea,
    payload: File,
    sysroot: SysRoot,
    /// The tegra-bootinfo store's device and place, on T186/T194.
    bootinfo: Option<(PathBuf, bootinfo::Location)>,
}

/// Where the tegra-bootinfo store is (§9.1: the end of the last boot
/// device, on T186 and T194), with every write of the plan on that device
/// kept off it: a zero tail stops before it (REC); data over it is refused.
fn clip_to_bootinfo(
    plan: &mut BootPlan,
    devices: &[(String, u64)],
    paths: &[PathBuf],
) -> anyhow::Result<Option<(PathBuf, bootinfo::Location)>> {
    let (Some((name, len)), Some(path)) = (devices.last(), paths.last()) else {
        return Ok(None);
    };
    let Some(loc) = bootinfo::location(plan.soc, plan.medium, *len) else {
        return Ok(None);
    };
    for s in plan.steps.iter_mut().chain(plan.slot_metadata.iter_mut()) {
        if s.area != boot_plan::WriteArea::Boot || s.device != *name {
            continue;
        }
        s.span = loc
            .clip_span(s.device_offset, s.data.len(), s.span)
            .map_err(|(o, _)| {
                anyhow!(
                    "{} on {name} at {}: its data would overwrite the tegra-bootinfo store at {o}",
                    s.label,
                    s.device_offset
                )
            })?;
    }
    Ok(Some((path.clone(), loc)))
}

fn default_boot_devices(soc: Soc, kind: Option<BootDeviceKind>) -> anyhow::Result<Vec<PathBuf>> {
    let emmc = || EMMC_BOOT.iter().map(PathBuf::from).collect();
    Ok(match (kind, soc) {
        (Some(BootDeviceKind::Spi), _) => vec![PathBuf::from(SPI_BOOT)],
        (Some(_), _) | (None, Soc::T186) => emmc(),
        (None, _) => bail!(
            "cannot tell whether this {soc:?} board boots from eMMC or SPI flash: give --layout or \
             --boot-device (or boot-device= in the board configuration)"
        ),
    })
}

/// The boot medium `count` boot devices make (the SPI flash, or boot0 and
/// boot1 of the eMMC), checked against the layout's boot device.
pub fn boot_medium(count: usize, layout: Option<BootDeviceKind>) -> anyhow::Result<BootMedium> {
    let medium = match count {
        1 => BootMedium::Spi,
        2 => BootMedium::Emmc,
        n => bail!("{n} boot devices given: give boot0 and boot1 of the eMMC, or the SPI flash"),
    };
    if let Some(kind) = layout {
        if BootMedium::of(kind) != medium {
            bail!("the layout's boot device is {kind:?} but {count} boot device(s) were given");
        }
    }
    Ok(medium)
}

/// The boot devices the board configuration names (`boot-device=`), if any.
pub fn configured_boot_devices(root: &SysRoot) -> anyhow::Result<Vec<PathBuf>> {
    match root
        .board_config()
        .context("reading the board configuration")?
    {
        Some((path, text)) => Ok(BoardConfig::parse(&text)
            .with_context(|| path.display().to_string())?
            .boot_devices),
        None => Ok(Vec::new()),
    }
}

fn open_boot(paths: &[PathBuf], writable: bool) -> anyhow::Result<Linear> {
    let mut parts: Vec<Box<dyn Device>> = Vec::new();
    for p in paths {
        let w = FileWindow::open(p, writable)
            .with_context(|| format!("opening boot device {}", p.display()))?;
        parts.push(Box::new(w));
    }
    Ok(Linear::new(parts))
}

/// The user-area partitions: of `device`'s GPT when given (partition nodes
/// of a block device, windows of an image file); else udev's by-partlabel
/// links; else the eMMC's GPT.
pub fn user_area(device: Option<&Path>, root: &SysRoot) -> anyhow::Result<UserArea> {
    if let Some(dev) = device {
        return user_area_from_gpt(dev);
    }
    let links = root.path(BY_PARTLABEL);
    if links.is_dir() {
        let mut partitions = Vec::new();
        let dir = std::fs::read_dir(&links).with_context(|| links.display().to_string())?;
        for entry in dir {
            let path = entry.with_context(|| links.display().to_string())?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
                continue;
            };
            match rawdev::open(&path, false).and_then(|f| rawdev::size(&f)) {
                Ok(size) => partitions.push(UserPartition {
                    name,
                    size,
                    path,
                    base: 0,
                }),
                Err(e) => log::warn!("{}: {e}", path.display()),
            }
        }
        partitions.sort_by(|a, b| a.name.cmp(&b.name));
        return Ok(UserArea {
            partitions,
            source: links.display().to_string(),
        });
    }
    let disk = root.path(USER_DISK);
    if disk.exists() {
        return user_area_from_gpt(&disk);
    }
    Ok(UserArea {
        partitions: Vec::new(),
        source: format!("none: no {} and no {}", links.display(), disk.display()),
    })
}

fn user_area_from_gpt(dev: &Path) -> anyhow::Result<UserArea> {
    let what = || format!("reading the GPT of {}", dev.display());
    let mut target =
        sys::blockdev::Target::open(dev, sys::blockdev::Access::ReadOnly).with_context(what)?;
    // The GPT counts the disk's logical sectors (4096 bytes on a 4Kn NVMe).
    let ss = target.sector_size();
    let sectors = target.sectors();
    let gpt = crate::gpt::read::read_in(target.file(), sectors, ss)
        .with_context(what)?
        .ok_or_else(|| anyhow!("{} has no GPT", dev.display()))?;
    let block = rawdev::is_block_device(dev);
    let partitions = gpt
        .entries
        .into_iter()
        .map(|(number, e)| {
            let len = (e.last_lba + 1).saturating_sub(e.first_lba) * ss;
            let (path, base) = if block {
                (sys::blockdev::partition_path(dev, number), 0)
            } else {
                (dev.to_owned(), e.first_lba * ss)
            };
            UserPartition {
                name: e.name,
                size: len,
                path,
                base,
            }
        })
        .collect();
    Ok(UserArea {
        partitions,
        source: format!("GPT of {}", dev.display()),
    })
}

/// Reads everything, checks everything and makes the plan. Nothing is
/// written (and no `force_ro` is changed).
pub fn prepare(opts: &UpdateOptions) -> anyhow::Result<BootUpdate> {
    let (mut payload_file, payload) = open_payload(&opts.payload)?;
    if payload.header.format == PayloadFormat::V3 {
        return Err(boot_plan::BootPlanError::V3Payload)
            .with_context(|| opts.payload.display().to_string());
    }
    let identity = identify(
        &opts.sysroot,
        &IdentityRequest {
            soc: opts.soc,
            tnspec: opts.tnspec.clone(),
            machine: opts.machine.clone(),
            layout_soc: opts.layout.as_ref().and_then(|l| l.soc),
        },
    )?;
    let soc = identity
        .soc
        .ok_or_else(|| anyhow!("cannot tell the SoC family: give --soc"))?;
    if soc == Soc::T234 {
        return Err(boot_plan::BootPlanError::Soc(soc).into());
    }
    let mode = match (opts.request, soc) {
        (Request::Initialize, _) => BootMode::Initialize,
        (Request::Slot(_), Soc::T210) => return Err(crate::exit::UsageError(
            "--slot: T210 boards have no A/B boot slots (unsupported operation for t210 platform)"
                .into(),
        )
        .into()),
        (Request::Slot(slot), _) => BootMode::Update {
            slot,
            activate: false,
        },
        (Request::Inactive | Request::UpdateAndActivate(_), Soc::T210) => BootMode::Update {
            slot: Slot::A,
            activate: false,
        },
        (Request::UpdateAndActivate(slot), _) => BootMode::Update {
            slot,
            activate: true,
        },
        (Request::Inactive, _) => {
            let cmdline = opts.sysroot.cmdline().context("reading /proc/cmdline")?;
            let current = board::current_slot(&cmdline)?;
            BootMode::Update {
                slot: current.other(),
                activate: true,
            }
        }
    };

    let layout_boot = opts.layout.as_ref().and_then(|l| l.boot.as_ref());
    let boot_devices = if !opts.boot_devices.is_empty() {
        opts.boot_devices.clone()
    } else if !identity.config_boot_devices.is_empty() {
        identity.config_boot_devices.clone()
    } else {
        default_boot_devices(soc, layout_boot.map(|b| b.kind))?
    };
    let medium = boot_medium(boot_devices.len(), layout_boot.map(|b| b.kind))?;
    let mut boot = open_boot(&boot_devices, false)?;
    let devices: Vec<(String, u64)> = boot_devices
        .iter()
        .map(|p| p.display().to_string())
        .zip(boot.segment_sizes())
        .collect();
    let dev_names = joined(&boot_devices);

    let mut warnings = Vec::new();
    let (partitions, source) = if soc == Soc::T210 || mode == BootMode::Initialize {
        let b = layout_boot.ok_or_else(|| {
            anyhow!(if soc == Soc::T210 {
                "T210 boot devices carry no partition table: give --layout"
            } else {
                "--initialize writes the boot partition table from the layout: give --layout"
            })
        })?;
        let src = opts
            .layout
            .as_ref()
            .map_or(String::new(), |l| l.source.clone());
        let len: u64 = devices.iter().map(|d| d.1).sum();
        if let Some(n) = b.num_sectors.filter(|&n| n.checked_mul(512) != Some(len)) {
            warnings.push(format!(
                "the layout describes a boot device of {n} sectors, {dev_names} has {} bytes",
                len
            ));
        }
        (b.partitions.clone(), format!("layout {src}"))
    } else {
        let table = exec::read_table(&mut boot).with_context(|| {
            format!("reading the boot partition table on {dev_names} (a blank boot device needs --initialize)")
        })?;
        if let Some(diff) = layout_boot.and_then(|b| table_difference(&b.partitions, &table)) {
            warnings.push(format!(
                "the boot partition table on {dev_names} differs from the layout's ({diff}); writing by the device's table (--initialize rewrites it)"
            ));
        }
        (table, format!("partition table on {dev_names}"))
    };
    let user = user_area(opts.user_device.as_deref(), &opts.sysroot)?;
    let inventory = exec::survey(&mut boot, soc, medium, &partitions);
    let selection = tnspec::select(&payload.entries, &identity.tnspec);
    for d in &selection.dropped {
        let name = payload
            .entries
            .get(d.index as usize)
            .map_or(String::new(), |e| e.display_name());
        warnings.push(format!(
            "entry {} ({name}) is a duplicate; entry {} is used instead",
            d.index, d.kept
        ));
    }
    let targets = BootTargets {
        medium,
        devices,
        partitions,
        source,
    };
    let layout_names: Option<Vec<String>> = opts.layout.as_ref().map(|l| {
        l.user
            .partitions
            .iter()
            .map(|p| p.name.clone())
            .chain(
                l.boot
                    .iter()
                    .flat_map(|b| b.partitions.iter().map(|p| p.name.clone())),
            )
            .collect()
    });
    let input = PlanInput {
        soc,
        mode,
        payload: &payload,
        selection: &selection,
        boot: &targets,
        user: &user,
        layout_names: layout_names.as_deref(),
        inventory: Some(&inventory),
    };
    let mut guid_error = None;
    let mut guid = || {
        Guid::random().unwrap_or_else(|e| {
            guid_error = Some(e);
            Guid::NIL
        })
    };
    let mut plan = boot_plan::plan(&input, &mut payload_file, &mut guid)?;
    if let Some(e) = guid_error {
        return Err(e).context("generating partition GUIDs");
    }
    warnings.append(&mut plan.warnings);
    plan.warnings = warnings;
    let bootinfo = clip_to_bootinfo(&mut plan, &targets.devices, &boot_devices)?;
    Ok(BootUpdate {
        bootinfo,
        plan,
        identity,
        selection,
        boot_devices,
        user,
        payload: payload_file,
        sysroot: opts.sysroot.clone(),
    })
}

impl BootUpdate {
    fn run(
        &mut self,
        steps: &[BootStep],
        dry_run: bool,
        changes: &Changes,
        events: &Events,
        phase: Phase,
    ) -> anyhow::Result<Vec<StepReport>> {
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        if !dry_run {
            // Compare first: when everything is in place, a re-run stays
            // read-only, force_ro included.
            let before = self.run(steps, true, changes, events, phase)?;
            if before.iter().all(|r| r.action == StepAction::Skip) {
                for r in &before {
                    events.step_start(phase, &format!("write {}", r.label), Some(&r.partition));
                    events.step_end(Verdict::Skipped);
                }
                return Ok(before);
            }
        }
        // Restored when dropped, whatever happens below.
        let mut guards = Vec::new();
        if !dry_run {
            for dev in &self.boot_devices {
                let g = sys::emmc::enable_writes(&self.sysroot, dev)
                    .with_context(|| format!("making {} writable (force_ro)", dev.display()))?;
                guards.extend(g);
            }
        }
        let mut boot = open_boot(&self.boot_devices, !dry_run)?;
        let mut targets = Targets {
            boot: &mut boot,
            user: &mut self.user,
        };
        let run = Execution {
            dry_run,
            changes,
            events,
            phase,
        };
        let r = exec::execute(steps, &mut targets, &mut self.payload, &run);
        drop(guards);
        r
    }

    /// Compares every step (slot metadata included) with the devices and
    /// says what would be written. Writes nothing.
    pub fn dry_run(&mut self) -> anyhow::Result<Vec<StepReport>> {
        let steps: Vec<BootStep> = self
            .plan
            .steps
            .iter()
            .chain(&self.plan.slot_metadata)
            .cloned()
            .collect();
        self.run(
            &steps,
            true,
            &Changes::new(),
            &Events::silent(),
            Phase::Boot,
        )
    }

    /// Writes the boot partition table and the partitions, each verified.
    pub fn execute_partitions(
        &mut self,
        changes: &Changes,
        events: &Events,
    ) -> anyhow::Result<Vec<StepReport>> {
        let steps = std::mem::take(&mut self.plan.steps);
        let r = self.run(&steps, false, changes, events, Phase::Boot);
        self.plan.steps = steps;
        r
    }

    /// Writes the slot metadata (SMD, then SMD_b), verified; the last write.
    pub fn commit_slot_metadata(
        &mut self,
        changes: &Changes,
        events: &Events,
    ) -> anyhow::Result<Vec<StepReport>> {
        let steps = std::mem::take(&mut self.plan.slot_metadata);
        let r = self.run(&steps, false, changes, events, Phase::Commit);
        self.plan.slot_metadata = steps;
        r
    }
}

impl BootUpdate {
    /// The tegra-bootinfo store's device and place (§9.1), on T186/T194.
    pub fn bootinfo_location(&self) -> Option<&(PathBuf, bootinfo::Location)> {
        self.bootinfo.as_ref()
    }

    /// `tegra-bootinfo --initialize`, as an install does it (§9.5): the
    /// variables kept, the boot counter reset, both copies written and read
    /// back. Nothing is written when the store is already so.
    pub fn initialize_bootinfo(
        &mut self,
        changes: &Changes,
        events: &Events,
    ) -> anyhow::Result<Vec<StepReport>> {
        let Some((dev, loc)) = self.bootinfo.clone() else {
            return Ok(Vec::new());
        };
        let name = dev.display().to_string();
        let what = |e: std::io::Error| {
            anyhow::Error::new(e).context(format!("tegra-bootinfo store on {name}"))
        };
        events.step_start(Phase::Boot, "initialize tegra-bootinfo", Some("bootinfo"));
        let read = |w: &mut FileWindow| -> anyhow::Result<[Vec<u8>; 2]> {
            let mut out = [vec![0u8; bootinfo::COPY_LEN], vec![0u8; bootinfo::COPY_LEN]];
            for ((base, ext), buf) in loc.copies.iter().zip(out.iter_mut()) {
                let (b, e) = buf.split_at_mut(bootinfo::SECTOR as usize);
                w.read_at(*base, b).map_err(what)?;
                w.read_at(*ext, e).map_err(what)?;
            }
            Ok(out)
        };
        let mut w = FileWindow::open(&dev, false).map_err(what)?;
        let [a, b] = read(&mut w)?;
        let plan = bootinfo::initialize([&a, &b]).with_context(|| name.clone())?;
        let ranges = loc.ranges();
        let lo = ranges.iter().map(|r| r.0).min().unwrap_or(0);
        let hi = ranges.iter().map(|r| r.0 + r.1).max().unwrap_or(0);
        let report = |action| StepReport {
            label: "tegra-bootinfo".into(),
            partition: "bootinfo".into(),
            device: name.clone(),
            offset: lo,
            length: 2 * bootinfo::COPY_LEN as u64,
            span: hi - lo,
            sha256: String::new(),
            action,
        };
        let found = match plan.found {
            Some(i) => format!(
                "copy {} read, {} variables kept",
                bootinfo::copy_name(i),
                plan.kept
            ),
            None => "no valid copy: a new, empty store".into(),
        };
        if plan.writes.is_empty() {
            events.message(
                crate::events::Level::Info,
                format!("tegra-bootinfo on {name}: already initialized ({found})"),
            );
            events.step_end(Verdict::Skipped);
            return Ok(vec![report(StepAction::Skip)]);
        }
        let guard = sys::emmc::enable_writes(&self.sysroot, &dev)
            .with_context(|| format!("making {name} writable (force_ro)"))?;
        drop(w);
        let mut w = FileWindow::open(&dev, true).map_err(what)?;
        for (i, bytes) in &plan.writes {
            let (base, ext) = loc.copies.get(*i).copied().unwrap_or_default();
            let (b, e) = bytes.split_at(bootinfo::SECTOR as usize);
            changes.mark();
            w.write_at(ext, e).map_err(what)?;
            w.write_at(base, b).map_err(what)?;
            w.sync(ext, e.len() as u64).map_err(what)?;
            w.sync(base, bootinfo::SECTOR).map_err(what)?;
        }
        let [a, b] = read(&mut w)?;
        drop(guard);
        for (i, bytes) in &plan.writes {
            if if *i == 0 { &a } else { &b } != bytes {
                events.step_end(Verdict::Failed);
                bail!(
                    "tegra-bootinfo store on {name}: copy {} reads back different",
                    bootinfo::copy_name(*i)
                );
            }
        }
        events.message(
            crate::events::Level::Info,
            format!("tegra-bootinfo on {name}: initialized ({found})"),
        );
        events.step_end(Verdict::Ok);
        Ok(vec![report(StepAction::Write)])
    }
}

/// Why the boot device's partition table is not the one `area` describes,
/// or `None` when it is: the question tegra-bootloader-update's
/// `--needs-repartition` answers. An update writes by the device's table,
/// so a release whose boot partitions moved needs them initialized. (T210
/// boot devices carry no table; do not ask for them.)
pub fn boot_table_mismatch(
    boot_devices: &[PathBuf],
    area: &crate::layout::BootArea,
) -> anyhow::Result<Option<String>> {
    let mut dev = open_boot(boot_devices, false)?;
    let names = joined(boot_devices);
    Ok(match exec::read_table(&mut dev) {
        Err(e) => Some(format!("{names} has no valid boot partition table ({e:#})")),
        Ok(table) => table_difference(&area.partitions, &table).map(|diff| {
            format!("the boot partition table on {names} differs from the layout's ({diff})")
        }),
    })
}

/// How the boot partition table on the device differs from the layout's,
/// or `None` when they are the same.
fn table_difference(
    layout: &[crate::layout::BootPartition],
    device: &[crate::layout::BootPartition],
) -> Option<String> {
    if layout == device {
        return None;
    }
    Some(match layout.iter().zip(device).find(|(a, b)| a != b) {
        Some((a, b)) => format!(
            "first difference: the layout's {} at {} ({} bytes), the device's {} at {} ({} bytes)",
            a.name, a.offset, a.size, b.name, b.offset, b.size
        ),
        None => format!(
            "{} partitions on the device, {} in the layout",
            device.len(),
            layout.len()
        ),
    })
}

/// Boot device paths as messages name them: `boot0 + boot1`.
fn joined(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" + ")
}

/// The slot the bootloader boots next, from the slot metadata on the boot
/// device (`SMD`, else `SMD_b`, the first valid copy): the bootable slot
/// with the highest priority, A on a tie. `None` when the layout has no
/// SMD partitions (T210) or no copy is valid.
pub fn active_slot(
    boot_devices: &[PathBuf],
    area: &crate::layout::BootArea,
) -> anyhow::Result<Option<Slot>> {
    let mut dev = open_boot(boot_devices, false)?;
    let mut copies: Vec<Option<Vec<u8>>> = Vec::new();
    for name in ["SMD", "SMD_b"] {
        let copy = match area.by_name(name) {
            Some(p) => {
                let mut buf = vec![0u8; super::smd::SMD_LEN];
                dev.read_at(p.offset, &mut buf)
                    .with_context(|| format!("reading {name} from the boot device"))?;
                Some(buf)
            }
            None => None,
        };
        copies.push(copy);
    }
    if copies.iter().all(Option::is_none) {
        return Ok(None);
    }
    let refs: Vec<Option<&[u8]>> = copies.iter().map(|c| c.as_deref()).collect();
    let Ok((smd, _)) = super::smd::first_valid(&refs) else {
        return Ok(None);
    };
    let (a, b) = (smd.slot(Slot::A), smd.slot(Slot::B));
    Ok(match (a.priority, b.priority) {
        (0, 0) => None,
        (pa, pb) if pb > pa && smd.maxslots() > 1 => Some(Slot::B),
        _ => Some(Slot::A),
    })
}
