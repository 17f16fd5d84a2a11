//! `tftp://` sources against a small read-only TFTP server on 127.0.0.1
//! (tests/support/tftp_server.py, RFC 1350), downloaded by busybox's tftp
//! applet as on the upgrader: streamed into both slots, `NAME.sha256`
//! beside the file, a transfer that breaks off started again (only with an
//! expected SHA-256), a missing file, and `scp://` refused by name.

use crate::support::tftp::TftpServer;
use crate::support::{output, require_tools, sha256_file, stderr, stdout, sysinstall};
use std::path::Path;

const TOOLS: &[&str] = &["busybox", "python3"];

/// A plain tarball of a few files, 300 KB or so (600 TFTP blocks).
fn tarball(dir: &Path) -> String {
    let mut b = tar::Builder::new(Vec::new());
    for i in 0..3u32 {
        let data: Vec<u8> = (0..100_000u32)
            .map(|x| (x.wrapping_mul(2_654_435_761) >> (8 + i)) as u8)
            .collect();
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, format!("srv/file{i}"), data.as_slice())
            .unwrap();
    }
    let p = dir.join("rootfs.tar");
    std::fs::write(&p, b.into_inner().unwrap()).unwrap();
    sha256_file(&p)
}

fn unpack(url: &str, dest: &Path, extra: &[&str]) -> (i32, String, String) {
    let o = output(
        sysinstall()
            .args(["unpack", "--progress", "plain"])
            .args(extra)
            .arg(url)
            .arg(dest.join("a"))
            .arg(dest.join("b"))
            .env("SYSINSTALL_TEST", "1"),
    );
    (o.status.code().unwrap_or(-1), stdout(&o), stderr(&o))
}

fn same_tree(dest: &Path) {
    for slot in ["a", "b"] {
        let f = dest.join(slot).join("srv/file2");
        assert_eq!(
            std::fs::metadata(&f).unwrap().len(),
            100_000,
            "{}",
            f.display()
        );
    }
}

#[test]
fn a_tftp_url_streams_into_both_slots_checked_by_its_sidecar() {
    require_tools(TOOLS);
    let srv = tempfile::tempdir().unwrap();
    let sha = tarball(srv.path());
    std::fs::write(
        srv.path().join("rootfs.tar.sha256"),
        format!("{sha}  rootfs.tar\n"),
    )
    .unwrap();
    let server = TftpServer::start(srv.path(), &[]);
    let url = format!("tftp://127.0.0.1:{}/rootfs.tar", server.port);
    let d = crate::http::dests();
    let (code, out, err) = unpack(&url, d.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("sha256 {sha} (verified)")),
        "{out}{err}"
    );
    same_tree(d.path());

    // A sidecar that names another hash: refused.
    std::fs::write(
        srv.path().join("rootfs.tar.sha256"),
        format!("{}  rootfs.tar\n", "0".repeat(64)),
    )
    .unwrap();
    let d = crate::http::dests();
    let (code, _, err) = unpack(&url, d.path(), &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains(&sha) && err.contains("rootfs.tar.sha256"),
        "{err}"
    );
}

#[test]
fn a_broken_transfer_starts_again_only_with_an_expected_hash() {
    require_tools(TOOLS);
    let srv = tempfile::tempdir().unwrap();
    let sha = tarball(srv.path());
    // The first transfer of each file stops after 100 blocks (51200 bytes).
    let server = TftpServer::start(srv.path(), &["--drop-after", "100"]);
    let url = format!("tftp://127.0.0.1:{}/rootfs.tar", server.port);
    let d = crate::http::dests();
    let (code, out, err) = unpack(&url, d.path(), &["--rootfs-sha256", &sha]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("starting the transfer again from byte 0"),
        "{err}"
    );
    assert!(out.contains(&format!("sha256 {sha} (verified)")), "{out}");
    same_tree(d.path());

    let server = TftpServer::start(srv.path(), &["--drop-after", "100"]);
    let url = format!("tftp://127.0.0.1:{}/rootfs.tar", server.port);
    let d = crate::http::dests();
    let (code, _, err) = unpack(&url, d.path(), &[]);
    assert_ne!(code, 0);
    assert!(err.contains("TFTP cannot resume"), "{err}");
}

#[test]
fn a_missing_file_and_scp_are_refused_by_name() {
    require_tools(TOOLS);
    let srv = tempfile::tempdir().unwrap();
    let server = TftpServer::start(srv.path(), &[]);
    let d = crate::http::dests();
    let url = format!("tftp://127.0.0.1:{}/nope.tar", server.port);
    let (code, _, err) = unpack(&url, d.path(), &[]);
    assert_ne!(code, 0);
    assert!(
        err.contains("File not found") && err.contains("nope.tar"),
        "{err}"
    );
    let (code, _, err) = unpack("scp://host/rootfs.tar", d.path(), &[]);
    assert_ne!(code, 0);
    assert!(err.contains("scp/ssh sources are not supported"), "{err}");
}
