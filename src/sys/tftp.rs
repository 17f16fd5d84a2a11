//! `tftp://` downloads through busybox: `busybox tftp -g -r PATH -l - HOST
//! PORT` streams the file to its stdout, which is read as it arrives. The
//! command's exit status is checked at the end of the stream, so a transfer
//! that broke off is an error, never a short file.

use std::io::{self, Read};
use std::process::{Child, ChildStdout, Command, Stdio};

/// The program run (busybox's tftp applet; the upgrader initramfs has it).
pub const BUSYBOX: &str = "busybox";

/// What busybox says when the server answers "file not found" (TFTP error 1).
const NOT_FOUND: &str = "(1)";

/// One download's stream.
pub struct TftpGet {
    argv: String,
    child: Child,
    stdout: ChildStdout,
    finished: bool,
}

/// Why a download failed: the server said the file is not there, or
/// anything else (the command line and busybox's message in the text).
#[derive(Debug)]
pub struct TftpError {
    /// The server answered "file not found".
    pub not_found: bool,
    /// The command and what it said.
    pub message: String,
}

impl std::fmt::Display for TftpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for TftpError {}

/// Starts `busybox tftp` for `remote` on `host`:`port`.
pub fn get(host: &str, port: u16, remote: &str) -> io::Result<TftpGet> {
    let mut cmd = Command::new(BUSYBOX);
    cmd.args(["tftp", "-g", "-r", remote, "-l", "-", host])
        .arg(port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let argv = super::cmd::display_argv(&cmd);
    let mut child = cmd
        .spawn()
        .map_err(|e| io::Error::new(e.kind(), format!("`{argv}`: {e}")))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| io::Error::other(format!("`{argv}`: no stdout")))?;
    Ok(TftpGet {
        argv,
        child,
        stdout,
        finished: false,
    })
}

impl TftpGet {
    /// Waits for busybox and turns a failure into an error.
    fn finish(&mut self) -> io::Result<()> {
        self.finished = true;
        let mut said = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.by_ref().take(2000).read_to_string(&mut said);
        }
        let status = self.child.wait()?;
        if status.success() {
            return Ok(());
        }
        let said = said.trim();
        Err(io::Error::other(TftpError {
            not_found: said.contains(NOT_FOUND),
            message: format!("`{}` {status}: {said}", self.argv),
        }))
    }
}

impl Read for TftpGet {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        let n = self.stdout.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.finish()?;
        }
        Ok(n)
    }
}

impl Drop for TftpGet {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
