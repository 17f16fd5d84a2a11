//! A read-only TFTP server for the tests (`tftp_server.py` beside this
//! file, RFC 1350) on 127.0.0.1 and a port of its own, serving a directory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A running server; stopped when dropped.
pub struct TftpServer {
    child: Child,
    /// Its UDP port.
    pub port: u16,
}

impl TftpServer {
    /// Serves `root`; `extra` are the script's options (`--drop-after N`).
    pub fn start(root: &Path, extra: &[&str]) -> TftpServer {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/tftp_server.py");
        let mut child = Command::new("python3")
            .arg(script)
            .arg(root)
            .args(extra)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().parse().unwrap();
        TftpServer { child, port }
    }

    /// `tftp://127.0.0.1:PORT/NAME`.
    pub fn url(&self, name: &str) -> String {
        format!("tftp://127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for TftpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
