//! `--events console` on a real install (root tier, loop devices): every
//! line on stdout is an intact frame, and the last one is the summary even
//! when a signal ends the run, in the preflight or in the middle of the unpack
//! (root tier), or a usage error found once the events are on.

use crate::support::rig::Rig;
use crate::support::{output, require_root, stderr};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use sysinstall::events::unframe;

const TOOLS: &[&str] = &[
    "losetup", "partx", "sgdisk", "mke2fs", "e2fsck", "tune2fs", "zstd", "setfacl", "setfattr",
    "python3", "mkfifo",
];

fn fifo(rig: &Rig) -> std::path::PathBuf {
    let f = rig.dir.path().join("rootfs.fifo");
    let o = output(Command::new("mkfifo").arg(&f));
    assert!(o.status.success(), "{}", stderr(&o));
    f
}

/// Starts the install; its stdout lines arrive on the channel as they come.
fn spawn(cmd: &mut Command) -> (Child, mpsc::Receiver<String>) {
    let mut child = cmd
        .args(["--events", "console"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for the framed event `pred` accepts; returns every line so far.
fn wait_for(
    rx: &mpsc::Receiver<String>,
    lines: &mut Vec<String>,
    pred: impl Fn(&serde_json::Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let Ok(line) = rx.recv_timeout(Duration::from_secs(1)) else {
            continue;
        };
        let v: Option<serde_json::Value> =
            unframe(&line).and_then(|j| serde_json::from_str(j).ok());
        lines.push(line);
        if v.as_ref().is_some_and(&pred) {
            return;
        }
    }
    panic!("the event never came: {lines:#?}");
}

/// Sends `signal`, waits, and checks the whole stream: every line an intact
/// frame, `seq` without gaps, the last a summary with `exit`.
fn stop_and_check(
    mut child: Child,
    rx: mpsc::Receiver<String>,
    mut lines: Vec<String>,
    signal: Signal,
    exit: i32,
) {
    kill(Pid::from_raw(child.id() as i32), signal).unwrap();
    let status = child.wait().unwrap();
    let err = {
        let mut s = String::new();
        use std::io::Read;
        child.stderr.take().unwrap().read_to_string(&mut s).unwrap();
        s
    };
    lines.extend(rx.iter());
    assert_eq!(status.code(), Some(exit), "{lines:#?}\n{err}");
    let events: Vec<serde_json::Value> = lines
        .iter()
        .map(|l| {
            let json = unframe(l).unwrap_or_else(|| panic!("not an intact frame: {l:?}"));
            serde_json::from_str(json).unwrap()
        })
        .collect();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], i as u64, "{lines:#?}");
    }
    let last = events.last().unwrap();
    assert_eq!(last["kind"], "summary", "{lines:#?}");
    assert_eq!(last["result"], "fail");
    assert_eq!(last["exit"], exit);
    assert_eq!(last["code"], "interrupted", "{last}");
    assert!(
        last["error"]
            .as_str()
            .unwrap()
            .contains(&format!("interrupted by {signal}")),
        "{last}"
    );
    assert!(err.contains("FAIL: "), "{err}");
}

/// True while `pid` is blocked opening a FIFO that has no writer.
fn in_fifo_open(pid: u32) -> bool {
    let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
    // Where the kernel hides wchan, the system call (openat) tells.
    #[cfg(target_arch = "x86_64")]
    const OPENAT: &str = "257 ";
    #[cfg(not(target_arch = "x86_64"))]
    const OPENAT: &str = "56 ";
    let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
    wchan == "wait_for_partner" || (wchan == "0" && syscall.starts_with(OPENAT))
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_signal_in_the_preflight_ends_with_a_framed_summary() {
    require_root(TOOLS);
    let rig = Rig::new();
    let before = rig.state();
    let fifo = fifo(&rig);
    // No writer: the preflight blocks opening the rootfs.
    let (child, rx) = spawn(rig.install_cmd().arg("--bup").arg(&rig.bup).arg(&fifo));
    let mut lines = Vec::new();
    wait_for(&rx, &mut lines, |e| e["kind"] == "step_start");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !in_fifo_open(child.id()) {
        assert!(
            Instant::now() < deadline,
            "never blocked in open: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    stop_and_check(child, rx, lines, Signal::SIGTERM, 3);
    assert_eq!(
        rig.state(),
        before,
        "an interrupted preflight changed the disk"
    );
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_signal_in_a_stalled_unpack_ends_with_a_framed_summary() {
    require_root(TOOLS);
    let rig = Rig::new();
    let fifo = fifo(&rig);
    // A writer that never writes: the unpack waits for bytes forever.
    let _writer = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&fifo)
        .unwrap();
    let (child, rx) = spawn(rig.install_cmd().arg("--bup").arg(&rig.bup).arg(&fifo));
    let mut lines = Vec::new();
    wait_for(&rx, &mut lines, |e| {
        e["kind"] == "step_start" && e["phase"] == "unpack"
    });
    std::thread::sleep(Duration::from_millis(300));
    stop_and_check(child, rx, lines, Signal::SIGTERM, 4);
}

/// No root needed: a usage error found once the events are on still ends
/// with a framed summary carrying exit 2, and stdout holds only frames.
#[test]
fn a_usage_error_after_the_events_are_on_ends_with_a_framed_summary() {
    let o = output(crate::support::sysinstall().args([
        "install",
        "--events",
        "console",
        "--progress",
        "none",
        "--stall-timeout",
        "0",
        "--device",
        "/dev/null",
        "--layout",
        "/nonexistent.xml",
        "/nonexistent.tar.zst",
    ]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let out = String::from_utf8(o.stdout.clone()).unwrap();
    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(unframe(l).expect(l)).unwrap())
        .collect();
    let last = events.last().expect("no events");
    assert_eq!(last["kind"], "summary", "{out}");
    assert_eq!(last["exit"], 2);
    assert_eq!(last["code"], "usage");
    assert!(stderr(&o).contains("FAIL: "), "{}", stderr(&o));
}
