//! Helpers shared by the integration tests: the binary, the test data, the
//! tiers, loop devices and sparse images.
//!
//! # Tiers
//!
//! A test never passes without running. Tests that need root (loop devices,
//! mkfs on a block device, mounts) belong to the root tier: they carry
//! `#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]`
//! (build.rs turns `SYSINSTALL_TEST_ROOT=1` into `cfg(tier_root)`, and
//! `tests/run.sh` sets it), so without the variable `cargo test` lists them
//! as ignored; with it they start with [`require_root`], which fails the
//! test when root or a tool is missing. Unprivileged tests that run an
//! outside tool (sgdisk, mke2fs, GNU tar, python3) call [`require_tools`]
//! and fail when it is missing: `tests/setup.sh` installs them all. The qemu
//! tier (`tests/qemu/`, `SYSINSTALL_TEST_QEMU=1`) and the fuzz tier
//! (`fuzz/run.sh`) follow the same rule.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod bup;
pub mod disk;
pub mod hostile;
pub mod http;
pub mod net;
pub mod tftp;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `sysinstall` binary under test, with a quiet, backtrace-free environment.
pub fn sysinstall() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_sysinstall"));
    c.env("RUST_BACKTRACE", "0").env_remove("SYSINSTALL_LOG");
    // The test servers are on 127.0.0.1: a developer's proxy or token
    // settings must not reach them unless a test sets them.
    for v in [
        "http_proxy",
        "https_proxy",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
        "no_proxy",
        "NO_PROXY",
        "SYSINSTALL_BEARER",
        "OCI_USERNAME",
        "OCI_PASSWORD",
    ] {
        c.env_remove(v);
    }
    c
}

/// Runs a command and returns its output (panics only if it cannot start).
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tests/data`: sample layouts and the tables NVIDIA's tools make of them
/// (provenance in its README).
pub fn data_dir() -> PathBuf {
    repo().join("tests/data")
}

/// True when running as root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// True when `tool` is on PATH (or in /sbin, /usr/sbin).
pub fn have(tool: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/sbin", "/usr/sbin"])
        .any(|d| Path::new(d).join(tool).is_file());
    found
}

/// The start of every root-tier test: fails (never skips) unless we are
/// root and every tool is there.
pub fn require_root(tools: &[&str]) {
    assert!(
        is_root(),
        "the root tier needs root (loop devices, mkfs, mount)"
    );
    require_tools(tools);
}

/// Fails the test when an outside tool is missing (`tests/setup.sh` installs
/// every tool a test uses).
pub fn require_tools(tools: &[&str]) {
    let missing: Vec<&&str> = tools.iter().filter(|t| !have(t)).collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?}: run `bash tests/setup.sh`"
    );
}

/// Creates a sparse file of `bytes` bytes.
pub fn sparse_image(path: &Path, bytes: u64) {
    let f = std::fs::File::create(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    f.set_len(bytes).unwrap();
}

/// SHA-256 of a file's contents, as hex.
pub fn sha256_file(path: &Path) -> String {
    use sha2::{Digest, Sha256};
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    format!("{:x}", h.finalize())
}

/// A loop device attached to an image file; detached (with its partitions
/// removed) on drop.
pub struct LoopDevice {
    /// `/dev/loopN`.
    pub path: PathBuf,
}

impl LoopDevice {
    /// Attaches `image` to a free loop device (retrying races with parallel tests).
    pub fn attach(image: &Path) -> LoopDevice {
        for _ in 0..20 {
            let o = output(Command::new("losetup").args(["-f", "--show"]).arg(image));
            if o.status.success() {
                let path = PathBuf::from(stdout(&o).trim());
                return LoopDevice { path };
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        panic!("no free loop device for {}", image.display());
    }

    /// The node of partition `n` (`/dev/loop3p2`).
    pub fn part(&self, n: u32) -> PathBuf {
        PathBuf::from(format!("{}p{n}", self.path.display()))
    }

    /// Registers the GPT partitions with the kernel the way `partx -a` does
    /// (this host kernel does not parse GPTs itself).
    pub fn partx_add(&self) {
        if self.part(1).exists() {
            return; // the kernel already knows them (sysinstall registered them)
        }
        let o = output(Command::new("partx").arg("-a").arg(&self.path));
        assert!(o.status.success(), "partx -a: {}", stderr(&o));
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("partx").arg("-d").arg(&self.path).output();
        let _ = Command::new("losetup").arg("-d").arg(&self.path).output();
    }
}
pub mod rig;

/// Compares `got` with the golden file `tests/golden/NAME`; with
/// `SYSINSTALL_BLESS=1` it writes the file instead.
pub fn assert_golden(name: &str, got: &str) {
    let path = repo().join("tests/golden").join(name);
    if std::env::var_os("SYSINSTALL_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with SYSINSTALL_BLESS=1)", path.display()));
    if got != want {
        let first = got
            .lines()
            .zip(want.lines())
            .position(|(g, w)| g != w)
            .unwrap_or(got.lines().count().min(want.lines().count()));
        panic!(
            "{} differs from the output at line {} (SYSINSTALL_BLESS=1 rewrites it):\n--- got\n{got}",
            path.display(),
            first + 1
        );
    }
}
