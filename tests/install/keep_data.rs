//! `--keep-data` where the new layout moves DATA: the copy of DATA is
//! staged in a partition of the new layout and survives a power cut at any
//! point (the same command run again restores it), or, when no partition
//! has room, it is held in RAM and the plan says so (root tier, loop
//! devices). DATA holds the rig's rootfs tree (owners, modes, xattrs, ACLs,
//! devices, hard links, a long path), put there by a first install's
//! DATA argument, and is checked from outside against that tarball afterwards.

use crate::support::rig::{Rig, TNSPEC};
use crate::support::{output, repo, require_root, stderr, stdout, sysinstall};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const TOOLS: &[&str] = &[
    "losetup", "partx", "sgdisk", "mke2fs", "e2fsck", "tune2fs", "zstd", "setfacl", "setfattr",
    "python3", "tar",
];

/// `sysinstall install --yes` for the rig's disk with `layout`.
fn cmd(rig: &Rig, layout: &Path) -> Command {
    let mut c = sysinstall();
    c.env("SYSINSTALL_RUNDIR", rig.dir.path().join("run"))
        .arg("install")
        .arg("--layout")
        .arg(layout)
        .arg("--device")
        .arg(&rig.lo.path)
        .arg("--boot-device")
        .arg(&rig.boot[0])
        .arg("--boot-device")
        .arg(&rig.boot[1])
        .args(["--tnspec", TNSPEC, "--progress", "plain", "--yes"])
        .args(["--events", "json"]);
    c
}

/// `data_copy` of the run's `kind` event (`plan`, `summary`).
fn data_copy(all: &str, kind: &str) -> serde_json::Value {
    all.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == kind)
        .map(|v| v["data_copy"].clone())
        .unwrap_or_else(|| panic!("no {kind} event in\n{all}"))
}

/// The demo layout with each `(from, to)` text replacement made, saved as `name`.
fn variant(rig: &Rig, name: &str, edits: &[(&str, &str)]) -> PathBuf {
    let mut x = std::fs::read_to_string(repo().join("layouts/demo.xml")).unwrap();
    for (from, to) in edits {
        assert!(x.contains(from), "{from}");
        x = x.replace(from, to);
    }
    let p = rig.dir.path().join(name);
    std::fs::write(&p, x).unwrap();
    p
}

fn ok(c: &mut Command) -> String {
    let o = output(c);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(0), "{all}");
    assert!(all.contains("PASS: successful installation of"), "{all}");
    all
}

/// Copies `from` to `to` keeping holes.
fn copy(from: &Path, to: &Path) {
    let o = output(Command::new("cp").arg("--sparse=always").arg(from).arg(to));
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The disk and boot images back to a snapshot, through the loop device.
fn back_to(rig: &Rig, snap: &[PathBuf; 3]) {
    rig.unmount_leftovers();
    let o = output(
        Command::new("dd")
            .arg(format!("if={}", snap[0].display()))
            .arg(format!("of={}", rig.lo.path.display()))
            .args(["bs=4M", "conv=sparse,fsync", "status=none"]),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    copy(&snap[1], &rig.boot[0]);
    copy(&snap[2], &rig.boot[1]);
}

fn snapshot(rig: &Rig) -> [PathBuf; 3] {
    let d = rig.dir.path();
    let snap = [
        d.join("old.img"),
        d.join("old-boot0.img"),
        d.join("old-boot1.img"),
    ];
    copy(&rig.image, &snap[0]);
    copy(&rig.boot[0], &snap[1]);
    copy(&rig.boot[1], &snap[2]);
    snap
}

fn check_data(rig: &Rig, tarball: &Path) {
    let s = |p: &Path| p.to_str().unwrap().to_owned();
    rig.check(&[
        "tree",
        &s(&rig.image),
        &s(&rig.layout_json),
        "DATA",
        &s(tarball),
    ]);
}

/// A rig installed with an older layout (APP 768 MiB, so DATA sits 256 MiB
/// lower than in the demo layout the tests install next), its DATA filled
/// from the rootfs tarball; and that tarball.
fn installed_with_data_lower() -> (Rig, PathBuf) {
    let rig = Rig::new();
    let old = variant(
        &rig,
        "old.xml",
        &[(
            r#"<partition name="APP" id="1" type="data"><size>1073741824</size>"#,
            r#"<partition name="APP" id="1" type="data"><size>805306368</size>"#,
        )],
    );
    let rootfs = rig.rootfs.clone();
    ok(cmd(&rig, &old)
        .arg("--discard-data")
        .arg(&rootfs)
        .arg(&rootfs));
    (rig, rootfs)
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_moving_data_is_staged_and_survives_a_power_cut() {
    require_root(TOOLS);
    let (rig, rootfs) = installed_with_data_lower();
    let snap = snapshot(&rig);
    // No failpoint, then a kill after the copy is recorded, after the new
    // table is written, after the new DATA is made, in the middle of the
    // restore into it, and after the journal says DATA is restored.
    let points = [
        None,
        Some("staged"),
        Some("partitioned"),
        Some("mkfs-DATA"),
        Some("restore-entry@3"),
        Some("data-restored"),
    ];
    for (i, point) in points.iter().enumerate() {
        if i > 0 {
            back_to(&rig, &snap);
        }
        if let Some(p) = point {
            let o = output(
                cmd(&rig, &rig.layout)
                    .arg("--keep-data")
                    .env("SYSINSTALL_FAILPOINT", p)
                    .arg(&rootfs),
            );
            assert_eq!(
                o.status.signal(),
                Some(9),
                "{p}: {}{}",
                stdout(&o),
                stderr(&o)
            );
        }
        let all = ok(cmd(&rig, &rig.layout).arg("--keep-data").arg(&rootfs));
        assert!(
            all.contains("DATA kept: copy staged in APP_b"),
            "{point:?}: {all}"
        );
        assert!(all.contains("survives a power cut"), "{point:?}: {all}");
        for kind in ["plan", "summary"] {
            let c = data_copy(&all, kind);
            assert_eq!(
                (&c["kept_in"], &c["survives_power_cut"]),
                (&"APP_b".into(), &true.into()),
                "{point:?} {kind}: {c}"
            );
            assert!(c["bytes"].as_u64().unwrap() > 512, "{c}");
        }
        if matches!(point, Some("partitioned" | "mkfs-DATA" | "restore-entry@3")) {
            assert!(
                all.contains("DATA restored from the copy in APP_b"),
                "{point:?}: {all}"
            );
        }
        check_data(&rig, &rootfs);
        rig.verify_initial(&rootfs);
    }
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_damaged_staged_copy_is_a_refusal() {
    require_root(TOOLS);
    let (rig, rootfs) = installed_with_data_lower();
    let o = output(
        cmd(&rig, &rig.layout)
            .arg("--keep-data")
            .env("SYSINSTALL_FAILPOINT", "partitioned")
            .arg(&rootfs),
    );
    assert_eq!(o.status.signal(), Some(9), "{}", stderr(&o));
    // One byte of the copy's archive flipped: APP_b's first byte is where
    // the header is (nothing overlaps it), the archive follows it.
    let app_b = layout_start(&rig, "APP_b");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&rig.lo.path)
        .unwrap();
    use std::io::{Read, Seek, SeekFrom, Write};
    let at = app_b + 512 + 700;
    let mut b = [0u8; 1];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut b).unwrap();
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&[b[0] ^ 0xff]).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let o = output(cmd(&rig, &rig.layout).arg("--keep-data").arg(&rootfs));
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(3), "{all}");
    assert!(
        all.contains("the copy of DATA the interrupted install staged in APP_b (byte 0) cannot be used: staged copy is damaged"),
        "{all}"
    );
    let failure = all
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["kind"] == "failure")
        .unwrap_or_else(|| panic!("no failure event in\n{all}"));
    assert_eq!(failure["code"], "checksum_mismatch", "{failure}");
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn starting_over_would_lose_the_staged_copy_and_is_refused() {
    require_root(TOOLS);
    let (rig, rootfs) = installed_with_data_lower();
    let o = output(
        cmd(&rig, &rig.layout)
            .arg("--keep-data")
            .env("SYSINSTALL_FAILPOINT", "mkfs-DATA")
            .arg(&rootfs),
    );
    assert_eq!(o.status.signal(), Some(9), "{}", stderr(&o));
    // --restart would start over from the new, empty DATA.
    let o = output(
        cmd(&rig, &rig.layout)
            .args(["--keep-data", "--restart"])
            .arg(&rootfs),
    );
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(o.status.code(), Some(3), "{all}");
    assert!(
        all.contains("the interrupted install holds the only copy of DATA, staged in APP_b"),
        "{all}"
    );
    // The same command as before finishes the job.
    ok(cmd(&rig, &rig.layout).arg("--keep-data").arg(&rootfs));
    check_data(&rig, &rootfs);
}

/// The first byte of partition `name` of the rig's layout.
fn layout_start(rig: &Rig, name: &str) -> u64 {
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&rig.layout_json).unwrap()).unwrap();
    let parts = j["partitions"].as_array().unwrap();
    let p = parts.iter().find(|p| p["name"] == name).unwrap();
    p["start_lba"].as_u64().unwrap() * j["sector_size"].as_u64().unwrap()
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn without_room_for_a_copy_data_is_held_in_ram_and_the_plan_says_so() {
    require_root(TOOLS);
    let rig = Rig::new();
    // The old layout: small slots, no EXTRA, DATA from after LOGS to the
    // end of the disk; it holds 48 MiB, more than the new layout has free
    // anywhere outside the old DATA (the new APP's first 36 MiB).
    let old = variant(
        &rig,
        "old.xml",
        &[
            (
                r#"<partition name="APP" id="1" type="data"><size>1073741824</size>"#,
                r#"<partition name="APP" id="1" type="data"><size>16777216</size>"#,
            ),
            (
                r#"<partition name="APP_b" id="2" type="data"><size>1073741824</size>"#,
                r#"<partition name="APP_b" id="2" type="data"><size>16777216</size>"#,
            ),
            (
                r#"<partition name="DATA" id="3" type="data"><size>67108864</size><align_boundary>4096</align_boundary></partition>"#,
                "",
            ),
            (
                r#"<partition name="LOGS" id="4" type="data"><size>67108864</size>"#,
                r#"<partition name="LOGS" id="4" type="data"><size>4194304</size>"#,
            ),
            (
                r#"<partition name="EXTRA" id="5" type="data"><allocation_attribute>0x808</allocation_attribute><align_boundary>4096</align_boundary></partition>"#,
                r#"<partition name="DATA" id="3" type="data"><allocation_attribute>0x808</allocation_attribute><align_boundary>4096</align_boundary></partition>"#,
            ),
        ],
    );
    let d = rig.dir.path();
    let data = d.join("data.tar");
    let sh = format!(
        r#"set -e
t="{t}"
mkdir -p "$t/big" "$t/home"
head -c 50331648 /dev/urandom > "$t/big/blob"
echo mine > "$t/home/file"; chown 1234:5678 "$t/home/file"; chmod 640 "$t/home/file"
setfattr -n user.kept -v yes "$t/home/file"
tar --numeric-owner --xattrs --xattrs-include='*' -cpf "{out}" -C "$t" .
rm -rf "$t""#,
        t = d.join("data-tree").display(),
        out = data.display()
    );
    let o = output(Command::new("sh").arg("-c").arg(sh));
    assert!(o.status.success(), "{}", stderr(&o));
    let rootfs = rig.rootfs.clone();
    ok(cmd(&rig, &old)
        .arg("--discard-data")
        .arg(&rootfs)
        .arg(&data));
    let all = ok(cmd(&rig, &rig.layout).arg("--keep-data").arg(&rootfs));
    assert!(
        all.contains("DATA kept: copy held in RAM: lost on a power cut"),
        "{all}"
    );
    assert!(
        all.contains("no partition of the new layout has room"),
        "{all}"
    );
    check_data(&rig, &data);
    rig.verify_initial(&rootfs);
}
