//! Exit codes: the contract with Yocto recipes and lab scripts.
//!
//! Only `main` turns an error into a code. Library code reports *what happened*
//! by returning one of the marker errors below (or any other error), and by
//! recording on a [`Changes`] handle whether it has written to the target yet;
//! [`classify`] derives the code from that, so a code can never claim "disk
//! untouched" after a write happened.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Success.
pub const SUCCESS: u8 = 0;
/// A read-only command (`layout`, `plan`, `bup list`, `bup check`) found its input
/// invalid, or a check did not pass.
pub const CHECK_FAILED: u8 = 1;
/// The command line was wrong (clap uses 2 too).
pub const USAGE: u8 = 2;
/// Invalid input or a refused preflight: nothing on the target was changed.
pub const REFUSED: u8 = 3;
/// Failed after the target was changed; the message says what state it is in,
/// and running the same command again resumes.
pub const TARGET_CHANGED: u8 = 4;
/// The operator answered "no" at the confirmation prompt; nothing was changed.
pub const DECLINED: u8 = 5;

/// The text `--help` shows after the options.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  layout, plan, bup list, bup check: the input is invalid or the check failed;
     status: the firmware needs attention (a failed capsule, a second pass, a leftover status)
  2  usage error
  3  invalid input or refused preflight; the target disk is untouched
  4  failed after the target disk was changed; run the same command again to resume
  5  cancelled at the confirmation prompt; nothing was changed";

/// A usage error found after argument parsing (conflicting options and the like).
#[derive(Debug)]
pub struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for UsageError {}

/// The operator declined the confirmation prompt.
#[derive(Debug)]
pub struct Declined;

impl fmt::Display for Declined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cancelled at the confirmation prompt; nothing was changed")
    }
}
impl std::error::Error for Declined {}

/// Records whether a command has written anything to its target yet.
///
/// Cheap to clone; every clone shares one flag. The device layer calls
/// [`Changes::mark`] immediately *before* its first write (so a crash inside
/// that write is still reported as "changed").
#[derive(Clone, Debug, Default)]
pub struct Changes(Arc<AtomicBool>);

impl Changes {
    /// A fresh handle: nothing written yet.
    pub fn new() -> Changes {
        Changes::default()
    }

    /// Notes that the target is about to be (or has been) written.
    pub fn mark(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once anything was written.
    pub fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// What kind of command failed, for [`classify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandKind {
    /// Reads and reports only (`layout`, `plan`, `bup list`, `bup check`).
    ReadOnly,
    /// May write to a target (`partition`, `unpack`, `bup write`, `install`).
    Writer,
}

/// The exit code for a failed command.
pub fn classify(err: &anyhow::Error, kind: CommandKind, changes: &Changes) -> u8 {
    if err.chain().any(|e| e.is::<UsageError>()) {
        return USAGE;
    }
    match kind {
        CommandKind::ReadOnly => CHECK_FAILED,
        CommandKind::Writer if changes.any() => TARGET_CHANGED,
        CommandKind::Writer if err.chain().any(|e| e.is::<Declined>()) => DECLINED,
        CommandKind::Writer => REFUSED,
    }
}

/// Formats an error chain on one line (`outer: inner: root`), with any embedded
/// newlines folded, so every failure is a single greppable line.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut s = format!("{err:#}");
    if s.contains('\n') || s.contains('\r') {
        s = s
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join(" | ");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_codes_follow_the_change_flag() {
        let changes = Changes::new();
        let err = anyhow::anyhow!("bad layout");
        assert_eq!(classify(&err, CommandKind::Writer, &changes), REFUSED);
        assert_eq!(
            classify(&err, CommandKind::ReadOnly, &changes),
            CHECK_FAILED
        );
        changes.clone().mark();
        assert_eq!(
            classify(&err, CommandKind::Writer, &changes),
            TARGET_CHANGED
        );
    }

    #[test]
    fn usage_and_declined_are_recognised_through_context() {
        let changes = Changes::new();
        let usage = anyhow::Error::new(UsageError("--slot with --initialize".into()))
            .context("parsing options");
        assert_eq!(classify(&usage, CommandKind::Writer, &changes), USAGE);
        let declined = anyhow::Error::new(Declined).context("confirming");
        assert_eq!(classify(&declined, CommandKind::Writer, &changes), DECLINED);
    }

    #[test]
    fn one_line_folds_newlines() {
        let err = anyhow::anyhow!("mke2fs failed:\nline one\n\nline two").context("formatting APP");
        assert_eq!(
            one_line(&err),
            "formatting APP: mke2fs failed: | line one | line two"
        );
    }
}
