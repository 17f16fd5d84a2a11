//! A small HTTP/1.1 GET client that streams a tarball and resumes it.
//!
//! Why not a crate: what is needed is one GET with `Range`, `If-Range`,
//! redirects, chunked or length-delimited bodies and a *read* timeout that
//! notices a stalled link (ureq 3 only bounds whole calls). That is a few
//! hundred lines over `std::net`, with nothing else linked; TLS is rustls with
//! Mozilla's roots built in (feature `https`), since an initramfs has no CA
//! store.
//!
//! # Resume
//!
//! The reader counts the bytes it handed out. When the connection fails
//! (error, timeout, or a body shorter than announced) it reconnects, up to
//! `retries` times with a doubling delay, asking for `Range: bytes=N-` with
//! `If-Range` set to the first response's `ETag` (or `Last-Modified`). A
//! `206` must start exactly at `N`. A `200` means the server ignored the
//! range or the file changed: if the validator changed, that is an error;
//! otherwise the first `N` bytes are read and dropped. The caller sees one
//! uninterrupted stream; the SHA-256 over it is the proof.
#![deny(clippy::indexing_slicing)]

use crate::events::Events;
use crate::events::Level;
use anyhow::{anyhow, bail, Context, Result};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Redirects followed.
const MAX_REDIRECTS: u32 = 5;
/// Largest response head (status line and headers) accepted.
const MAX_HEAD: usize = 64 << 10;
/// Longest chunk-size line accepted.
const MAX_CHUNK_LINE: usize = 1024;
/// Longest delay between retries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);

/// A response status the client does not go on with (4xx, 5xx).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {code} {reason}")]
pub struct HttpStatus {
    /// The status code.
    pub code: u16,
    /// Its reason phrase.
    pub reason: String,
}

/// Options of an HTTP source.
#[derive(Clone)]
pub struct HttpOptions {
    /// Reconnections allowed after failures.
    pub retries: u32,
    /// First delay between attempts (doubles).
    pub retry_delay: Duration,
    /// Connect timeout and read/write timeout.
    pub timeout: Duration,
    /// Where retries are reported.
    pub events: Events,
    /// Resume a broken download even when the server gave no validator
    /// (`ETag`, `Last-Modified`) to prove the file did not change: only
    /// when the stream's SHA-256 is known and checked, which catches a
    /// splice. Otherwise such a download fails instead of resuming.
    pub resume_without_validator: bool,
}

/// A parsed `http://` or `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    /// True for https.
    pub tls: bool,
    /// Host name or address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    /// Parses an absolute http(s) URL.
    pub fn parse(url: &str) -> Result<Url> {
        let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
            (false, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (true, r)
        } else {
            bail!("{url}: not an http:// or https:// URL");
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (
                rest.get(..i).unwrap_or_default(),
                rest.get(i..).unwrap_or_default(),
            ),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        let path = path.split('#').next().unwrap_or("/").to_owned();
        if authority.contains('@') {
            bail!("{url}: user:password@ in URLs is not supported");
        }
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| anyhow!("{url}: unclosed [ in host"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| anyhow!("{url}: bad port {p:?}"))?,
                None if after.is_empty() => default_port,
                None => bail!("{url}: junk after the host"),
            };
            (h.to_owned(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| anyhow!("{url}: bad port {p:?}"))?,
                ),
                None => (authority.to_owned(), default_port),
            }
        };
        if host.is_empty() {
            bail!("{url}: no host");
        }
        Ok(Url {
            tls,
            host,
            port,
            path,
        })
    }

    /// The URL that a `Location` header points to, relative to this one.
    pub fn join(&self, location: &str) -> Result<Url> {
        if location.starts_with("http://") || location.starts_with("https://") {
            Url::parse(location)
        } else if location.starts_with("//") {
            Url::parse(&format!(
                "{}:{location}",
                if self.tls { "https" } else { "http" }
            ))
        } else if location.starts_with('/') {
            Ok(Url {
                path: location.to_owned(),
                ..self.clone()
            })
        } else {
            let dir = self.path.rsplit_once('/').map_or("", |(d, _)| d);
            Ok(Url {
                path: format!("{dir}/{location}"),
                ..self.clone()
            })
        }
    }

    fn host_header(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == if self.tls { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// The head of a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Head {
    /// Status code.
    pub status: u16,
    /// Reason phrase.
    pub reason: String,
    /// Headers, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
}

impl Head {
    /// The first header with this (lower-case) name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a response head (without the final empty line's terminator).
pub fn parse_head(text: &str) -> Result<Head> {
    let mut lines = text.split("\r\n").flat_map(|l| l.split('\n'));
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        bail!("not an HTTP/1.x response: {status_line:?}");
    }
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let reason = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    for line in lines.filter(|l| !l.is_empty()) {
        let (n, v) = line
            .split_once(':')
            .ok_or_else(|| anyhow!("bad header line {line:?}"))?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    Ok(Head {
        status,
        reason,
        headers,
    })
}

/// `Content-Range: bytes START-END/TOTAL` → (start, total).
pub fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    Some((start.trim().parse().ok()?, total))
}

trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

/// How the body ends.
enum Framing {
    Length(u64),
    Chunked { left: u64, done: bool },
    Close,
}

/// One response body.
struct Body {
    r: BufReader<Box<dyn Conn>>,
    framing: Framing,
}

impl Read for Body {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.framing {
            Framing::Length(0) => Ok(0),
            Framing::Length(left) => {
                let max = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                let n = self.r.read(buf.get_mut(..max).unwrap_or_default())?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the end of the body",
                    ));
                }
                *left -= n as u64;
                Ok(n)
            }
            Framing::Close => self.r.read(buf),
            Framing::Chunked { done: true, .. } => Ok(0),
            Framing::Chunked { left, done } => {
                if *left == 0 {
                    let size = read_chunk_size(&mut self.r)?;
                    if size == 0 {
                        // Trailers up to the empty line.
                        loop {
                            let line = read_line(&mut self.r, MAX_HEAD)?;
                            if line.is_empty() {
                                break;
                            }
                        }
                        *done = true;
                        return Ok(0);
                    }
                    *left = size;
                }
                let max = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                let n = self.r.read(buf.get_mut(..max).unwrap_or_default())?;
                if n == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a chunk",
                    ));
                }
                *left -= n as u64;
                if *left == 0 {
                    let crlf = read_line(&mut self.r, 2)?;
                    if !crlf.is_empty() {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "chunk not followed by CRLF",
                        ));
                    }
                }
                Ok(n)
            }
        }
    }
}

fn read_line(r: &mut impl BufRead, max: usize) -> io::Result<String> {
    let mut line = Vec::new();
    r.take(max as u64 + 2).read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed or line too long",
        ));
    }
    line.pop();
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    String::from_utf8(line)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "line is not UTF-8"))
}

fn read_chunk_size(r: &mut impl BufRead) -> io::Result<u64> {
    let line = read_line(r, MAX_CHUNK_LINE)?;
    let hex = line.split(';').next().unwrap_or_default().trim();
    u64::from_str_radix(hex, 16).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("bad chunk size {hex:?}"),
        )
    })
}

/// A retrying, resuming body reader for one URL.
pub struct HttpReader {
    url: Url,
    shown: String,
    opts: HttpOptions,
    body: Option<Body>,
    /// Bytes handed to the caller.
    pos: u64,
    /// Total length when known.
    total: Option<u64>,
    /// ETag or Last-Modified of the first response.
    validator: Option<String>,
    retries_used: u32,
}

impl HttpReader {
    /// Connects and reads the response head (so a 404 fails here, before
    /// anything is touched).
    pub fn open(url: &str, opts: HttpOptions) -> Result<HttpReader> {
        let parsed = Url::parse(url)?;
        if parsed.tls && !cfg!(feature = "https") {
            bail!("{url}: this sysinstall was built without the `https` feature");
        }
        let mut r = HttpReader {
            url: parsed,
            shown: url.to_owned(),
            opts,
            body: None,
            pos: 0,
            total: None,
            validator: None,
            retries_used: 0,
        };
        loop {
            match r.connect() {
                Ok(()) => return Ok(r),
                Err(e) if is_retryable(&e) && r.retries_used < r.opts.retries => {
                    r.wait_before_retry(&e)
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The length of the whole body, when the server said.
    pub fn content_length(&self) -> Option<u64> {
        self.total
    }

    fn wait_before_retry(&mut self, err: &anyhow::Error) {
        self.retries_used += 1;
        let delay = self
            .opts
            .retry_delay
            .saturating_mul(1 << (self.retries_used - 1).min(16))
            .min(MAX_RETRY_DELAY);
        self.opts.events.message(
            Level::Warn,
            format!(
                "{}: {:#}; retry {}/{} in {:.1} s from byte {}",
                self.shown,
                err,
                self.retries_used,
                self.opts.retries,
                delay.as_secs_f64(),
                self.pos
            ),
        );
        std::thread::sleep(delay);
    }

    /// Sends the GET (with Range when resuming) and prepares the body.
    fn connect(&mut self) -> Result<()> {
        if self.pos > 0 && self.validator.is_none() && !self.opts.resume_without_validator {
            bail!(
                "the download broke at byte {} and the server gave no ETag or Last-Modified to prove \
                 that a resumed download continues the same file (give --rootfs-sha256, or URL.sha256 \
                 beside it, to resume anyway)",
                self.pos
            );
        }
        let mut url = self.url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut conn = open_conn(&url, self.opts.timeout)?;
            let mut req = format!(
                "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: sysinstall/{}\r\nAccept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n",
                url.path,
                url.host_header(),
                env!("CARGO_PKG_VERSION")
            );
            if self.pos > 0 {
                req.push_str(&format!("Range: bytes={}-\r\n", self.pos));
                if let Some(v) = &self.validator {
                    req.push_str(&format!("If-Range: {v}\r\n"));
                }
            }
            req.push_str("\r\n");
            conn.write_all(req.as_bytes())
                .map_err(|e| transient(e, "sending the request"))?;
            conn.flush()
                .map_err(|e| transient(e, "sending the request"))?;
            let mut r = BufReader::with_capacity(128 << 10, conn);
            let head = read_head(&mut r)?;
            match head.status {
                301 | 302 | 303 | 307 | 308 => {
                    let loc = head
                        .get("location")
                        .ok_or_else(|| anyhow!("HTTP {} without Location", head.status))?;
                    url = url.join(loc)?;
                    continue;
                }
                200 | 206 => {}
                416 if self.total == Some(self.pos) => {
                    // Everything was received; the server has nothing more.
                    self.body = Some(Body {
                        r,
                        framing: Framing::Length(0),
                    });
                    return Ok(());
                }
                s => {
                    let e = anyhow::Error::new(HttpStatus {
                        code: s,
                        reason: head.reason.clone(),
                    });
                    return Err(if s >= 500 || s == 408 || s == 429 {
                        retryable(e)
                    } else {
                        e
                    });
                }
            }
            let framing = if head
                .get("transfer-encoding")
                .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"))
            {
                Framing::Chunked {
                    left: 0,
                    done: false,
                }
            } else if let Some(l) = head.get("content-length") {
                Framing::Length(l.parse().map_err(|_| anyhow!("bad Content-Length {l:?}"))?)
            } else {
                Framing::Close
            };
            let validator = head
                .get("etag")
                .or_else(|| head.get("last-modified"))
                .map(str::to_owned);
            let mut body = Body { r, framing };
            if head.status == 206 {
                let cr = head.get("content-range").and_then(parse_content_range);
                if validator.is_some() && validator != self.validator {
                    bail!("the file changed on the server while it was being downloaded (validator {:?} became {:?})", self.validator, validator);
                }
                match cr {
                    Some((start, total)) if start == self.pos => {
                        if self.total.is_none() {
                            self.total = total;
                        }
                    }
                    _ => bail!("the server resumed at the wrong place (Content-Range {:?}, wanted byte {})", head.get("content-range"), self.pos),
                }
            } else {
                // 200: the whole body.
                let len = match body.framing {
                    Framing::Length(l) => Some(l),
                    _ => None,
                };
                if self.pos > 0 {
                    if self.validator.is_some() && validator != self.validator {
                        bail!("the file changed on the server while it was being downloaded (validator {:?} became {:?})", self.validator, validator);
                    }
                    if len.is_some() && self.total.is_some() && len != self.total {
                        bail!("the file changed on the server while it was being downloaded (size {:?} became {:?})", self.total, len);
                    }
                    // No range support: read and drop what we already have.
                    let skip = self.pos;
                    let dropped = io::copy(&mut (&mut body).take(skip), &mut io::sink())
                        .map_err(|e| transient(e, "skipping to the resume point"))?;
                    if dropped != skip {
                        return Err(retryable(anyhow!("the body ended before the resume point")));
                    }
                } else {
                    self.total = len;
                    self.validator = validator;
                }
            }
            if self.pos == 0 && head.status == 206 {
                bail!("the server answered 206 to a request without Range");
            }
            self.url = url;
            self.body = Some(body);
            return Ok(());
        }
        bail!("more than {MAX_REDIRECTS} redirects")
    }
}

impl HttpReader {
    /// One attempt: reconnect if needed, then read from the body.
    fn try_read(&mut self, buf: &mut [u8]) -> Result<usize> {
        if self.body.is_none() {
            self.connect()?;
        }
        let Some(body) = self.body.as_mut() else {
            bail!("no response body");
        };
        let n = body
            .read(buf)
            .map_err(|e| transient(e, "reading the body"))?;
        match self.total {
            Some(t) if n == 0 && !buf.is_empty() && self.pos < t => Err(retryable(anyhow!(
                "connection closed at byte {} of {t}",
                self.pos
            ))),
            _ => Ok(n),
        }
    }
}

impl Read for HttpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let err = match self.try_read(buf) {
                Ok(n) => {
                    self.pos += n as u64;
                    return Ok(n);
                }
                Err(e) => e,
            };
            self.body = None;
            if is_retryable(&err) && self.retries_used < self.opts.retries {
                self.wait_before_retry(&err);
                continue;
            }
            return Err(io::Error::other(format!(
                "downloading {} (at byte {}, after {} retries): {err:#}",
                self.shown, self.pos, self.retries_used
            )));
        }
    }
}

/// An error worth a retry (network trouble, 5xx); shows as its message.
#[derive(Debug)]
struct Transient(String);

impl std::fmt::Display for Transient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Transient {}

fn transient(e: io::Error, what: &str) -> anyhow::Error {
    // A read timeout shows as EAGAIN ("Resource temporarily unavailable").
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return retryable(anyhow!("{what}: no data for too long (timed out)"));
    }
    retryable(anyhow::Error::new(e).context(what.to_owned()))
}

fn retryable(e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(Transient(format!("{e:#}")))
}

fn is_retryable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Transient>().is_some()
}

fn read_head(r: &mut impl BufRead) -> Result<Head> {
    let mut text = String::new();
    loop {
        let line = read_line(r, MAX_HEAD).map_err(|e| transient(e, "reading the response head"))?;
        if line.is_empty() && !text.is_empty() {
            break;
        }
        if text.len() + line.len() > MAX_HEAD {
            bail!("response head larger than {MAX_HEAD} bytes");
        }
        text.push_str(&line);
        text.push('\n');
    }
    parse_head(&text)
}

fn open_conn(url: &Url, timeout: Duration) -> Result<Box<dyn Conn>> {
    let addrs: Vec<_> = (url.host.as_str(), url.port)
        .to_socket_addrs()
        .map_err(|e| transient(e, &format!("resolving {}", url.host)))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                s.set_read_timeout(Some(timeout))
                    .context("setting a read timeout")?;
                s.set_write_timeout(Some(timeout))
                    .context("setting a write timeout")?;
                let _ = s.set_nodelay(true);
                return if url.tls {
                    tls::wrap(s, &url.host)
                } else {
                    Ok(Box::new(s))
                };
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"));
    Err(transient(
        e,
        &format!("connecting to {}:{}", url.host, url.port),
    ))
}

#[cfg(feature = "https")]
mod tls {
    use super::Conn;
    use anyhow::{anyhow, Result};
    use std::net::TcpStream;
    use std::sync::{Arc, OnceLock};

    fn config() -> Result<Arc<rustls::ClientConfig>> {
        static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
        CONFIG
            .get_or_init(|| {
                let roots = rustls::RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                };
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map(|b| Arc::new(b.with_root_certificates(roots).with_no_client_auth()))
                .map_err(|e| e.to_string())
            })
            .clone()
            .map_err(|e| anyhow!("setting up TLS: {e}"))
    }

    pub(super) fn wrap(sock: TcpStream, host: &str) -> Result<Box<dyn Conn>> {
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| anyhow!("{host}: not a valid TLS server name: {e}"))?;
        let conn = rustls::ClientConnection::new(config()?, name)
            .map_err(|e| anyhow!("starting TLS with {host}: {e}"))?;
        Ok(Box::new(rustls::StreamOwned::new(conn, sock)))
    }
}

#[cfg(not(feature = "https"))]
mod tls {
    use super::Conn;
    use anyhow::{bail, Result};
    use std::net::TcpStream;

    pub(super) fn wrap(_sock: TcpStream, host: &str) -> Result<Box<dyn Conn>> {
        bail!("https://{host}: this sysinstall was built without the `https` feature")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = Url::parse("http://127.0.0.1:8080/a/b.tar.zst?x=1#frag").unwrap();
        assert_eq!(
            (u.tls, u.host.as_str(), u.port, u.path.as_str()),
            (false, "127.0.0.1", 8080, "/a/b.tar.zst?x=1")
        );
        let u = Url::parse("https://example.com").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (true, 443, "/"));
        let u = Url::parse("http://[::1]:81/x").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.host_header()),
            ("::1", 81, "[::1]:81".into())
        );
        assert!(Url::parse("http://:80/").is_err());
        assert!(Url::parse("http://h:99999/").is_err());
        assert!(Url::parse("http://u:p@h/").is_err());
        assert_eq!(u.join("/y").unwrap().path, "/y");
        assert_eq!(u.join("z").unwrap().path, "/z");
        assert_eq!(
            Url::parse("http://h/d/f").unwrap().join("g").unwrap().path,
            "/d/g"
        );
        assert_eq!(u.join("https://o/p").unwrap().host, "o");
    }

    #[test]
    fn heads_and_ranges() {
        let h = parse_head(
            "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 100-199/200\r\nETag: \"x\"\r\n",
        )
        .unwrap();
        assert_eq!(h.status, 206);
        assert_eq!(h.get("etag"), Some("\"x\""));
        assert_eq!(
            parse_content_range(h.get("content-range").unwrap()),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert!(parse_head("SSH-2.0-OpenSSH").is_err());
        assert!(parse_head("HTTP/1.1 abc\r\n").is_err());
    }

    #[test]
    fn chunked_bodies() {
        let raw = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: x\r\n\r\n";
        let conn: Box<dyn Conn> = Box::new(io::Cursor::new(raw.to_vec()));
        let mut b = Body {
            r: BufReader::new(conn),
            framing: Framing::Chunked {
                left: 0,
                done: false,
            },
        };
        let mut s = String::new();
        b.read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello world");
        let conn: Box<dyn Conn> = Box::new(io::Cursor::new(b"5\r\nhel".to_vec()));
        let mut b = Body {
            r: BufReader::new(conn),
            framing: Framing::Chunked {
                left: 0,
                done: false,
            },
        };
        assert!(b.read_to_string(&mut String::new()).is_err());
    }
}
