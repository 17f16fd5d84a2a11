//! Power cuts: `kill -9` at twenty points spread over every phase of an
//! initial install and of an update, then a plain re-run, which must finish
//! the job; the result is verified from outside like any install (root
//! tier, loop devices). The kill comes from the failpoints
//! (`SYSINSTALL_FAILPOINT=name[@n]`), so it lands exactly between two
//! writes. What a killed process left mounted stays mounted, as after a
//! `kill -9`: the re-run must clean it up itself (a power cut of the board
//! unmounts everything; a killed process does not).

use crate::support::rig::{make_bup, make_rootfs, Rig};
use crate::support::{output, require_root, stderr, stdout};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;

const TOOLS: &[&str] = &[
    "losetup", "partx", "sgdisk", "mke2fs", "e2fsck", "tune2fs", "zstd", "setfacl", "setfattr",
    "python3",
];

/// Points of an initial install, in execution order.
const INITIAL: &[&str] = &[
    "journal-written",
    "gpt-barrier@1",
    "gpt-barrier@2",
    "partitioned",
    "mkfs-APP",
    "mkfs-DATA",
    "mkfs-EXTRA",
    "unpack-progress@1",
    "unpacked",
    "before-mark-APP",
    "data",
    "boot-step@1",
    "boot-step@12",
    "boot-written",
    "commit-step@1",
    "committed",
];

/// Points of an update.
const UPDATE: &[&str] = &[
    "mkfs-APP_b",
    "unpack-progress@1",
    "boot-step@2",
    "commit-step@1",
];

fn killed_at(rig: &Rig, point: &str, rootfs: &Path) {
    let o = output(
        rig.install_cmd()
            .env("SYSINSTALL_FAILPOINT", point)
            .arg(rootfs),
    );
    assert_eq!(
        o.status.signal(),
        Some(9),
        "{point}: expected SIGKILL, got {:?}\n{}{}",
        o.status,
        stdout(&o),
        stderr(&o)
    );
}

fn rerun(rig: &Rig, point: &str, rootfs: &Path) -> String {
    let o = output(rig.install_cmd().arg(rootfs));
    assert_eq!(
        o.status.code(),
        Some(0),
        "{point}: re-run failed\n{}{}",
        stdout(&o),
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("PASS: successful installation of"),
        "{point}"
    );
    stderr(&o)
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_rerun_after_a_power_cut_finishes_the_install() {
    require_root(TOOLS);
    let mut rig = Rig::new();
    let rootfs = rig.rootfs.clone();
    for (i, point) in INITIAL.iter().enumerate() {
        if i > 0 {
            rig.reset_disks();
        }
        killed_at(&rig, point, &rootfs);
        let err = rerun(&rig, point, &rootfs);
        if *point != "journal-written" {
            assert!(
                err.contains("Resuming: the Initial install"),
                "{point}: {err}"
            );
        }
        rig.verify_initial(&rootfs);
    }
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_rerun_after_a_power_cut_finishes_the_update() {
    require_root(TOOLS);
    let rig = Rig::new();
    rig.install();
    let d = rig.dir.path();
    let snapshot = d.join("installed.img");
    let boots = [d.join("installed-boot0.img"), d.join("installed-boot1.img")];
    let copy = |from: &Path, to: &Path| {
        let o = output(
            std::process::Command::new("cp")
                .arg("--sparse=always")
                .arg(from)
                .arg(to),
        );
        assert!(o.status.success());
    };
    copy(&rig.image, &snapshot);
    copy(&rig.boot[0], &boots[0]);
    copy(&rig.boot[1], &boots[1]);
    let (bup2, manifest2) = make_bup(d, &rig.layout, "payload-v2", "v2");
    let rootfs2 = make_rootfs(d, &bup2, "v2");
    for point in UPDATE {
        // Back to the installed state: the disk through the loop device (so
        // the kernel's view stays coherent), the boot images as files.
        let o = output(
            std::process::Command::new("dd")
                .arg(format!("if={}", snapshot.display()))
                .arg(format!("of={}", rig.lo.path.display()))
                .args(["bs=4M", "conv=sparse,fsync", "status=none"]),
        );
        assert!(o.status.success(), "{}", stderr(&o));
        copy(&boots[0], &rig.boot[0]);
        copy(&boots[1], &rig.boot[1]);
        killed_at(&rig, point, &rootfs2);
        let err = rerun(&rig, point, &rootfs2);
        assert!(err.contains("Mode:     update of slot B"), "{point}: {err}");
        rig.verify_update(&rootfs2, &manifest2);
    }
}
