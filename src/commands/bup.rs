//! `sysinstall bup list|check|write`.

use super::Context;
use crate::bup::board::Slot;
use crate::bup::boot_plan::{BootMode, BootPlan};
use crate::bup::exec::{StepAction, StepReport};
use crate::bup::payload::{Payload, PayloadFormat, MAGIC_V3};
use crate::bup::t234::{self, KernelWrite, Missing, PayloadKind};
use crate::bup::t234_check;
use crate::bup::tnspec;
use crate::bup::update::{self, IdentityRequest, Request, UpdateOptions};

use crate::cli::{BupCheckArgs, BupWriteArgs, LayoutSource, ReportFormat, SlotArg};
use crate::events::{Event, EventKind, Events, Sink};
use crate::exit;

use crate::layout::{Layout, Soc};
use crate::sys::board::SysRoot;
use crate::uefi::capsule::{self, Capsule, FileKind};
use crate::uefi::preflight::{QspiLayout, Refusal};
use anyhow::Context as _;
use serde::Serialize;
use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

fn sysroot(dir: &Option<PathBuf>) -> SysRoot {
    dir.as_ref().map_or_else(SysRoot::default, SysRoot::new)
}

/// Loads `--layout` for the user-area disk's size: `--disk-sectors`, else
/// `user_device`'s size, else the XML's `num_sectors`, else the size of the
/// board's user disk (`/dev/mmcblk0` under `root`); `options` names what
/// the command accepts, for the error when none of them is there. Only the
/// names and the boot area matter to the boot partitions, but a layout is
/// placed whole, and t210 XMLs and partition_table CSVs carry no size.
fn load_layout(
    src: &LayoutSource,
    disk_sectors: Option<u64>,
    user_device: Option<&Path>,
    root: &SysRoot,
    options: &str,
) -> anyhow::Result<Option<Layout>> {
    let Some(path) = src.layout.as_deref() else {
        return Ok(None);
    };
    let device = match (disk_sectors, user_device) {
        (None, Some(dev)) => Some(crate::sys::blockdev::device_size(dev)?),
        _ => None,
    };
    let sized = device.is_some() || disk_sectors.is_some();
    let err = match super::layout::load(path, &src.set, disk_sectors, device) {
        Ok(l) => return Ok(Some(l)),
        Err(e) => e,
    };
    let unsized_layout = err
        .downcast_ref::<crate::layout::LayoutError>()
        .filter(|e| !sized && e.rule.ends_with(crate::layout::NO_DISK_SIZE))
        .cloned();
    let Some(mut e) = unsized_layout else {
        return Err(err);
    };
    let disk = root.path(update::USER_DISK);
    if disk.exists() {
        let size = crate::sys::blockdev::device_size(&disk)
            .with_context(|| format!("taking the disk size for {} from the user disk", e.file))?;
        return super::layout::load(path, &src.set, None, Some(size)).map(Some);
    }
    e.rule = e.rule.replace(crate::layout::NO_DISK_SIZE, options);
    Err(e.into())
}

/// `1,234,567`, as NVIDIA's lister prints sizes.
fn grouped(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn accessory(p: &Payload) -> String {
    let a = &p.header.accessory;
    match (p.header.accessory_len(), <[u8; 8]>::try_from(a.as_slice())) {
        (0, _) => "none".into(),
        (8, Ok(q)) => format!("{:#018x}", u64::from_le_bytes(q)),
        (n, _) => {
            let hex = crate::bytes::hex(a);
            let more = if n as usize > a.len() { "..." } else { "" };
            format!("{n} bytes: {hex}{more}")
        }
    }
}

/// The capsule and its versions as text (fields, not `flatten`: serde's
/// map path for a flattened struct costs kilobytes of the binary).
#[derive(Serialize)]
struct CapsuleJson<'a> {
    file_size: u64,
    header: &'a crate::uefi::capsule::CapsuleHeader,
    fmp: &'a crate::uefi::capsule::FmpHeader,
    image: &'a crate::uefi::capsule::ImageHeader,
    auth: &'a Option<crate::uefi::capsule::Authentication>,
    depex_len: Option<u64>,
    payload_header: &'a crate::uefi::capsule::PayloadHeader,
    payload: &'a std::ops::Range<u64>,
    fw_version_string: String,
    lowest_supported_version_string: String,
}

impl<'a> CapsuleJson<'a> {
    fn of(c: &'a Capsule) -> CapsuleJson<'a> {
        CapsuleJson {
            file_size: c.file_size,
            header: &c.header,
            fmp: &c.fmp,
            image: &c.image,
            auth: &c.auth,
            depex_len: c.depex_len,
            payload_header: &c.payload_header,
            payload: &c.payload,
            fw_version_string: c.fw_version().to_string(),
            lowest_supported_version_string: c.lowest_supported_version().to_string(),
        }
    }
}

#[derive(Serialize)]
struct ListJson<'a> {
    file: String,
    version_string: String,
    writable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    capsule: Option<CapsuleJson<'a>>,
    #[serde(flatten)]
    payload: &'a Payload,
}

/// The first 16 bytes of a file, which tell a capsule from a payload.
fn read_head(file: &Path) -> anyhow::Result<Vec<u8>> {
    let mut head = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .with_context(|| file.display().to_string())?;
    Ok(head)
}

fn file_kind(file: &Path) -> anyhow::Result<FileKind> {
    Ok(capsule::detect(&read_head(file)?))
}

fn capsule_lines(c: &Capsule) -> String {
    let mut out = String::new();
    let h = &c.header;
    let _ = writeln!(
        out,
        "Capsule:      {} (FMP), header {} bytes, flags {:#010x}, {} bytes",
        h.guid,
        h.header_size,
        h.flags,
        grouped(h.image_size.into())
    );
    let _ = writeln!(
        out,
        "FMP header:   version {}, {} embedded driver(s), {} payload(s)",
        c.fmp.version, c.fmp.embedded_driver_count, c.fmp.payload_item_count
    );
    let i = &c.image;
    let mut image = format!(
        "Image:        header v{}, type {}, index {}, {} bytes",
        i.version,
        i.update_image_type_id,
        i.update_image_index,
        grouped(i.update_image_size.into())
    );
    if i.update_vendor_code_size > 0 {
        image.push_str(&format!(
            " + {} vendor code",
            grouped(i.update_vendor_code_size.into())
        ));
    }
    if let Some(hw) = i.update_hardware_instance {
        image.push_str(&format!(", hardware instance {hw}"));
    }
    let _ = writeln!(out, "{image}");
    match &c.auth {
        Some(a) => {
            let _ = writeln!(
                out,
                "Signature:    PKCS7, {} bytes, monotonic count {}",
                grouped(a.cert_data_len.into()),
                a.monotonic_count
            );
        }
        None => {
            let _ = writeln!(
                out,
                "Signature:    none (the firmware refuses unsigned capsules)"
            );
        }
    }
    if let Some(d) = c.depex_len {
        let _ = writeln!(out, "Dependency:   {d} bytes");
    }
    let _ = writeln!(
        out,
        "FW version:   {} ({:#010x})",
        c.fw_version(),
        c.payload_header.fw_version
    );
    let _ = writeln!(
        out,
        "Lowest supp.: {} ({:#010x})",
        c.lowest_supported_version(),
        c.payload_header.lowest_supported_version
    );
    let _ = writeln!(
        out,
        "Payload:      bytes {}..{} of the capsule ({} bytes)",
        c.payload.start,
        c.payload.end,
        grouped(c.payload_len())
    );
    out
}

/// Runs `sysinstall bup list`.
pub fn list(file: &Path, format: ReportFormat, _ctx: &Context) -> anyhow::Result<u8> {
    let (capsule, p) = match file_kind(file)? {
        FileKind::Capsule => {
            let o = t234_check::open(file)?;
            (o.capsule, o.payload)
        }
        _ => (None, update::open_payload(file)?.1),
    };
    let h = &p.header;
    if format == ReportFormat::Json {
        let j = ListJson {
            file: file.display().to_string(),
            version_string: h.version_string(),
            writable: h.format == PayloadFormat::V2,
            capsule: capsule.as_ref().map(CapsuleJson::of),
            payload: &p,
        };
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(exit::SUCCESS);
    }
    let mut out = String::new();
    let _ = writeln!(out, "File:         {}", file.display());
    if let Some(c) = &capsule {
        out.push_str(&capsule_lines(c));
        let _ = writeln!(out);
    }
    let _ = writeln!(out, "Magic:        {}", h.format.magic());
    let _ = writeln!(
        out,
        "Version:      {} ({:#010x})",
        h.version_string(),
        h.version
    );
    let _ = writeln!(out, "Blob size:    {} bytes", grouped(h.blob_size.into()));
    let _ = writeln!(out, "Header size:  {} bytes", h.header_size);
    let _ = writeln!(out, "Entry count:  {}", h.entry_count);
    let _ = writeln!(out, "Type:         {} (update)", h.blob_type);
    let _ = writeln!(
        out,
        "Uncompressed: {} bytes",
        grouped(h.uncompressed_size.into())
    );
    let _ = writeln!(out, "Accessory:    {}", accessory(&p));
    if h.format == PayloadFormat::V3 {
        let _ = writeln!(
            out,
            "Note:         T234 payload: bup check checks it; UEFI writes it from a capsule, not bup write"
        );
    }
    let _ = writeln!(out);
    let name_w = p
        .entries
        .iter()
        .map(|e| e.name_lossy().len())
        .max()
        .unwrap_or(4)
        .max(4);
    let _ = writeln!(
        out,
        "{:>3}  {:<name_w$}  {:>10}  {:>10}  {:>7}  {:>2}  SPEC",
        "#", "NAME", "OFFSET", "LENGTH", "VERSION", "OP"
    );
    for e in &p.entries {
        let _ = writeln!(
            out,
            "{:>3}  {:<name_w$}  {:>10}  {:>10}  {:>7x}  {:>2}  {}",
            e.index,
            e.display_name(),
            e.offset,
            e.length,
            e.version,
            e.op_mode,
            e.spec.escape_ascii()
        );
    }
    print!("{out}");
    Ok(exit::SUCCESS)
}

/// The layout as plan targets, for checking sizes without devices.
#[derive(Serialize)]
struct SelectedJson {
    index: u32,
    name: String,
    op_mode: u32,
    spec: String,
    length: u32,
    how: tnspec::MatchKind,
}

#[derive(Serialize)]
struct CheckJson<'a> {
    file: String,
    identity: &'a update::Identity,
    compat: &'a Option<String>,
    selected: Vec<SelectedJson>,
    dropped: &'a [tnspec::Dropped],
    missing: &'a [String],
    plan: Option<&'a BootPlan>,
    problems: &'a [String],
    ok: bool,
}

/// Runs `sysinstall bup check`.
pub fn check(args: &BupCheckArgs, ctx: &Context) -> anyhow::Result<u8> {
    let head = read_head(&args.file)?;
    if capsule::detect(&head) == FileKind::Capsule || head == MAGIC_V3 {
        return check_t234(args, ctx);
    }
    let (mut file, payload) = update::open_payload(&args.file)?;
    let root = sysroot(&args.sysroot);
    let layout = load_layout(
        &args.layout,
        args.disk_sectors,
        None,
        &root,
        "give --disk-sectors",
    )?;
    let identity = update::identify(
        &root,
        &IdentityRequest {
            soc: args.soc.map(Soc::from),
            tnspec: args.board.tnspec.clone(),
            machine: args.board.machine.clone(),
            layout_soc: layout.as_ref().and_then(|l| l.soc),
        },
    )?;
    let sel = tnspec::select(&payload.entries, &identity.tnspec);
    let crate::bup::check::Outcome {
        planned,
        mut problems,
        notes,
    } = crate::bup::check::check(&payload, &mut file, &sel, identity.soc, layout.as_ref());
    problems.dedup();
    let ok = problems.is_empty();
    let selected: Vec<SelectedJson> = sel
        .selected
        .iter()
        .filter_map(|s| {
            let e = payload.entries.get(s.index as usize)?;
            Some(SelectedJson {
                index: e.index,
                name: e.name_lossy().into_owned(),
                op_mode: e.op_mode,
                spec: e.spec_lossy().into_owned(),
                length: e.length,
                how: s.how,
            })
        })
        .collect();
    if args.format == ReportFormat::Json {
        let j = CheckJson {
            file: args.file.display().to_string(),
            identity: &identity,
            compat: &sel.compat,
            selected,
            dropped: &sel.dropped,
            missing: &sel.missing,
            plan: planned.as_ref(),
            problems: &problems,
            ok,
        };
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(if ok {
            exit::SUCCESS
        } else {
            exit::CHECK_FAILED
        });
    }
    let mut out = String::new();
    let h = &payload.header;
    let _ = writeln!(
        out,
        "Payload:         {} ({} {}, {} entries)",
        args.file.display(),
        h.format.magic(),
        h.version_string(),
        h.entry_count
    );
    let soc_text = identity.soc.map_or("unknown".into(), |s| format!("{s:?}"));
    let _ = writeln!(out, "SoC:             {soc_text} ({})", identity.soc_source);
    let _ = writeln!(
        out,
        "Native TNSPEC:   {} ({})",
        sel.tnspec, identity.tnspec_source
    );
    if let Some(c) = &sel.compat {
        let _ = writeln!(out, "Compatible with: {c}");
    }
    let _ = writeln!(out, "\nSelected entries ({}):", selected.len());
    for s in &selected {
        let how = match s.how {
            tnspec::MatchKind::Tnspec => "tnspec",
            tnspec::MatchKind::Compat => "compat",
            tnspec::MatchKind::Common => "common",
        };
        let _ = writeln!(
            out,
            "  {:>3}  {:<20} op {}  {:<6}  {:>10}  {}",
            s.index, s.name, s.op_mode, how, s.length, s.spec
        );
    }
    for d in &sel.dropped {
        let _ = writeln!(
            out,
            "  duplicate entry {} not used (entry {} is)",
            d.index, d.kept
        );
    }
    if !sel.missing.is_empty() {
        let _ = writeln!(out, "Missing entries for: {}", sel.missing.join(", "));
    }
    if let Some(p) = &planned {
        let _ = writeln!(out, "\nPartitions (layout, --initialize):");
        for s in p.steps.iter().filter(|s| s.label == s.partition) {
            let _ = writeln!(
                out,
                "  {:<20} {:>10} of {:>10} bytes",
                s.partition,
                s.data.len(),
                s.partition_size
            );
        }
        for n in &p.not_written {
            let _ = writeln!(out, "  {:<20} not written: {}", n.partition, n.reason);
        }
    }
    for n in &notes {
        let _ = writeln!(out, "Note: {n}");
    }
    if ok {
        let _ = writeln!(out, "PASS: the payload can be installed on this board");
    }
    for p in &problems {
        let _ = writeln!(out, "FAIL: {p}");
    }
    print!("{out}");
    Ok(if ok {
        exit::SUCCESS
    } else {
        exit::CHECK_FAILED
    })
}

/// Progress lines on stderr (`-v`), one per finished step.
struct LogSink;

impl Sink for LogSink {
    fn emit(&mut self, e: &Event) {
        if let (EventKind::StepEnd, Some(step), Some(v)) = (&e.kind, &e.step, e.verdict) {
            log::info!("{step}: {v:?}");
        }
    }
}

fn mode_text(p: &BootPlan) -> String {
    match (p.soc, p.mode) {
        (Soc::T210, BootMode::Initialize) => "initialize (every partition, VER last; version check forced)".into(),
        (Soc::T210, _) => "update (every partition, VER last)".into(),
        (_, BootMode::Initialize) => {
            "initialize (both slots, single partitions, partition table, slot metadata with A active)".into()
        }
        (_, BootMode::Update { slot, activate }) => format!(
            "update slot {}{}",
            slot.letter(),
            if activate {
                ", then mark it active"
            } else {
                " (slot metadata untouched)"
            }
        ),
    }
}

fn report_table(reports: &[StepReport], dry_run: bool) -> String {
    let mut out = String::new();
    let lw = reports
        .iter()
        .map(|r| r.label.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let pw = reports
        .iter()
        .map(|r| r.partition.len())
        .max()
        .unwrap_or(9)
        .max(9);
    let dw = reports
        .iter()
        .map(|r| r.device.len())
        .max()
        .unwrap_or(6)
        .max(6);
    let _ = writeln!(
        out,
        "{:>3}  {:<lw$}  {:<pw$}  {:<dw$}  {:>10}  {:>9}  {:>9}  ACTION",
        "#", "STEP", "PARTITION", "DEVICE", "OFFSET", "LENGTH", "SPAN"
    );
    for (i, r) in reports.iter().enumerate() {
        let action = match (r.action, dry_run) {
            (StepAction::Write, true) => "write",
            (StepAction::Write, false) => "written",
            (StepAction::Skip, true) => "skip",
            (StepAction::Skip, false) => "skipped",
        };
        let _ = writeln!(
            out,
            "{:>3}  {:<lw$}  {:<pw$}  {:<dw$}  {:>10}  {:>9}  {:>9}  {action}",
            i + 1,
            r.label,
            r.partition,
            r.device,
            r.offset,
            r.length,
            r.span
        );
    }
    out
}

/// Runs `sysinstall bup write`.
pub fn write(args: &BupWriteArgs, ctx: &Context) -> anyhow::Result<u8> {
    let request = match (args.initialize, args.slot) {
        (true, _) => Request::Initialize,
        (false, Some(SlotArg::A)) => Request::Slot(Slot::A),
        (false, Some(SlotArg::B)) => Request::Slot(Slot::B),
        (false, None) => Request::Inactive,
    };
    let root = sysroot(&args.sysroot);
    let layout = load_layout(
        &args.layout,
        args.disk_sectors,
        args.user_device.as_deref(),
        &root,
        "give --disk-sectors or --user-device",
    )?;
    let opts = UpdateOptions {
        payload: args.file.clone(),
        request,
        soc: args.soc.map(Soc::from),
        layout,
        boot_devices: args.boot_devices.clone(),
        user_device: args.user_device.clone(),
        tnspec: args.board.tnspec.clone(),
        machine: args.board.machine.clone(),
        sysroot: root,
    };
    let mut prepared = update::prepare(&opts).context("bup write")?;
    let p = &prepared.plan;
    let mut out = String::new();
    let _ = writeln!(out, "Native TNSPEC:   {}", p.tnspec);
    if let Some(c) = &p.compat {
        let _ = writeln!(out, "Compatible with: {c}");
    }
    let _ = writeln!(out, "Mode:            {}", mode_text(p));
    let devs: Vec<String> = prepared
        .boot_devices
        .iter()
        .map(|d| d.display().to_string())
        .collect();
    let _ = writeln!(out, "Boot device:     {} ({})", devs.join(" + "), p.medium);
    let _ = writeln!(out, "User area:       {}", prepared.user.source);
    for n in &p.not_written {
        let _ = writeln!(out, "Not written:     {} ({})", n.partition, n.reason);
    }
    for w in &p.warnings {
        log::warn!("{w}");
    }
    print!("{out}");

    if args.dry_run {
        let reports = prepared.dry_run()?;
        print!("{}", report_table(&reports, true));
        let n = reports
            .iter()
            .filter(|r| r.action == StepAction::Write)
            .count();
        println!(
            "Dry run: {n} write(s), {} already in place; nothing written",
            reports.len() - n
        );
        return Ok(exit::SUCCESS);
    }
    let events = if ctx.quiet {
        Events::silent()
    } else {
        Events::new(vec![Box::new(LogSink)])
    };
    let mut reports = prepared.execute_partitions(&ctx.changes, &events)?;
    reports.extend(prepared.commit_slot_metadata(&ctx.changes, &events)?);
    print!("{}", report_table(&reports, false));
    let n = reports
        .iter()
        .filter(|r| r.action == StepAction::Write)
        .count();
    let mut summary = format!(
        "{n} written and verified, {} already in place",
        reports.len() - n
    );
    let active = match prepared.plan.mode {
        _ if prepared.plan.slot_metadata.is_empty() => None,
        BootMode::Initialize => Some(Slot::A),
        BootMode::Update { slot, .. } => Some(slot),
    };
    if let Some(slot) = active {
        summary.push_str(&format!(
            "; slot {} marked active for the next boot",
            slot.letter()
        ));
    }
    println!("{summary}");
    Ok(exit::SUCCESS)
}

#[derive(Serialize)]
struct T234CheckJson<'a> {
    file: String,
    soc: &'static str,
    payload_kind: PayloadKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    capsule: Option<CapsuleJson<'a>>,
    board: &'a t234_check::Board,
    selected: Vec<SelectedJson>,
    missing: Vec<&'a str>,
    missing_detail: &'a [Missing],
    refusals: &'a [Refusal],
    kernel_writes: &'a [KernelWrite],
    problems: &'a [String],
    notes: &'a [String],
    ok: bool,
}

/// `bup check` of a T234 payload or capsule: the firmware's choice for the
/// board, what it requires, the capsule's preflight refusals (with the
/// running firmware's facts when run on the board), the kernel partitions.
fn check_t234(args: &BupCheckArgs, _ctx: &Context) -> anyhow::Result<u8> {
    let mut opened = t234_check::open(&args.file)?;
    let root = sysroot(&args.sysroot);
    let layout = load_layout(
        &args.layout,
        args.disk_sectors,
        None,
        &root,
        "give --disk-sectors",
    )?;
    let board = t234_check::read_board(
        &root,
        &IdentityRequest {
            soc: args.soc.map(Soc::from),
            tnspec: args.board.tnspec.clone(),
            machine: args.board.machine.clone(),
            layout_soc: layout.as_ref().and_then(|l| l.soc),
        },
    )?;
    let sizes: Option<Vec<(String, u64)>> = layout.as_ref().map(|l| {
        l.user
            .partitions
            .iter()
            .map(|p| (p.name.clone(), p.size_bytes(l.user.sector_size)))
            .collect()
    });
    let slots = [Slot::A, Slot::B];
    let mut out = t234_check::check(
        &mut opened,
        &t234_check::CheckInput {
            specs: &board.specs,
            firmware: board.firmware.as_ref(),
            qspi_layout: QspiLayout::Unknown,
            kernel_slots: &slots,
            partition_sizes: sizes.as_deref(),
        },
    )?;
    if let Some((s, from)) = board
        .identity
        .as_ref()
        .and_then(|i| i.soc.map(|s| (s, i.soc_source.clone())))
        .filter(|(s, _)| *s != Soc::T234)
    {
        out.problems.insert(
            0,
            format!("this is a {s:?} board ({from}); NVIDIA__BLOB__V3 payloads and capsules are for T234"),
        );
    }
    if let Some(l) = layout
        .as_ref()
        .filter(|l| l.soc.is_some_and(|s| s != Soc::T234))
    {
        out.notes
            .push(format!("the layout {} is not a T234 layout", l.source));
    }
    let ok = out.ok();
    let p = &opened.payload;
    let selected: Vec<SelectedJson> = out
        .selection
        .selected
        .iter()
        .filter_map(|s| {
            let e = p.entries.get(s.index as usize)?;
            Some(SelectedJson {
                index: e.index,
                name: e.name_lossy().into_owned(),
                op_mode: e.op_mode,
                spec: e.spec_lossy().into_owned(),
                length: e.length,
                how: s.how,
            })
        })
        .collect();
    let code = if ok {
        exit::SUCCESS
    } else {
        exit::CHECK_FAILED
    };
    if args.format == ReportFormat::Json {
        let j = T234CheckJson {
            file: args.file.display().to_string(),
            soc: "T234",
            payload_kind: out.kind,
            capsule: opened.capsule.as_ref().map(CapsuleJson::of),
            board: &board,
            selected,
            missing: out.missing.iter().map(|m| m.name.as_str()).collect(),
            missing_detail: &out.missing,
            refusals: &out.refusals,
            kernel_writes: &out.kernel_writes,
            problems: &out.problems,
            notes: &out.notes,
            ok,
        };
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(code);
    }
    let mut text = String::new();
    let h = &p.header;
    let kind = match out.kind {
        PayloadKind::Firmware => "firmware",
        PayloadKind::Kernel => "kernel",
    };
    let _ = writeln!(
        text,
        "Payload:         {} ({} {}, {} entries, {kind})",
        args.file.display(),
        h.format.magic(),
        h.version_string(),
        h.entry_count
    );
    if let Some(c) = &opened.capsule {
        let _ = writeln!(
            text,
            "Capsule:         image type {}, firmware {}, lowest supported {}, {}",
            c.image_type(),
            c.fw_version(),
            c.lowest_supported_version(),
            match c.monotonic_count() {
                Some(m) => format!("signed (monotonic count {m})"),
                None => "not signed".into(),
            }
        );
    }
    let source = |s: t234::SpecSource| match s {
        t234::SpecSource::Variable => "variable".to_string(),
        t234::SpecSource::Derived => format!(
            "from {}",
            board
                .derived_from
                .as_deref()
                .unwrap_or("the board's identity")
        ),
        t234::SpecSource::FirmwareDefault => "firmware default".into(),
    };
    let sp = &board.specs;
    let _ = writeln!(
        text,
        "Platform spec:   {} ({})",
        sp.full.as_deref().unwrap_or("none"),
        source(sp.full_source)
    );
    let _ = writeln!(
        text,
        "Compatible spec: {} ({})",
        sp.compat,
        source(sp.compat_source)
    );
    let _ = writeln!(
        text,
        "Fuse:            {}",
        if sp.production {
            "production"
        } else {
            "not production (the 5th field is 0)"
        }
    );
    let running = board
        .firmware
        .as_ref()
        .and_then(|f| f.system_entry(opened.capsule.as_ref().map(Capsule::image_type)));
    match running {
        Some(e) => {
            let _ = writeln!(
                text,
                "Running firmware: {}, lowest supported {} (ESRT {})",
                e.fw_version, e.lowest_supported_fw_version, e.name
            );
        }
        None => {
            let _ = writeln!(text, "Running firmware: unknown (no ESRT)");
        }
    }
    let _ = writeln!(text, "\nSelected entries ({}):", selected.len());
    for s in &selected {
        let how = match s.how {
            tnspec::MatchKind::Tnspec => "full",
            tnspec::MatchKind::Compat => "compat",
            tnspec::MatchKind::Common => "common",
        };
        let _ = writeln!(
            text,
            "  {:>3}  {:<24} op {}  {:<6}  {:>10}  {}",
            s.index, s.name, s.op_mode, how, s.length, s.spec
        );
    }
    if !out.kernel_writes.is_empty() {
        let _ = writeln!(text, "\nKernel partitions:");
        for w in &out.kernel_writes {
            let _ = writeln!(
                text,
                "  {:<14} entry {:>3} ({}, {} bytes)",
                w.partition, w.entry, w.image, w.length
            );
        }
    }
    for n in &out.notes {
        let _ = writeln!(text, "Note: {n}");
    }
    if ok {
        let _ = writeln!(
            text,
            "PASS: {}",
            match out.kind {
                PayloadKind::Firmware => "the firmware would take this for this board",
                PayloadKind::Kernel => "the kernel partitions can be written for this board",
            }
        );
    }
    for p in &out.problems {
        let _ = writeln!(text, "FAIL: {p}");
    }
    print!("{text}");
    Ok(code)
}
