//! `sysinstall install` on real loop devices (root tier), verified from
//! outside with tests/qemu/check.py: a full install, then an update that may
//! write only the inactive slot.
//!
//! The boot devices are image files: the host has no eMMC boot partitions.
//! The board identity comes from `--tnspec`: there is no Jetson EEPROM here.

use crate::support::rig::{make_bup, make_rootfs, Rig};
use crate::support::{output, require_root, stderr, stdout};

const TOOLS: &[&str] = &[
    "losetup", "partx", "sgdisk", "mke2fs", "e2fsck", "tune2fs", "zstd", "setfacl", "setfattr",
    "python3",
];

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn full_install_then_update_of_the_inactive_slot() {
    require_root(TOOLS);
    let rig = Rig::new();
    let o = rig.install();
    let err = stderr(&o);
    assert!(
        err.contains("Mode:     initial install (the layout is not in place)"),
        "{err}"
    );
    rig.verify_initial(&rig.rootfs);
    let d = rig.dir.path();
    let hashes = |name: &str| {
        let out = d.join(name);
        rig.check(&[
            "hashes",
            rig.image.to_str().unwrap(),
            rig.layout_json.to_str().unwrap(),
            rig.boot[0].to_str().unwrap(),
            rig.boot[1].to_str().unwrap(),
            out.to_str().unwrap(),
        ]);
        out
    };
    let before = hashes("before.json");

    // A new release: another rootfs and another payload. The board runs slot
    // A (the slot metadata says so), so only slot B and its boot partitions
    // (plus the shared BCT, the other mb1, and the metadata) may change.
    let (bup2, manifest2) = make_bup(d, &rig.layout, "payload-v2", "v2");
    let rootfs2 = make_rootfs(d, &bup2, "v2");
    let o = output(rig.install_cmd().arg(&rootfs2));
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("Mode:     update of slot B (APP_b)"), "{err}");
    let after = hashes("after.json");
    rig.check(&[
        "changed",
        before.to_str().unwrap(),
        after.to_str().unwrap(),
        "--allow",
        ".*_b|BCT|mb1|SMD",
        "--must",
        "APP_b",
        "--same",
        "APP",
        "DATA",
        "LOGS",
        "EXTRA",
    ]);
    rig.verify_update(&rootfs2, &manifest2);

    // The JSON events of a run: schema, sequence, phases, one summary.
    let o = output(
        rig.install_cmd()
            .args(["--mode", "update", "--events", "json"])
            .arg(&rootfs2),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect();
    assert!(lines
        .iter()
        .enumerate()
        .all(|(i, v)| v["seq"] == i as u64 && v["schema"] == 1));
    let summary = lines.last().unwrap();
    assert_eq!(summary["kind"], "summary");
    assert_eq!(summary["result"], "pass");
    assert_eq!(summary["mode"], "update");
    assert!(lines
        .iter()
        .any(|v| v["phase"] == "unpack" && v["kind"] == "step_start"));
    assert!(
        stderr(&o).contains("PASS: successful installation"),
        "PASS goes to stderr when stdout carries JSON"
    );
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn dry_run_and_refused_confirmation_write_nothing() {
    require_root(TOOLS);
    let rig = Rig::new();
    let before = rig.state();
    let o = output(rig.install_cmd().arg("--dry-run").arg(&rig.rootfs));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("--dry-run: nothing was written"));
    assert!(stderr(&o).contains("Payload:  "), "{}", stderr(&o));
    let o = output(rig.install_cmd_unconfirmed().arg(&rig.rootfs));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stdout(&o).starts_with("FAIL: refusing to write"),
        "{}",
        stdout(&o)
    );
    assert_eq!(rig.state(), before);
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_streamed_rootfs_with_the_wrong_hash_never_reaches_the_boot_partitions() {
    require_root(TOOLS);
    use std::io::Write;
    use std::process::Stdio;
    let rig = Rig::new();
    let boot_before: Vec<String> = rig
        .boot
        .iter()
        .map(|b| crate::support::rig::hash_allocated(b))
        .collect();
    let mut child = rig
        .install_cmd()
        .args([
            "--bup",
            rig.bup.to_str().unwrap(),
            "--rootfs-sha256",
            &"0".repeat(64),
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let tarball = std::fs::read(&rig.rootfs).unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        let _ = stdin.write_all(&tarball);
    }
    let o = child.wait_with_output().unwrap();
    // The slots were written before the stream's end revealed the mismatch:
    // the disk changed (4), nothing was marked complete, the boot partitions
    // and slot metadata were not touched.
    assert_eq!(o.status.code(), Some(4), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("SHA-256 mismatch"), "{}", stdout(&o));
    let after: Vec<String> = rig
        .boot
        .iter()
        .map(|b| crate::support::rig::hash_allocated(b))
        .collect();
    assert_eq!(boot_before, after, "boot images changed");
    rig.lo.partx_add();
    for n in [1, 2] {
        let head = sysinstall::sys::blockdev::read_head(&rig.lo.part(n), 8192).unwrap();
        let sb = sysinstall::probe::ext_superblock(&head).unwrap();
        assert!(
            !sb.last_mounted.ends_with(":done"),
            "slot {n} marked complete: {}",
            sb.last_mounted
        );
    }
    // With the right hash, the same stream completes the install.
    let sha = crate::support::sha256_file(&rig.rootfs);
    let mut child = rig
        .install_cmd()
        .args([
            "--bup",
            rig.bup.to_str().unwrap(),
            "--rootfs-sha256",
            &sha,
            "--verify-slots",
            "--events",
            "json",
            "--events-fd",
            "2",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(&tarball).unwrap();
    }
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stderr(&o).contains(r#""step":"verify the slots against each other","verdict":"ok""#),
        "{}",
        stderr(&o)
    );
    rig.verify_initial(&rig.rootfs);
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn the_boards_machine_id_goes_into_a_new_slot_that_has_none() {
    require_root(TOOLS);
    let rig = Rig::new();
    let o = rig.install();
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    // The board ran slot A and has an identity there; the new rootfs (the
    // rig's) brings none.
    let id = "0123456789abcdef0123456789abcdef";
    let mnt = rig.dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    rig.lo.partx_add();
    let sh = |script: &str| {
        let o = output(std::process::Command::new("sh").args(["-ec", script]));
        assert!(o.status.success(), "{script}: {}", stderr(&o));
    };
    let (app, app_b) = (rig.lo.part(1), rig.lo.part(2));
    let m = mnt.display();
    sh(&format!(
        "mount {} {m}; echo {id} > {m}/etc/machine-id; umount {m}",
        app.display()
    ));
    let o = output(
        rig.install_cmd()
            .args(["--events", "json"])
            .arg(&rig.rootfs),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let summary: serde_json::Value =
        serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert_eq!(summary["mode"], "update");
    assert_eq!(summary["machine_id_carried"], true, "{summary}");
    sh(&format!(
        "mount -o ro {} {m}; cp {m}/etc/machine-id {m}.copy; umount {m}",
        app_b.display()
    ));
    let carried = std::fs::read_to_string(format!("{m}.copy")).unwrap();
    assert_eq!(carried, format!("{id}\n"), "APP_b's machine-id");
}
