//! OCI registry sources, the pure part: `oci://` references, manifests and
//! image indexes, which layer is the tarball, and `WWW-Authenticate`
//! challenges. The requests are in [`super::registry`].
//!
//! # References
//!
//! `oci://REGISTRY[:PORT]/REPOSITORY:TAG`, `…/REPOSITORY@sha256:HEX` or
//! `…/REPOSITORY:TAG@sha256:HEX` (the digest wins; the tag is only a name),
//! optionally followed by `#TITLE` to choose a layer by its
//! `org.opencontainers.image.title` annotation (the file name `oras push`
//! records). `oci+http://` is the same over plain HTTP (lab registries).
//! A tag or a digest must be given: an install says what it installs, so
//! there is no implicit `latest`. `docker.io` means Docker Hub's registry.
//!
//! # Which layer
//!
//! 1. With `#TITLE`, the layer of that title.
//! 2. Else the only layer.
//! 3. Else the only layer that is a tarball: its media type is a tar or
//!    compressed type (`application/vnd.oci.image.layer.v1.tar[+gzip|+zstd]`,
//!    `application/vnd.docker.image.rootfs.diff.tar.gzip`, `application/x-tar`,
//!    `application/gzip`, `application/zstd`, `application/x-xz`,
//!    `application/x-bzip2`, or any type ending in `.tar` or containing
//!    `.tar+`), and its title, if any, does not name a checksum or signature
//!    (`.sha256`, `.sha512`, `.md5`, `.sig`, `.asc`).
//! 4. Else the reference is refused, listing the layers.
//!
//! An image index (a multi-platform image) is followed to its only
//! manifest, else to the only one for `linux/arm64`.
//!
//! # Identity
//!
//! The chosen layer's digest is the SHA-256 the stream must have: it is
//! checked as the blob flows, and it is what the install records. A tag is
//! resolved once per run ([`Resolved`]), so a tag that moves while the
//! install runs cannot change what is installed; a manifest fetched by
//! digest must hash to that digest.
#![deny(clippy::indexing_slicing)]

use super::source::parse_hex;
use crate::bytes::hex;
use std::sync::{Arc, Mutex};

/// Longest reference accepted.
const MAX_REFERENCE: usize = 2048;
/// Longest tag (OCI distribution spec: `[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`).
const MAX_TAG: usize = 128;
/// Layers or index entries listed in an error.
const MAX_LISTED: usize = 8;
/// Docker Hub: `docker.io` names it; its API is served here.
const DOCKER_HUB: (&str, &str) = ("docker.io", "registry-1.docker.io");

/// Media types of an image manifest.
pub const MANIFEST_TYPES: &[&str] = &[
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v2+json",
];
/// Media types of an image index.
pub const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];
/// The `org.opencontainers.image.title` annotation: a layer's file name.
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// A parsed `oci://` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    /// `oci+http://`: the registry speaks plain HTTP.
    pub plain_http: bool,
    /// Registry host (without brackets).
    pub host: String,
    /// Registry port.
    pub port: u16,
    /// Repository (`group/name`).
    pub name: String,
    /// Tag, when given.
    pub tag: Option<String>,
    /// Manifest digest (SHA-256), when given.
    pub digest: Option<[u8; 32]>,
    /// `#TITLE`: the layer to take.
    pub title: Option<String>,
}

impl Reference {
    /// True when `spec` is meant as an OCI reference.
    pub fn is_oci(spec: &str) -> bool {
        spec.starts_with("oci://") || spec.starts_with("oci+http://")
    }

    /// Parses an `oci://` or `oci+http://` reference.
    pub fn parse(spec: &str) -> Result<Reference, String> {
        if spec.len() > MAX_REFERENCE {
            return Err(format!("OCI reference longer than {MAX_REFERENCE} bytes"));
        }
        let bad = |why: &str| format!("{spec}: {why}");
        let (plain_http, rest) = if let Some(r) = spec.strip_prefix("oci://") {
            (false, r)
        } else if let Some(r) = spec.strip_prefix("oci+http://") {
            (true, r)
        } else {
            return Err(bad("not an oci:// or oci+http:// reference"));
        };
        let (rest, title) = match rest.split_once('#') {
            Some((r, t)) if !t.is_empty() => (r, Some(t.to_owned())),
            Some(_) => return Err(bad("empty #TITLE")),
            None => (rest, None),
        };
        let (authority, path) = rest
            .split_once('/')
            .ok_or_else(|| bad("no repository after the registry"))?;
        let default_port = if plain_http { 80 } else { 443 };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (h, after) = v6.split_once(']').ok_or_else(|| bad("unclosed ["))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad("bad registry port"))?,
                None if after.is_empty() => default_port,
                None => return Err(bad("junk after the registry host")),
            };
            (h.to_owned(), port)
        } else {
            match authority.split_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse().map_err(|_| bad("bad registry port"))?,
                ),
                None => (authority.to_owned(), default_port),
            }
        };
        let host_ok = |c: char| c.is_ascii_alphanumeric() || ".-:".contains(c);
        if host.is_empty() || !host.chars().all(host_ok) || authority.contains('@') {
            return Err(bad("bad registry host"));
        }
        let host = if host == DOCKER_HUB.0 {
            DOCKER_HUB.1.to_owned()
        } else {
            host
        };
        let (name_tag, digest) = match path.split_once('@') {
            Some((n, d)) => {
                let hexd = d
                    .strip_prefix("sha256:")
                    .ok_or_else(|| bad("only sha256: digests are supported"))?;
                if hexd.len() != 64 || !hexd.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
                    return Err(bad("a sha256 digest is 64 lower-case hex digits"));
                }
                (n, parse_hex(hexd))
            }
            None => (path, None),
        };
        let (name, tag) = match name_tag.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_owned())),
            _ => (name_tag, None),
        };
        if !valid_name(name) {
            return Err(bad(
                "bad repository name (lower-case components separated by /, made of a-z, 0-9 and . _ -)",
            ));
        }
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(bad(
                    "bad tag (at most 128 of A-Z a-z 0-9 _ . -, not starting with . or -)",
                ));
            }
        }
        if tag.is_none() && digest.is_none() {
            return Err(bad(
                "name a tag (:TAG) or a digest (@sha256:HEX): there is no implicit latest",
            ));
        }
        Ok(Reference {
            plain_http,
            host,
            port,
            name: name.to_owned(),
            tag,
            digest,
            title,
        })
    }

    /// `https://HOST:PORT/v2/NAME` (or `http://`).
    pub fn api_base(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!(
            "{}://{host}:{}/v2/{}",
            if self.plain_http { "http" } else { "https" },
            self.port,
            self.name
        )
    }

    /// What to ask the manifests endpoint for: the digest, else the tag.
    pub fn manifest_ref(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => format!("sha256:{}", hex(d)),
            (None, Some(t)) => t.clone(),
            (None, None) => String::new(),
        }
    }

    /// A key naming what this reference resolves to (the same for the same
    /// registry, repository, tag or digest, and layer choice).
    pub fn key(&self) -> String {
        format!(
            "{}/{}#{}",
            self.api_base(),
            self.manifest_ref(),
            self.title.as_deref().unwrap_or("")
        )
    }
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*` components joined by `/`.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('/').all(|c| {
            let b = c.as_bytes();
            let alnum = |x: &u8| x.is_ascii_lowercase() || x.is_ascii_digit();
            let sep = |x: &u8| matches!(x, b'.' | b'_' | b'-');
            b.first().is_some_and(alnum)
                && b.last().is_some_and(alnum)
                && b.iter().all(|x| alnum(x) || sep(x))
                // `.` and `_` stand alone (or `__`); dashes may repeat.
                && !c.contains("..")
                && !c.contains("___")
                && !c.contains("._")
                && !c.contains("_.")
                && !c.contains(".-")
                && !c.contains("-.")
                && !c.contains("_-")
                && !c.contains("-_")
        })
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() <= MAX_TAG
        && b.first()
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A layer (or an index entry) of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    /// Its media type.
    pub media_type: String,
    /// `ALGORITHM:HEX`, as the manifest says.
    pub digest: String,
    /// Size in bytes.
    pub size: u64,
    /// The title annotation (a file name).
    pub title: Option<String>,
    /// For an index entry: `os/architecture[/variant]`.
    pub platform: Option<String>,
}

impl Descriptor {
    /// The SHA-256 this descriptor names: `sha256:` and 64 lower-case hex
    /// digits, as the image spec has it (so the digest asked for is the
    /// digest named, byte for byte).
    pub fn sha256(&self) -> Result<[u8; 32], String> {
        self.digest
            .strip_prefix("sha256:")
            .filter(|h| h.len() == 64 && h.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')))
            .and_then(parse_hex)
            .ok_or_else(|| {
                format!(
                    "digest {:?}: not sha256: and 64 lower-case hex digits (only sha256 is supported)",
                    self.digest
                )
            })
    }

    fn listed(&self) -> String {
        let mut s = format!("{} {} ({} bytes)", self.digest, self.media_type, self.size);
        if let Some(t) = &self.title {
            s.push_str(&format!(" title {t:?}"));
        }
        if let Some(p) = &self.platform {
            s.push_str(&format!(" platform {p}"));
        }
        s
    }
}

/// What a manifests endpoint returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Manifest {
    /// An image manifest: its layers.
    Image(Vec<Descriptor>),
    /// An image index: its manifests.
    Index(Vec<Descriptor>),
}

/// Parses a manifest or index; `content_type` is the response's, used
/// when the document does not say its media type.
pub fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<Manifest, String> {
    let v: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let obj = v.as_object().ok_or("not a JSON object")?;
    if obj.get("schemaVersion").and_then(|s| s.as_u64()) != Some(2) {
        return Err("not a schema version 2 manifest (Docker schema 1 is not supported)".into());
    }
    let ct = content_type.map(|c| c.split(';').next().unwrap_or("").trim());
    let media_type = obj
        .get("mediaType")
        .and_then(|m| m.as_str())
        .or(ct.filter(|c| !c.is_empty() && *c != "application/json"));
    let is_index = match media_type {
        Some(m) if INDEX_TYPES.contains(&m) => true,
        Some(m) if MANIFEST_TYPES.contains(&m) => false,
        Some(m) => {
            return Err(format!(
                "media type {m:?} is neither an image manifest nor an index"
            ))
        }
        None => obj.contains_key("manifests") && !obj.contains_key("layers"),
    };
    let key = if is_index { "manifests" } else { "layers" };
    let list = obj
        .get(key)
        .and_then(|l| l.as_array())
        .ok_or_else(|| format!("no {key} array"))?;
    let mut out = Vec::with_capacity(list.len());
    for (i, d) in list.iter().enumerate() {
        out.push(descriptor(d).map_err(|e| format!("{key}[{i}]: {e}"))?);
    }
    Ok(if is_index {
        Manifest::Index(out)
    } else {
        Manifest::Image(out)
    })
}

fn descriptor(d: &serde_json::Value) -> Result<Descriptor, String> {
    let text = |k: &str| d.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let media_type = text("mediaType").ok_or("no mediaType")?;
    let digest = text("digest").ok_or("no digest")?;
    let size = d
        .get("size")
        .and_then(|s| s.as_u64())
        .ok_or("no size (a non-negative integer)")?;
    let title = d
        .get("annotations")
        .and_then(|a| a.get(TITLE_ANNOTATION))
        .and_then(|t| t.as_str())
        .map(str::to_owned);
    let platform = d.get("platform").map(|p| {
        let f = |k: &str| p.get(k).and_then(|v| v.as_str()).unwrap_or("");
        let mut s = format!("{}/{}", f("os"), f("architecture"));
        if !f("variant").is_empty() {
            s.push('/');
            s.push_str(f("variant"));
        }
        s
    });
    Ok(Descriptor {
        media_type,
        digest,
        size,
        title,
        platform,
    })
}

/// True for media types that carry a (compressed) tarball.
pub fn is_tarball_type(media_type: &str) -> bool {
    let m = media_type.split(';').next().unwrap_or("").trim();
    m.starts_with("application/vnd.oci.image.layer.v1.tar")
        || m.starts_with("application/vnd.docker.image.rootfs.diff.tar")
        || m.ends_with(".tar")
        || m.contains(".tar+")
        || matches!(
            m,
            "application/x-tar"
                | "application/gzip"
                | "application/x-gzip"
                | "application/zstd"
                | "application/x-xz"
                | "application/x-bzip2"
        )
}

/// True for a title that names a checksum or a signature, not a tarball.
fn is_side_file(title: &str) -> bool {
    [".sha256", ".sha512", ".md5", ".sig", ".asc"]
        .iter()
        .any(|s| title.ends_with(s))
}

fn listing(ds: &[Descriptor]) -> String {
    let mut s: Vec<String> = ds.iter().take(MAX_LISTED).map(Descriptor::listed).collect();
    if ds.len() > MAX_LISTED {
        s.push(format!("and {} more", ds.len() - MAX_LISTED));
    }
    s.join("; ")
}

/// Picks the layer to install (the rule in the module documentation).
pub fn pick_layer<'a>(
    layers: &'a [Descriptor],
    title: Option<&str>,
) -> Result<&'a Descriptor, String> {
    if let Some(t) = title {
        return layers
            .iter()
            .find(|l| l.title.as_deref() == Some(t))
            .ok_or_else(|| format!("no layer titled {t:?} (layers: {})", listing(layers)));
    }
    match layers {
        [] => Err("the manifest has no layers".into()),
        [one] => Ok(one),
        _ => {
            let tarballs: Vec<&Descriptor> = layers
                .iter()
                .filter(|l| {
                    is_tarball_type(&l.media_type) && !l.title.as_deref().is_some_and(is_side_file)
                })
                .collect();
            match tarballs.as_slice() {
                [one] => Ok(one),
                _ => Err(format!(
                    "{} layers and not exactly one tarball among them: choose one with #TITLE (layers: {})",
                    layers.len(),
                    listing(layers)
                )),
            }
        }
    }
}

/// Picks the manifest of an index: the only one, else the only `linux/arm64`.
pub fn pick_manifest(entries: &[Descriptor]) -> Result<&Descriptor, String> {
    if let [one] = entries {
        return Ok(one);
    }
    let arm64: Vec<&Descriptor> = entries
        .iter()
        .filter(|e| {
            matches!(
                e.platform.as_deref(),
                Some("linux/arm64") | Some("linux/arm64/v8")
            )
        })
        .collect();
    match arm64.as_slice() {
        [one] => Ok(one),
        _ => Err(format!(
            "an image index with {} manifests and not exactly one for linux/arm64: give the manifest's digest (@sha256:…) (manifests: {})",
            entries.len(),
            listing(entries)
        )),
    }
}

/// What a reference resolved to: the blob to stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// The layer's SHA-256: the stream's identity.
    pub digest: [u8; 32],
    /// Its size, as the manifest says.
    pub size: u64,
    /// Its media type.
    pub media_type: String,
}

/// The references a run has resolved, shared by every clone (see the
/// module documentation: a tag is resolved once).
#[derive(Clone, Default)]
pub struct Resolved(Arc<Mutex<Vec<(String, Blob)>>>);

impl Resolved {
    /// What `key` resolved to earlier in this run.
    pub fn get(&self, key: &str) -> Option<Blob> {
        self.0
            .lock()
            .ok()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, b)| b.clone())
    }

    /// Records a resolution (the first one stays).
    pub fn insert(&self, key: String, blob: Blob) {
        if let Ok(mut v) = self.0.lock() {
            if !v.iter().any(|(k, _)| *k == key) {
                v.push((key, blob));
            }
        }
    }
}

/// One challenge of a `WWW-Authenticate` header (RFC 7235 §4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme, lower-cased (`bearer`, `basic`).
    pub scheme: String,
    /// Parameters, names lower-cased, values unquoted.
    pub params: Vec<(String, String)>,
}

impl Challenge {
    /// A parameter's value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)
}

fn is_token68(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"-._~+/".contains(&c)
}

/// Parses a `WWW-Authenticate` value: `scheme [token68 | name=value, ...]`,
/// challenges separated by commas.
pub fn parse_challenges(text: &str) -> Result<Vec<Challenge>, String> {
    let b = text.as_bytes();
    let mut i = 0;
    let at = |i: usize| b.get(i).copied();
    let skip_ws = |i: &mut usize| {
        while matches!(at(*i), Some(b' ' | b'\t')) {
            *i += 1;
        }
    };
    let token = |i: &mut usize| {
        let start = *i;
        while at(*i).is_some_and(is_tchar) {
            *i += 1;
        }
        text.get(start..*i).unwrap_or("").to_owned()
    };
    let mut out: Vec<Challenge> = Vec::new();
    loop {
        while matches!(at(i), Some(b' ' | b'\t' | b',')) {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let scheme = token(&mut i);
        if scheme.is_empty() {
            return Err(format!("expected an auth scheme at byte {i}"));
        }
        let mut ch = Challenge {
            scheme: scheme.to_ascii_lowercase(),
            params: Vec::new(),
        };
        skip_ws(&mut i);
        // token68: a run of token68 characters, then only '=', then the end or a comma.
        let start = i;
        let mut j = i;
        while at(j).is_some_and(is_token68) {
            j += 1;
        }
        let mut k = j;
        while at(k) == Some(b'=') {
            k += 1;
        }
        let after = {
            let mut m = k;
            while matches!(at(m), Some(b' ' | b'\t')) {
                m += 1;
            }
            m
        };
        if j > start && matches!(at(after), None | Some(b',')) {
            ch.params.push((
                "token68".into(),
                text.get(start..k).unwrap_or("").to_owned(),
            ));
            i = k;
            out.push(ch);
            continue;
        }
        // auth-params.
        loop {
            skip_ws(&mut i);
            let save = i;
            let name = token(&mut i);
            skip_ws(&mut i);
            if name.is_empty() || at(i) != Some(b'=') {
                // The next challenge's scheme (or the end).
                i = save;
                break;
            }
            i += 1;
            skip_ws(&mut i);
            let value = if at(i) == Some(b'"') {
                i += 1;
                let mut v = Vec::new();
                loop {
                    match at(i) {
                        None => return Err("unterminated quoted string".into()),
                        Some(b'"') => {
                            i += 1;
                            break;
                        }
                        Some(b'\\') => {
                            let c = at(i + 1).ok_or("unterminated quoted string")?;
                            v.push(c);
                            i += 2;
                        }
                        Some(c) => {
                            v.push(c);
                            i += 1;
                        }
                    }
                }
                String::from_utf8(v).map_err(|_| "a quoted value is not UTF-8".to_owned())?
            } else {
                let v = token(&mut i);
                if v.is_empty() {
                    return Err(format!("no value for {name}"));
                }
                v
            };
            ch.params.push((name.to_ascii_lowercase(), value));
            skip_ws(&mut i);
            match at(i) {
                Some(b',') => i += 1,
                None => break,
                Some(_) => return Err(format!("junk after the {name} parameter at byte {i}")),
            }
        }
        out.push(ch);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    const D: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn references() {
        let r = Reference::parse("oci://registry.lab:5000/jetson/rootfs:r36.4").unwrap();
        assert_eq!(
            (r.plain_http, r.host.as_str(), r.port, r.name.as_str()),
            (false, "registry.lab", 5000, "jetson/rootfs")
        );
        assert_eq!(r.tag.as_deref(), Some("r36.4"));
        assert_eq!(r.api_base(), "https://registry.lab:5000/v2/jetson/rootfs");
        assert_eq!(r.manifest_ref(), "r36.4");
        let r =
            Reference::parse(&format!("oci+http://[::1]/a/b:t@sha256:{D}#rootfs.tar.zst")).unwrap();
        assert!(r.plain_http);
        assert_eq!((r.host.as_str(), r.port), ("::1", 80));
        assert_eq!(r.manifest_ref(), format!("sha256:{D}"));
        assert_eq!(r.title.as_deref(), Some("rootfs.tar.zst"));
        assert_eq!(r.api_base(), "http://[::1]:80/v2/a/b");
        let r = Reference::parse("oci://docker.io/library/x:1").unwrap();
        assert_eq!(r.host, "registry-1.docker.io");
        for (bad, says) in [
            ("oci://h/repo", "there is no implicit latest"),
            ("oci://h", "no repository"),
            ("oci://h/Repo:t", "bad repository name"),
            ("oci://h/a//b:t", "bad repository name"),
            ("oci://h/a..b:t", "bad repository name"),
            ("oci://h/-a:t", "bad repository name"),
            ("oci://h/a:.t", "bad tag"),
            ("oci://h/a@sha512:00", "only sha256"),
            ("oci://h/a@sha256:ABC", "64 lower-case"),
            ("oci://h:x/a:t", "bad registry port"),
            ("oci://u:p@h/a:t", "bad registry"),
            ("oci://h/a:t#", "empty #TITLE"),
            ("https://h/a:t", "not an oci://"),
        ] {
            let e = Reference::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(Reference::parse(&format!("oci://h/a:{}", "t".repeat(129))).is_err());
        assert!(Reference::parse("oci://h/a__b/c-d/e.f:x").is_ok());
        // The tag's colon is not the port's.
        let r = Reference::parse("oci://h:5000/a/b").unwrap_err();
        assert!(r.contains("no implicit latest"), "{r}");
    }

    fn layer(mt: &str, title: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: mt.into(),
            digest: format!("sha256:{D}"),
            size: 1,
            title: title.map(Into::into),
            platform: None,
        }
    }

    #[test]
    fn manifests() {
        let m = format!(
            r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
            "config":{{"mediaType":"application/vnd.oci.empty.v1+json","digest":"sha256:{D}","size":2}},
            "layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"sha256:{D}","size":1234,
            "annotations":{{"org.opencontainers.image.title":"rootfs.tar.zst"}}}}]}}"#
        );
        let Manifest::Image(layers) = parse_manifest(m.as_bytes(), None).unwrap() else {
            panic!()
        };
        assert_eq!(layers[0].size, 1234);
        assert_eq!(layers[0].title.as_deref(), Some("rootfs.tar.zst"));
        assert_eq!(layers[0].sha256().unwrap(), parse_hex(D).unwrap());
        // Upper case or a sign is not the digest's spelling (found by the
        // sources fuzz target: "Cd" was taken as "cd").
        for bad in [D.to_uppercase(), format!("+{}", &D[1..])] {
            let d = Descriptor {
                digest: format!("sha256:{bad}"),
                ..layers[0].clone()
            };
            assert!(d.sha256().is_err(), "{bad}");
        }
        // The media type from the response when the document has none.
        let idx = format!(
            r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:{D}","size":5,"platform":{{"os":"linux","architecture":"arm64","variant":"v8"}}}}]}}"#
        );
        let Manifest::Index(e) = parse_manifest(
            idx.as_bytes(),
            Some("application/vnd.oci.image.index.v1+json; charset=utf-8"),
        )
        .unwrap() else {
            panic!()
        };
        assert_eq!(e[0].platform.as_deref(), Some("linux/arm64/v8"));
        for (bad, says) in [
            ("[]", "not a JSON object"),
            ("{", "not JSON"),
            (r#"{"schemaVersion":1}"#, "schema 1"),
            (r#"{"schemaVersion":2,"mediaType":"text/html"}"#, "neither"),
            (
                r#"{"schemaVersion":2,"layers":[{"mediaType":"x","digest":"d"}]}"#,
                "layers[0]: no size",
            ),
            (
                r#"{"schemaVersion":2,"layers":[{"mediaType":"x","digest":"d","size":-1}]}"#,
                "no size",
            ),
            (r#"{"schemaVersion":2}"#, "no layers array"),
        ] {
            let e = parse_manifest(bad.as_bytes(), None).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(layer("x", None).sha256().is_ok());
        let mut l = layer("x", None);
        l.digest = "sha512:00".into();
        assert!(l.sha256().unwrap_err().contains("only sha256"));
    }

    #[test]
    fn layer_choice() {
        let tar = "application/vnd.oci.image.layer.v1.tar";
        let one = [layer("application/octet-stream", None)];
        assert!(pick_layer(&one, None).is_ok());
        let oras = [
            layer(tar, Some("rootfs.tar.zst")),
            layer(tar, Some("rootfs.tar.zst.sha256")),
            layer("text/plain", Some("README")),
        ];
        assert_eq!(
            pick_layer(&oras, None).unwrap().title.as_deref(),
            Some("rootfs.tar.zst")
        );
        assert_eq!(
            pick_layer(&oras, Some("README")).unwrap().media_type,
            "text/plain"
        );
        let e = pick_layer(&oras, Some("nope")).unwrap_err();
        assert!(
            e.contains("no layer titled \"nope\"") && e.contains("README"),
            "{e}"
        );
        let two = [
            layer("application/vnd.oci.image.layer.v1.tar+gzip", None),
            layer("application/vnd.docker.image.rootfs.diff.tar.gzip", None),
        ];
        assert!(pick_layer(&two, None).unwrap_err().contains("#TITLE"));
        assert!(pick_layer(&[], None).is_err());
        for t in [
            "application/x-tar",
            "application/zstd",
            "application/vnd.example.rootfs.tar+zstd",
            "application/vnd.example.rootfs.tar",
        ] {
            assert!(is_tarball_type(t), "{t}");
        }
        assert!(!is_tarball_type("application/vnd.example.start"));
    }

    #[test]
    fn index_choice() {
        let e = |p: &str| Descriptor {
            platform: Some(p.into()),
            ..layer("application/vnd.oci.image.manifest.v1+json", None)
        };
        let idx = [e("linux/amd64"), e("linux/arm64/v8"), e("unknown/unknown")];
        assert_eq!(
            pick_manifest(&idx).unwrap().platform.as_deref(),
            Some("linux/arm64/v8")
        );
        assert!(pick_manifest(&[e("linux/amd64")]).is_ok());
        let err = pick_manifest(&[e("linux/amd64"), e("linux/riscv64")]).unwrap_err();
        assert!(
            err.contains("linux/arm64") && err.contains("linux/riscv64"),
            "{err}"
        );
    }

    #[test]
    fn challenges() {
        let c = parse_challenges(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].scheme, "bearer");
        assert_eq!(c[0].param("realm"), Some("https://auth.example/token"));
        assert_eq!(c[0].param("scope"), Some("repository:a/b:pull"));
        let c = parse_challenges(r#"Basic realm="Registry \"x\"", charset=UTF-8, Bearer realm=r"#)
            .unwrap();
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].param("realm"), Some("Registry \"x\""));
        assert_eq!(c[0].param("charset"), Some("UTF-8"));
        assert_eq!(
            (c[1].scheme.as_str(), c[1].param("realm")),
            ("bearer", Some("r"))
        );
        let c = parse_challenges("Negotiate abc123==, Basic").unwrap();
        assert_eq!(c[0].param("token68"), Some("abc123=="));
        assert_eq!(c[1].scheme, "basic");
        assert_eq!(parse_challenges("  ").unwrap(), vec![]);
        assert!(parse_challenges(r#"Bearer realm="open"#).is_err());
        assert!(parse_challenges("Bearer a=b, c=").is_err());
        // A lone `x=` is a token68 (RFC 7235 allows both readings).
        assert_eq!(
            parse_challenges("Bearer x=").unwrap()[0].param("token68"),
            Some("x=")
        );
        assert!(parse_challenges("=x").is_err());
        assert!(parse_challenges(r#"Bearer realm="a" junk"#).is_err());
    }

    #[test]
    fn resolutions_are_shared_and_first_wins() {
        let r = Resolved::default();
        let b = |n: u8| Blob {
            digest: [n; 32],
            size: 1,
            media_type: "x".into(),
        };
        let shared = r.clone();
        r.insert("k".into(), b(1));
        shared.insert("k".into(), b(2));
        assert_eq!(shared.get("k"), Some(b(1)));
        assert_eq!(r.get("other"), None);
    }
}
