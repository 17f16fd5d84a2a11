//! DATA: the data tarball merged with `--keep-newer-files` semantics, and
//! `--keep-data`'s save to RAM and verified restore.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime};
use sysinstall::rootfs::tree::{diff, hash, manifest, restore, save};

fn file_at(path: &Path, body: &str, mtime: u64) {
    std::fs::write(path, body).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(mtime))
        .unwrap();
}

#[test]
fn data_tarball_keeps_newer_existing_files() {
    let d = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    for name in ["newer", "older", "same", "fresh"] {
        let mut h = tar::Header::new_ustar();
        h.set_size(7);
        h.set_mode(0o644);
        h.set_mtime(2000);
        h.set_cksum();
        b.append_data(&mut h, format!("data/{name}"), &b"archive"[..])
            .unwrap();
    }
    let tarball = d.path().join("data.tar");
    std::fs::write(&tarball, b.into_inner().unwrap()).unwrap();
    let dest = d.path().join("DATA");
    std::fs::create_dir_all(dest.join("data")).unwrap();
    file_at(&dest.join("data/newer"), "mine", 3000);
    file_at(&dest.join("data/older"), "mine", 1000);
    file_at(&dest.join("data/same"), "mine", 2000);

    let o = crate::support::output(
        crate::support::sysinstall()
            .args(["unpack", "--progress", "none", "--keep-newer-files"])
            .arg(&tarball)
            .arg(&dest),
    );
    assert!(o.status.success(), "{}", crate::support::stderr(&o));
    assert!(
        crate::support::stdout(&o).contains("kept 2 existing files"),
        "{}",
        crate::support::stdout(&o)
    );
    let read = |n: &str| std::fs::read_to_string(dest.join("data").join(n)).unwrap();
    assert_eq!(
        (read("newer").as_str(), read("same").as_str()),
        ("mine", "mine")
    );
    assert_eq!(
        (read("older").as_str(), read("fresh").as_str()),
        ("archive", "archive")
    );
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn keep_data_round_trip_is_exact_and_bounded() {
    crate::support::require_root(&["setfattr", "setfacl", "mknod"]);
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("gen");
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
    let tree = out.join("tree");
    let before = hash(&tree).unwrap();

    let err = save(&tree, 1 << 20).err().unwrap().to_string();
    assert!(err.contains("more than the 1048576 allowed"), "{err}");

    let saved = save(&tree, 512 << 20).unwrap();
    assert_eq!(saved.hash, before);
    let target = work.path().join("restored");
    std::fs::create_dir(&target).unwrap();
    restore(&saved, &target).unwrap();
    assert_eq!(hash(&target).unwrap(), before);
    let d = diff(
        &manifest(&tree).unwrap(),
        &manifest(&target).unwrap(),
        false,
    );
    assert!(d.is_empty(), "{}", d.join("\n"));
}
