//! Running external programs (mke2fs, e2fsck, tune2fs) with errors that need
//! no further explanation: the command line, the exit status and the trimmed
//! stderr are all in the message.

use std::ffi::OsStr;
use std::fmt;
use std::process::{Command, Output, Stdio};

/// Most stderr bytes kept in an error message.
const STDERR_KEEP: usize = 2000;

/// A command that could not be started or did not succeed.
#[derive(Debug)]
pub struct CommandError {
    /// The command line, shell-quoted for display.
    pub argv: String,
    /// What went wrong: "not found", "exit status 1", ...
    pub status: String,
    /// The command's stderr, trimmed and shortened.
    pub stderr: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.argv, self.status)?;
        if !self.stderr.is_empty() {
            write!(f, ": {}", self.stderr)?;
        }
        Ok(())
    }
}

impl std::error::Error for CommandError {}

/// Renders a command line for messages, quoting arguments that need it.
pub fn display_argv(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote)
        .collect::<Vec<_>>()
        .join(" ")
}

fn quote(arg: &OsStr) -> String {
    let s = arg.to_string_lossy();
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn tidy_stderr(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let joined = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ");
    if joined.len() > STDERR_KEEP {
        let mut cut = STDERR_KEEP;
        while !joined.is_char_boundary(cut) {
            cut -= 1;
        }
        format!("{}...", &joined[..cut])
    } else {
        joined
    }
}

/// Runs `cmd` to completion with stdin closed and both outputs captured;
/// fails unless it exits 0.
pub fn run(cmd: &mut Command) -> Result<Output, CommandError> {
    run_allowing(cmd, &[])
}

/// Like [`run`], but an exit status listed in `ok` also counts as success
/// (e2fsck exits 1 when it fixed something).
pub fn run_allowing(cmd: &mut Command, ok: &[i32]) -> Result<Output, CommandError> {
    let argv = display_argv(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| CommandError {
            argv: argv.clone(),
            status: if e.kind() == std::io::ErrorKind::NotFound {
                "could not be run: program not found (is it installed and on PATH?)".into()
            } else {
                format!("could not be run: {e}")
            },
            stderr: String::new(),
        })?;
    match out.status.code() {
        Some(0) => Ok(out),
        Some(c) if ok.contains(&c) => Ok(out),
        code => Err(CommandError {
            argv,
            status: match code {
                Some(c) => format!("failed with exit status {c}"),
                None => format!("was killed ({})", out.status),
            },
            stderr: tidy_stderr(&out.stderr),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_is_named() {
        let err = run(&mut Command::new("/nonexistent/mke2fs")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/mke2fs"), "{msg}");
        assert!(msg.contains("not found"), "{msg}");
    }

    #[test]
    fn failure_carries_status_and_stderr() {
        let err = run(Command::new("sh").args(["-c", "echo oops >&2; echo more >&2; exit 3"]))
            .unwrap_err();
        assert_eq!(err.status, "failed with exit status 3");
        assert_eq!(err.stderr, "oops | more");
        assert!(err.to_string().starts_with("`sh -c 'echo oops"));
    }

    #[test]
    fn allowed_status_counts_as_success() {
        assert!(run_allowing(Command::new("sh").args(["-c", "exit 1"]), &[1]).is_ok());
        assert!(run_allowing(Command::new("sh").args(["-c", "exit 4"]), &[1]).is_err());
    }
}
