//! Bad input never changes the disk (root tier, loop devices): each case
//! must exit with its code (2 usage, 3 refused), say why on one line, and
//! leave the disk and boot images exactly as they were (digest before and
//! after).
//!
//! The board identity comes from `--tnspec`: there is no Jetson EEPROM here.

use crate::support::rig::Rig;
use crate::support::{output, require_root, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::Command;

const TOOLS: &[&str] = &[
    "losetup", "partx", "sgdisk", "mke2fs", "e2fsck", "tune2fs", "zstd", "setfacl", "setfattr",
    "python3", "mkswap", "swapon", "swapoff", "mount",
];

/// One bad input.
struct Case {
    name: &'static str,
    /// Extra arguments and the ROOTFS argument (built from the rig).
    args: Vec<String>,
    /// Replaces `--device` when set.
    device: Option<PathBuf>,
    /// Environment to set.
    env: Vec<(&'static str, String)>,
    code: i32,
    /// Expected in the error line.
    says: &'static str,
    /// Options of the rig's command the case runs without.
    without: &'static [&'static str],
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> String {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p.display().to_string()
}

fn sh(script: &str) {
    let o = output(Command::new("sh").arg("-c").arg(script));
    assert!(o.status.success(), "{script}: {}", stderr(&o));
}

/// Cases run so far (the issue asks for at least 30).
static RAN: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
/// Refusals whose failure code is missing, wrong or inconsistent.
static MISCODED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Runs one case and checks code, message and that nothing changed.
fn run_case(rig: &Rig, c: &Case) {
    RAN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let before = rig.state();
    // The rig's command, minus the options the case gives itself.
    let mut overridden: Vec<String> = c
        .args
        .iter()
        .filter(|a| a.starts_with("--"))
        .cloned()
        .collect();
    if c.device.is_some() {
        overridden.push("--device".into());
    }
    overridden.extend(c.without.iter().map(|s| (*s).to_owned()));
    let base = rig.install_cmd();
    let mut cmd = crate::support::sysinstall();
    cmd.env("SYSINSTALL_RUNDIR", rig.dir.path().join("run"));
    let args: Vec<String> = base
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut i = 0;
    while i < args.len() {
        let takes_value = matches!(
            args[i].as_str(),
            "--layout" | "--device" | "--boot-device" | "--tnspec" | "--progress"
        );
        if overridden.contains(&args[i]) {
            i += if takes_value { 2 } else { 1 };
            continue;
        }
        cmd.arg(&args[i]);
        i += 1;
    }
    if let Some(d) = &c.device {
        cmd.arg("--device").arg(d);
    }
    for (k, v) in &c.env {
        cmd.env(k, v);
    }
    // The events go to stderr (the FAIL line stays on stdout), unless the
    // case is about the events options themselves.
    let events = !c.args.iter().any(|a| a.starts_with("--events"));
    if events {
        cmd.args(["--events", "json", "--events-fd", "2"]);
    }
    cmd.args(&c.args);
    let o = output(&mut cmd);
    let (out, err) = (stdout(&o), stderr(&o));
    if events && c.code == 3 {
        // Every refusal is classified: a stable code, not the catch-all, in
        // the failure event and in the summary, and it is not retryable.
        let json: Vec<serde_json::Value> = err
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let failure = json.iter().find(|v| v["kind"] == "failure");
        let summary = json
            .last()
            .unwrap_or_else(|| panic!("{}: no events: {err}", c.name));
        assert_eq!(summary["kind"], "summary", "{}", c.name);
        let code = summary["code"].as_str().unwrap_or_default();
        let mut wrong = Vec::new();
        if code.is_empty() || code == "failed" {
            wrong.push(format!("{}: code {code:?}", c.name));
        }
        if failure.map(|f| &f["code"]) != Some(&summary["code"]) {
            wrong.push(format!("{}: failure event {failure:?}", c.name));
        }
        if let Some(want) = expected_code(c.name) {
            if code != want {
                wrong.push(format!("{}: code {code:?}, want {want:?}", c.name));
            }
        }
        let retryable = matches!(code, "device_busy" | "source_unavailable");
        if summary["retryable"] != retryable {
            wrong.push(format!("{}: retryable {}", c.name, summary["retryable"]));
        }
        // Collected, so one run names every misclassified case.
        MISCODED.lock().unwrap().extend(wrong);
    }
    assert_eq!(
        o.status.code(),
        Some(c.code),
        "{}: stdout {out} stderr {err}",
        c.name
    );
    if c.code == 3 {
        let fails: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL: ")).collect();
        assert_eq!(fails.len(), 1, "{}: {out}", c.name);
        assert!(fails[0].contains(c.says), "{}: {}", c.name, fails[0]);
        assert!(
            fails[0].ends_with("(nothing on the disk was changed)"),
            "{}: {}",
            c.name,
            fails[0]
        );
    } else {
        // Usage errors: clap's on stderr, ours as the FAIL line.
        assert!(
            err.contains(c.says) || out.contains(c.says),
            "{}: {out}{err}",
            c.name
        );
    }
    assert_eq!(
        rig.state(),
        before,
        "{}: the disk or a boot image changed",
        c.name
    );
}

/// The codes some refusals must carry (the README documents them).
fn expected_code(case: &str) -> Option<&'static str> {
    Some(match case {
        "layout missing" | "layout malformed" | "placeholder without a value" => "layout_invalid",
        "update without a layout in place" => "mode_refused",
        "an initial install over a DATA that holds a filesystem, without --discard-data" => {
            "mode_refused"
        }
        "rootfs SHA-256 mismatch" | "rootfs .sha256 file mismatch" => "checksum_mismatch",
        "rootfs missing" | "payload missing" | "data tarball missing" => "input_missing",
        "rootfs not an archive" | "rootfs with ../" | "data tarball corrupt" => "rootfs_invalid",
        "a hard link to a name not earlier in the archive" => "rootfs_invalid",
        "rootfs SHA-256 malformed" | "site config with an unknown key" => "input_invalid",
        "device missing" | "boot device missing" | "a partition node as the device" => {
            "device_invalid"
        }
        "rootfs too big for the slots" | "more files than the slot has inodes" => "no_space",
        "a data tarball bigger than DATA" => "no_space",
        "payload for another board" | "payload V3" | "payload bad magic" => "payload_mismatch",
        "the same boot device twice" | "one boot device for an eMMC layout" => "device_invalid",
        "a partition is mounted" | "a partition is swap" => "device_busy",
        "mke2fs not installed" => "tool_missing",
        "crypt- partitions and no key" => "key_missing",
        _ => return None,
    })
}

fn p_big(d: &Path, layout: &Path) -> String {
    let out = d.join("big.bup");
    let o = output(
        Command::new("python3")
            .arg(crate::support::repo().join("tests/fixtures/mkbup.py"))
            .arg("--layout")
            .arg(layout)
            .args([
                "--partition",
                "mb2:1048576",
                "--cap",
                "1048576",
                "--tnspec",
                crate::support::rig::TNSPEC,
                "-o",
            ])
            .arg(&out),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    out.display().to_string()
}

fn case(name: &'static str, args: &[&str], code: i32, says: &'static str) -> Case {
    Case {
        name,
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        device: None,
        env: Vec::new(),
        code,
        says,
        without: &[],
    }
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn bad_input_leaves_the_disk_unchanged() {
    require_root(TOOLS);
    let rig = Rig::new();
    let d = rig.dir.path();
    let rootfs = rig.rootfs.display().to_string();
    let layout = std::fs::read_to_string(&rig.layout).unwrap();

    // On the blank disk.
    let big = write(
        d,
        "big.xml",
        layout
            .replace("<size>1073741824</size>", "<size>3221225472</size>")
            .as_bytes(),
    );
    for c in [
        case(
            "update without a layout in place",
            &["--mode", "update", &rootfs],
            3,
            "update mode needs the layout in place",
        ),
        case(
            "layout larger than the disk",
            &["--layout", &big, &rootfs],
            3,
            "past the last usable sector",
        ),
    ] {
        run_case(&rig, &c);
    }

    // On an installed disk.
    rig.install();
    let bup = rig.bup.display().to_string();
    let zst = std::fs::read(&rig.rootfs).unwrap();
    let truncated = write(d, "truncated.tar.zst", &zst[..zst.len() / 2]);
    let garbage = write(d, "garbage.tar", &vec![0x5Au8; 100_000]);
    let sidecar_tar = write(d, "side.tar.zst", &zst);
    write(
        d,
        "side.tar.zst.sha256",
        format!("{}  side.tar.zst\n", "0".repeat(64)).as_bytes(),
    );
    let bad_layout = write(d, "bad.xml", &layout.as_bytes()[..layout.len() / 2]);
    let token_layout = write(
        d,
        "token.xml",
        layout
            .replace("<size>1073741824</size>", "<size>APPSIZE</size>")
            .as_bytes(),
    );
    let no_app = write(
        d,
        "noapp.xml",
        layout.replace("name=\"APP\"", "name=\"ROOT\"").as_bytes(),
    );
    // The next release moved the boot partitions (badpage-fw grew), the
    // user area is the same.
    let moved_boot = write(
        d,
        "moved-boot.xml",
        layout
            .replace(
                "<partition name=\"badpage-fw\" type=\"data\"><size>4608</size>",
                "<partition name=\"badpage-fw\" type=\"data\"><size>8192</size>",
            )
            .as_bytes(),
    );
    assert_ne!(std::fs::read_to_string(&moved_boot).unwrap(), layout);
    let bupb = std::fs::read(&rig.bup).unwrap();
    let bad_magic = write(
        d,
        "magic.bup",
        &[b"NVIDIA__BLOB__X2".as_slice(), &bupb[16..]].concat(),
    );
    let v3 = write(
        d,
        "v3.bup",
        &[b"NVIDIA__BLOB__V3".as_slice(), &bupb[16..]].concat(),
    );
    let short_bup = write(d, "short.bup", &bupb[..bupb.len() - 1000]);
    // A payload whose mb2 image is larger than the demo layout's mb2 (256 KiB).
    let big_bup = p_big(d, &rig.layout);
    let conf = write(d, "site.conf", b"layout = /x\nfrobnicate = yes\n");
    let small_boot = [d.join("small-boot0.img"), d.join("small-boot1.img")];
    for b in &small_boot {
        crate::support::sparse_image(b, 1 << 20);
    }
    let boot0 = rig.boot[0].display().to_string();
    let boot1 = rig.boot[1].display().to_string();
    let boot0_link = d.join("boot0-link").display().to_string();
    std::os::unix::fs::symlink(&rig.boot[0], &boot0_link).unwrap();
    let target = rig.lo.path.display().to_string();
    let image = rig.image.display().to_string();
    // Tarballs an attacker could hand over.
    let evil = d.join("evil");
    sh(&format!(
        "set -e; mkdir -p {e}/a; echo x > {e}/a/f; cd {e}; \
         tar --numeric-owner -cf {d}/dotdot.tar a ../evil/a/f 2>/dev/null || true; \
         tar --numeric-owner -cf {d}/dotdot.tar --transform 's,^a/f,../../escaped,' a/f; \
         ln -s /etc {e}/a/etc; tar -cf {d}/symlink.tar a/etc --transform 's,^a/etc,a/link,' ; \
         tar -rf {d}/symlink.tar --transform 's,^a/f,a/link/passwd,' a/f; \
         truncate -s 1000M {e}/huge; tar -cf - huge | zstd -q > {d}/toobig.tar.zst",
        e = evil.display(),
        d = d.display()
    ));
    // Tarballs small in bytes that do not fit a 1 GiB slot (4 KiB blocks,
    // -i 4096): 240,000 one-byte files (a block each), 270,000 empty files
    // (more than its inodes); a 966 MB file (not its 90 % rule any more:
    // the real free blocks); a data tarball bigger than the 64 MiB DATA;
    // a hard link to a name the archive does not hold earlier.
    sh(&format!(
        r#"python3 - <<'PY'
import io, tarfile
d = "{d}"
def many(name, n, data):
    with tarfile.open(f"{{d}}/{{name}}", "w") as t:
        for i in range(n):
            ti = tarfile.TarInfo(f"f/{{i // 1000}}/{{i}}")
            ti.size = len(data)
            t.addfile(ti, io.BytesIO(data))
many("onebyte.tar", 240000, b"x")
many("empty.tar", 270000, b"")
def big(name, path, size):
    with tarfile.open(f"{{d}}/{{name}}", "w") as t:
        ti = tarfile.TarInfo(path)
        ti.size = size
        class Zeros:
            def read(self, n=-1):
                return bytes(n)
        t.addfile(ti, Zeros())
big("huge.tar", "huge", 966_000_000)
big("bigdata.tar", "bigdata", 100 << 20)
with tarfile.open(f"{{d}}/dangling-link.tar", "w") as t:
    ti = tarfile.TarInfo("etc/passwd-copy")
    ti.type = tarfile.LNKTYPE
    ti.linkname = "etc/passwd"
    t.addfile(ti)
PY
for f in onebyte empty huge bigdata; do zstd -q --rm -f {d}/$f.tar; done"#,
        d = d.display()
    ));
    let empty_path = d.join("emptybin");
    std::fs::create_dir_all(&empty_path).unwrap();
    let p = |n: &str| d.join(n).display().to_string();
    let part = rig.lo.part(3);
    // The demo layout with its slots and DATA encrypted (no dm needed: the
    // refusal comes before cryptsetup would run).
    let luks_layout = crate::support::repo()
        .join("tests/fixtures/layouts/demo-luks.xml")
        .display()
        .to_string();
    let mut cases = vec![
        case(
            "layout missing",
            &["--layout", "/nonexistent/layout.xml", &rootfs],
            3,
            "cannot be read",
        ),
        case(
            "layout malformed",
            &["--layout", &bad_layout, &rootfs],
            3,
            "malformed XML",
        ),
        case(
            "crypt- partitions and no key",
            &["--layout", &luks_layout, &rootfs],
            3,
            "no key was given",
        ),
        case(
            "placeholder without a value",
            &["--layout", &token_layout, &rootfs],
            3,
            "placeholder APPSIZE",
        ),
        case(
            "layout without APP",
            &["--layout", &no_app, &rootfs],
            3,
            "no APP partition",
        ),
        case(
            "update, but the new release moved the boot partitions",
            &["--layout", &moved_boot, "--mode", "update", &rootfs],
            3,
            "differs from the layout's (first difference: the layout's badpage-fw at 743424 (8192 bytes)",
        ),
        case(
            "--set without =",
            &["--set", "APPSIZE", &rootfs],
            2,
            "expected NAME=VALUE",
        ),
        case(
            "rootfs missing",
            &["/nonexistent/image.tar.zst"],
            3,
            "/nonexistent/image.tar.zst",
        ),
        case("rootfs not an archive", &[&garbage], 3, "garbage.tar"),
        case("rootfs truncated", &[&truncated], 3, "truncated.tar.zst"),
        case(
            "rootfs SHA-256 mismatch",
            &["--rootfs-sha256", &"ab".repeat(32), &rootfs],
            3,
            "SHA-256 mismatch",
        ),
        case(
            "rootfs .sha256 file mismatch",
            &[&sidecar_tar],
            3,
            "SHA-256 mismatch",
        ),
        case(
            "rootfs SHA-256 malformed",
            &["--rootfs-sha256", "xyz", &rootfs],
            3,
            "xyz",
        ),
        case("rootfs with ../", &[&p("dotdot.tar")], 3, "escaped"),
        case(
            "rootfs writing through a symlink",
            &[&p("symlink.tar")],
            3,
            "a/link",
        ),
        case(
            "rootfs too big for the slots",
            &[&p("toobig.tar.zst")],
            3,
            "does not fit APP",
        ),
        case(
            "240,000 one-byte files",
            &[&p("onebyte.tar.zst")],
            3,
            "does not fit APP",
        ),
        case(
            "more files than the slot has inodes",
            &[&p("empty.tar.zst")],
            3,
            "inodes",
        ),
        case(
            "one file of 966 MB for a 1 GiB slot",
            &[&p("huge.tar.zst")],
            3,
            "does not fit APP",
        ),
        case(
            "a data tarball bigger than DATA",
            &[&rootfs, &p("bigdata.tar.zst")],
            3,
            "does not fit DATA",
        ),
        case(
            "a hard link to a name not earlier in the archive",
            &[&p("dangling-link.tar")],
            3,
            "not earlier in the archive",
        ),
        case(
            "payload missing",
            &["--bup", "/nonexistent/bup", &rootfs],
            3,
            "/nonexistent/bup",
        ),
        case(
            "payload bad magic",
            &["--bup", &bad_magic, &rootfs],
            3,
            "magic",
        ),
        case("payload V3", &["--bup", &v3, &rootfs], 3, "v3.bup"),
        case(
            "payload truncated",
            &["--bup", &short_bup, &rootfs],
            3,
            "short.bup",
        ),
        case(
            "payload for other partitions",
            &["--bup", &big_bup, &rootfs],
            3,
            "big.bup",
        ),
        case(
            "payload for another board",
            &[
                "--tnspec",
                "2888-400-0001-D.0-1-2-jetson-agx-xavier-devkit-mmcblk0p1",
                "--bup",
                &bup,
                &rootfs,
            ],
            3,
            "missing entries",
        ),
        case(
            "data tarball missing",
            &[&rootfs, "/nonexistent/data.tar.gz"],
            3,
            "/nonexistent/data.tar.gz",
        ),
        case(
            "data tarball corrupt",
            &[&rootfs, &garbage],
            3,
            "data tarball",
        ),
        case(
            "site config with an unknown key",
            &["--config", &conf, &rootfs],
            3,
            "unknown key 'frobnicate'",
        ),
        case(
            "boot device missing",
            &[
                "--boot-device",
                "/nonexistent/boot0",
                "--boot-device",
                &boot1,
                &rootfs,
            ],
            3,
            "/nonexistent/boot0",
        ),
        case(
            "the same boot device twice",
            &["--boot-device", &boot0, "--boot-device", &boot0, &rootfs],
            3,
            "are the same storage",
        ),
        case(
            "one boot device under two names",
            &["--boot-device", &boot0, "--boot-device", &boot0_link, &rootfs],
            3,
            "are the same storage",
        ),
        case(
            "the target disk as a boot device",
            &["--boot-device", &target, "--boot-device", &boot1, &rootfs],
            3,
            "is the target disk",
        ),
        case(
            "the target's image file as a boot device",
            &["--boot-device", &boot0, "--boot-device", &image, &rootfs],
            3,
            "is the target disk",
        ),
        case(
            "one boot device for an eMMC layout",
            &["--boot-device", &boot0, &rootfs],
            3,
            "1 boot device(s) were given",
        ),
        case(
            "three boot devices",
            &[
                "--boot-device",
                &boot0,
                "--boot-device",
                &boot1,
                "--boot-device",
                &boot0_link,
                &rootfs,
            ],
            3,
            "3 boot devices given",
        ),
        case(
            "--events-fd not open",
            &["--events", "json", "--events-fd", "97", &rootfs],
            2,
            "--events-fd 97",
        ),
        case("unknown SoC", &["--soc", "t999", &rootfs], 2, "t999"),
        case(
            "unknown option",
            &["--frobnicate", &rootfs],
            2,
            "--frobnicate",
        ),
        case(
            "mode update on a layout with another disk size",
            &["--mode", "update", "--layout", &big, &rootfs],
            3,
            "past the last usable sector",
        ),
    ];
    cases.push(Case {
        name: "device missing",
        device: Some(PathBuf::from("/dev/nonexistent-disk")),
        ..case("", &[&rootfs], 3, "/dev/nonexistent-disk")
    });
    cases.push(Case {
        name: "device is an image file",
        device: Some(rig.image.clone()),
        ..case("", &[&rootfs], 3, "not a block device")
    });
    cases.push(Case {
        name: "an initial install over a DATA that holds a filesystem, without --discard-data",
        without: &["--discard-data"],
        ..case("", &["--mode", "initial", &rootfs], 3, "--discard-data")
    });
    cases.push(Case {
        name: "mke2fs not installed",
        env: vec![("PATH", empty_path.display().to_string())],
        ..case("", &[&rootfs], 3, "mke2fs is not installed")
    });
    for c in &cases {
        run_case(&rig, c);
    }

    // Left to decide, the same release is installed from scratch instead
    // (shown by a dry run).
    {
        let before = rig.state();
        let o = output(
            crate::support::sysinstall()
                .env("SYSINSTALL_RUNDIR", d.join("run"))
                .args([
                    "install",
                    "--dry-run",
                    "--discard-data",
                    "--progress",
                    "none",
                ])
                .args(["--layout", &moved_boot, "--device"])
                .arg(&rig.lo.path)
                .arg("--boot-device")
                .arg(&rig.boot[0])
                .arg("--boot-device")
                .arg(&rig.boot[1])
                .args(["--tnspec", crate::support::rig::TNSPEC])
                .arg(&rig.rootfs),
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("Mode:     initial install (the boot partition table on "),
            "{}",
            stderr(&o)
        );
        assert_eq!(rig.state(), before);
    }

    // Boot devices smaller than the layout's boot partitions: two 1 MiB
    // images.
    {
        let before = rig.state();
        let o = output(
            crate::support::sysinstall()
                .env("SYSINSTALL_RUNDIR", d.join("run"))
                .args(["install", "--yes", "--discard-data", "--progress", "none"])
                .arg("--layout")
                .arg(&rig.layout)
                .arg("--device")
                .arg(&rig.lo.path)
                .arg("--boot-device")
                .arg(&small_boot[0])
                .arg("--boot-device")
                .arg(&small_boot[1])
                .args(["--tnspec", crate::support::rig::TNSPEC])
                .arg(&rig.rootfs),
        );
        assert_eq!(o.status.code(), Some(3), "{}", stdout(&o));
        assert!(
            stdout(&o).contains("boot partitions need"),
            "{}",
            stdout(&o)
        );
        assert_eq!(rig.state(), before);
    }

    // In use: a mounted partition, then a partition used as swap, then a
    // partition node given as the device.
    rig.lo.partx_add();
    let mnt = d.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    sh(&format!("mount -o ro {} {}", part.display(), mnt.display()));
    run_case(
        &rig,
        &case("a partition is mounted", &[&rootfs], 3, "mounted"),
    );
    sh(&format!("umount {}", mnt.display()));
    run_case(
        &rig,
        &Case {
            name: "a partition node as the device",
            device: Some(part.clone()),
            ..case("", &[&rootfs], 3, "")
        },
    );
    let logs = rig.lo.part(4);
    sh(&format!("mkswap -q {l} && swapon {l}", l = logs.display()));
    let c = case("a partition is swap", &[&rootfs], 3, "swap");
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(&rig, &c)));
    sh(&format!("swapoff {}", logs.display()));
    result.unwrap();
    let ran = RAN.load(std::sync::atomic::Ordering::Relaxed);
    eprintln!("{ran} refusal cases, plus the small boot device");
    assert!(ran >= 30, "only {ran} refusal cases ran");
    let miscoded = MISCODED.lock().unwrap();
    assert!(
        miscoded.is_empty(),
        "failure codes:\n{}",
        miscoded.join("\n")
    );
}
