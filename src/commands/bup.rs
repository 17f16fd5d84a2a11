//! `sysinstall bup list|check|write`.

use super::Context;
use crate::bup::board::Slot;
use crate::bup::boot_plan::{BootMode, BootPlan};
use crate::bup::exec::{StepAction, StepReport};
use crate::bup::payload::{Payload, PayloadFormat};
use crate::bup::tnspec;
use crate::bup::update::{self, IdentityRequest, Request, UpdateOptions};

use crate::cli::{BupCheckArgs, BupWriteArgs, LayoutSource, ReportFormat, SlotArg, SocArg};
use crate::events::{Event, EventKind, Events, Sink};
use crate::exit;

use crate::layout::{Layout, Soc};
use crate::sys::board::SysRoot;
use anyhow::Context as _;
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn soc(arg: SocArg) -> Soc {
    match arg {
        SocArg::T186 => Soc::T186,
        SocArg::T194 => Soc::T194,
        SocArg::T210 => Soc::T210,
    }
}

fn sysroot(dir: &Option<PathBuf>) -> SysRoot {
    dir.as_ref().map_or_else(SysRoot::default, SysRoot::new)
}

fn load_layout(src: &LayoutSource) -> anyhow::Result<Option<Layout>> {
    src.layout
        .as_deref()
        .map(|path| super::layout::load(path, &src.set, None))
        .transpose()
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
            let hex: String = a.iter().map(|b| format!("{b:02x}")).collect();
            let more = if n as usize > a.len() { "..." } else { "" };
            format!("{n} bytes: {hex}{more}")
        }
    }
}

#[derive(Serialize)]
struct ListJson<'a> {
    file: String,
    version_string: String,
    writable: bool,
    #[serde(flatten)]
    payload: &'a Payload,
}

/// Runs `sysinstall bup list`.
pub fn list(file: &Path, format: ReportFormat, _ctx: &Context) -> anyhow::Result<u8> {
    let (_, p) = update::open_payload(file)?;
    let h = &p.header;
    if format == ReportFormat::Json {
        let j = ListJson {
            file: file.display().to_string(),
            version_string: h.version_string(),
            writable: h.format == PayloadFormat::V2,
            payload: &p,
        };
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(exit::SUCCESS);
    }
    let mut out = String::new();
    let _ = writeln!(out, "File:         {}", file.display());
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
            "Note:         R35 (T234) payload: listed only, writing it is not supported yet"
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
pub fn check(args: &BupCheckArgs, _ctx: &Context) -> anyhow::Result<u8> {
    let (mut file, payload) = update::open_payload(&args.file)?;
    let layout = load_layout(&args.layout)?;
    let root = sysroot(&args.sysroot);
    let identity = update::identify(
        &root,
        &IdentityRequest {
            soc: args.soc.map(soc),
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
    let opts = UpdateOptions {
        payload: args.file.clone(),
        request,
        soc: args.soc.map(soc),
        layout: load_layout(&args.layout)?,
        boot_devices: args.boot_devices.clone(),
        user_device: args.user_device.clone(),
        tnspec: args.board.tnspec.clone(),
        machine: args.board.machine.clone(),
        sysroot: sysroot(&args.sysroot),
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
