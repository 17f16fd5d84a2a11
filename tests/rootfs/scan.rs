//! `rootfs::scan`, the install's preflight: one read of a local tarball that
//! hashes it, decompresses it, checks every member and captures the BUP,
//! writing nothing.

use sysinstall::events::Events;
use sysinstall::rootfs::{scan, Capture, Source, SourceOptions, UnpackOptions};

fn member(
    b: &mut tar::Builder<Vec<u8>>,
    name: &str,
    kind: tar::EntryType,
    link: &str,
    data: &[u8],
) {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(1);
    if !link.is_empty() {
        h.set_link_name(link).unwrap();
    }
    h.set_cksum();
    b.append_data(&mut h, name, data).unwrap();
}

fn write_zst(dir: &std::path::Path, tar: Vec<u8>) -> String {
    let p = dir.join("image.tar.zst");
    std::fs::write(&p, zstd::encode_all(tar.as_slice(), 3).unwrap()).unwrap();
    p.display().to_string()
}

fn capture(path: &str, max: u64) -> Capture {
    Capture {
        path: path.into(),
        max_bytes: max,
    }
}

#[test]
fn scan_hashes_checks_and_captures() {
    let d = tempfile::tempdir().unwrap();
    let mut b = tar::Builder::new(Vec::new());
    member(
        &mut b,
        "./opt/ota_package/",
        tar::EntryType::Directory,
        "",
        b"",
    );
    member(
        &mut b,
        "./opt/ota_package/bl_update_payload",
        tar::EntryType::Regular,
        "",
        b"NVIDIA__BLOB__V2payload",
    );
    member(
        &mut b,
        "./usr/bin/x",
        tar::EntryType::Regular,
        "",
        &[1u8; 5000],
    );
    let file = write_zst(d.path(), b.into_inner().unwrap());
    let sha = crate::support::sha256_file(std::path::Path::new(&file));
    let opts = SourceOptions {
        sha256: Some(sha.clone()),
        ..SourceOptions::default()
    };
    let uo = UnpackOptions {
        capture: vec![
            capture("opt/ota_package/bl_update_payload", 1 << 20),
            capture("/opt/ota_package/full_init_payload", 1 << 20),
        ],
        ..UnpackOptions::default()
    };
    let r = scan(Source::open(&file, &opts).unwrap(), &uo, &Events::silent()).unwrap();
    assert_eq!(r.sha256, sha);
    assert!(r.verified);
    assert_eq!(
        (r.entries.files, r.entries.dirs, r.entries.file_bytes),
        (2, 1, 5023)
    );
    assert_eq!(r.captured.len(), 1, "only the member that exists");
    assert_eq!(r.captured[0].data, b"NVIDIA__BLOB__V2payload");
    // Nothing was written beside the tarball.
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);

    // The size cap holds.
    let small = UnpackOptions {
        capture: vec![capture("opt/ota_package/bl_update_payload", 10)],
        ..UnpackOptions::default()
    };
    let err = format!(
        "{:#}",
        scan(
            Source::open(&file, &opts).unwrap(),
            &small,
            &Events::silent()
        )
        .unwrap_err()
    );
    assert!(err.contains("more than the 10 allowed"), "{err}");

    // A wrong hash fails the scan.
    let bad = SourceOptions {
        sha256: Some("ab".repeat(32)),
        ..SourceOptions::default()
    };
    let err = format!(
        "{:#}",
        scan(
            Source::open(&file, &bad).unwrap(),
            &UnpackOptions::default(),
            &Events::silent()
        )
        .unwrap_err()
    );
    assert!(err.contains("SHA-256 mismatch"), "{err}");
}

#[test]
fn scan_refuses_what_unpack_would_refuse() {
    let d = tempfile::tempdir().unwrap();
    type M = (&'static str, tar::EntryType, &'static str);
    let cases: [(&str, [M; 2]); 2] = [
        (
            "symlink out",
            [
                ("etc", tar::EntryType::Symlink, "/etc"),
                ("etc/shadow", tar::EntryType::Regular, ""),
            ],
        ),
        (
            "hard link through symlink",
            [
                ("up", tar::EntryType::Symlink, "../.."),
                ("h", tar::EntryType::Link, "up/etc/passwd"),
            ],
        ),
    ];
    for (what, members) in cases {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, link) in members {
            member(&mut b, name, kind, link, b"");
        }
        let file = write_zst(d.path(), b.into_inner().unwrap());
        let err = scan(
            Source::open(&file, &SourceOptions::default()).unwrap(),
            &UnpackOptions::default(),
            &Events::silent(),
        )
        .map(|_| ())
        .unwrap_err();
        let err = format!("{err:#}");
        assert!(
            err.contains("leads out") || err.contains("symlink out"),
            "{what}: {err}"
        );
    }
}
