//! Where the rootfs comes from (root tier, loop devices): a rootfs without a
//! bootloader payload, a pipe, a URL, standard input; and a resume that
//! must never leave the two slots with two different images.

use crate::support::http::FileServer;
use crate::support::rig::{hash_allocated, make_bup, make_rootfs, Rig};
use crate::support::tftp::TftpServer;
use crate::support::{output, require_root, stderr, stdout};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const TOOLS: &[&str] = &[
    "losetup", "partx", "sgdisk", "mke2fs", "e2fsck", "tune2fs", "zstd", "setfacl", "setfattr",
    "python3", "mkfifo",
];

fn boot_state(rig: &Rig) -> Vec<String> {
    rig.boot.iter().map(|b| hash_allocated(b)).collect()
}

/// A small rootfs without a payload.
fn rootfs_without_payload(dir: &Path) -> PathBuf {
    let out = dir.join("nopayload.tar.zst");
    let sh = format!(
        "set -e; t={t}; mkdir -p $t/etc $t/bin; \
         printf 'PRETTY_NAME=\"no payload\"\\n' > $t/etc/os-release; echo x > $t/bin/x; \
         tar --numeric-owner -cpf - -C $t . | zstd -q > {out}",
        t = dir.join("nopayload").display(),
        out = out.display()
    );
    let o = output(Command::new("sh").arg("-c").arg(sh));
    assert!(o.status.success(), "{}", stderr(&o));
    out
}

fn assert_refused(o: &Output, says: &str) {
    assert_eq!(o.status.code(), Some(3), "{}{}", stdout(o), stderr(o));
    let fail = stdout(o);
    assert!(fail.contains(says), "{fail}");
    assert!(fail.contains("(nothing on the disk was changed)"), "{fail}");
}

fn assert_passed(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(o), stderr(o));
    assert!(stdout(o).contains("PASS: successful installation of"));
}

/// Runs the install with `bytes` on stdin (or written into the FIFO it reads).
fn with_input(cmd: &mut Command, bytes: Vec<u8>, fifo: Option<&Path>) -> Output {
    let mut child = cmd
        .stdin(if fifo.is_some() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let writer = match fifo {
        Some(f) => {
            let f = f.to_owned();
            std::thread::spawn(move || {
                if let Ok(mut w) = std::fs::OpenOptions::new().write(true).open(f) {
                    let _ = w.write_all(&bytes);
                }
            })
        }
        None => {
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            })
        }
    };
    let o = child.wait_with_output().unwrap();
    if let Some(f) = fifo {
        // A writer still waiting for a reader: give it one, so it ends.
        let _ = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(f);
    }
    writer.join().unwrap();
    o
}

use std::os::unix::fs::OpenOptionsExt;

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_rootfs_without_a_payload_needs_no_bootloader() {
    require_root(TOOLS);
    let rig = Rig::new();
    let tarball = rootfs_without_payload(rig.dir.path());
    let before = rig.state();
    let o = output(rig.install_cmd().arg(&tarball));
    assert_refused(&o, "has no bootloader update payload");
    assert!(stdout(&o).contains("--no-bootloader"), "{}", stdout(&o));
    assert_eq!(rig.state(), before);

    let boot = boot_state(&rig);
    let o = output(
        rig.install_cmd()
            .args(["--no-bootloader", "--events", "json"])
            .arg(&tarball),
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(
            "PASS: successful installation of no payload (--no-bootloader: the boot partitions were left alone)"
        ),
        "{}",
        stderr(&o)
    );
    let summary: serde_json::Value =
        serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert_eq!(summary["result"], "pass");
    assert_eq!(
        summary["boot_note"],
        "--no-bootloader: the boot partitions were left alone"
    );
    assert_eq!(boot_state(&rig), boot, "the boot partitions were written");
    let (img, lj) = (
        rig.image.to_str().unwrap(),
        rig.layout_json.to_str().unwrap(),
    );
    for slot in ["APP", "APP_b"] {
        rig.check(&["tree", img, lj, slot, tarball.to_str().unwrap()]);
    }
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_pipe_is_read_once_and_needs_its_payload_given() {
    require_root(TOOLS);
    let rig = Rig::new();
    let fifo = rig.dir.path().join("rootfs.fifo");
    let o = output(Command::new("mkfifo").arg(&fifo));
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = std::fs::read(&rig.rootfs).unwrap();
    let before = rig.state();
    let o = with_input(rig.install_cmd().arg(&fifo), bytes.clone(), Some(&fifo));
    assert_refused(&o, "can be read only once");
    assert_eq!(rig.state(), before);

    let o = with_input(
        rig.install_cmd().arg("--bup").arg(&rig.bup).arg(&fifo),
        bytes,
        Some(&fifo),
    );
    assert_passed(&o);
    assert!(
        stderr(&o).contains("(streamed; no checksum given)"),
        "{}",
        stderr(&o)
    );
    rig.verify_initial(&rig.rootfs);
}

#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_url_is_checked_for_this_board_before_the_disk_is_touched() {
    require_root(TOOLS);
    let rig = Rig::new();
    let server = FileServer::start("rootfs.tar.zst", std::fs::read(&rig.rootfs).unwrap());
    let before = rig.state();
    let o = output(
        rig.install_cmd_as("2888-400-0001-D.0-1-2-jetson-agx-xavier-devkit-mmcblk0p1")
            .arg(&server.url),
    );
    assert_refused(&o, "missing entries");
    assert_eq!(rig.state(), before);

    let o = output(rig.install_cmd().arg(&server.url));
    assert_passed(&o);
    let err = stderr(&o);
    assert!(
        err.contains(&format!("Rootfs:   {}: zstd", server.url)),
        "the URL is read in the preflight: {err}"
    );
    rig.verify_initial(&rig.rootfs);
}

/// `tftp://` for the rootfs and the data tarball (busybox tftp against the
/// test server): the payload inside is checked for this board in the
/// preflight, which reads the file through once, then the install reads it
/// again.
#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn tftp_sources_are_read_through_in_the_preflight_then_installed() {
    require_root(TOOLS);
    crate::support::require_tools(&["busybox"]);
    let rig = Rig::new();
    let srv = tempfile::tempdir().unwrap();
    std::fs::copy(&rig.rootfs, srv.path().join("rootfs.tar.zst")).unwrap();
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_ustar();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "from-tftp.txt", &b"hello"[..])
        .unwrap();
    std::fs::write(srv.path().join("data.tar"), b.into_inner().unwrap()).unwrap();
    let server = TftpServer::start(srv.path(), &[]);
    let (rootfs, data) = (server.url("rootfs.tar.zst"), server.url("data.tar"));
    let before = rig.state();
    let o = output(
        rig.install_cmd_as("2888-400-0001-D.0-1-2-jetson-agx-xavier-devkit-mmcblk0p1")
            .arg(&rootfs)
            .arg(&data),
    );
    assert_refused(&o, "missing entries");
    assert_eq!(rig.state(), before);

    let o = output(rig.install_cmd().arg(&rootfs).arg(&data));
    assert_passed(&o);
    let err = stderr(&o);
    assert!(err.contains(&format!("Rootfs:   {rootfs}: zstd")), "{err}");
    assert!(
        err.contains(&format!("then {data} unpacked into it")),
        "{err}"
    );
    rig.verify_initial(&rig.rootfs);
}

/// The earlier run finished APP, then died; the source now gives another
/// image. The re-run must not keep APP and fill APP_b with the new one.
#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_resume_never_mixes_two_images() {
    require_root(TOOLS);
    let mut rig = Rig::new();
    let d = rig.dir.path().to_owned();
    let (bup2, _) = make_bup(&d, &rig.layout, "payload-v2", "v2");
    let rootfs2 = make_rootfs(&d, &bup2, "v2");
    let v1 = std::fs::read(&rig.rootfs).unwrap();
    let v2 = std::fs::read(&rootfs2).unwrap();
    let (img, lj) = (
        rig.image.to_str().unwrap().to_owned(),
        rig.layout_json.to_str().unwrap().to_owned(),
    );
    let killed = |o: &Output| {
        assert_eq!(o.status.signal(), Some(9), "{}{}", stdout(o), stderr(o));
    };

    // A `latest` URL, no checksum: the preflight reads it, so the re-run
    // knows it changed and starts over.
    let server = FileServer::start("latest.tar.zst", v1.clone());
    let o = output(
        rig.install_cmd()
            .env("SYSINSTALL_FAILPOINT", "before-mark-APP_b")
            .arg(&server.url),
    );
    killed(&o);
    server.replace(v2.clone());
    let o = output(rig.install_cmd().arg(&server.url));
    assert_passed(&o);
    assert!(
        stderr(&o).contains("starting over"),
        "the journal was of v1: {}",
        stderr(&o)
    );
    for slot in ["APP", "APP_b"] {
        rig.check(&["tree", &img, &lj, slot, rootfs2.to_str().unwrap()]);
    }

    // Standard input, no checksum: it cannot be identified, so no slot of
    // the earlier run is kept.
    rig.reset_disks();
    let o = with_input(
        rig.install_cmd()
            .env("SYSINSTALL_FAILPOINT", "before-mark-APP_b")
            .arg("--bup")
            .arg(&rig.bup)
            .arg("-"),
        v1,
        None,
    );
    killed(&o);
    let o = with_input(rig.install_cmd().arg("--bup").arg(&bup2).arg("-"), v2, None);
    assert_passed(&o);
    for slot in ["APP", "APP_b"] {
        rig.check(&["tree", &img, &lj, slot, rootfs2.to_str().unwrap()]);
    }
}

/// An `oci://` tag that moves while the install runs: the preflight
/// resolved it to v1's layer and checked that blob; the unpack reads the
/// same blob (both slots v1), the tag is asked for once and v2's blob
/// never. After a power cut the tag points at v2: the re-run resolves it
/// anew, sees another image and starts over (both slots v2), never a mix.
#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn an_oci_tag_that_moves_never_mixes_two_images() {
    use crate::support::net::{Registry, RegistryAuth};
    use crate::support::sha256_file;
    require_root(TOOLS);
    let mut rig = Rig::new();
    let d = rig.dir.path().to_owned();
    let (bup2, _) = make_bup(&d, &rig.layout, "payload-v2", "v2");
    let rootfs2 = make_rootfs(&d, &bup2, "v2");
    let (sha1, sha2) = (sha256_file(&rig.rootfs), sha256_file(&rootfs2));
    let layer = "application/vnd.oci.image.layer.v1.tar+zstd";
    let reg = Registry::start(None, RegistryAuth::Token(None));
    let v1 = reg.push(&[(layer, None, &std::fs::read(&rig.rootfs).unwrap())]);
    let v2 = reg.push(&[(layer, None, &std::fs::read(&rootfs2).unwrap())]);
    reg.tag("rig/rootfs", "latest", &v1);
    reg.move_after_first_get("rig/rootfs", "latest", &v2);
    let reference = reg.reference("rig/rootfs:latest");

    let o = output(rig.install_cmd().args(["--events", "json"]).arg(&reference));
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    let summary: serde_json::Value =
        serde_json::from_str(stdout(&o).lines().last().unwrap()).unwrap();
    assert_eq!(summary["rootfs_sha256"], sha1.as_str());
    rig.verify_initial(&rig.rootfs);
    // What the registry served (the requests that carried the token; each
    // source opened asks once without one and gets the token flow's 401).
    let paths: Vec<String> = reg
        .server
        .requests()
        .iter()
        .filter(|q| q.header("authorization").is_some())
        .map(|q| q.path().to_owned())
        .collect();
    let count = |p: &str| paths.iter().filter(|x| *x == p).count();
    assert_eq!(count("/v2/rig/rootfs/manifests/latest"), 1, "{paths:?}");
    assert_eq!(
        count(&format!("/v2/rig/rootfs/blobs/sha256:{sha1}")),
        2,
        "read by the preflight and by the unpack: {paths:?}"
    );
    assert_eq!(count(&format!("/v2/rig/rootfs/blobs/sha256:{sha2}")), 0);

    // On blank disks: a power cut after APP, the tag back on v1 and
    // moving to v2 after it is served.
    rig.reset_disks();
    reg.tag("rig/rootfs", "latest", &v1);
    reg.move_after_first_get("rig/rootfs", "latest", &v2);
    let o = output(
        rig.install_cmd()
            .env("SYSINSTALL_FAILPOINT", "before-mark-APP_b")
            .arg(&reference),
    );
    assert_eq!(o.status.signal(), Some(9), "{}{}", stdout(&o), stderr(&o));
    let o = output(rig.install_cmd().arg(&reference));
    assert_passed(&o);
    assert!(
        stderr(&o).contains("starting over"),
        "the journal was of v1: {}",
        stderr(&o)
    );
    let (img, lj) = (
        rig.image.to_str().unwrap().to_owned(),
        rig.layout_json.to_str().unwrap().to_owned(),
    );
    for slot in ["APP", "APP_b"] {
        rig.check(&["tree", &img, &lj, slot, rootfs2.to_str().unwrap()]);
    }
}

/// Each way a network source fails carries its own code and `retryable`
/// flag, in the failure event and the summary, against real servers in the
/// harness; every one is refused before the disk is touched.
#[test]
#[cfg_attr(not(tier_root), ignore = "root tier: SYSINSTALL_TEST_ROOT=1")]
fn a_network_source_that_fails_says_why() {
    use crate::support::net::{Proxy, Registry, RegistryAuth, Response, Server, TestCa};
    use crate::support::sha256_file;
    use std::sync::Arc;
    require_root(TOOLS);
    let rig = Rig::new();
    let rootfs = std::fs::read(&rig.rootfs).unwrap();
    let served = rootfs.clone();
    let file = move |req: &crate::support::net::Request| match req.path() {
        "/rootfs.tar.zst" => Response::ok(served.clone()),
        _ => Response::status(404),
    };
    let before = rig.state();
    // Runs the install; returns the code and `retryable` of the failure.
    let refused = |what: &str, cmd: &mut Command, says: &str| -> (String, bool) {
        let o = output(cmd.args(["--retries", "0", "--events", "json"]));
        assert_eq!(
            o.status.code(),
            Some(3),
            "{what}: {}{}",
            stdout(&o),
            stderr(&o)
        );
        let events: Vec<serde_json::Value> = stdout(&o)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let summary = events.last().unwrap();
        assert_eq!(summary["kind"], "summary", "{what}");
        let failure = events.iter().find(|e| e["kind"] == "failure").unwrap();
        assert_eq!(failure["code"], summary["code"], "{what}");
        assert_eq!(failure["retryable"], summary["retryable"], "{what}");
        let error = summary["error"].as_str().unwrap();
        assert!(error.contains(says), "{what}: {error}");
        assert!(
            stderr(&o).contains("(nothing on the disk was changed)"),
            "{what}"
        );
        assert_eq!(rig.state(), before, "{what}: the disk changed");
        (
            summary["code"].as_str().unwrap().to_owned(),
            summary["retryable"].as_bool().unwrap(),
        )
    };
    let tls = |v: (String, bool)| assert_eq!(v, ("tls_failed".to_owned(), false));
    let auth = |v: (String, bool)| assert_eq!(v, ("auth_failed".to_owned(), false));
    let unavailable = |v: (String, bool)| assert_eq!(v, ("source_unavailable".to_owned(), true));
    let mismatch = |v: (String, bool)| assert_eq!(v, ("checksum_mismatch".to_owned(), false));

    // A private CA not given with --cacert.
    let ca = TestCa::new();
    let https = Server::https(&ca, Arc::new(file.clone()));
    let url = format!("{}/rootfs.tar.zst", https.base);
    tls(refused(
        "untrusted CA",
        rig.install_cmd().arg(&url),
        "--cacert",
    ));

    // A server that wants a bearer token: none, then a wrong one.
    let guarded = file.clone();
    let server = Server::http(Arc::new(move |req| {
        if req.header("authorization") != Some("Bearer good") {
            return Response::status(401);
        }
        guarded(req)
    }));
    let url = format!("{}/rootfs.tar.zst", server.base);
    auth(refused("no token", rig.install_cmd().arg(&url), "HTTP 401"));
    auth(refused(
        "wrong token",
        rig.install_cmd().env("SYSINSTALL_BEARER", "bad").arg(&url),
        "HTTP 401",
    ));
    // A server that forbids.
    let forbidding = Server::http(Arc::new(|_| Response::status(403)));
    let url403 = format!("{}/rootfs.tar.zst", forbidding.base);
    auth(refused("403", rig.install_cmd().arg(&url403), "HTTP 403"));

    // A server error, and nothing listening.
    let failing = Server::http(Arc::new(|_| Response::status(503)));
    let url503 = format!("{}/rootfs.tar.zst", failing.base);
    unavailable(refused("503", rig.install_cmd().arg(&url503), "HTTP 503"));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!(
        "http://127.0.0.1:{}/rootfs.tar.zst",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    unavailable(refused(
        "refused",
        rig.install_cmd().arg(&dead),
        "connecting to",
    ));

    // Proxies: one that wants a login, one that is not there.
    let plain = Server::http(Arc::new(file.clone()));
    let url = format!("{}/rootfs.tar.zst", plain.base);
    let proxy = Proxy::start(Some("Basic dXNlcjpwQHNz"));
    auth(refused(
        "proxy login",
        rig.install_cmd().env("http_proxy", &proxy.url).arg(&url),
        "407",
    ));
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let no_proxy = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    unavailable(refused(
        "proxy down",
        rig.install_cmd().env("http_proxy", &no_proxy).arg(&url),
        "connecting to",
    ));
    // https through a proxy that wants a login: its CONNECT is refused.
    let url = format!("{}/rootfs.tar.zst", https.base);
    auth(refused(
        "CONNECT login",
        rig.install_cmd()
            .env("https_proxy", &proxy.url)
            .arg("--cacert")
            .arg(ca.ca_pem())
            .arg(&url),
        "HTTP 407",
    ));

    // A registry that wants a login none was given for.
    let layer = "application/vnd.oci.image.layer.v1.tar+zstd";
    let login = Registry::start(None, RegistryAuth::Token(Some(("u".into(), "pw".into()))));
    let m = login.push(&[(layer, None, &rootfs)]);
    login.tag("rig/rootfs", "r1", &m);
    auth(refused(
        "registry login",
        rig.install_cmd().arg(login.reference("rig/rootfs:r1")),
        "OCI_USERNAME",
    ));
    auth(refused(
        "registry wrong login",
        rig.install_cmd()
            .env("OCI_USERNAME", "u")
            .env("OCI_PASSWORD", "wrong")
            .arg(login.reference("rig/rootfs:r1")),
        "OCI_USERNAME/OCI_PASSWORD",
    ));

    // A tag that moved away from the image --rootfs-sha256 pins; a manifest
    // that is not the digest asked for.
    let reg = Registry::start(None, RegistryAuth::Token(None));
    let other = reg.push(&[(layer, None, b"not the pinned image")]);
    reg.tag("rig/rootfs", "latest", &other);
    mismatch(refused(
        "moved tag",
        rig.install_cmd()
            .args(["--rootfs-sha256", &sha256_file(&rig.rootfs)])
            .arg(reg.reference("rig/rootfs:latest")),
        "(the layer its manifest names), --rootfs-sha256 expects",
    ));
    let forged = format!("sha256:{}", "cd".repeat(32));
    reg.manifest_as(
        &forged,
        "application/vnd.oci.image.manifest.v1+json",
        "{\"schemaVersion\":2,\"layers\":[]}",
    );
    mismatch(refused(
        "forged manifest",
        rig.install_cmd()
            .arg(reg.reference(&format!("rig/rootfs@{forged}"))),
        "not the digest asked for",
    ));
}
