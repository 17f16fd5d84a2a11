//! A small HTTP/1.1 GET client that streams a tarball and resumes it.
//!
//! Why not a crate: what is needed is one GET with `Range`, `If-Range`,
//! redirects, chunked or length-delimited bodies and a *read* timeout that
//! notices a stalled link (ureq 3 only bounds whole calls). That is a few
//! hundred lines over `std::net`, with nothing else linked; TLS is rustls with
//! Mozilla's roots built in (feature `https`), since an initramfs has no CA
//! store. `--cacert` adds roots; `--insecure-tls` turns the check off, with a
//! warning at every connection.
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
//!
//! # Credentials
//!
//! `--header` values and the `--bearer` token are sent only to the origin
//! (scheme, host, port) of the URL the caller gave: a redirect to another
//! host (a CDN, a registry's blob storage) is followed without them, as
//! curl does for `Authorization`. Neither is ever written to a message, an
//! event or an error ([`Secret`] has no `Display`, and its `Debug` hides it).
//!
//! # Proxies
//!
//! [`super::proxy`] says which proxy a request goes through: `http://`
//! requests are sent to it with the absolute URL, `https://` ones through a
//! `CONNECT` tunnel (TLS stays end to end).
#![deny(clippy::indexing_slicing)]

use super::proxy::{Proxy, ProxyConfig};
use crate::events::Events;
use crate::events::Level;
use anyhow::{anyhow, bail, Context, Result};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Redirects followed.
const MAX_REDIRECTS: u32 = 5;
/// Largest response head (status line and headers) accepted.
const MAX_HEAD: usize = 64 << 10;
/// Longest chunk-size line accepted.
const MAX_CHUNK_LINE: usize = 1024;
/// Longest delay between retries.
const MAX_RETRY_DELAY: Duration = Duration::from_secs(30);
/// Largest `--cacert` file read (Mozilla's whole bundle is about 220 KB).
const MAX_CA_FILE: u64 = 4 << 20;
/// Header names the client sets itself; `--header` may not set them.
const MANAGED_HEADERS: &[&str] = &[
    "host",
    "range",
    "if-range",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "upgrade",
    "expect",
    "accept",
    "accept-encoding",
    "proxy-authorization",
];

/// A response status the client does not go on with (4xx, 5xx).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("HTTP {code} {reason}")]
pub struct HttpStatus {
    /// The status code.
    pub code: u16,
    /// Its reason phrase.
    pub reason: String,
}

/// A credential (a bearer token, a password, a `Proxy-Authorization`
/// value): no `Display`, and `Debug` shows only that it is there.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The credential itself, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Secret, Self::Err> {
        Ok(Secret(s.to_owned()))
    }
}

/// How sources reach http(s) servers and registries: one set per run,
/// shared by the rootfs, the data tarball, `URL.sha256` and the manifests.
#[derive(Clone)]
pub struct NetOptions {
    /// `--header 'Name: value'`: sent to the source's own origin only.
    pub headers: Vec<(String, Secret)>,
    /// `--bearer`: `Authorization: Bearer TOKEN` to the source's origin
    /// (for `oci://`, the registry token, used before any token flow).
    pub bearer: Option<Secret>,
    /// `--cacert`: certificates (DER) trusted besides the built-in roots.
    pub ca_certs: Vec<Vec<u8>>,
    /// `--insecure-tls`: accept any server certificate (warned at every
    /// connection).
    pub insecure_tls: bool,
    /// `http_proxy`, `https_proxy`, `no_proxy`.
    pub proxy: ProxyConfig,
    /// Reconnections allowed after failures.
    pub retries: u32,
    /// First delay between attempts (doubles, at most 30 s).
    pub retry_delay: Duration,
    /// `--stall-timeout`: a connection that brings no byte for this long
    /// is dropped and resumed; also the connect timeout.
    pub stall_timeout: Duration,
    /// `OCI_USERNAME`/`OCI_PASSWORD`: sent only to a registry's token
    /// service (or to the registry when it asks for Basic auth).
    pub registry_login: Option<(String, Secret)>,
    /// The tags this run resolved (`oci://…:tag` → digest), shared by every
    /// clone: a tag is resolved once, so that the install reads the same
    /// image that the preflight checked even if the tag moves meanwhile.
    pub resolved: super::oci::Resolved,
}

impl Default for NetOptions {
    fn default() -> Self {
        NetOptions {
            headers: Vec::new(),
            bearer: None,
            ca_certs: Vec::new(),
            insecure_tls: false,
            proxy: ProxyConfig::default(),
            retries: 5,
            retry_delay: Duration::from_secs(1),
            stall_timeout: Duration::from_secs(30),
            registry_login: None,
            resolved: Default::default(),
        }
    }
}

impl std::fmt::Debug for NetOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values may be credentials: names only.
        let names: Vec<&str> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("NetOptions")
            .field("headers", &names)
            .field("bearer", &self.bearer.is_some())
            .field("ca_certs", &self.ca_certs.len())
            .field("insecure_tls", &self.insecure_tls)
            .field("proxy", &self.proxy)
            .field("retries", &self.retries)
            .field("stall_timeout", &self.stall_timeout)
            .field(
                "registry_login",
                &self.registry_login.as_ref().map(|(u, _)| u),
            )
            .finish()
    }
}

/// Parses `--header 'Name: value'`: a token name, a value without line
/// breaks, and not a header the client manages itself.
pub fn parse_header(text: &str) -> Result<(String, Secret), String> {
    let Some((name, value)) = text.split_once(':') else {
        return Err("--header wants 'Name: value'".into());
    };
    let name = name.trim();
    let is_tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(is_tchar) {
        return Err(format!("--header: {name:?} is not a header name"));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(format!(
            "--header {name}: the value has a line break or NUL"
        ));
    }
    if MANAGED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
        return Err(format!(
            "--header {name}: set by sysinstall itself and not overridable"
        ));
    }
    Ok((name.to_owned(), Secret::new(value.trim())))
}

/// `Basic base64(user:password)` (RFC 7617).
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding (RFC 4648 §4).
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let sym = |v: u32| char::from(ALPHABET.get((v & 63) as usize).copied().unwrap_or(b'='));
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = |i: usize| u32::from(chunk.get(i).copied().unwrap_or(0));
        let v = (b(0) << 16) | (b(1) << 8) | b(2);
        out.push(sym(v >> 18));
        out.push(sym(v >> 12));
        out.push(if chunk.len() > 1 { sym(v >> 6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(v) } else { '=' });
    }
    out
}

/// Reads `--cacert FILE`: one or more PEM certificates, each checked to be
/// usable as a trust anchor.
pub fn load_ca_certs(path: &Path) -> Result<Vec<Vec<u8>>> {
    let shown = path.display();
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE + 1).read_to_end(&mut pem))
        .with_context(|| format!("reading {shown}"))?;
    if pem.len() as u64 > MAX_CA_FILE {
        bail!("{shown}: larger than {MAX_CA_FILE} bytes: not a CA file");
    }
    tls::parse_ca_certs(&pem).map_err(|e| anyhow!("{shown}: {e}"))
}

/// What the client asks of a registry's authentication (`oci://`): the
/// `Authorization` value to send, and what to do with a 401's challenge.
pub trait Authorizer: Send + Sync {
    /// The `Authorization` value for the source's origin now, if any.
    fn authorization(&self) -> Option<Secret>;
    /// The server answered 401 with `head`: get credentials for it. An
    /// error ends the request; `Ok` retries it once.
    fn challenged(&self, head: &Head) -> Result<()>;
}

/// Options of one HTTP download.
#[derive(Clone)]
pub struct HttpOptions {
    /// The run's network options.
    pub net: NetOptions,
    /// Where retries are reported.
    pub events: Events,
    /// Resume a broken download even when the server gave no validator
    /// (`ETag`, `Last-Modified`) to prove the file did not change: only
    /// when the stream's SHA-256 is known and checked, which catches a
    /// splice. Otherwise such a download fails instead of resuming.
    pub resume_without_validator: bool,
    /// `Accept` (default `*/*`).
    pub accept: Option<String>,
    /// Registry authentication; without it, `net.bearer` is sent.
    pub auth: Option<Arc<dyn Authorizer>>,
}

impl HttpOptions {
    /// A plain download with the run's options.
    pub fn new(net: NetOptions, events: Events) -> HttpOptions {
        HttpOptions {
            net,
            events,
            resume_without_validator: false,
            accept: None,
            auth: None,
        }
    }
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

    /// True when `other` has the same scheme, host and port (RFC 6454 origin).
    pub fn same_origin(&self, other: &Url) -> bool {
        self.tls == other.tls
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
    }

    /// The URL as text (for a request through a proxy and for messages).
    pub fn absolute(&self) -> String {
        format!(
            "{}://{}{}",
            if self.tls { "https" } else { "http" },
            self.host_header(),
            self.path
        )
    }

    /// The host, in brackets when it is an IPv6 address.
    fn bracketed_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    fn host_header(&self) -> String {
        let host = self.bracketed_host();
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

impl Framing {
    /// How the body of a response with this head ends: chunked, by its
    /// length, or when the server closes.
    fn of(head: &Head) -> Result<Framing> {
        let chunked = head
            .get("transfer-encoding")
            .is_some_and(|t| t.to_ascii_lowercase().contains("chunked"));
        Ok(if chunked {
            Framing::Chunked {
                left: 0,
                done: false,
            }
        } else if let Some(l) = head.get("content-length") {
            Framing::Length(l.parse().map_err(|_| anyhow!("bad Content-Length {l:?}"))?)
        } else {
            Framing::Close
        })
    }
}

/// One response read from `bytes` the way the client reads a server's: the
/// head, then at most `max_body` bytes of the body as the head frames it.
/// The fuzz target's way into the parser of what a server sends, without a
/// socket.
pub fn read_response(bytes: &[u8], max_body: u64) -> Result<(Head, Vec<u8>)> {
    let conn: Box<dyn Conn> = Box::new(io::Cursor::new(bytes.to_vec()));
    let mut r = BufReader::new(conn);
    let head = read_head(&mut r)?;
    let framing = Framing::of(&head)?;
    let mut body = Vec::new();
    Body { r, framing }.take(max_body).read_to_end(&mut body)?;
    Ok((head, body))
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
    /// The URL as given: its origin alone gets the credentials.
    origin: Url,
    /// Where the body comes from now (after redirects).
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
    /// The first response's head.
    head: Head,
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
            origin: parsed.clone(),
            url: parsed,
            shown: url.to_owned(),
            opts,
            body: None,
            pos: 0,
            total: None,
            validator: None,
            head: Head::default(),
            retries_used: 0,
        };
        loop {
            match r.connect() {
                Ok(()) => return Ok(r),
                Err(e) if is_retryable(&e) && r.retries_used < r.opts.net.retries => {
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

    /// The head of the first response (after redirects).
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// Reads the whole body, refusing one longer than `max` bytes.
    pub fn read_all(mut self, max: u64) -> Result<Vec<u8>> {
        if self.total.is_some_and(|t| t > max) {
            bail!("{}: larger than {max} bytes", self.shown);
        }
        let mut out = Vec::new();
        (&mut self)
            .take(max + 1)
            .read_to_end(&mut out)
            .with_context(|| format!("downloading {}", self.shown))?;
        if out.len() as u64 > max {
            bail!("{}: larger than {max} bytes", self.shown);
        }
        Ok(out)
    }

    fn wait_before_retry(&mut self, err: &anyhow::Error) {
        self.retries_used += 1;
        let delay = self
            .opts
            .net
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
                self.opts.net.retries,
                delay.as_secs_f64(),
                self.pos
            ),
        );
        std::thread::sleep(delay);
    }

    /// The request for `url`: credentials only for the origin's requests.
    fn request(&self, url: &Url, proxy: Option<&Proxy>) -> String {
        let through_proxy = proxy.filter(|_| !url.tls);
        let target = if through_proxy.is_some() {
            url.absolute()
        } else {
            url.path.clone()
        };
        let ours = url.same_origin(&self.origin);
        let has = |name: &str| {
            ours && self
                .opts
                .net
                .headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        let mut req = format!(
            "GET {target} HTTP/1.1\r\nHost: {}\r\nAccept: {}\r\nAccept-Encoding: identity\r\nConnection: close\r\n",
            url.host_header(),
            self.opts.accept.as_deref().unwrap_or("*/*"),
        );
        if !has("user-agent") {
            req.push_str(&format!(
                "User-Agent: sysinstall/{}\r\n",
                env!("CARGO_PKG_VERSION")
            ));
        }
        if let Some(a) = through_proxy.and_then(|p| p.authorization.as_ref()) {
            req.push_str(&format!("Proxy-Authorization: {}\r\n", a.expose()));
        }
        if ours {
            let auth = match &self.opts.auth {
                Some(a) => a.authorization(),
                None => self
                    .opts
                    .net
                    .bearer
                    .as_ref()
                    .map(|b| Secret::new(format!("Bearer {}", b.expose()))),
            };
            for (n, v) in &self.opts.net.headers {
                if auth.is_some() && n.eq_ignore_ascii_case("authorization") {
                    continue;
                }
                req.push_str(&format!("{n}: {}\r\n", v.expose()));
            }
            if let Some(a) = auth {
                req.push_str(&format!("Authorization: {}\r\n", a.expose()));
            }
        }
        if self.pos > 0 {
            req.push_str(&format!("Range: bytes={}-\r\n", self.pos));
            if let Some(v) = &self.validator {
                req.push_str(&format!("If-Range: {v}\r\n"));
            }
        }
        req.push_str("\r\n");
        req
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
        let mut challenged = false;
        for _ in 0..=MAX_REDIRECTS {
            let proxy = self
                .opts
                .net
                .proxy
                .for_target(url.tls, &url.host, url.port)
                .cloned();
            let mut conn = open_conn(&url, proxy.as_ref(), &self.opts)?;
            let req = self.request(&url, proxy.as_ref());
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
                401 if !challenged && url.same_origin(&self.origin) && self.opts.auth.is_some() => {
                    challenged = true;
                    if let Some(auth) = &self.opts.auth {
                        auth.challenged(&head)?;
                    }
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
            let framing = Framing::of(&head)?;
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
                    self.head = head.clone();
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
            if is_retryable(&err) && self.retries_used < self.opts.net.retries {
                self.wait_before_retry(&err);
                continue;
            }
            let message = format!(
                "downloading {} (at byte {}, after {} retries): {err:#}",
                self.shown, self.pos, self.retries_used
            );
            return Err(match fault_of(&err) {
                Some(fault) => io::Error::other(SourceFault { fault, message }),
                None => io::Error::other(message),
            });
        }
    }
}

/// What went wrong with a source, as far as the install's failure codes
/// care (`install::report::failure_code`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Network trouble, a stall, a 5xx, 408 or 429: worth a retry.
    Network,
    /// The TLS handshake failed (most often: a certificate not trusted).
    Tls,
    /// Credentials missing or refused: HTTP 401, 403, a proxy's 407, a
    /// registry's token service.
    Auth,
    /// Bytes that are not the digest they must have (an OCI manifest, a
    /// layer other than `--rootfs-sha256`).
    Digest,
}

/// An error with its [`Fault`]; shows as its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SourceFault {
    /// Why.
    pub fault: Fault,
    /// The one-line reason (the whole chain it was made from).
    pub message: String,
}

/// `e`, flattened into one message, with `fault`.
pub fn fault(fault: Fault, e: anyhow::Error) -> anyhow::Error {
    anyhow::Error::new(SourceFault {
        fault,
        message: format!("{e:#}"),
    })
}

/// The fault an error carries: a [`SourceFault`] in its chain, else an HTTP
/// status that says it (401, 403, 407; 5xx, 408, 429).
pub fn fault_of(e: &anyhow::Error) -> Option<Fault> {
    if let Some(f) = e.chain().find_map(|c| c.downcast_ref::<SourceFault>()) {
        return Some(f.fault);
    }
    match e.chain().find_map(|c| c.downcast_ref::<HttpStatus>())?.code {
        401 | 403 | 407 => Some(Fault::Auth),
        408 | 429 | 500.. => Some(Fault::Network),
        _ => None,
    }
}

fn transient(e: io::Error, what: &str) -> anyhow::Error {
    // A read timeout shows as EAGAIN ("Resource temporarily unavailable").
    if matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    ) {
        return retryable(anyhow!("{what}: no data for too long (timed out)"));
    }
    // The handshake runs on the first write or read: a certificate that is
    // not trusted is not worth a retry.
    if let Some(hint) = tls::handshake_failure(&e) {
        return fault(
            Fault::Tls,
            anyhow::Error::new(e).context(format!("{what}: TLS{hint}")),
        );
    }
    retryable(anyhow::Error::new(e).context(what.to_owned()))
}

fn retryable(e: anyhow::Error) -> anyhow::Error {
    fault(Fault::Network, e)
}

fn is_retryable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<SourceFault>()
        .is_some_and(|f| f.fault == Fault::Network)
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

/// Largest `CONNECT` response head read byte by byte.
const MAX_CONNECT_HEAD: usize = 16 << 10;

/// A TCP connection to `url`'s server, or to the proxy for it; for https,
/// through a `CONNECT` tunnel and TLS.
fn open_conn(url: &Url, proxy: Option<&Proxy>, opts: &HttpOptions) -> Result<Box<dyn Conn>> {
    let timeout = opts.net.stall_timeout;
    let (host, port) = match proxy {
        Some(p) => (p.host.as_str(), p.port),
        None => (url.host.as_str(), url.port),
    };
    let mut sock = tcp_connect(host, port, timeout)?;
    if !url.tls {
        return Ok(Box::new(sock));
    }
    if let Some(p) = proxy {
        tunnel(&mut sock, url, p)?;
    }
    tls::wrap(sock, &url.host, opts)
}

fn tcp_connect(host: &str, port: u16, timeout: Duration) -> Result<TcpStream> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| transient(e, &format!("resolving {host}")))?
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
                return Ok(s);
            }
            Err(e) => last = Some(e),
        }
    }
    let e = last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address"));
    Err(transient(e, &format!("connecting to {host}:{port}")))
}

/// `CONNECT host:port` through the proxy. The response head is read byte
/// by byte: what follows it belongs to TLS.
fn tunnel(sock: &mut TcpStream, url: &Url, proxy: &Proxy) -> Result<()> {
    let target = format!("{}:{}", url.bracketed_host(), url.port);
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = &proxy.authorization {
        req.push_str(&format!("Proxy-Authorization: {}\r\n", a.expose()));
    }
    req.push_str("\r\n");
    let via = || format!("proxy {}", proxy.shown());
    sock.write_all(req.as_bytes())
        .map_err(|e| transient(e, &format!("sending CONNECT {target} to {}", via())))?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && !head.ends_with(b"\n\n") {
        if head.len() >= MAX_CONNECT_HEAD {
            bail!(
                "{}: CONNECT response head larger than {MAX_CONNECT_HEAD} bytes",
                via()
            );
        }
        match sock.read(&mut byte) {
            Ok(0) => {
                return Err(retryable(anyhow!(
                    "{}: connection closed during CONNECT {target}",
                    via()
                )))
            }
            Ok(_) => head.extend_from_slice(&byte),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(transient(e, &format!("CONNECT {target} through {}", via()))),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let head = parse_head(text.trim_end()).with_context(via)?;
    match head.status {
        200..=299 => Ok(()),
        407 => Err(fault(
            Fault::Auth,
            anyhow!(
                "{}: HTTP 407: proxy authentication required (give it as http://USER:PASSWORD@HOST:PORT)",
                via()
            ),
        )),
        s => {
            let e = anyhow!("{}: CONNECT {target}: HTTP {s} {}", via(), head.reason);
            Err(match s {
                403 => fault(Fault::Auth, e),
                _ if s >= 500 => retryable(e),
                _ => e,
            })
        }
    }
}

#[cfg(feature = "https")]
mod tls {
    use super::{Conn, HttpOptions};
    use anyhow::{anyhow, Result};
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
    use std::net::TcpStream;
    use std::sync::Arc;

    /// `--insecure-tls`: any certificate is taken, but the handshake's
    /// signatures are still checked against it (so the connection is at
    /// least with whoever holds that certificate's key).
    #[derive(Debug)]
    struct AnyCertificate(Arc<CryptoProvider>);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }

    fn config(opts: &HttpOptions) -> Result<Arc<rustls::ClientConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| anyhow!("setting up TLS: {e}"))?;
        let config = if opts.net.insecure_tls {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth()
        } else {
            let mut roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            for der in &opts.net.ca_certs {
                roots
                    .add(CertificateDer::from(der.clone()))
                    .map_err(|e| anyhow!("--cacert: {e}"))?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        };
        Ok(Arc::new(config))
    }

    pub(super) fn wrap(sock: TcpStream, host: &str, opts: &HttpOptions) -> Result<Box<dyn Conn>> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| anyhow!("{host}: not a valid TLS server name: {e}"))?;
        if opts.net.insecure_tls {
            opts.events.message(
                crate::events::Level::Warn,
                format!(
                    "--insecure-tls: the certificate of {host} is NOT checked; anyone on the way can read and change what is downloaded"
                ),
            );
        }
        let conn = rustls::ClientConnection::new(config(opts)?, name)
            .map_err(|e| anyhow!("starting TLS with {host}: {e}"))?;
        Ok(Box::new(rustls::StreamOwned::new(conn, sock)))
    }

    /// A failed handshake in `e`, with a hint for the operator ("" when
    /// there is none); `None` when `e` is not about TLS.
    pub(super) fn handshake_failure(e: &std::io::Error) -> Option<&'static str> {
        let t = e.get_ref()?.downcast_ref::<rustls::Error>()?;
        Some(match t {
            rustls::Error::InvalidCertificate(_) => {
                " (the server's certificate is not trusted: give its CA with --cacert)"
            }
            _ => "",
        })
    }

    pub(super) fn parse_ca_certs(pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        let mut out = Vec::new();
        let mut store = RootCertStore::empty();
        for (i, c) in CertificateDer::pem_slice_iter(pem).enumerate() {
            let c = c.map_err(|e| format!("certificate {}: {e:?}", i + 1))?;
            store
                .add(c.clone())
                .map_err(|e| format!("certificate {}: {e}", i + 1))?;
            out.push(c.to_vec());
        }
        if out.is_empty() {
            return Err("no PEM certificate (-----BEGIN CERTIFICATE-----) in it".into());
        }
        Ok(out)
    }
}

#[cfg(not(feature = "https"))]
mod tls {
    use super::{Conn, HttpOptions};
    use anyhow::{bail, Result};
    use std::net::TcpStream;

    pub(super) fn wrap(_sock: TcpStream, host: &str, _opts: &HttpOptions) -> Result<Box<dyn Conn>> {
        bail!("https://{host}: this sysinstall was built without the `https` feature")
    }

    pub(super) fn handshake_failure(_e: &std::io::Error) -> Option<&'static str> {
        None
    }

    pub(super) fn parse_ca_certs(_pem: &[u8]) -> Result<Vec<Vec<u8>>, String> {
        Err("--cacert: this sysinstall was built without the `https` feature".into())
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
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
    fn base64_vectors() {
        // RFC 4648 §10.
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(
            basic_authorization("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
    }

    #[test]
    fn headers_given_by_the_user() {
        let (n, v) = parse_header("X-Api-Key:  abc def ").unwrap();
        assert_eq!((n.as_str(), v.expose()), ("X-Api-Key", "abc def"));
        assert!(parse_header("Authorization: Bearer x").is_ok());
        assert!(parse_header("User-Agent: lab").is_ok());
        for (bad, says) in [
            ("no colon", "'Name: value'"),
            (": v", "not a header name"),
            ("Bad Name: v", "not a header name"),
            ("X: a\r\nHost: evil", "line break"),
            ("Host: evil", "not overridable"),
            ("range: bytes=0-", "not overridable"),
            ("Accept: text/html", "not overridable"),
        ] {
            let e = parse_header(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let net = NetOptions {
            headers: vec![("X-Key".into(), Secret::new("hdr-secret"))],
            bearer: Some(Secret::new("tok-secret")),
            registry_login: Some(("user".into(), Secret::new("pw-secret"))),
            ..NetOptions::default()
        };
        let shown = format!("{net:?}");
        assert!(shown.contains("X-Key") && shown.contains("user"), "{shown}");
        for s in ["hdr-secret", "tok-secret", "pw-secret"] {
            assert!(!shown.contains(s), "{shown}");
        }
    }

    struct Token;
    impl Authorizer for Token {
        fn authorization(&self) -> Option<Secret> {
            Some(Secret::new("Bearer registry-token"))
        }
        fn challenged(&self, _head: &Head) -> Result<()> {
            Ok(())
        }
    }

    fn reader(url: &str, net: NetOptions, auth: Option<Arc<dyn Authorizer>>) -> HttpReader {
        let u = Url::parse(url).unwrap();
        HttpReader {
            origin: u.clone(),
            url: u,
            shown: url.into(),
            opts: HttpOptions {
                auth,
                ..HttpOptions::new(net, Events::silent())
            },
            body: None,
            pos: 0,
            total: None,
            validator: None,
            head: Head::default(),
            retries_used: 0,
        }
    }

    #[test]
    fn credentials_go_to_the_origin_only() {
        let net = NetOptions {
            headers: vec![
                ("X-Key".into(), Secret::new("k1")),
                ("User-Agent".into(), Secret::new("lab/1")),
            ],
            bearer: Some(Secret::new("t1")),
            ..NetOptions::default()
        };
        let r = reader("https://files.lab/a.tar", net.clone(), None);
        let own = r.request(&r.url, None);
        assert!(
            own.starts_with("GET /a.tar HTTP/1.1\r\nHost: files.lab\r\n"),
            "{own}"
        );
        assert!(own.contains("\r\nX-Key: k1\r\n"), "{own}");
        assert!(own.contains("\r\nAuthorization: Bearer t1\r\n"), "{own}");
        assert!(
            own.contains("\r\nUser-Agent: lab/1\r\n") && !own.contains("sysinstall/"),
            "{own}"
        );
        // A redirect to another host (or scheme, or port) goes without them.
        for other in [
            "https://cdn.lab/a.tar",
            "http://files.lab/a.tar",
            "https://files.lab:8443/a.tar",
        ] {
            let req = r.request(&Url::parse(other).unwrap(), None);
            assert!(
                !req.contains("k1") && !req.contains("t1") && !req.contains("Authorization"),
                "{req}"
            );
            assert!(req.contains("User-Agent: sysinstall/"), "{req}");
        }
        // Through a proxy: plain http uses the absolute URL and the proxy's
        // credentials; https goes through CONNECT (no proxy header here).
        let proxy = crate::rootfs::proxy::Proxy::parse("http://u:p@proxy:3128").unwrap();
        let r = reader("http://files.lab:8080/a.tar?x=1", net.clone(), None);
        let req = r.request(&r.url, Some(&proxy));
        assert!(
            req.starts_with("GET http://files.lab:8080/a.tar?x=1 HTTP/1.1\r\n"),
            "{req}"
        );
        assert!(req.contains("Proxy-Authorization: Basic dTpw\r\n"), "{req}");
        let r = reader("https://files.lab/a.tar", net.clone(), None);
        let req = r.request(&r.url, Some(&proxy));
        assert!(
            req.starts_with("GET /a.tar ") && !req.contains("Proxy-Authorization"),
            "{req}"
        );
        // A registry's authorizer replaces the bearer and an Authorization header.
        let net = NetOptions {
            headers: vec![("Authorization".into(), Secret::new("Basic old"))],
            ..net
        };
        let r = reader(
            "https://reg.lab/v2/x/blobs/sha256:00",
            net,
            Some(Arc::new(Token)),
        );
        let req = r.request(&r.url, None);
        assert_eq!(req.matches("Authorization:").count(), 1, "{req}");
        assert!(
            req.contains("Authorization: Bearer registry-token\r\n"),
            "{req}"
        );
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
