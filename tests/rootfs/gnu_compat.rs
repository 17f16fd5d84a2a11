//! `sysinstall unpack` against GNU tar, entry by entry.
//!
//! `tests/rootfs/make-tarballs.sh` builds a tree with every kind of entry (files
//! of awkward sizes, setuid/setgid/sticky, huge ids, devices, a FIFO, hard and
//! symbolic links, long names and targets, xattrs on every type that takes them,
//! a file capability, access and default ACLs, sub-second and directory mtimes,
//! sparse files) and tars it in GNU and PAX formats with every sparse version
//! and compression. Each archive is extracted by GNU tar
//! (`--xattrs --xattrs-include='*' --acls --numeric-owner -xpf`, as root) and by
//! `sysinstall unpack` into two directories at once; the trees must not differ
//! in any entry, including block allocation (holes kept).

use std::path::Path;
use std::process::Command;
use sysinstall::rootfs::tree::{diff, manifest};

fn gnu_extract(tarball: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).unwrap();
    let o = crate::support::output(
        Command::new("tar")
            .args([
                "--xattrs",
                "--xattrs-include=*",
                "--acls",
                "--numeric-owner",
                "-xpf",
            ])
            .arg(tarball)
            .arg("-C")
            .arg(dest),
    );
    assert!(
        o.status.success(),
        "GNU tar: {}",
        crate::support::stderr(&o)
    );
}

fn compare(reference: &Path, got: &Path, what: &str) {
    let a = manifest(reference).unwrap();
    let b = manifest(got).unwrap();
    let d = diff(&a, &b, true);
    assert!(
        d.is_empty(),
        "{what}: {} differences:\n{}",
        d.len(),
        d.join("\n")
    );
    assert!(a.len() > 40, "{what}: only {} entries?", a.len());
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn unpack_matches_gnu_tar_for_every_format() {
    let tools = [
        "tar", "setfattr", "setfacl", "mknod", "zstd", "pigz", "xz", "bzip2",
    ];
    crate::support::require_root(&tools);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("out");
    let o = crate::support::output(
        Command::new("bash")
            .arg(crate::support::repo().join("tests/rootfs/make-tarballs.sh"))
            .arg(&out),
    );
    assert!(
        o.status.success(),
        "generator: {}",
        crate::support::stderr(&o)
    );

    for (tar, variants) in [
        ("gnu.tar", &["gnu.tar"][..]),
        ("posix-sparse00.tar", &["posix-sparse00.tar"][..]),
        ("posix-sparse01.tar", &["posix-sparse01.tar"][..]),
        (
            "posix.tar",
            &[
                "posix.tar",
                "posix.tar.zst",
                "posix-pzstd.tar.zst",
                "posix.tar.gz",
                "posix.tar.xz",
                "posix.tar.bz2",
            ][..],
        ),
    ] {
        let reference = work.path().join(format!("gnu-{tar}"));
        gnu_extract(&out.join(tar), &reference);
        for v in variants {
            let (s1, s2) = (
                work.path().join(format!("a-{v}")),
                work.path().join(format!("b-{v}")),
            );
            std::fs::create_dir_all(&s1).unwrap();
            std::fs::create_dir_all(&s2).unwrap();
            let o = crate::support::output(
                crate::support::sysinstall()
                    .args(["unpack", "--progress", "none"])
                    .arg(out.join(v))
                    .arg(&s1)
                    .arg(&s2),
            );
            assert!(o.status.success(), "{v}: {}", crate::support::stderr(&o));
            compare(&reference, &s1, &format!("{v} (first slot)"));
            compare(&reference, &s2, &format!("{v} (second slot)"));
            std::fs::remove_dir_all(&s1).unwrap();
            std::fs::remove_dir_all(&s2).unwrap();
        }
        // The tree itself, as a sanity check of the manifest and of GNU tar.
        let posix_like = tar != "gnu.tar";
        if posix_like {
            let tree = manifest(&out.join("tree")).unwrap();
            let got = manifest(&reference).unwrap();
            let d: Vec<String> = diff(&tree, &got, false)
                .into_iter()
                .filter(|l| {
                    !l.contains(" . dir ") && !l.starts_with("- . ") && !l.starts_with("+ . ")
                })
                .collect();
            assert!(
                d.is_empty(),
                "GNU tar itself differs from the source tree:\n{}",
                d.join("\n")
            );
        }
    }

    // A destination that passes things on: setgid with another group and a
    // default ACL. GNU tar resets every member's owner and ACL from the
    // archive; so must we.
    for tar in ["posix.tar", "gnu.tar"] {
        let (g, s1) = (
            work.path().join(format!("inh-gnu-{tar}")),
            work.path().join(format!("inh-ours-{tar}")),
        );
        for d in [&g, &s1] {
            std::fs::create_dir_all(d).unwrap();
            let o = crate::support::output(
                Command::new("sh").arg("-c").arg("chgrp 100 \"$0\" && chmod 2775 \"$0\" && setfacl -d -m u:1234:rwx,g:100:rwx \"$0\"").arg(d),
            );
            assert!(o.status.success(), "{}", crate::support::stderr(&o));
        }
        gnu_extract(&out.join(tar), &g);
        let o = crate::support::output(
            crate::support::sysinstall()
                .args(["unpack", "--progress", "none"])
                .arg(out.join(tar))
                .arg(&s1),
        );
        assert!(o.status.success(), "{tar}: {}", crate::support::stderr(&o));
        compare(
            &g,
            &s1,
            &format!("{tar} into a setgid directory with a default ACL"),
        );
    }
}
