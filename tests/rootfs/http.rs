//! HTTP sources against a small server on 127.0.0.1: streaming, a dropped
//! connection resumed with Range (only when the file is proven the same), a
//! server that ignores Range, retries running out, HTTP errors, the SHA-256
//! check on a stream, and `URL.sha256` beside the URL.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

#[derive(Clone, Copy)]
enum Behaviour {
    /// The first response stops after this many body bytes; later ones honour Range.
    DropOnceThenRange(usize),
    /// Every response is a full 200 (chunked), the first one cut short.
    DropOnceIgnoreRange(usize),
    /// Every response stops after this many bytes.
    AlwaysDrop(usize),
    /// 404.
    NotFound,
    /// The first response stalls (connection open, no data) after this many
    /// body bytes; later ones honour Range.
    StallOnceThenRange(usize),
    /// The first request is redirected (302, relative Location) to a path
    /// that serves the file.
    RedirectOnce,
    /// Like `DropOnceThenRange`, but the resumed response is of another
    /// version of the file (another ETag).
    DropOnceThenChanged(usize),
}

/// What the server answers for `URL.sha256`.
#[derive(Clone)]
enum Sidecar {
    /// 404.
    Absent,
    /// This text.
    Text(String),
    /// 500, every time.
    Broken,
}

struct Server {
    url: String,
    requests: Arc<Mutex<Vec<String>>>,
}

fn serve(body: Vec<u8>, how: Behaviour, connections: usize) -> Server {
    serve_with(body, how, connections, Sidecar::Absent)
}

/// Serves `body` for `connections` requests of the file (requests of
/// `URL.sha256` are answered by `sidecar` and not counted or logged).
fn serve_with(body: Vec<u8>, how: Behaviour, connections: usize, sidecar: Sidecar) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!(
        "http://{}/images/rootfs.tar.zst",
        listener.local_addr().unwrap()
    );
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = requests.clone();
    std::thread::spawn(move || {
        let body = Arc::new(body);
        let mut n = 0;
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let head = read_head(&conn);
            if head.starts_with("GET /images/rootfs.tar.zst.sha256 ") {
                let _ = match &sidecar {
                    Sidecar::Absent => {
                        conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                    }
                    Sidecar::Broken => conn.write_all(
                        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
                    ),
                    Sidecar::Text(s) => conn.write_all(
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{s}", s.len())
                            .as_bytes(),
                    ),
                };
                continue;
            }
            if n == connections {
                return;
            }
            log.lock().unwrap().push(head.clone());
            let body = body.clone();
            // One thread per connection: a stalled response must not keep
            // the next request waiting.
            std::thread::spawn(move || respond(conn, &head, &body, how, n));
            n += 1;
        }
    });
    Server { url, requests }
}

fn read_head(conn: &TcpStream) -> String {
    let mut r = BufReader::new(conn);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            return head;
        }
        head.push_str(&line);
    }
}

fn respond(mut conn: TcpStream, head: &str, body: &[u8], how: Behaviour, n: usize) {
    let range_start = head
        .lines()
        .find_map(|l| l.strip_prefix("Range: bytes="))
        .and_then(|r| r.trim().trim_end_matches('-').parse::<usize>().ok());
    let _ = match how {
        Behaviour::NotFound => {
            conn.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        }
        Behaviour::RedirectOnce if n == 0 => conn.write_all(
            b"HTTP/1.1 302 Found\r\nLocation: /mirror/rootfs.tar.zst\r\nContent-Length: 0\r\n\r\n",
        ),
        Behaviour::RedirectOnce => {
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len());
            conn.write_all(head.as_bytes())
                .and_then(|()| conn.write_all(body))
        }
        Behaviour::StallOnceThenRange(cut) if n == 0 => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"v1\"\r\n\r\n",
                body.len()
            );
            let r = conn
                .write_all(head.as_bytes())
                .and_then(|()| conn.write_all(&body[..cut]));
            std::thread::sleep(std::time::Duration::from_secs(5));
            r
        }
        Behaviour::DropOnceThenRange(cut)
        | Behaviour::AlwaysDrop(cut)
        | Behaviour::StallOnceThenRange(cut)
        | Behaviour::DropOnceThenChanged(cut) => {
            let start = range_start.unwrap_or(0);
            let etag = if matches!(how, Behaviour::DropOnceThenChanged(_)) && n > 0 {
                "v2"
            } else {
                "v1"
            };
            let head = if start > 0 {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{}/{}\r\nETag: \"{etag}\"\r\n\r\n",
                    body.len() - start,
                    body.len() - 1,
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nETag: \"v1\"\r\n\r\n",
                    body.len()
                )
            };
            let drop = matches!(how, Behaviour::AlwaysDrop(_)) || n == 0;
            let end = if drop {
                (start + cut).min(body.len())
            } else {
                body.len()
            };
            conn.write_all(head.as_bytes())
                .and_then(|()| conn.write_all(&body[start..end]))
        }
        Behaviour::DropOnceIgnoreRange(cut) => {
            let end = if n == 0 { cut } else { body.len() };
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
            for chunk in body[..end].chunks(100_000) {
                out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
                out.extend_from_slice(chunk);
                out.extend_from_slice(b"\r\n");
            }
            if n > 0 {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            conn.write_all(&out)
        }
    };
    // Dropping the stream closes the connection (mid-body for the cut ones).
}

/// A 3 MB .tar.zst of pseudo-random files (incompressible, so the cut lands
/// mid-stream) and its SHA-256.
pub(crate) fn tarball() -> (Vec<u8>, String) {
    let mut b = tar::Builder::new(Vec::new());
    let mut x: u32 = 12345;
    for i in 0..3 {
        let data: Vec<u8> = (0..1_000_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o640);
        h.set_mtime(1_700_000_000);
        h.set_cksum();
        b.append_data(&mut h, format!("data/file{i}"), data.as_slice())
            .unwrap();
    }
    let tar = b.into_inner().unwrap();
    let zst = zstd::encode_all(tar.as_slice(), 1).unwrap();
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), &zst).unwrap();
    let sha = crate::support::sha256_file(f.path());
    (zst, sha)
}

fn unpack(url: &str, dest: &Path, extra: &[&str]) -> (i32, String, String) {
    let o = crate::support::output(
        crate::support::sysinstall()
            .args(["unpack", "--progress", "plain"])
            .args(extra)
            .arg(url)
            .arg(dest.join("a"))
            .arg(dest.join("b"))
            .env("SYSINSTALL_TEST", "1"),
    );
    (
        o.status.code().unwrap_or(-1),
        crate::support::stdout(&o),
        crate::support::stderr(&o),
    )
}

pub(crate) fn dests() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("a")).unwrap();
    std::fs::create_dir(d.path().join("b")).unwrap();
    d
}

#[test]
fn a_dropped_connection_is_resumed_with_range() {
    let (body, sha) = tarball();
    let server = serve(body.clone(), Behaviour::DropOnceThenRange(700_000), 2);
    let d = dests();
    let (code, out, err) = unpack(&server.url, d.path(), &["--rootfs-sha256", &sha]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("retry 1/5") && err.contains("from byte 700000"),
        "{err}"
    );
    assert!(out.contains(&format!("sha256 {sha} (verified)")), "{out}");
    let reqs = server.requests.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    assert!(!reqs[0].contains("Range:"), "{}", reqs[0]);
    assert!(reqs[1].contains("Range: bytes=700000-"), "{}", reqs[1]);
    assert!(reqs[1].contains("If-Range: \"v1\""), "{}", reqs[1]);
    for slot in ["a", "b"] {
        assert_eq!(
            std::fs::metadata(d.path().join(slot).join("data/file2"))
                .unwrap()
                .len(),
            1_000_000
        );
    }
}

#[test]
fn a_server_without_range_support_is_resumed_by_skipping() {
    let (body, sha) = tarball();
    let server = serve(body, Behaviour::DropOnceIgnoreRange(1_234_567), 2);
    let d = dests();
    let (code, out, err) = unpack(&server.url, d.path(), &["--rootfs-sha256", &sha]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("sha256 {sha}")), "{out}");
    assert!(err.contains("retry 1/5"), "{err}");
}

/// Without an ETag or Last-Modified nothing proves that the bytes after a
/// break belong to the same file: without a checksum to catch a splice,
/// the download fails instead of resuming.
#[test]
fn a_break_without_a_validator_or_a_checksum_is_not_resumed() {
    let (body, _) = tarball();
    let server = serve(body, Behaviour::DropOnceIgnoreRange(1_234_567), 2);
    let d = dests();
    let (code, _, err) = unpack(&server.url, d.path(), &[]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("gave no ETag or Last-Modified") && err.contains("byte 1234567"),
        "{err}"
    );
    assert_eq!(server.requests.lock().unwrap().len(), 1);
}

/// A 206 whose validator is not the first response's is another file.
#[test]
fn a_resumed_response_of_another_version_is_refused() {
    let (body, _) = tarball();
    let server = serve(body, Behaviour::DropOnceThenChanged(700_000), 2);
    let d = dests();
    let (code, _, err) = unpack(&server.url, d.path(), &[]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("the file changed on the server"), "{err}");
}

#[test]
fn url_sha256_beside_the_url_is_used() {
    let (body, sha) = tarball();
    // The right hash: verified, and the message says where it came from.
    let server = serve_with(
        body.clone(),
        Behaviour::DropOnceThenRange(usize::MAX),
        1,
        Sidecar::Text(format!("{sha}  rootfs.tar.zst\n")),
    );
    let d = dests();
    let (code, out, err) = unpack(&server.url, d.path(), &[]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains(&format!("sha256 {sha} (verified)")), "{out}");
    // Another hash: the stream is refused, naming the .sha256 URL.
    let server = serve_with(
        body.clone(),
        Behaviour::DropOnceThenRange(usize::MAX),
        1,
        Sidecar::Text(format!("{}  rootfs.tar.zst\n", "ab".repeat(32))),
    );
    let d = dests();
    let (code, _, err) = unpack(&server.url, d.path(), &[]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("SHA-256 mismatch")
            && err.contains(&format!("{}.sha256 expects abab", server.url)),
        "{err}"
    );
    // A checksum file that exists but cannot be had is not skipped.
    let server = serve_with(
        body,
        Behaviour::DropOnceThenRange(usize::MAX),
        1,
        Sidecar::Broken,
    );
    let d = dests();
    let (code, _, err) = unpack(&server.url, d.path(), &["--retries", "0"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(".sha256") && err.contains("HTTP 500"), "{err}");
}

#[test]
fn a_stalled_connection_times_out_and_resumes() {
    use sysinstall::events::Events;
    use sysinstall::rootfs::{unpack as lib_unpack, Source, SourceOptions, UnpackOptions};
    let (body, sha) = tarball();
    let server = serve(body, Behaviour::StallOnceThenRange(500_000), 2);
    let d = dests();
    let opts = SourceOptions {
        sha256: Some(sha),
        net: sysinstall::rootfs::http::NetOptions {
            stall_timeout: std::time::Duration::from_millis(500),
            retry_delay: std::time::Duration::from_millis(10),
            ..Default::default()
        },
        ..SourceOptions::default()
    };
    let started = std::time::Instant::now();
    let source = Source::open(&server.url, &opts).unwrap();
    let report = lib_unpack(
        source,
        &[d.path().join("a")],
        &UnpackOptions::default(),
        &Events::silent(),
    )
    .unwrap();
    assert!(report.verified);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    let reqs = server.requests.lock().unwrap().clone();
    assert!(reqs[1].contains("Range: bytes=500000-"), "{}", reqs[1]);
}

#[test]
fn redirects_are_followed() {
    let (body, sha) = tarball();
    let server = serve(body, Behaviour::RedirectOnce, 2);
    let d = dests();
    let (code, out, err) = unpack(&server.url, d.path(), &["--rootfs-sha256", &sha]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(verified)"), "{out}");
    let reqs = server.requests.lock().unwrap().clone();
    assert!(
        reqs[1].starts_with("GET /mirror/rootfs.tar.zst HTTP/1.1"),
        "{}",
        reqs[1]
    );
}

#[test]
fn retries_run_out() {
    let (body, _) = tarball();
    let server = serve(body, Behaviour::AlwaysDrop(400_000), 3);
    let d = dests();
    let (code, _, err) = unpack(&server.url, d.path(), &["--retries", "2"]);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("after 2 retries"), "{err}");
    assert!(
        !err.contains("corrupt"),
        "a download failure is not corruption: {err}"
    );
    assert!(err.contains(&server.url), "{err}");
    assert_eq!(server.requests.lock().unwrap().len(), 3);
}

#[test]
fn http_errors_fail_before_anything_is_written() {
    let server = serve(Vec::new(), Behaviour::NotFound, 1);
    let d = dests();
    let (code, _, err) = unpack(&server.url, d.path(), &[]);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("HTTP 404") && err.contains(&server.url),
        "{err}"
    );
}

#[test]
fn a_stream_with_the_wrong_hash_fails() {
    let (body, _) = tarball();
    let server = serve(body, Behaviour::DropOnceThenRange(usize::MAX), 1);
    let d = dests();
    let wrong = "0".repeat(64);
    let (code, _, err) = unpack(&server.url, d.path(), &["--rootfs-sha256", &wrong]);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("SHA-256 mismatch") && err.contains("--rootfs-sha256 expects 0000"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.contains("error:")).count(),
        1,
        "{err}"
    );
}

#[test]
fn https_to_a_plain_server_fails_cleanly() {
    let server = serve(Vec::new(), Behaviour::NotFound, 1);
    let url = server.url.replace("http://", "https://");
    let d = dests();
    let (code, _, err) = unpack(&url, d.path(), &["--retries", "0"]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains(&format!("downloading {url}")), "{err}");
    assert_eq!(
        err.lines().filter(|l| l.contains("error:")).count(),
        1,
        "{err}"
    );
}

/// `--stall-timeout`: the stalled first response is given up after a
/// second (the server would hold it for five) and resumed.
#[test]
fn the_stall_timeout_is_an_option() {
    let (body, sha) = tarball();
    let server = serve(body, Behaviour::StallOnceThenRange(500_000), 2);
    let d = dests();
    let (code, out, err) = unpack(
        &server.url,
        d.path(),
        &["--rootfs-sha256", &sha, "--stall-timeout", "1"],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("(verified)"), "{out}");
    assert!(
        err.contains("no data for too long (timed out); retry 1/5")
            && err.contains("from byte 500000"),
        "{err}"
    );
}
