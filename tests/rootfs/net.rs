//! Sources over the network, against servers written in the harness
//! (`tests/support/net.rs`): TLS with a private CA (`--cacert`,
//! `--insecure-tls`), a server that wants a header and a bearer token (and
//! one it redirects to, which must get neither), an HTTP proxy (absolute
//! URI and CONNECT, `no_proxy`), and a minimal OCI registry (the token
//! flow, Basic auth, TLS, digests, layer choice, a tag that moves).

use crate::http::{dests, tarball};
use crate::support::net::{
    digest, Handler, Proxy, Registry, RegistryAuth, Response, Server, TestCa,
};
use crate::support::{output, stderr, stdout, sysinstall};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

const ZSTD_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// A server of one file at `/rootfs.tar.zst` (and its `.sha256`), with an ETag.
fn file_handler(
    body: Vec<u8>,
    sha: &str,
    want: impl Fn(&crate::support::net::Request) -> Option<u16> + Send + Sync + 'static,
) -> Handler {
    let sidecar = format!("{sha}  rootfs.tar.zst\n");
    Arc::new(move |req| {
        if let Some(code) = want(req) {
            return Response::status(code);
        }
        match req.path() {
            "/rootfs.tar.zst" => Response::ok(body.clone()).with("ETag", "\"v1\""),
            "/rootfs.tar.zst.sha256" => Response::ok(sidecar.clone()),
            _ => Response::status(404),
        }
    })
}

fn unpack_cmd(source: &str, dest: &Path) -> Command {
    let mut c = sysinstall();
    c.args(["unpack", "--progress", "none", "--retries", "0"])
        .arg(source)
        .arg(dest.join("a"))
        .arg(dest.join("b"));
    c
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn all(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o))
}

fn unpacked(dest: &Path) -> bool {
    ["a", "b"].iter().all(|s| {
        dest.join(s)
            .join("data/file2")
            .metadata()
            .map(|m| m.len())
            .ok()
            == Some(1_000_000)
    })
}

#[test]
fn tls_with_a_private_ca() {
    let ca = TestCa::new();
    let (body, sha) = tarball();
    let server = Server::https(&ca, file_handler(body, &sha, |_| None));
    let url = format!("{}/rootfs.tar.zst", server.base);

    // The built-in roots do not know the private CA.
    let d = dests();
    let o = output(&mut unpack_cmd(&url, d.path()));
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(stderr(&o).contains("UnknownIssuer"), "{}", stderr(&o));

    // --cacert adds it: verified (URL.sha256 came over the same TLS).
    let d = dests();
    let o = output(unpack_cmd(&url, d.path()).arg("--cacert").arg(ca.ca_pem()));
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(
        stdout(&o).contains(&format!("sha256 {sha} (verified)")),
        "{}",
        stdout(&o)
    );
    assert!(!all(&o).contains("insecure"), "{}", all(&o));
    assert!(unpacked(d.path()));

    // --insecure-tls takes it too, loudly, at every connection.
    let d = dests();
    let o = output(
        sysinstall()
            .args(["unpack", "--progress", "plain", "--insecure-tls"])
            .arg(&url)
            .arg(d.path().join("a"))
            .arg(d.path().join("b")),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    let warnings = stderr(&o)
        .matches("the certificate of localhost is NOT checked")
        .count();
    assert_eq!(warnings, 2, "URL.sha256 and the tarball: {}", stderr(&o));
    assert!(
        stdout(&o).contains("--insecure-tls: server certificates were NOT checked"),
        "{}",
        stdout(&o)
    );

    // A file that holds no certificate is refused before any connection.
    let junk = ca.dir().join("junk.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let before = server.requests().len();
    let o = output(unpack_cmd(&url, dests().path()).arg("--cacert").arg(&junk));
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(
        stderr(&o).contains("junk.pem: no PEM certificate"),
        "{}",
        stderr(&o)
    );
    assert_eq!(server.requests().len(), before);
}

#[test]
fn a_header_and_a_bearer_token_go_to_the_server_only() {
    let (body, sha) = tarball();
    // Where the file server redirects the tarball to: another origin.
    let mirror = Server::http(file_handler(body.clone(), &sha, |_| None));
    let mirror_url = format!("{}/rootfs.tar.zst", mirror.base);
    let sidecar = format!("{sha}  rootfs.tar.zst\n");
    let server = Server::http(Arc::new(move |req| {
        if req.header("x-api-key") != Some("lab-key") {
            return Response::status(403);
        }
        if req.header("authorization") != Some("Bearer s3cr3t-t0ken") {
            return Response::status(401);
        }
        match req.path() {
            "/rootfs.tar.zst" => Response::status(302).with("Location", &mirror_url),
            "/rootfs.tar.zst.sha256" => Response::ok(sidecar.clone()),
            _ => Response::status(404),
        }
    }));
    let url = format!("{}/rootfs.tar.zst", server.base);

    let o = output(unpack_cmd(&url, dests().path()).args(["--header", "X-Api-Key: lab-key"]));
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(stderr(&o).contains("HTTP 401"), "{}", stderr(&o));

    // The token from the environment (out of `ps`), a wrong one first.
    let o = output(
        unpack_cmd(&url, dests().path())
            .args(["--header", "X-Api-Key: lab-key"])
            .env("SYSINSTALL_BEARER", "wrong-t0ken"),
    );
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(!all(&o).contains("wrong-t0ken"), "{}", all(&o));

    let d = dests();
    let o = output(
        unpack_cmd(&url, d.path())
            .args(["--header", "X-Api-Key: lab-key", "-v"])
            .env("SYSINSTALL_BEARER", "s3cr3t-t0ken"),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(
        stdout(&o).contains(&format!("sha256 {sha} (verified)")),
        "{}",
        stdout(&o)
    );
    assert!(unpacked(d.path()));
    assert!(
        !all(&o).contains("s3cr3t") && !all(&o).contains("lab-key"),
        "{}",
        all(&o)
    );
    // The mirror got the request, without the credentials.
    let got = mirror.requests();
    assert_eq!(got.len(), 1);
    assert!(
        got[0].header("authorization").is_none() && got[0].header("x-api-key").is_none(),
        "{got:?}"
    );

    // --bearer-file: only a file no one else can read.
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cr3t-t0ken\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = output(
        unpack_cmd(&url, dests().path())
            .arg("--bearer-file")
            .arg(&token),
    );
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
    std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
    let o = output(
        unpack_cmd(&url, dests().path())
            .args(["--header", "X-Api-Key: lab-key"])
            .arg("--bearer-file")
            .arg(&token),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
}

#[test]
fn through_a_proxy() {
    let (body, sha) = tarball();
    let server = Server::http(file_handler(body.clone(), &sha, |_| None));
    let url = format!("{}/rootfs.tar.zst", server.base);
    let proxy = Proxy::start(Some("Basic dXNlcjpwQHNz")); // user:p@ss

    // http: the absolute URL to the proxy, with its credentials.
    let d = dests();
    let with_login = proxy.url.replace("http://", "http://user:p%40ss@");
    let o = output(unpack_cmd(&url, d.path()).env("http_proxy", &with_login));
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(unpacked(d.path()));
    assert!(
        !all(&o).contains("p@ss") && !all(&o).contains("p%40ss"),
        "{}",
        all(&o)
    );
    let seen: Vec<String> = proxy
        .requests()
        .iter()
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(seen, [format!("GET {url}.sha256"), format!("GET {url}")]);

    // Without the login the proxy refuses: the message says how to give it.
    let o = output(unpack_cmd(&url, dests().path()).env("http_proxy", &proxy.url));
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(stderr(&o).contains("HTTP 407"), "{}", stderr(&o));

    // https: CONNECT, then TLS end to end with the server (--cacert).
    let ca = TestCa::new();
    let tls = Server::https(&ca, file_handler(body, &sha, |_| None));
    let tls_url = format!("{}/rootfs.tar.zst", tls.base);
    let d = dests();
    let o = output(
        unpack_cmd(&tls_url, d.path())
            .arg("--cacert")
            .arg(ca.ca_pem())
            .env("https_proxy", &with_login),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(unpacked(d.path()));
    let connects: Vec<String> = proxy
        .requests()
        .iter()
        .filter(|r| r.method == "CONNECT")
        .map(|r| r.target.clone())
        .collect();
    assert_eq!(
        connects,
        [
            format!("localhost:{}", tls.port),
            format!("localhost:{}", tls.port)
        ]
    );
    assert_eq!(tls.requests().len(), 2);

    // no_proxy: straight to the server.
    let before = proxy.requests().len();
    let o = output(
        unpack_cmd(&url, dests().path())
            .env("http_proxy", &with_login)
            .env("no_proxy", "localhost,127.0.0.0/8"),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert_eq!(proxy.requests().len(), before);
}

/// A registry holding the test tarball as `jetson/rootfs:r1` (pushed the
/// way oras pushes a file and its checksum).
fn registry_with_rootfs(ca: Option<&TestCa>, auth: RegistryAuth) -> (Registry, Vec<u8>, String) {
    let (body, sha) = tarball();
    let reg = Registry::start(ca, auth);
    let m = reg.push(&[
        (
            "application/vnd.oci.image.layer.v1.tar",
            Some("rootfs.tar.zst"),
            &body,
        ),
        (
            "application/vnd.oci.image.layer.v1.tar",
            Some("rootfs.tar.zst.sha256"),
            format!("{sha}  rootfs.tar.zst\n").as_bytes(),
        ),
    ]);
    reg.tag("jetson/rootfs", "r1", &m);
    (reg, body, sha)
}

#[test]
fn oci_token_flow_with_a_login() {
    let login = Some(("lab".to_owned(), "pw-1234".to_owned()));
    let (reg, _, sha) = registry_with_rootfs(None, RegistryAuth::Token(login));
    let r = reg.reference("jetson/rootfs:r1");

    let o = output(&mut unpack_cmd(&r, dests().path()));
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(
        stderr(&o).contains("set OCI_USERNAME and OCI_PASSWORD"),
        "{}",
        stderr(&o)
    );

    let d = dests();
    let o = output(
        unpack_cmd(&r, d.path())
            .env("OCI_USERNAME", "lab")
            .env("OCI_PASSWORD", "pw-1234"),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    // The layer digest is the identity, checked as the blob flowed.
    assert!(
        stdout(&o).contains(&format!("sha256 {sha} (verified)")),
        "{}",
        stdout(&o)
    );
    assert!(unpacked(d.path()));
    assert!(!all(&o).contains("pw-1234"), "{}", all(&o));
    assert_eq!(
        reg.tokens_issued(),
        1,
        "one token serves the manifest and the blob"
    );
    let paths: Vec<String> = reg
        .server
        .requests()
        .iter()
        .map(|q| q.path().to_owned())
        .collect();
    assert!(
        paths.contains(&format!("/v2/jetson/rootfs/blobs/sha256:{sha}")),
        "{paths:?}"
    );

    let o = output(
        unpack_cmd(&r, dests().path())
            .env("OCI_USERNAME", "lab")
            .env("OCI_PASSWORD", "wrong"),
    );
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(
        stderr(&o).contains("refused OCI_USERNAME/OCI_PASSWORD"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn oci_basic_auth_and_tls() {
    let (reg, _, sha) = registry_with_rootfs(None, RegistryAuth::Basic("u".into(), "p".into()));
    let r = reg.reference("jetson/rootfs:r1");
    let o = output(&mut unpack_cmd(&r, dests().path()));
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(
        stderr(&o).contains("set OCI_USERNAME and OCI_PASSWORD"),
        "{}",
        stderr(&o)
    );
    let o = output(
        unpack_cmd(&r, dests().path())
            .env("OCI_USERNAME", "u")
            .env("OCI_PASSWORD", "p"),
    );
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(
        stdout(&o).contains(&format!("sha256 {sha} (verified)")),
        "{}",
        stdout(&o)
    );

    // Over TLS with the private CA, anonymous tokens from an https realm.
    let ca = TestCa::new();
    let (reg, _, sha) = registry_with_rootfs(Some(&ca), RegistryAuth::Token(None));
    let r = reg.reference("jetson/rootfs:r1");
    assert!(r.starts_with("oci://localhost:"), "{r}");
    let d = dests();
    let o = output(unpack_cmd(&r, d.path()).arg("--cacert").arg(ca.ca_pem()));
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(
        stdout(&o).contains(&format!("sha256 {sha} (verified)")),
        "{}",
        stdout(&o)
    );
    assert!(unpacked(d.path()));
}

#[test]
fn oci_digests_titles_and_hashes() {
    let (reg, _, sha) = registry_with_rootfs(None, RegistryAuth::None);
    let tagged = reg.reference("jetson/rootfs:r1");
    // By manifest digest (the tag is then only a name).
    let manifest = reg.tagged("jetson/rootfs", "r1");
    let d = dests();
    let o = output(&mut unpack_cmd(
        &reg.reference(&format!("jetson/rootfs:ignored@{manifest}")),
        d.path(),
    ));
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(unpacked(d.path()));
    let paths: Vec<String> = reg
        .server
        .requests()
        .iter()
        .map(|q| q.path().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            format!("/v2/jetson/rootfs/manifests/{manifest}"),
            format!("/v2/jetson/rootfs/blobs/sha256:{sha}")
        ]
    );

    // #TITLE chooses another layer: the checksum file is no tarball.
    let o = output(&mut unpack_cmd(
        &format!("{tagged}#rootfs.tar.zst.sha256"),
        dests().path(),
    ));
    assert_eq!(code(&o), 4, "{}", all(&o));
    let o = output(&mut unpack_cmd(
        &format!("{tagged}#nothing"),
        dests().path(),
    ));
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(
        stderr(&o).contains("no layer titled \"nothing\""),
        "{}",
        stderr(&o)
    );

    // A given hash must be the layer's digest: refused before the blob is read.
    let before = reg.server.requests().len();
    let o = output(unpack_cmd(&tagged, dests().path()).args(["--rootfs-sha256", &"ab".repeat(32)]));
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(
        stderr(&o).contains(&format!(
            "is sha256:{sha} (the layer its manifest names), --rootfs-sha256 expects abab"
        )),
        "{}",
        stderr(&o)
    );
    assert!(reg.server.requests()[before..]
        .iter()
        .all(|q| !q.path().contains("/blobs/")));
    let o = output(unpack_cmd(&tagged, dests().path()).args(["--rootfs-sha256", &sha]));
    assert_eq!(code(&o), 0, "{}", all(&o));

    // A manifest that is not what its digest says is refused.
    let forged = format!("sha256:{}", "cd".repeat(32));
    reg.manifest_as(
        &forged,
        "application/vnd.oci.image.manifest.v1+json",
        "{\"schemaVersion\":2,\"layers\":[]}",
    );
    let o = output(&mut unpack_cmd(
        &reg.reference(&format!("jetson/rootfs@{forged}")),
        dests().path(),
    ));
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(
        stderr(&o).contains("not the digest asked for"),
        "{}",
        stderr(&o)
    );

    // No tag and no digest: refused, nothing asked.
    let before = reg.server.requests().len();
    let o = output(&mut unpack_cmd(
        &reg.reference("jetson/rootfs"),
        dests().path(),
    ));
    assert_eq!(code(&o), 3, "{}", all(&o));
    assert!(stderr(&o).contains("no implicit latest"), "{}", stderr(&o));
    assert_eq!(reg.server.requests().len(), before);
}

/// A tag is resolved once per run: the second open (the install's unpack
/// after its preflight) reads the blob the first one found, although the
/// tag moved in between; a new run sees the new image.
#[test]
fn an_oci_tag_is_resolved_once_per_run() {
    use sysinstall::events::Events;
    use sysinstall::rootfs::http::NetOptions;
    use sysinstall::rootfs::{scan, Source, SourceOptions, UnpackOptions};
    let (reg, _, sha1) = registry_with_rootfs(None, RegistryAuth::None);
    let v2 = zstd::encode_all(&b"not the same image"[..], 1).unwrap();
    let m2 = reg.push(&[(ZSTD_LAYER, None, &v2)]);
    reg.move_after_first_get("jetson/rootfs", "r1", &m2);
    let r = reg.reference("jetson/rootfs:r1");
    let run = SourceOptions {
        net: NetOptions::default(),
        ..SourceOptions::default()
    };
    let first = Source::open(&r, &run).unwrap();
    assert_eq!(hex(first.expected_sha256().unwrap()), sha1);
    assert!(first.rereadable());
    let report = scan(first, &UnpackOptions::default(), &Events::silent()).unwrap();
    assert!(report.verified);
    // The same run: the same blob, and the tag was not asked for again.
    let again = Source::open(&r, &run.clone()).unwrap();
    assert_eq!(hex(again.expected_sha256().unwrap()), sha1);
    let tag_gets = reg
        .server
        .requests()
        .iter()
        .filter(|q| q.path() == "/v2/jetson/rootfs/manifests/r1")
        .count();
    assert_eq!(tag_gets, 1);
    // Another run resolves the tag anew.
    let other = Source::open(&r, &SourceOptions::default()).unwrap();
    assert_eq!(
        other.expected_sha256().map(hex),
        Some(digest(&v2)[7..].to_owned())
    );
}

fn hex(h: [u8; 32]) -> String {
    h.iter().map(|b| format!("{b:02x}")).collect()
}

/// A multi-platform image: the index is followed to its linux/arm64 manifest.
#[test]
fn an_oci_index_is_followed_to_the_arm64_manifest() {
    let (reg, body, sha) = registry_with_rootfs(None, RegistryAuth::None);
    let arm64 = reg.tagged("jetson/rootfs", "r1");
    let amd64 = reg.push(&[(ZSTD_LAYER, None, b"amd64 image")]);
    let m = |d: &str, arch: &str| {
        format!(
            r#"{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{d}","size":1,"platform":{{"os":"linux","architecture":"{arch}"}}}}"#
        )
    };
    let index = reg.manifest(
        "application/vnd.oci.image.index.v1+json",
        &format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{},{}]}}"#,
            m(&amd64, "amd64"),
            m(&arm64, "arm64")
        ),
    );
    reg.tag("jetson/rootfs", "multi", &index);
    let d = dests();
    let o = output(&mut unpack_cmd(
        &reg.reference("jetson/rootfs:multi"),
        d.path(),
    ));
    assert_eq!(code(&o), 0, "{}", all(&o));
    assert!(
        stdout(&o).contains(&format!("sha256 {sha} (verified)")),
        "{}",
        stdout(&o)
    );
    assert!(unpacked(d.path()));
    let paths: Vec<String> = reg
        .server
        .requests()
        .iter()
        .map(|q| q.path().to_owned())
        .collect();
    assert!(
        paths.contains(&format!("/v2/jetson/rootfs/manifests/{arm64}")),
        "{paths:?}"
    );
    assert_eq!(digest(&body)[7..], sha);
}
