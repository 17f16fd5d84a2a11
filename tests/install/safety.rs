//! What other programs and the operator can do to a running install (root
//! tier, loop devices): a second install on the same disk, signals in the
//! middle of the unpack, a disk that turned read-only. A process is held in
//! the middle of a step with a `:stop` failpoint (it stops itself with
//! SIGSTOP there), so the test acts at a known point, then lets it go on.

use crate::support::rig::Rig;
use crate::support::{output, require_root, stderr, stdout};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const TOOLS: &[&str] = &[
    "losetup", "partx", "sgdisk", "mke2fs", "e2fsck", "tune2fs", "zstd", "setfacl", "setfattr",
    "python3", "blockdev",
];

/// Starts `cmd` in the background; it is expected to stop itself at a
/// `:stop` failpoint.
fn spawn_until_stopped(cmd: &mut Command) -> Child {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(120);
    let problem = loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state is the field after the parenthesised command name.
        let state = stat
            .rsplit(')')
            .next()
            .and_then(|s| s.split_whitespace().next());
        match state {
            Some("T") => return child,
            None | Some("Z") => break "the install ended before its failpoint",
            _ if Instant::now() > deadline => break "the install never stopped",
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    panic!("{problem}: {}{}", stdout(&o), stderr(&o));
}

fn resume(child: Child, signal: Option<Signal>) -> Output {
    let pid = Pid::from_raw(child.id() as i32);
    if let Some(s) = signal {
        kill(pid, s).unwrap();
    }
    kill(pid, Signal::SIGCONT).unwrap();
    child.wait_with_output().unwrap()
}

/// The first and last MiB of the disk (journal, both GPTs) and the boot
/// images.
fn edges(rig: &Rig) -> Vec<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let _ = Command::new("sync").status();
    let mut f = std::fs::File::open(&rig.image).unwrap();
    let len = f.metadata().unwrap().len();
    let mut read_at = |at: u64| {
        let mut b = vec![0u8; 1 << 20];
        f.seek(SeekFrom::Start(at)).unwrap();
        f.read_exact(&mut b).unwrap();
        b
    };
    vec![
        read_at(0),
        read_at(len - (1 << 20)),
        std::fs::read(&rig.boot[0]).unwrap(),
        std::fs::read(&rig.boot[1]).unwrap(),
    ]
}

/// Mount points below the rig's run directory.
fn mounts_left(rig: &Rig) -> Vec<String> {
    let run = rig.dir.path().join("run");
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|m| m.starts_with(run.to_str().unwrap()))
        .map(str::to_owned)
        .collect()
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_second_install_on_the_same_disk_is_refused_while_the_first_runs() {
    require_root(TOOLS);
    let rig = Rig::new();
    let first = spawn_until_stopped(
        rig.install_cmd()
            .env("SYSINSTALL_FAILPOINT", "unpacked:stop")
            .arg(&rig.rootfs),
    );
    // The first holds both slots mounted, half way through; the second
    // must neither take its journal for an interrupted install nor touch
    // its mounts. (The mounted slots change on their own meanwhile: the
    // kernel initialises their inode tables lazily. The journal, both GPTs
    // and the boot devices are what a second install would write first.)
    let before = edges(&rig);
    let o = output(rig.install_cmd().arg(&rig.rootfs));
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    let fail = stdout(&o);
    assert!(fail.contains("locked by another program"), "{fail}");
    assert!(fail.contains("(nothing on the disk was changed)"), "{fail}");
    assert_eq!(edges(&rig), before, "the second install changed the disk");
    assert_eq!(
        mounts_left(&rig).len(),
        2,
        "the first one's slots stay mounted"
    );

    let o = resume(first, None);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("PASS: successful installation of"));
    rig.verify_initial(&rig.rootfs);
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn signals_during_the_unpack_stop_cleanly_and_a_rerun_finishes() {
    require_root(TOOLS);
    let mut rig = Rig::new();
    for signal in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        rig.reset_disks();
        let child = spawn_until_stopped(
            rig.install_cmd()
                .args(["--events", "json"])
                .env("SYSINSTALL_FAILPOINT", "unpack-progress@1:stop")
                .arg(&rig.rootfs),
        );
        let o = resume(child, Some(signal));
        let (out, err) = (stdout(&o), stderr(&o));
        assert_eq!(o.status.code(), Some(4), "{signal}: {out}{err}");
        let fail: Vec<&str> = err.lines().filter(|l| l.starts_with("FAIL: ")).collect();
        assert_eq!(fail.len(), 1, "{signal}: {err}");
        assert!(
            fail[0].contains(&format!("interrupted by {signal}")),
            "{signal}: {}",
            fail[0]
        );
        assert!(
            fail[0].contains("run the same command again"),
            "{}",
            fail[0]
        );
        let summary: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert_eq!(summary["kind"], "summary", "{signal}: {out}");
        assert_eq!(summary["result"], "fail");
        assert_eq!(summary["exit"], 4);
        assert!(
            mounts_left(&rig).is_empty(),
            "{signal}: {:?}",
            mounts_left(&rig)
        );

        let o = output(rig.install_cmd().arg(&rig.rootfs));
        assert_eq!(
            o.status.code(),
            Some(0),
            "{signal}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        rig.verify_initial(&rig.rootfs);
    }
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_read_only_disk_is_refused_before_anything() {
    require_root(TOOLS);
    let rig = Rig::new();
    let before = rig.state();
    let setro = |flag: &str| {
        let o = output(Command::new("blockdev").arg(flag).arg(&rig.lo.path));
        assert!(o.status.success(), "blockdev {flag}: {}", stderr(&o));
    };
    setro("--setro");
    let o = output(rig.install_cmd().arg(&rig.rootfs));
    setro("--setrw");
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("is read-only"), "{}", stdout(&o));
    assert_eq!(rig.state(), before);
}

/// `--device` through a symlink (as `/dev/disk/by-path/...` is): the
/// install works on the device it leads to, partition nodes included.
#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_device_given_through_a_symlink_is_installed() {
    require_root(TOOLS);
    let rig = Rig::new();
    let link = rig.dir.path().join("by-path-link");
    std::os::unix::fs::symlink(&rig.lo.path, &link).unwrap();
    let cmd = rig.install_cmd();
    let args: Vec<std::ffi::OsString> = cmd
        .get_args()
        .map(|a| {
            if a == rig.lo.path.as_os_str() {
                link.clone().into_os_string()
            } else {
                a.to_owned()
            }
        })
        .collect();
    let mut cmd = crate::support::sysinstall();
    cmd.env("SYSINSTALL_RUNDIR", rig.dir.path().join("run"))
        .args(&args)
        .arg(&rig.rootfs);
    let o = output(&mut cmd);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    rig.verify_initial(&rig.rootfs);
}
