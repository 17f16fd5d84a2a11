//! Where a tarball comes from: a local path, `file://`, `http://`,
//! `https://`, an OCI registry (`oci://`, `oci+http://`), or `-` for stdin;
//! and the SHA-256 it must have.
//!
//! The expected SHA-256 is, in this order: the one given
//! (`--rootfs-sha256`); for `oci://`, the chosen layer's digest (a given
//! hash must then be that digest); `NAME.sha256` beside a local file or
//! `URL.sha256` beside an http(s) URL.

use super::http::{HttpOptions, HttpReader, HttpStatus, NetOptions};
use super::oci::Reference;
use super::registry::Registry;
use super::tftp::{TftpReader, TftpUrl};
use crate::bytes::hex;
use crate::events::Events;
use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// How to open a source.
#[derive(Clone)]
pub struct SourceOptions {
    /// Expected SHA-256 of the (compressed) stream, as given by the user;
    /// overrides a `NAME.sha256` file beside a local tarball.
    pub sha256: Option<String>,
    /// Where `sha256` comes from, for the message on a mismatch (default:
    /// `--rootfs-sha256`).
    pub sha256_from: Option<String>,
    /// Look for `NAME.sha256` beside a local file when `sha256` is not given.
    pub sidecar: bool,
    /// http(s) and registries: headers, credentials, TLS, proxies,
    /// retries, the stall timeout, and the tags this run resolved.
    pub net: NetOptions,
    /// Where retries and warnings are reported.
    pub events: Events,
}

impl Default for SourceOptions {
    fn default() -> Self {
        SourceOptions {
            sha256: None,
            sha256_from: None,
            sidecar: true,
            net: NetOptions::default(),
            events: Events::silent(),
        }
    }
}

enum Kind {
    /// A regular file: can be read again.
    File(PathBuf),
    /// A FIFO, a character device, a socket (`<(curl ...)`): read once.
    Pipe(PathBuf),
    /// `-`.
    Stdin,
    /// `http://`, `https://`, `tftp://` or `oci://`: can be fetched again.
    Http(String),
}

/// An opened tarball source (nothing is read until it is unpacked or verified).
pub struct Source {
    kind: Kind,
    reader: Option<Box<dyn Read + Send>>,
    len: Option<u64>,
    expected: Option<[u8; 32]>,
    expected_from: String,
}

impl Source {
    /// Opens `spec`: a path, `file://PATH`, `http(s)://URL`,
    /// `oci://REFERENCE` or `-`. The expected SHA-256 is `opts.sha256`, else
    /// (for `oci://`) the layer's digest, else the `.sha256` file beside a
    /// local file or URL.
    pub fn open(spec: &str, opts: &SourceOptions) -> Result<Source> {
        let mut expected = opts
            .sha256
            .as_deref()
            .map(|h| {
                parse_hex(h)
                    .map(|x| {
                        let from = opts.sha256_from.as_deref().unwrap_or("--rootfs-sha256");
                        (x, from.to_owned())
                    })
                    .ok_or_else(|| anyhow!("--rootfs-sha256 {h:?} is not 64 hex digits"))
            })
            .transpose()?;
        let is_http = spec.starts_with("http://") || spec.starts_with("https://");
        if expected.is_none() && opts.sidecar && is_http {
            expected = fetch_sidecar(spec, opts)?;
        }
        let tftp = TftpUrl::parse(spec).transpose()?;
        if let (None, true, Some(u)) = (&expected, opts.sidecar, &tftp) {
            expected = tftp_sidecar(spec, u)?;
        }
        if spec.starts_with("scp://") || spec.starts_with("sftp://") || spec.starts_with("ssh://") {
            bail!("{spec}: scp/ssh sources are not supported (the upgrader has no ssh client, and a password prompt cannot run unattended): copy the file onto the board first, or serve it over http(s):// or tftp://");
        }
        let (kind, reader, len): (Kind, Box<dyn Read + Send>, Option<u64>) = if let Some(u) = tftp {
            let r = TftpReader::open(u, opts.net.retries, expected.is_some(), opts.events.clone())
                .with_context(|| format!("downloading {spec}"))?;
            (Kind::Http(spec.to_owned()), Box::new(r), None)
        } else if spec == "-" {
            (Kind::Stdin, Box::new(io::stdin()), None)
        } else if Reference::is_oci(spec) {
            let registry = Registry::new(spec, &opts.net, &opts.events)?;
            let blob = registry.resolve()?;
            if let Some((want, from)) = &expected {
                if *want != blob.digest {
                    return Err(super::http::fault(
                        super::http::Fault::Digest,
                        anyhow!(
                            "{spec} is sha256:{} (the layer its manifest names), {from} expects {}",
                            hex(&blob.digest),
                            hex(want)
                        ),
                    ));
                }
            }
            expected.get_or_insert_with(|| (blob.digest, format!("the manifest of {spec}")));
            let reader = registry.open_blob(&blob)?;
            (
                Kind::Http(spec.to_owned()),
                Box::new(reader),
                Some(blob.size),
            )
        } else if is_http {
            let http = HttpReader::open(
                spec,
                HttpOptions {
                    resume_without_validator: expected.is_some(),
                    ..HttpOptions::new(opts.net.clone(), opts.events.clone())
                },
            )
            .with_context(|| format!("downloading {spec}"))?;
            let len = http.content_length();
            (Kind::Http(spec.to_owned()), Box::new(http), len)
        } else {
            let path = match spec.strip_prefix("file://") {
                Some(p) if p.starts_with('/') => PathBuf::from(p),
                Some(_) => bail!("{spec}: a file:// URL needs an absolute path (file:///dir/name)"),
                None if spec.contains("://") => {
                    bail!("{spec}: unsupported URL scheme (use a path, file://, http://, https://, tftp://, oci://, oci+http:// or -)")
                }
                None => PathBuf::from(spec),
            };
            let file =
                open_interruptible(&path).with_context(|| format!("opening {}", path.display()))?;
            let md = file
                .metadata()
                .with_context(|| format!("reading {}", path.display()))?;
            if md.is_dir() {
                bail!("{} is a directory, not a tarball", path.display());
            }
            if md.is_file() {
                if expected.is_none() && opts.sidecar {
                    expected = read_sidecar(&path)?.map(|(h, f)| (h, f.display().to_string()));
                }
                (Kind::File(path), Box::new(file), Some(md.len()))
            } else {
                (Kind::Pipe(path), Box::new(file), None)
            }
        };
        let (expected, expected_from) = match expected {
            Some((h, from)) => (Some(h), from),
            None => (None, "--rootfs-sha256".to_owned()),
        };
        Ok(Source {
            kind,
            reader: Some(reader),
            len,
            expected,
            expected_from,
        })
    }

    /// A human name for messages.
    pub fn describe(&self) -> String {
        match &self.kind {
            Kind::File(p) | Kind::Pipe(p) => p.display().to_string(),
            Kind::Stdin => "standard input".into(),
            Kind::Http(u) => u.clone(),
        }
    }

    /// True when the same bytes can be read a second time (a regular file,
    /// an http(s) URL, an OCI blob); false for standard input and pipes.
    pub fn rereadable(&self) -> bool {
        matches!(self.kind, Kind::File(_) | Kind::Http(_))
    }

    /// The local file, if the source is one.
    pub fn local_path(&self) -> Option<&Path> {
        match &self.kind {
            Kind::File(p) => Some(p),
            _ => None,
        }
    }

    /// Size of the compressed stream, when known (file size, Content-Length).
    pub fn size(&self) -> Option<u64> {
        self.len
    }

    /// The SHA-256 the stream must have, if any was given or found.
    pub fn expected_sha256(&self) -> Option<[u8; 32]> {
        self.expected
    }

    /// Where the expected SHA-256 came from (the option or the `.sha256` file).
    pub fn expected_from(&self) -> &str {
        &self.expected_from
    }

    /// Hashes a local file completely and compares it with the expected
    /// SHA-256, before anything is written; returns the hash. For streams
    /// (stdin, HTTP) this does nothing and returns `None`: they are checked
    /// as they flow.
    pub fn verify_local(&self, events: &Events) -> Result<Option<[u8; 32]>> {
        let Kind::File(path) = &self.kind else {
            return Ok(None);
        };
        let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut h = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let (mut done, mut last) = (0u64, std::time::Instant::now());
        loop {
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            h.update(buf.get(..n).unwrap_or_default());
            done += n as u64;
            if last.elapsed() >= super::PROGRESS_INTERVAL {
                events.progress(done, self.len);
                last = std::time::Instant::now();
            }
        }
        let got: [u8; 32] = h.finalize().into();
        if let Some(want) = self.expected {
            check_sha256(&self.describe(), &got, &want, &self.expected_from)?;
        }
        Ok(Some(got))
    }

    /// The stream of compressed bytes (once).
    pub(crate) fn take_reader(&mut self) -> Result<Box<dyn Read + Send>> {
        self.reader
            .take()
            .ok_or_else(|| anyhow!("{} was already read", self.describe()))
    }
}

/// Opens a file for reading. A FIFO without a writer blocks in open(2);
/// `File::open` would retry it after a signal, this returns the interruption
/// (the handler is installed without `SA_RESTART`, see [`crate::interrupt`]).
fn open_interruptible(path: &Path) -> io::Result<File> {
    use nix::fcntl::{open, OFlag};
    loop {
        crate::interrupt::check().map_err(io::Error::other)?;
        match open(
            path,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => return Ok(File::from(fd)),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Fails unless `got` equals `want`, naming both.
pub fn check_sha256(what: &str, got: &[u8; 32], want: &[u8; 32], from: &str) -> Result<()> {
    if got != want {
        return Err(ChecksumMismatch {
            what: what.to_owned(),
            got: hex(got),
            want: hex(want),
            from: from.to_owned(),
        }
        .into());
    }
    Ok(())
}

/// A stream's SHA-256 is not the one it must have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: SHA-256 mismatch: the data has {got}, {from} expects {want}")]
pub struct ChecksumMismatch {
    /// The source.
    pub what: String,
    /// Its hash, hex.
    pub got: String,
    /// The expected hash, hex.
    pub want: String,
    /// Where the expected hash came from.
    pub from: String,
}

/// 64 hex digits → 32 bytes.
pub fn parse_hex(s: &str) -> Option<[u8; 32]> {
    let s = s.trim();
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Reads `NAME.sha256` beside `path` (sha256sum format: `HEX  NAME` or
/// `HEX *NAME`, or just `HEX`). With several lines, the one naming this file.
fn read_sidecar(path: &Path) -> Result<Option<([u8; 32], PathBuf)>> {
    let mut side = path.as_os_str().to_owned();
    side.push(".sha256");
    let side = PathBuf::from(side);
    let text = match std::fs::read_to_string(&side) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", side.display())),
    };
    let base = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let hash = parse_sha256sum(&text, &base).ok_or_else(|| {
        anyhow!(
            "{}: no SHA-256 for {base} (expected sha256sum format)",
            side.display()
        )
    })?;
    Ok(Some((hash, side)))
}

/// Longest `URL.sha256` read.
const MAX_SIDECAR: u64 = 64 << 10;

/// Fetches `URL.sha256` beside an http(s) URL: absent (404, 410) is no
/// hash; any other failure is an error, so that a checksum that exists is
/// never skipped silently.
fn fetch_sidecar(url: &str, opts: &SourceOptions) -> Result<Option<([u8; 32], String)>> {
    let side = format!("{url}.sha256");
    let reader = match HttpReader::open(
        &side,
        HttpOptions::new(opts.net.clone(), opts.events.clone()),
    ) {
        Ok(r) => r,
        Err(e)
            if e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<HttpStatus>(),
                    Some(HttpStatus {
                        code: 404 | 410,
                        ..
                    })
                )
            }) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).with_context(|| format!("downloading {side}")),
    };
    let mut text = String::new();
    reader
        .take(MAX_SIDECAR)
        .read_to_string(&mut text)
        .with_context(|| format!("downloading {side}"))?;
    let name = url
        .split(['?', '#'])
        .next()
        .and_then(|u| u.rsplit('/').next())
        .unwrap_or_default();
    let hash = parse_sha256sum(&text, name)
        .ok_or_else(|| anyhow!("{side}: no SHA-256 for {name} (expected sha256sum format)"))?;
    Ok(Some((hash, side)))
}

/// `PATH.sha256` beside a `tftp://` URL, when the server has it.
fn tftp_sidecar(spec: &str, url: &TftpUrl) -> Result<Option<([u8; 32], String)>> {
    let side = format!("{spec}.sha256");
    let Some(bytes) = super::tftp::fetch_small(&url.sidecar(), MAX_SIDECAR)
        .with_context(|| format!("downloading {side}"))?
    else {
        return Ok(None);
    };
    let name = url.path.rsplit('/').next().unwrap_or_default();
    let hash = parse_sha256sum(&String::from_utf8_lossy(&bytes), name)
        .ok_or_else(|| anyhow!("{side}: no SHA-256 for {name} (expected sha256sum format)"))?;
    Ok(Some((hash, side)))
}

/// Picks the hash for `name` out of `sha256sum` output.
pub fn parse_sha256sum(text: &str, name: &str) -> Option<[u8; 32]> {
    let lines: Vec<(&str, &str)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (h, f) = l.split_once(char::is_whitespace).unwrap_or((l, ""));
            let f = f.trim_start();
            (h, f.strip_prefix('*').unwrap_or(f))
        })
        .collect();
    let pick = match lines.as_slice() {
        [(h, _)] => Some(*h),
        many => many
            .iter()
            .find(|(_, f)| Path::new(f).file_name().is_some_and(|n| n == name))
            .map(|(h, _)| *h),
    };
    pick.and_then(parse_hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn sha256sum_files() {
        assert!(parse_sha256sum(&format!("{H}  image.tar.zst\n"), "image.tar.zst").is_some());
        assert!(parse_sha256sum(&format!("{H} *image.tar.zst\n"), "image.tar.zst").is_some());
        assert!(parse_sha256sum(&format!("{H}\n"), "x").is_some());
        let two = format!("{}  other\n{H}  ./dir/image.tar.zst\n", "0".repeat(64));
        assert_eq!(parse_sha256sum(&two, "image.tar.zst"), parse_hex(H));
        assert_eq!(parse_sha256sum(&two, "missing"), None);
        assert_eq!(parse_sha256sum("nothex  x\n", "x"), None);
    }

    #[test]
    fn hex_round_trip() {
        let b = parse_hex(H).unwrap();
        assert_eq!(hex(&b), H);
        assert!(parse_hex(&H[1..]).is_none());
        assert!(parse_hex(&H.replace('f', "g")).is_none());
        assert_eq!(parse_hex(&H.to_uppercase()), Some(b));
    }

    #[test]
    fn bad_specs_are_named() {
        let o = SourceOptions::default();
        let e = |s: &str| format!("{:#}", Source::open(s, &o).err().unwrap());
        assert!(e("ftp://x/y").contains("unsupported URL scheme"));
        assert!(e("file://relative").contains("absolute path"));
        assert!(e("/nonexistent/x.tar").contains("/nonexistent/x.tar"));
        assert!(e("/").contains("is a directory"));
        let bad = SourceOptions {
            sha256: Some("abc".into()),
            ..SourceOptions::default()
        };
        assert!(format!("{:#}", Source::open("-", &bad).err().unwrap()).contains("not 64 hex"));
    }
}
