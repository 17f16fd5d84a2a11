//! OCI registries, the requests (the distribution API's pull side): the
//! manifest by tag or digest, an index followed to its manifest, then the
//! chosen layer's blob, streamed like any http(s) download (resumed with
//! `Range`, checked against its digest as it flows).
//!
//! Authentication: a registry that answers 401 with
//! `WWW-Authenticate: Bearer realm=…,service=…,scope=…` gets a token from
//! the realm (anonymously, or with `OCI_USERNAME`/`OCI_PASSWORD` as Basic
//! credentials), which is then sent to the registry; one that asks for
//! `Basic` gets the credentials directly. A `--bearer` token is sent from
//! the first request on. Credentials go only to the registry's origin and
//! to the realm it names, and to a plain-HTTP realm only when the registry
//! itself is plain HTTP (`oci+http://`, a lab). A token that expires during
//! a long download is renewed when the blob's reconnection is refused.

use super::http::{self, Authorizer, Fault, Head, HttpOptions, HttpReader, NetOptions, Secret};
use super::oci::{self, Blob, Manifest, Reference};
use crate::bytes::hex;
use crate::events::Events;
use anyhow::{anyhow, bail, Context as _, Result};
use sha2::{Digest, Sha256};
use std::sync::{Arc, Mutex};

/// Largest manifest or index read (the distribution spec has registries
/// accept at least 4 MiB).
const MAX_MANIFEST: u64 = 4 << 20;
/// Largest token response read.
const MAX_TOKEN_RESPONSE: u64 = 1 << 20;

/// The credentials sent to one registry, renewed on a 401.
struct RegistryAuth {
    reference: Reference,
    net: NetOptions,
    events: Events,
    current: Mutex<Option<Secret>>,
}

impl Authorizer for RegistryAuth {
    fn authorization(&self) -> Option<Secret> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    fn challenged(&self, head: &Head) -> Result<()> {
        let mut challenges = Vec::new();
        for (n, v) in &head.headers {
            if n == "www-authenticate" {
                challenges.extend(
                    oci::parse_challenges(v)
                        .map_err(|e| anyhow!("the registry's WWW-Authenticate: {e}"))?,
                );
            }
        }
        let new = if let Some(c) = challenges.iter().find(|c| c.scheme == "bearer") {
            Secret::new(format!("Bearer {}", self.token(c)?.expose()))
        } else if challenges.iter().any(|c| c.scheme == "basic") {
            let Some((user, pass)) = &self.net.registry_login else {
                return Err(auth(anyhow!(
                    "the registry wants a user name and password: set OCI_USERNAME and OCI_PASSWORD"
                )));
            };
            let basic = Secret::new(http::basic_authorization(user, pass.expose()));
            if self.authorization().as_ref() == Some(&basic) {
                return Err(auth(anyhow!(
                    "the registry refused OCI_USERNAME/OCI_PASSWORD"
                )));
            }
            basic
        } else {
            return Err(auth(anyhow!(
                "HTTP 401 from the registry without a Bearer or Basic challenge"
            )));
        };
        if let Ok(mut c) = self.current.lock() {
            *c = Some(new);
        }
        Ok(())
    }
}

impl RegistryAuth {
    /// The token flow: GET the realm with `service` and `scope`.
    fn token(&self, c: &oci::Challenge) -> Result<Secret> {
        let realm = c
            .param("realm")
            .ok_or_else(|| anyhow!("the registry's Bearer challenge has no realm"))?;
        if !(realm.starts_with("https://")
            || (self.reference.plain_http && realm.starts_with("http://")))
        {
            bail!("the registry's token service {realm} is not https:// (credentials are not sent in clear text)");
        }
        let scope = c
            .param("scope")
            .map(str::to_owned)
            .unwrap_or_else(|| format!("repository:{}:pull", self.reference.name));
        let mut url = realm.to_owned();
        let mut sep = if url.contains('?') { '&' } else { '?' };
        for (k, v) in [
            ("service", c.param("service")),
            ("scope", Some(scope.as_str())),
        ] {
            if let Some(v) = v {
                url.push_str(&format!("{sep}{k}={}", percent_encode(v)));
                sep = '&';
            }
        }
        // The realm is another origin: none of the registry's headers or
        // its bearer token go there; the login (if any) does, as Basic.
        let login = self
            .net
            .registry_login
            .as_ref()
            .map(|(u, p)| Secret::new(http::basic_authorization(u, p.expose())));
        let opts = HttpOptions {
            auth: login.map(|l| Arc::new(Fixed(l)) as Arc<dyn Authorizer>),
            ..HttpOptions::new(
                NetOptions {
                    headers: Vec::new(),
                    bearer: None,
                    ..self.net.clone()
                },
                self.events.clone(),
            )
        };
        let fetched = HttpReader::open(&url, opts).and_then(|r| r.read_all(MAX_TOKEN_RESPONSE));
        let unauthorized = |e: &anyhow::Error| {
            e.chain().any(|c| {
                c.downcast_ref::<http::HttpStatus>()
                    .is_some_and(|s| s.code == 401)
            })
        };
        let body = match fetched {
            Ok(b) => b,
            Err(e) if self.net.registry_login.is_none() && unauthorized(&e) => {
                return Err(auth(anyhow!(
                    "the registry's token service {realm} wants a login: set OCI_USERNAME and OCI_PASSWORD"
                )))
            }
            Err(e) => return Err(e).with_context(|| format!("getting a registry token from {realm}")),
        };
        let v: serde_json::Value = serde_json::from_slice(&body)
            .map_err(|e| anyhow!("the token from {realm} is not JSON: {e}"))?;
        let token = ["token", "access_token"]
            .iter()
            .find_map(|k| v.get(k).and_then(|t| t.as_str()).filter(|t| !t.is_empty()))
            .ok_or_else(|| anyhow!("the answer of {realm} has no token"))?;
        if token.contains(['\r', '\n']) {
            bail!("the token from {realm} has a line break");
        }
        Ok(Secret::new(token))
    }
}

/// Credentials missing or refused.
fn auth(e: anyhow::Error) -> anyhow::Error {
    http::fault(Fault::Auth, e)
}

/// Bytes that are not the digest they must have.
fn digest(e: anyhow::Error) -> anyhow::Error {
    http::fault(Fault::Digest, e)
}

/// A fixed `Authorization` (the realm's Basic login): a second 401 ends it.
struct Fixed(Secret);

impl Authorizer for Fixed {
    fn authorization(&self) -> Option<Secret> {
        Some(self.0.clone())
    }
    fn challenged(&self, _head: &Head) -> Result<()> {
        Err(auth(anyhow!(
            "HTTP 401: the token service refused OCI_USERNAME/OCI_PASSWORD"
        )))
    }
}

/// `%XX` for everything but unreserved characters (RFC 3986 §2.3).
fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// An open registry: its reference and the credentials of this source.
pub struct Registry {
    reference: Reference,
    shown: String,
    net: NetOptions,
    events: Events,
    auth: Arc<RegistryAuth>,
}

impl Registry {
    /// Parses `spec` (nothing is fetched yet).
    pub fn new(spec: &str, net: &NetOptions, events: &Events) -> Result<Registry> {
        let reference = Reference::parse(spec).map_err(anyhow::Error::msg)?;
        let auth = Arc::new(RegistryAuth {
            reference: reference.clone(),
            net: net.clone(),
            events: events.clone(),
            current: Mutex::new(
                net.bearer
                    .as_ref()
                    .map(|b| Secret::new(format!("Bearer {}", b.expose()))),
            ),
        });
        Ok(Registry {
            reference,
            shown: spec.to_owned(),
            net: net.clone(),
            events: events.clone(),
            auth,
        })
    }

    fn options(&self, accept: Option<String>, resume: bool) -> HttpOptions {
        HttpOptions {
            accept,
            resume_without_validator: resume,
            auth: Some(self.auth.clone() as Arc<dyn Authorizer>),
            ..HttpOptions::new(self.net.clone(), self.events.clone())
        }
    }

    /// The blob the reference names: resolved once per run (the first
    /// resolution is reused, see [`oci::Resolved`]).
    pub fn resolve(&self) -> Result<Blob> {
        let key = self.reference.key();
        if let Some(b) = self.net.resolved.get(&key) {
            return Ok(b);
        }
        let blob = self
            .resolve_now()
            .with_context(|| format!("resolving {}", self.shown))?;
        self.net.resolved.insert(key.clone(), blob);
        // Another clone may have resolved it at the same time: the first wins.
        self.net
            .resolved
            .get(&key)
            .ok_or_else(|| anyhow!("resolving {}: lost", self.shown))
    }

    fn resolve_now(&self) -> Result<Blob> {
        let r = &self.reference;
        let (mut manifest, mut digest) = self.manifest(&r.manifest_ref(), r.digest)?;
        if let Manifest::Index(entries) = &manifest {
            let entry = oci::pick_manifest(entries).map_err(anyhow::Error::msg)?;
            let d = entry.sha256().map_err(anyhow::Error::msg)?;
            (manifest, digest) = self.manifest(&format!("sha256:{}", hex(&d)), Some(d))?;
            if matches!(manifest, Manifest::Index(_)) {
                bail!("the index's manifest sha256:{} is an index again", hex(&d));
            }
        }
        let Manifest::Image(layers) = manifest else {
            bail!("no image manifest");
        };
        let layer = oci::pick_layer(&layers, r.title.as_deref()).map_err(anyhow::Error::msg)?;
        let blob = Blob {
            digest: layer.sha256().map_err(anyhow::Error::msg)?,
            size: layer.size,
            media_type: layer.media_type.clone(),
        };
        self.events.message(
            crate::events::Level::Info,
            format!(
                "{}: manifest sha256:{}, layer sha256:{} ({} bytes, {})",
                self.shown,
                hex(&digest),
                hex(&blob.digest),
                blob.size,
                blob.media_type
            ),
        );
        Ok(blob)
    }

    /// Fetches a manifest; by digest, its bytes must hash to it.
    fn manifest(&self, reference: &str, want: Option<[u8; 32]>) -> Result<(Manifest, [u8; 32])> {
        let url = format!("{}/manifests/{reference}", self.reference.api_base());
        let accept = [oci::MANIFEST_TYPES, oci::INDEX_TYPES].concat().join(", ");
        let reader = HttpReader::open(&url, self.options(Some(accept), false))
            .with_context(|| format!("fetching the manifest {url}"))?;
        let content_type = reader.head().get("content-type").map(str::to_owned);
        let announced = reader
            .head()
            .get("docker-content-digest")
            .map(str::to_owned);
        let bytes = reader.read_all(MAX_MANIFEST)?;
        let got: [u8; 32] = Sha256::digest(&bytes).into();
        if let Some(w) = want {
            if got != w {
                return Err(digest(anyhow!(
                    "the manifest {url} has SHA-256 {}, not the digest asked for",
                    hex(&got)
                )));
            }
        }
        if let Some(a) = announced {
            if a.strip_prefix("sha256:") != Some(hex(&got).as_str()) {
                return Err(digest(anyhow!(
                    "the manifest {url} has SHA-256 {}, the registry announced {a}",
                    hex(&got)
                )));
            }
        }
        let m = oci::parse_manifest(&bytes, content_type.as_deref())
            .map_err(|e| anyhow!("the manifest {url}: {e}"))?;
        Ok((m, got))
    }

    /// Opens the blob's stream (the caller checks its SHA-256 as it flows).
    pub fn open_blob(&self, blob: &Blob) -> Result<HttpReader> {
        let url = format!(
            "{}/blobs/sha256:{}",
            self.reference.api_base(),
            hex(&blob.digest)
        );
        let reader = HttpReader::open(&url, self.options(None, true))
            .with_context(|| format!("downloading {}", self.shown))?;
        if let Some(len) = reader.content_length() {
            if len != blob.size {
                return Err(digest(anyhow!(
                    "{}: the registry serves {len} bytes for sha256:{}, its manifest says {}",
                    self.shown,
                    hex(&blob.digest),
                    blob.size
                )));
            }
        }
        Ok(reader)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realm_parameters_are_encoded() {
        assert_eq!(
            percent_encode("repository:a/b:pull"),
            "repository%3Aa%2Fb%3Apull"
        );
        assert_eq!(
            percent_encode("registry.example-1_~"),
            "registry.example-1_~"
        );
    }
}
