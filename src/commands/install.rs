//! `sysinstall install` (and `sysinstall` alone): the technician's command.
//!
//! Human progress on stderr, `--events json` as JSON Lines on stdout or
//! `--events-fd`, and the old tool's last line — `PASS: successful
//! installation of <artifact>` or `FAIL: <reason>` — on stdout (on stderr
//! when stdout carries the JSON events).

use super::Context;
use crate::cli::{InstallArgs, ProgressMode};
use crate::events::{Events, JsonSink, Sink};
use crate::exit::{self, CommandKind};
use crate::install::{self, InstallOptions};
use crate::progress::HumanSink;
use std::io::{BufRead, IsTerminal, Write};
use std::os::fd::{FromRawFd, OwnedFd};

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
            .map_err(|e| exit::UsageError(format!("--events-fd {n}: {e}")))?;
            // SAFETY: the descriptor is open (checked above) and handed to us
            // by the caller for exactly this use; we own it from here on.
            let fd = unsafe { OwnedFd::from_raw_fd(n) };
            Ok(Box::new(std::fs::File::from(fd)))
        }
    }
}

/// Asks on the terminal; no terminal and no `--yes` is a refusal.
fn confirm(yes: bool, text: &str, device: &str) -> anyhow::Result<bool> {
    eprintln!("{text}\n");
    if yes {
        return Ok(true);
    }
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        anyhow::bail!(
            "refusing to write {device} without confirmation: no terminal to ask on (give --yes)"
        );
    }
    eprint!("Erase and install onto {device}? Type 'yes' to go on: ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    stdin.lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "yes" | "YES" | "Yes"))
}

/// Runs `sysinstall install`.
pub fn run(args: &InstallArgs, ctx: &Context) -> anyhow::Result<u8> {
    let json_on_stdout = args.events.is_some() && matches!(args.events_fd, None | Some(1));
    ctx.result_to_stderr.set(json_on_stdout);
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    let progress = args.progress.unwrap_or(if ctx.quiet {
        ProgressMode::None
    } else {
        ProgressMode::Auto
    });
    if progress != ProgressMode::None {
        sinks.push(Box::new(HumanSink::new(progress)));
    }
    if args.events.is_some() {
        sinks.push(Box::new(JsonSink(events_writer(args.events_fd)?)));
    }
    if std::env::var_os(crate::failpoint::ENV).is_some() {
        sinks.push(install::failpoint_sink());
    }
    let events = Events::new(sinks);
    let result = InstallOptions::resolve(args).and_then(|opts| {
        let device = opts.device.display().to_string();
        let yes = opts.yes;
        install::run(&opts, &ctx.changes, &events, &mut |text| {
            confirm(yes, text, &device)
        })
    });
    match result {
        Ok(summary) => {
            let code = exit::SUCCESS;
            let mut s = summary.clone();
            s.exit = code;
            events.summary(serde_json::to_value(&s).unwrap_or_default());
            if summary.result == "pass" {
                let what = summary
                    .artifact
                    .clone()
                    .unwrap_or_else(|| "the rootfs".to_string());
                report(ctx, &format!("PASS: successful installation of {what}"));
            }
            Ok(code)
        }
        Err(err) => {
            let code = exit::classify(&err, CommandKind::Writer, &ctx.changes);
            events.summary(serde_json::json!({
                "result": "fail",
                "exit": code,
                "error": exit::one_line(&err),
            }));
            Err(err)
        }
    }
}

fn report(ctx: &Context, line: &str) {
    if ctx.result_to_stderr.get() {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
}

/// Prints the old tool's final line for a failed install.
pub fn report_failure(ctx: &Context, line: &str, code: u8) {
    let hint = match code {
        exit::TARGET_CHANGED => {
            " (the disk was changed; run the same command again to resume the install)"
        }
        exit::REFUSED => " (nothing on the disk was changed)",
        _ => "",
    };
    report(ctx, &format!("FAIL: {line}{hint}"));
}
