//! Servers on 127.0.0.1 for the source tests, written here so that each
//! behaviour is exactly what the test says: a small HTTP/1.1 server (plain
//! or TLS with a private CA made by `openssl` for the test), an HTTP proxy
//! (absolute-URI GET and CONNECT), and a minimal OCI registry (manifests,
//! blobs, the Bearer token flow or Basic auth, tags that move).
//!
//! Every server answers one request per connection (`Connection: close`,
//! as the client asks) on its own thread, logs what it received, and lives
//! as long as the test process.

use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `CONNECT`.
    pub method: String,
    /// The request target as sent (origin form, absolute URL or host:port).
    pub target: String,
    /// Headers, names lower-cased.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// A query parameter (still %-encoded).
    pub fn query(&self, key: &str) -> Option<&str> {
        self.target
            .split_once('?')?
            .1
            .split('&')
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
    }
}

/// What a handler answers.
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (Content-Length is added).
    pub headers: Vec<(String, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// 200 with `body`.
    pub fn ok(body: impl Into<Vec<u8>>) -> Response {
        Response {
            status: 200,
            headers: Vec::new(),
            body: body.into(),
        }
    }

    /// `code` with an empty body.
    pub fn status(code: u16) -> Response {
        Response {
            status: code,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn with(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// A request handler.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// Reads a request head (up to the empty line).
fn read_request(r: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.trim_end().splitn(3, ' ');
    let method = parts.next()?.to_owned();
    let target = parts.next()?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (n, v) = h.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    Some(Request {
        method,
        target,
        headers,
    })
}

fn write_response(w: &mut impl Write, resp: &Response) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", resp.status);
    for (n, v) in &resp.headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", resp.body.len()));
    w.write_all(head.as_bytes())?;
    w.write_all(&resp.body)?;
    w.flush()
}

/// A private CA and a certificate for `localhost` and 127.0.0.1 signed by
/// it, made with `openssl` (tests/setup.sh installs it).
pub struct TestCa {
    dir: tempfile::TempDir,
}

impl TestCa {
    /// Makes the CA and the server certificate (P-256 keys).
    pub fn new() -> TestCa {
        super::require_tools(&["openssl"]);
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(
            d.join("server.ext"),
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        let sh = "set -e
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
              -subj /CN=sysinstall-test-ca -keyout ca.key -out ca.pem \
              -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
              -subj /CN=localhost -keyout server.key -out server.csr
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
              -days 2 -extfile server.ext -out server.pem";
        let o = super::output(Command::new("sh").arg("-c").arg(sh).current_dir(d));
        assert!(o.status.success(), "openssl: {}", super::stderr(&o));
        TestCa { dir }
    }

    /// The CA certificate (PEM), for `--cacert`.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }

    /// A directory to put more files in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn server_config(&self) -> Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(self.dir.path().join("server.pem"))
                .unwrap()
                .map(|c| c.unwrap())
                .collect();
        let key = PrivateKeyDer::from_pem_file(self.dir.path().join("server.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .unwrap(),
        )
    }
}

/// A running HTTP(S) server.
pub struct Server {
    /// `http://127.0.0.1:PORT` or `https://localhost:PORT`.
    pub base: String,
    /// The port.
    pub port: u16,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Server {
    /// A plain HTTP server.
    pub fn http(handler: Handler) -> Server {
        Server::start(None, handler)
    }

    /// A TLS server whose certificate `ca` signed.
    pub fn https(ca: &TestCa, handler: Handler) -> Server {
        Server::start(Some(ca.server_config()), handler)
    }

    fn start(tls: Option<Arc<rustls::ServerConfig>>, handler: Handler) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = match tls {
            Some(_) => format!("https://localhost:{port}"),
            None => format!("http://127.0.0.1:{port}"),
        };
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (handler, log, tls) = (handler.clone(), shared.clone(), tls.clone());
                std::thread::spawn(move || {
                    let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(10)));
                    match tls {
                        Some(cfg) => {
                            let Ok(sc) = rustls::ServerConnection::new(cfg) else {
                                return;
                            };
                            serve_one(rustls::StreamOwned::new(sc, conn), &handler, &log);
                        }
                        None => serve_one(conn, &handler, &log),
                    }
                });
            }
        });
        Server { base, port, log }
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

fn serve_one<S: Read + Write>(stream: S, handler: &Handler, log: &Mutex<Vec<Request>>) {
    let mut r = BufReader::new(stream);
    // A TLS client that refuses the certificate sends no request.
    let Some(req) = read_request(&mut r) else {
        return;
    };
    log.lock().unwrap().push(req.clone());
    let resp = handler(&req);
    let _ = write_response(r.get_mut(), &resp);
}

/// An HTTP proxy: absolute-URI GET (forwarded as origin-form) and CONNECT
/// tunnels. It logs each request line, with any Proxy-Authorization.
pub struct Proxy {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: Arc<Mutex<Vec<Request>>>,
}

impl Proxy {
    /// Starts a proxy; with `auth`, requests without that
    /// `Proxy-Authorization` value get 407.
    pub fn start(auth: Option<&str>) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let shared = log.clone();
        let auth = auth.map(str::to_owned);
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (log, auth) = (shared.clone(), auth.clone());
                std::thread::spawn(move || proxy_one(conn, &log, auth.as_deref()));
            }
        });
        Proxy { url, log }
    }

    /// Everything received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.log.lock().unwrap().clone()
    }
}

fn proxy_one(conn: TcpStream, log: &Mutex<Vec<Request>>, auth: Option<&str>) {
    let mut r = BufReader::new(conn);
    let Some(req) = read_request(&mut r) else {
        return;
    };
    log.lock().unwrap().push(req.clone());
    let mut client = r.into_inner();
    if auth.is_some() && req.header("proxy-authorization") != auth {
        let _ = write_response(&mut client, &Response::status(407));
        return;
    }
    if req.method == "CONNECT" {
        let Ok(upstream) = TcpStream::connect(&req.target) else {
            let _ = write_response(&mut client, &Response::status(502));
            return;
        };
        let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
        relay(client, upstream);
        return;
    }
    // Absolute URI: http://host:port/path.
    let Some(rest) = req.target.strip_prefix("http://") else {
        let _ = write_response(&mut client, &Response::status(400));
        return;
    };
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let Ok(mut upstream) = TcpStream::connect(hostport) else {
        let _ = write_response(&mut client, &Response::status(502));
        return;
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\n",
        req.method,
        if path.is_empty() { "/" } else { path }
    );
    for (n, v) in &req.headers {
        if n != "proxy-authorization" {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    head.push_str("\r\n");
    if upstream.write_all(head.as_bytes()).is_ok() {
        relay(client, upstream);
    }
}

/// Copies both ways until either side closes.
fn relay(a: TcpStream, b: TcpStream) {
    let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
    let (mut a, mut b) = (a, b);
    let t = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a2, &mut b2);
        let _ = b2.shutdown(std::net::Shutdown::Write);
    });
    let _ = std::io::copy(&mut b, &mut a);
    let _ = a.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
}

/// `sha256:HEX` of `bytes`.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{:x}", Sha256::digest(bytes))
}

/// How the registry wants to be authenticated.
#[derive(Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    /// Anonymous pulls.
    None,
    /// The Bearer token flow; the token service wants this Basic login
    /// (`None`: anonymous tokens).
    Token(Option<(String, String)>),
    /// Basic auth with this login, on the registry itself.
    Basic(String, String),
}

#[derive(Default)]
struct RegistryState {
    /// digest → (media type, bytes) of manifests and blobs.
    manifests: Vec<(String, String, Vec<u8>)>,
    blobs: Vec<(String, Vec<u8>)>,
    /// (repository, tag) → manifest digest.
    tags: Vec<(String, String, String)>,
    /// After a tag is served once, it moves to this digest.
    move_after_get: Vec<(String, String, String)>,
    tokens_issued: u32,
}

/// A minimal OCI registry (distribution API pull side).
pub struct Registry {
    /// The server.
    pub server: Server,
    state: Arc<Mutex<RegistryState>>,
    /// The `oci://` or `oci+http://` prefix with host and port.
    pub prefix: String,
}

/// The token a token service issues (and the registry accepts).
const TOKEN: &str = "registry-token-1";

impl Registry {
    /// Starts a registry, over TLS when `ca` is given.
    pub fn start(ca: Option<&TestCa>, auth: RegistryAuth) -> Registry {
        let state = Arc::new(Mutex::new(RegistryState::default()));
        let st = state.clone();
        // The realm is on the same server; its URL is known once it listens.
        let realm = Arc::new(Mutex::new(String::new()));
        let realm_in = realm.clone();
        let basic = |u: &str, p: &str| {
            format!(
                "Basic {}",
                sysinstall::rootfs::http::base64(format!("{u}:{p}").as_bytes())
            )
        };
        let handler: Handler = Arc::new(move |req: &Request| {
            let path = req.path().to_owned();
            if path == "/token" {
                if let RegistryAuth::Token(Some((u, p))) = &auth {
                    if req.header("authorization") != Some(basic(u, p).as_str()) {
                        return Response::status(401)
                            .with("WWW-Authenticate", "Basic realm=\"token\"");
                    }
                }
                st.lock().unwrap().tokens_issued += 1;
                return Response::ok(format!("{{\"token\":\"{TOKEN}\",\"expires_in\":300}}"))
                    .with("Content-Type", "application/json");
            }
            let Some(rest) = path.strip_prefix("/v2/") else {
                return Response::status(404);
            };
            let authorized = match &auth {
                RegistryAuth::None => true,
                RegistryAuth::Token(_) => {
                    req.header("authorization") == Some(&format!("Bearer {TOKEN}"))
                }
                RegistryAuth::Basic(u, p) => req.header("authorization") == Some(&basic(u, p)),
            };
            if !authorized {
                let (name, _) = rest
                    .split_once("/manifests/")
                    .or_else(|| rest.split_once("/blobs/"))
                    .unwrap_or((rest, ""));
                let challenge = match &auth {
                    RegistryAuth::Basic(..) => "Basic realm=\"registry\"".to_owned(),
                    _ => format!(
                        "Bearer realm=\"{}/token\",service=\"test-registry\",scope=\"repository:{name}:pull\"",
                        realm_in.lock().unwrap()
                    ),
                };
                return Response::status(401).with("WWW-Authenticate", &challenge);
            }
            let mut s = st.lock().unwrap();
            if let Some((name, reference)) = rest.split_once("/manifests/") {
                let digest = if reference.starts_with("sha256:") {
                    reference.to_owned()
                } else {
                    let Some(d) = s
                        .tags
                        .iter()
                        .find(|(n, t, _)| n == name && t == reference)
                        .map(|(_, _, d)| d.clone())
                    else {
                        return Response::status(404);
                    };
                    if let Some(pos) = s
                        .move_after_get
                        .iter()
                        .position(|(n, t, _)| n == name && t == reference)
                    {
                        let (n, t, to) = s.move_after_get.remove(pos);
                        s.tags.retain(|(a, b, _)| !(*a == n && *b == t));
                        s.tags.push((n, t, to));
                    }
                    d
                };
                return match s.manifests.iter().find(|(d, _, _)| *d == digest) {
                    Some((d, mt, bytes)) => Response::ok(bytes.clone())
                        .with("Content-Type", mt)
                        .with("Docker-Content-Digest", d),
                    None => Response::status(404),
                };
            }
            if let Some((_, digest)) = rest.split_once("/blobs/") {
                return match s.blobs.iter().find(|(d, _)| d == digest) {
                    Some((d, bytes)) => {
                        Response::ok(bytes.clone()).with("ETag", &format!("\"{d}\""))
                    }
                    None => Response::status(404),
                };
            }
            Response::status(404)
        });
        let server = match ca {
            Some(ca) => Server::https(ca, handler),
            None => Server::http(handler),
        };
        *realm.lock().unwrap() = server.base.clone();
        let prefix = match ca {
            Some(_) => format!("oci://localhost:{}", server.port),
            None => format!("oci+http://127.0.0.1:{}", server.port),
        };
        Registry {
            server,
            state,
            prefix,
        }
    }

    /// Stores a blob; returns its digest.
    pub fn blob(&self, bytes: &[u8]) -> String {
        let d = digest(bytes);
        self.state
            .lock()
            .unwrap()
            .blobs
            .push((d.clone(), bytes.to_vec()));
        d
    }

    /// Stores a manifest (or index) document; returns its digest.
    pub fn manifest(&self, media_type: &str, doc: &str) -> String {
        let d = digest(doc.as_bytes());
        self.state.lock().unwrap().manifests.push((
            d.clone(),
            media_type.into(),
            doc.as_bytes().to_vec(),
        ));
        d
    }

    /// Stores a document under a digest that is not its own (a forged
    /// or corrupted manifest).
    pub fn manifest_as(&self, digest: &str, media_type: &str, doc: &str) {
        self.state.lock().unwrap().manifests.push((
            digest.into(),
            media_type.into(),
            doc.as_bytes().to_vec(),
        ));
    }

    /// The manifest digest `name:tag` points at now.
    pub fn tagged(&self, name: &str, tag: &str) -> String {
        let s = self.state.lock().unwrap();
        s.tags
            .iter()
            .find(|(n, t, _)| n == name && t == tag)
            .map(|(_, _, d)| d.clone())
            .unwrap()
    }

    /// Pushes layers (media type, title, bytes) as an image manifest, the
    /// way `oras push` does (an empty config); returns the manifest digest.
    pub fn push(&self, layers: &[(&str, Option<&str>, &[u8])]) -> String {
        let config = self.blob(b"{}");
        let layers: Vec<String> = layers
            .iter()
            .map(|(mt, title, bytes)| {
                let d = self.blob(bytes);
                let ann = title
                    .map(|t| {
                        format!(",\"annotations\":{{\"org.opencontainers.image.title\":\"{t}\"}}")
                    })
                    .unwrap_or_default();
                format!(
                    "{{\"mediaType\":\"{mt}\",\"digest\":\"{d}\",\"size\":{}{ann}}}",
                    bytes.len()
                )
            })
            .collect();
        let doc = format!(
            "{{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"artifactType\":\"application/vnd.example.rootfs\",\"config\":{{\"mediaType\":\"application/vnd.oci.empty.v1+json\",\"digest\":\"{config}\",\"size\":2}},\"layers\":[{}]}}",
            layers.join(",")
        );
        self.manifest("application/vnd.oci.image.manifest.v1+json", &doc)
    }

    /// Points `name:tag` at a manifest digest.
    pub fn tag(&self, name: &str, tag: &str, digest: &str) {
        let mut s = self.state.lock().unwrap();
        s.tags.retain(|(n, t, _)| !(n == name && t == tag));
        s.tags.push((name.into(), tag.into(), digest.into()));
    }

    /// After `name:tag` has been served once, it points at `digest`.
    pub fn move_after_first_get(&self, name: &str, tag: &str, digest: &str) {
        self.state
            .lock()
            .unwrap()
            .move_after_get
            .push((name.into(), tag.into(), digest.into()));
    }

    /// The reference `PREFIX/name:tag` (or `@digest`).
    pub fn reference(&self, name_and_ref: &str) -> String {
        format!("{}/{name_and_ref}", self.prefix)
    }

    /// Tokens the token service issued.
    pub fn tokens_issued(&self) -> u32 {
        self.state.lock().unwrap().tokens_issued
    }
}
