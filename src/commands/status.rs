//! `sysinstall status`: the Orin boot firmware after an update, read from
//! the ESRT and the boot-chain variables ([`crate::uefi::status`]), and with
//! `--stage` the second capsule pass that brings the other chain to the
//! running version: the capsule checked for this board and this firmware,
//! copied into the ESP and read back, then the variables set in the plan's
//! order ([`crate::uefi::varplan::second_pass`]).

use super::Context;
use crate::bup::t234::PayloadKind;
use crate::bup::t234_check;
use crate::bup::update::IdentityRequest;
use crate::cli::{ReportFormat, StatusArgs};
use crate::exit;
use crate::sys::board::SysRoot;
use crate::sys::efivarfs::{self, Efivarfs};
use crate::sys::{esrt, vfat};
use crate::uefi::esrt::FirmwareState;
use crate::uefi::preflight::QspiLayout;
use crate::uefi::status::{self, CapsuleOutcome, Report, SecondPass, StageDecision};
use crate::uefi::varplan::{self, Applied};
use crate::uefi::vars;
use anyhow::{bail, Context as _};
use serde::Serialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The ESP by partition name (NVIDIA's layouts call it `esp`).
const ESP_LINK: &str = "dev/disk/by-partlabel/esp";
/// Where the ESP partition is mounted for the copy.
const ESP_MOUNT: &str = "run/sysinstall/esp";

#[derive(Debug, Serialize)]
struct OpResult {
    op: String,
    result: Applied,
}

#[derive(Debug, Serialize)]
struct Staged {
    capsule: String,
    version: String,
    esp: String,
    bytes: u64,
    operations: Vec<OpResult>,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    report: &'a Report,
    firmware: &'a FirmwareState,
    #[serde(skip_serializing_if = "Option::is_none")]
    staged: Option<&'a Staged>,
    #[serde(skip_serializing_if = "Option::is_none")]
    not_staged: Option<&'a str>,
}

/// Runs `sysinstall status`.
pub fn run(args: &StatusArgs, ctx: &Context) -> anyhow::Result<u8> {
    let root = args
        .sysroot
        .as_ref()
        .map_or_else(SysRoot::default, SysRoot::new);
    let mut vars = Efivarfs::new(root.path(efivarfs::EFIVARS));
    let esrt_dir = root.path(esrt::ESRT);
    if !vars.present() && !esrt_dir.is_dir() {
        bail!(
            "no UEFI firmware information under {}: the system was not booted through UEFI, or \
             efivarfs is not mounted",
            root.path("sys/firmware/efi").display()
        );
    }
    let mut state = esrt::firmware_state(&esrt_dir, &mut vars)?;
    let mut report = status::report(&state);
    let mut staged = None;
    let mut not_staged = None;
    if let Some(capsule) = &args.stage {
        match stage(args, ctx, &root, &mut vars, &state, &report, capsule)? {
            Ok(s) => {
                staged = Some(s);
                state = esrt::firmware_state(&esrt_dir, &mut vars)?;
                report = status::report(&state);
            }
            Err(why) => not_staged = Some(why),
        }
    }
    let code = if args.stage.is_some() || !report.needs_attention() {
        exit::SUCCESS
    } else {
        exit::CHECK_FAILED
    };
    if args.json || args.format == ReportFormat::Json {
        let j = StatusJson {
            report: &report,
            firmware: &state,
            staged: staged.as_ref(),
            not_staged: not_staged.as_deref(),
        };
        println!("{}", serde_json::to_string_pretty(&j)?);
        return Ok(code);
    }
    let mut out = table(&report);
    if let Some(s) = &staged {
        let _ = writeln!(
            out,
            "\nStaged:            {} ({}, {} bytes) as {} on {}",
            s.capsule,
            s.version,
            s.bytes,
            vfat::CAPSULE,
            s.esp
        );
        for o in &s.operations {
            let r = match o.result {
                Applied::Changed => "done",
                Applied::AlreadyDone => "already so",
                Applied::Kept { .. } => "kept",
            };
            let _ = writeln!(out, "  {}: {r}", o.op);
        }
        let _ = writeln!(
            out,
            "The capsule is applied at the next reboot: the firmware writes the chain it does \
             not run from and switches to it."
        );
    }
    if let Some(why) = &not_staged {
        let _ = writeln!(out, "\nNothing staged: {why}");
    }
    print!("{out}");
    Ok(code)
}

fn version_text(v: Option<crate::uefi::version::FwVersion>) -> String {
    v.map_or_else(|| "unknown".into(), |v| v.to_string())
}

fn table(r: &Report) -> String {
    let mut out = String::new();
    let chain = r
        .running_chain
        .map_or_else(|| "unknown".into(), |c| c.letter().to_owned());
    let _ = writeln!(
        out,
        "Running chain:     {chain} (firmware {}, lowest supported {})",
        version_text(r.running_version),
        version_text(r.lowest_supported)
    );
    for (c, v) in ["A", "B"].iter().zip(r.chain_versions) {
        let _ = writeln!(out, "Chain {c}:           {}", version_text(v));
    }
    let last = match &r.capsule {
        CapsuleOutcome::Unknown => "unknown (no ESRT entry for the system firmware)".into(),
        CapsuleOutcome::NoneAttempted => "none recorded".into(),
        CapsuleOutcome::Applied {
            version,
            chain,
            running,
        } => match chain {
            Some(c) => format!(
                "{version} applied to chain {}{}",
                c.letter(),
                if *running {
                    " (running)"
                } else {
                    " (not running)"
                }
            ),
            None => format!("{version} applied"),
        },
        CapsuleOutcome::Failed { version, text, .. } => format!("{version} NOT applied: {text}"),
    };
    let _ = writeln!(out, "Last capsule:      {last}");
    let _ = writeln!(
        out,
        "Capsule requested: {}",
        if r.capsule_requested {
            "yes (OsIndications): processed at the next boot"
        } else {
            "no"
        }
    );
    let _ = writeln!(
        out,
        "Chain switch:      {}",
        r.switch_requested.map_or_else(
            || "none requested".into(),
            |n| match vars::chain_of(n) {
                Some(c) => format!("to chain {} at the next boot (BootChainFwNext)", c.letter()),
                None => format!("BootChainFwNext = {n} (not a chain)"),
            }
        )
    );
    let _ = writeln!(
        out,
        "BootChainFwStatus: {}",
        r.chain_status.map_or_else(
            || "none".into(),
            |s| format!("{s} ({})", vars::boot_chain_status_name(s))
        )
    );
    let slot = |v: Option<u32>| match v {
        None => "not set".to_string(),
        Some(vars::ROOTFS_STATUS_NORMAL) => "normal".into(),
        Some(vars::ROOTFS_STATUS_UNBOOTABLE) => "unbootable".into(),
        Some(x) => format!("{x:#x}"),
    };
    let _ = writeln!(
        out,
        "Rootfs slots:      A {}, B {}",
        slot(r.rootfs_status[0]),
        slot(r.rootfs_status[1])
    );
    let second = match &r.second_pass {
        SecondPass::NotNeeded => "not needed (both chains run the same firmware)".to_string(),
        SecondPass::Needed { chain, from, to } => format!(
            "needed: chain {} has {}, stage the {to} capsule (--stage CAPSULE)",
            chain.letter(),
            version_text(*from)
        ),
        SecondPass::OtherNewer { chain, version, .. } => format!(
            "no: chain {} has newer firmware ({version})",
            chain.letter()
        ),
        SecondPass::Unknown { reason } => format!("unknown ({reason})"),
    };
    let _ = writeln!(out, "Second pass:       {second}");
    for a in &r.attention {
        let _ = writeln!(out, "ATTENTION: {a}");
    }
    out
}

/// Stages the second pass; `Ok(Err(why))` when there is nothing to stage.
fn stage(
    args: &StatusArgs,
    ctx: &Context,
    root: &SysRoot,
    vars: &mut Efivarfs,
    state: &FirmwareState,
    report: &Report,
    capsule: &Path,
) -> anyhow::Result<Result<Staged, String>> {
    let mut opened = t234_check::open(capsule)?;
    let Some(c) = opened.capsule.clone() else {
        return Err(exit::UsageError(format!(
            "{} is a payload, not a capsule: --stage takes the capsule (tegra-bl.cap, TEGRA_BL.Cap)",
            capsule.display()
        ))
        .into());
    };
    match status::stage_decision(report, c.fw_version()) {
        StageDecision::Stage => {}
        StageDecision::NothingToDo(why) => return Ok(Err(why)),
        StageDecision::Refuse(why) => bail!("{}: {why}", capsule.display()),
    }
    let board = t234_check::read_board(
        root,
        &IdentityRequest {
            tnspec: args.board.tnspec.clone(),
            machine: args.board.machine.clone(),
            ..IdentityRequest::default()
        },
    )?;
    let out = t234_check::check(
        &mut opened,
        &t234_check::CheckInput {
            specs: &board.specs,
            firmware: Some(state),
            // A second pass carries the running release: its QSPI layout.
            qspi_layout: QspiLayout::Same,
            kernel_slots: &[],
            partition_sizes: None,
        },
    )?;
    if out.kind != PayloadKind::Firmware {
        bail!(
            "{}: the payload inside is a kernel payload, not boot firmware",
            capsule.display()
        );
    }
    if !out.ok() {
        bail!("{}: {}", capsule.display(), out.problems.join("; "));
    }

    let esp: PathBuf = args.esp.clone().unwrap_or_else(|| root.path(ESP_LINK));
    let file = vfat::EspFile {
        path: vfat::CAPSULE.into(),
        source: capsule.to_path_buf(),
    };
    let files = [file];
    ctx.changes.mark();
    let bytes = if esp.is_dir() {
        let n = vfat::write_into(&esp, &files)?;
        vfat::compare_in(&esp, &files)?;
        n
    } else {
        let mnt = root.path(ESP_MOUNT);
        let n = vfat::populate(&esp, &mnt, &files)?;
        vfat::verify(&esp, &mnt, &files)?;
        n
    };
    // The second pass's operations, and the platform specs the check
    // assumed, created where missing (as an install does).
    let ops = varplan::plan(&varplan::PlanInput {
        written_slots: Vec::new(),
        platform_spec: board.derived_spec.clone(),
        compat_spec: board.derived_compat.clone(),
        finish: varplan::Finish::Capsule,
        current_chain: state.current_chain,
    });
    let mut operations = Vec::new();
    for op in ops {
        let result = varplan::apply(vars, &op).context("setting the UEFI variables")?;
        operations.push(OpResult {
            op: op.to_string(),
            result,
        });
    }
    Ok(Ok(Staged {
        capsule: capsule.display().to_string(),
        version: c.fw_version().to_string(),
        esp: esp.display().to_string(),
        bytes: bytes.first().copied().unwrap_or(0),
        operations,
    }))
}
