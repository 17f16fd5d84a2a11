//! `sysinstall install` (and `sysinstall` alone): the technician's command.
//!
//! Here the command line and the site configuration become
//! [`InstallOptions`]; human progress goes to stderr, `--events json` as
//! JSON Lines to stdout or `--events-fd`, and the old tool's last line —
//! `PASS: successful installation of <artifact>` or `FAIL: <reason>` — to
//! stdout (to stderr when stdout carries the JSON events).

use super::{prompt, site_config, Context};
use crate::cli::{InstallArgs, ProgressMode};
use crate::events::{Events, JsonSink, Sink};
use crate::exit::{self, CommandKind, UsageError};
use crate::install::{self, decide::Refusal, report, InstallOptions};
use crate::layout::subst;
use crate::progress::HumanSink;
use crate::sys::board::SysRoot;
use anyhow::anyhow;
use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// Runs `sysinstall install`. Failures are reported here (the FAIL line
/// and the summary event), so the exit code is returned either way.
pub fn run(args: &InstallArgs, ctx: &Context) -> anyhow::Result<u8> {
    crate::interrupt::install().map_err(|e| anyhow!("installing the signal handlers: {e}"))?;
    let events = match events(args, ctx) {
        Ok(e) => e,
        Err(e) => return Ok(finish(args, ctx, &Events::silent(), Err(e))),
    };
    let result = resolve(args).and_then(|opts| {
        let device = opts.device.display().to_string();
        install::run(&opts, &ctx.changes, &events, &mut |text| {
            confirm(args.yes, text, &device)
        })
    });
    let reboot = reboot_wanted(args.reboot, &result);
    let code = finish(args, ctx, &events, result);
    if reboot {
        reboot_now();
    }
    Ok(code)
}

/// `--reboot` reboots only after a pass: never after a failure, a refusal
/// or a dry run.
fn reboot_wanted(asked: bool, result: &anyhow::Result<install::Summary>) -> bool {
    asked && matches!(result, Ok(s) if s.result == report::Outcome::Pass)
}

/// Flushes everything and reboots; on failure says so (the install itself
/// is done, so the exit code stays 0).
fn reboot_now() {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    nix::unistd::sync();
    // Returns only when the kernel refused (Result<Infallible, _>).
    let Err(e) = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    eprintln!("warning: --reboot: {e}; reboot the board by hand");
}

/// The summary event and the last line; the exit code.
fn finish(
    args: &InstallArgs,
    ctx: &Context,
    events: &Events,
    result: anyhow::Result<install::Summary>,
) -> u8 {
    let (code, line) = match result {
        Ok(mut summary) => {
            summary.exit = exit::SUCCESS;
            events.summary(serde_json::to_value(&summary).unwrap_or_default());
            if summary.result != report::Outcome::Pass {
                return exit::SUCCESS;
            }
            (
                exit::SUCCESS,
                report::pass_line(summary.artifact.as_deref(), summary.boot_note.as_deref()),
            )
        }
        Err(err) => {
            let err = as_usage(err);
            let code = exit::classify(&err, CommandKind::Writer, &ctx.changes);
            let reason = exit::one_line(&err);
            let why = report::failure_code(&err);
            events.failure(why.as_str(), why.retryable(), &reason);
            events.summary(serde_json::json!({
                "result": report::Outcome::Fail,
                "exit": code,
                "code": why.as_str(),
                "retryable": why.retryable(),
                "error": reason,
            }));
            (code, report::fail_line(&reason, code))
        }
    };
    // With the JSON events on stdout, the last line goes to stderr.
    if args.events.is_some() && matches!(args.events_fd, None | Some(1)) {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    code
}

/// A refusal that comes from contradictory options is a usage error.
fn as_usage(err: anyhow::Error) -> anyhow::Error {
    match err.downcast_ref::<Refusal>() {
        Some(r) if r.is_usage() => UsageError(r.to_string()).into(),
        _ => err,
    }
}

/// The event sinks: human progress, JSON, failpoints (tests).
fn events(args: &InstallArgs, ctx: &Context) -> anyhow::Result<Events> {
    if args.events_fd.is_some() && args.events.is_none() {
        return Err(UsageError("--events-fd needs --events json".into()).into());
    }
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let progress = args.progress.unwrap_or(if ctx.quiet {
        ProgressMode::None
    } else {
        ProgressMode::Auto
    });
    if progress != ProgressMode::None {
        sinks.push(Box::new(HumanSink::new(progress.style())));
    }
    if args.events.is_some() {
        sinks.push(Box::new(JsonSink(events_writer(args.events_fd)?)));
    }
    if std::env::var_os(crate::failpoint::ENV).is_some() {
        sinks.push(install::failpoint_sink());
    }
    Ok(Events::new(sinks))
}

fn events_writer(fd: Option<i32>) -> anyhow::Result<Box<dyn Write + Send>> {
    match fd {
        None | Some(1) => Ok(Box::new(std::io::stdout())),
        Some(2) => Ok(Box::new(std::io::stderr())),
        Some(n) => {
            // The descriptor must be open; fcntl tells without side effects.
            nix::fcntl::fcntl(
                // SAFETY: borrowed only for this call; `n` is checked by fcntl itself.
                unsafe { std::os::fd::BorrowedFd::borrow_raw(n) },
                nix::fcntl::FcntlArg::F_GETFD,
            )
            .map_err(|e| UsageError(format!("--events-fd {n}: {e}")))?;
            // SAFETY: the descriptor is open (checked above) and handed to us
            // by the caller for exactly this use; we own it from here on.
            let fd = unsafe { OwnedFd::from_raw_fd(n) };
            Ok(Box::new(std::fs::File::from(fd)))
        }
    }
}

/// Shows the report; asks on the terminal unless `--yes` (see [`prompt`]).
fn confirm(yes: bool, text: &str, device: &str) -> anyhow::Result<bool> {
    eprintln!("{text}\n");
    prompt::require_answerable(yes, "write", device)?;
    Ok(yes || prompt::ask(&format!("Erase and install onto {device}?"))?)
}

fn first_existing(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

/// The command line, over the site configuration, over the defaults.
pub fn resolve(cli: &InstallArgs) -> anyhow::Result<InstallOptions> {
    let mut a = cli.clone();
    site_config::load_into(cli.config.as_deref(), &mut a)
        .map_err(report::or_code(report::FailCode::InputInvalid))?;
    let rootfs = match a.rootfs.clone() {
        Some(r) => r,
        None => first_existing(install::DEFAULT_ROOTFS)
            .map(|p| p.display().to_string())
            .ok_or_else(|| {
                anyhow!(
                    "no rootfs tarball given and none of {} exists",
                    install::DEFAULT_ROOTFS.join(", ")
                )
            })?,
    };
    let data = a.data.clone().or_else(|| {
        Path::new(install::DEFAULT_DATA)
            .exists()
            .then(|| install::DEFAULT_DATA.to_owned())
    });
    let layout = match a.layout.layout.clone() {
        Some(l) => l,
        None => first_existing(install::DEFAULT_LAYOUTS).ok_or_else(|| {
            anyhow!(
                "no layout given (--layout, or layout= in {}) and none of {} exists",
                site_config::DEFAULT_PATH,
                install::DEFAULT_LAYOUTS.join(", ")
            )
        })?,
    };
    let layout_path = layout.clone();
    Ok(InstallOptions {
        rootfs,
        rootfs_sha256: a.rootfs_sha256.clone(),
        data,
        layout,
        set: subst::parse_assignments(&a.layout.set).map_err(UsageError)?,
        device: a
            .device
            .clone()
            .unwrap_or_else(|| install::default_device(&layout_path)),
        bup: a.bup.clone(),
        capsule: a.capsule.clone(),
        no_capsule: a.no_capsule,
        launcher: a.launcher.clone(),
        boot_devices: a.boot_devices.clone(),
        soc: a.soc.map(Into::into),
        mode: a.mode.unwrap_or_default().into(),
        keep_data: a.keep_data,
        discard_data: a.discard_data,
        new_machine_id: a.new_machine_id,
        dry_run: a.dry_run,
        no_fsck: a.no_fsck,
        no_bootloader: a.no_bootloader,
        mkfs_options: a.mkfs_options.clone(),
        verify_slots: a.verify_slots,
        restart: a.restart,
        tnspec: a.board.tnspec.clone(),
        machine: a.board.machine.clone(),
        sysroot: SysRoot::new(a.sysroot.clone().unwrap_or_else(|| PathBuf::from("/"))),
        rundir: std::env::var_os("SYSINSTALL_RUNDIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(install::DEFAULT_RUNDIR)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reboot_only_after_a_pass() {
        let with = |r| {
            let mut s = install::Summary::new("/dev/mmcblk0".into());
            s.result = r;
            Ok(s)
        };
        assert!(reboot_wanted(true, &with(report::Outcome::Pass)));
        assert!(!reboot_wanted(false, &with(report::Outcome::Pass)));
        assert!(!reboot_wanted(true, &with(report::Outcome::DryRun)));
        assert!(!reboot_wanted(true, &Err(anyhow!("refused"))));
    }
}
