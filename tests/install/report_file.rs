//! The persistent install report (root tier, loop devices): after an
//! install, each slot and LOGS hold the summary as JSON, naming the rootfs
//! it unpacked; the slots still equal the tarball apart from the report.
//! An update writes its report into the slot it wrote and leaves LOGS alone.

use crate::support::rig::{make_bup, make_rootfs, Rig};
use crate::support::{output, require_root, sha256_file, stderr};
use std::path::Path;
use std::process::Command;

const TOOLS: &[&str] = &[
    "losetup", "partx", "sgdisk", "mke2fs", "e2fsck", "tune2fs", "zstd", "setfacl", "setfattr",
    "python3", "mount", "umount",
];

/// Mounts `dev` read-only at a fresh directory and reads `rel`.
fn read_from(dev: &Path, rel: &str) -> String {
    let mnt = tempfile::tempdir().unwrap();
    let o = output(
        Command::new("mount")
            .args(["-t", "ext4", "-o", "ro,noload"])
            .arg(dev)
            .arg(mnt.path()),
    );
    assert!(
        o.status.success(),
        "mount {}: {}",
        dev.display(),
        stderr(&o)
    );
    let text = std::fs::read_to_string(mnt.path().join(rel));
    let o = output(Command::new("umount").arg(mnt.path()));
    assert!(o.status.success(), "umount: {}", stderr(&o));
    text.unwrap_or_else(|e| panic!("{rel} on {}: {e}", dev.display()))
}

/// The reports found by filesystem label, each a pass, those in `slots`
/// (written by the last run) naming `slots`: (label, rootfs_sha256).
fn reports(rig: &Rig, slots: &[&str]) -> Vec<(String, String)> {
    rig.lo.partx_add();
    let mut found = Vec::new();
    for n in 1..=32 {
        let dev = rig.lo.part(n);
        if !dev.exists() {
            continue;
        }
        let Ok(head) = sysinstall::sys::blockdev::read_head(&dev, 8192) else {
            continue;
        };
        let Some(sb) = sysinstall::probe::ext_superblock(&head) else {
            continue;
        };
        let rel = match sb.label.as_str() {
            "APP" | "APP_b" => "var/log/sysinstall/install.json",
            "LOGS" => "sysinstall/install.json",
            _ => continue,
        };
        // The completion marker survived the report's mount.
        assert!(
            sb.last_mounted.ends_with(":done"),
            "{}: {}",
            sb.label,
            sb.last_mounted
        );
        let v: serde_json::Value = serde_json::from_str(&read_from(&dev, rel)).unwrap();
        assert_eq!(v["result"], "pass", "{}: {v}", sb.label);
        assert_eq!(v["exit"], 0);
        let written: Vec<&str> = v["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s[0].as_str().unwrap())
            .collect();
        if slots.contains(&sb.label.as_str()) {
            assert_eq!(written, slots, "{}: {v}", sb.label);
        }
        assert!(v["sysinstall"].as_str().unwrap().contains("(built "), "{v}");
        found.push((
            sb.label.clone(),
            v["rootfs_sha256"].as_str().unwrap().to_owned(),
        ));
    }
    found.sort();
    found
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn an_install_leaves_its_report_in_the_slots_and_logs() {
    require_root(TOOLS);
    let rig = Rig::new();
    rig.install();
    rig.verify_initial(&rig.rootfs);
    let v1 = sha256_file(&rig.rootfs);
    let got = reports(&rig, &["APP", "APP_b"]);
    let want = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    };
    assert_eq!(got, want(&[("APP", &v1), ("APP_b", &v1), ("LOGS", &v1)]));

    // An update writes its report into the slot it wrote, and only there.
    let d = rig.dir.path();
    let (bup2, manifest2) = make_bup(d, &rig.layout, "payload-v2", "v2");
    let rootfs2 = make_rootfs(d, &bup2, "v2");
    let o = output(rig.install_cmd().arg(&rootfs2));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    rig.verify_update(&rootfs2, &manifest2);
    let v2 = sha256_file(&rootfs2);
    let got = reports(&rig, &["APP_b"]);
    assert_eq!(got, want(&[("APP", &v1), ("APP_b", &v2), ("LOGS", &v1)]));
}
