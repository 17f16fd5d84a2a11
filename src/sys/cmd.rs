//! Running external programs (mke2fs, e2fsck, tune2fs) with errors that need
//! no further explanation: the command line, the exit status and the trimmed
//! output are all in the message (e2fsck says why it gave up on stdout).
//! A device that is briefly busy right after an unmount (udev probing it, the
//! kernel finishing the release) is retried a few times by
//! [`run_retrying_busy`].

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
    /// The command's stdout, trimmed and shortened (e2fsck -p reports there).
    pub stdout: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.argv, self.status)?;
        let said: Vec<&str> = [self.stderr.as_str(), self.stdout.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        if !said.is_empty() {
            write!(f, ": {}", said.join(" | "))?;
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
            stdout: String::new(),
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
            stdout: tidy_stderr(&out.stdout),
        }),
    }
}

/// Attempts of [`run_retrying_busy`], and the pause before the first retry
/// (it grows with each).
const BUSY_ATTEMPTS: u32 = 6;
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// True when a failed e2fsprogs command says the device is busy: what
/// mke2fs, e2fsck and tune2fs print while something else briefly holds it.
pub fn says_busy(e: &CommandError) -> bool {
    let text = format!("{} {}", e.stderr, e.stdout);
    text.contains("Device or resource busy")
        || text.contains("is apparently in use by the system")
        || text.contains("is in use.")
}

/// [`run_allowing`], retried while the device is only busy (right after an
/// unmount, udev or the kernel may still hold it for a moment).
pub fn run_retrying_busy(cmd: &mut Command, ok: &[i32]) -> Result<Output, CommandError> {
    let mut attempt = 1;
    loop {
        match run_allowing(cmd, ok) {
            Err(e) if says_busy(&e) && attempt < BUSY_ATTEMPTS => {
                log::info!("{e}; retrying");
                std::thread::sleep(BUSY_PAUSE * attempt);
                attempt += 1;
            }
            other => return other,
        }
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
    fn stdout_is_part_of_the_reason() {
        let err = run(Command::new("sh").args([
            "-c",
            "echo 'APP: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY.'; exit 4",
        ]))
        .unwrap_err();
        assert!(
            err.to_string().ends_with(
                "failed with exit status 4: APP: UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY."
            ),
            "{err}"
        );
    }

    #[test]
    fn a_busy_device_is_retried_and_a_real_failure_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let flag = dir.path().join("tried");
        // Busy the first time, fine the second.
        let script = format!(
            "if [ -e {f} ]; then exit 0; fi; touch {f}; \
             echo '/dev/x is apparently in use by the system; will not make a filesystem here!' >&2; exit 1",
            f = flag.display()
        );
        assert!(run_retrying_busy(Command::new("sh").args(["-c", &script]), &[]).is_ok());
        // A failure that is not "busy" comes back at once.
        let count = dir.path().join("count");
        let script = format!(
            "echo x >> {}; echo 'bad magic' >&2; exit 8",
            count.display()
        );
        assert!(run_retrying_busy(Command::new("sh").args(["-c", &script]), &[]).is_err());
        assert_eq!(std::fs::read_to_string(&count).unwrap().lines().count(), 1);
    }

    #[test]
    fn allowed_status_counts_as_success() {
        assert!(run_allowing(Command::new("sh").args(["-c", "exit 1"]), &[1]).is_ok());
        assert!(run_allowing(Command::new("sh").args(["-c", "exit 4"]), &[1]).is_err());
    }
}
