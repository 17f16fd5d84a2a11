//! `tftp://HOST[:PORT]/PATH` sources (what tegra-sysinstall fetched with
//! curl), downloaded by busybox's tftp applet through [`crate::sys::tftp`].
//! TFTP has no ranges: a transfer that breaks off is started again from the
//! first byte and the bytes already delivered are read past, and only when
//! an expected SHA-256 will catch a file that changed in between (as an
//! HTTP download without a validator).

#![deny(clippy::indexing_slicing)]

use crate::events::{Events, Level};
use crate::sys::tftp::{self, TftpError, TftpGet};
use anyhow::{anyhow, bail, Result};
use std::io::{self, Read};

/// The TFTP port when the URL gives none.
pub const DEFAULT_PORT: u16 = 69;

/// A parsed `tftp://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TftpUrl {
    /// Host name or address (an IPv6 address without its brackets).
    pub host: String,
    /// UDP port.
    pub port: u16,
    /// The file asked for: the URL's path without its first `/`.
    pub path: String,
}

impl TftpUrl {
    /// Parses `tftp://HOST[:PORT]/PATH`; `None` for another scheme.
    pub fn parse(spec: &str) -> Option<Result<TftpUrl>> {
        let rest = spec.strip_prefix("tftp://")?;
        Some(Self::parse_rest(spec, rest))
    }

    fn parse_rest(spec: &str, rest: &str) -> Result<TftpUrl> {
        let (authority, path) = rest.split_once('/').ok_or_else(|| {
            anyhow!("{spec}: a tftp:// URL needs a file: tftp://HOST[:PORT]/PATH")
        })?;
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6
                    .split_once(']')
                    .ok_or_else(|| anyhow!("{spec}: unclosed [ in the host"))?;
                (h, after.strip_prefix(':'))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .ok()
                .filter(|&n| n != 0)
                .ok_or_else(|| anyhow!("{spec}: port {p:?} is not 1-65535"))?,
            None => DEFAULT_PORT,
        };
        if host.is_empty() || host.contains(['@', '?', '#']) {
            bail!("{spec}: no host, or not a plain host (tftp://HOST[:PORT]/PATH)");
        }
        if path.is_empty() || path.ends_with('/') || path.contains(['?', '#', '\0']) {
            bail!("{spec}: the path must name a file (tftp://HOST[:PORT]/PATH)");
        }
        Ok(TftpUrl {
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        })
    }

    /// The URL of `PATH.sha256` beside this one.
    pub fn sidecar(&self) -> TftpUrl {
        TftpUrl {
            path: format!("{}.sha256", self.path),
            ..self.clone()
        }
    }
}

/// Downloads `url` whole into memory, at most `cap` bytes; `None` when the
/// server says there is no such file.
pub fn fetch_small(url: &TftpUrl, cap: u64) -> io::Result<Option<Vec<u8>>> {
    let mut out = Vec::new();
    let r =
        tftp::get(&url.host, url.port, &url.path).and_then(|g| g.take(cap).read_to_end(&mut out));
    match r {
        Ok(_) => Ok(Some(out)),
        Err(e) if not_found(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

fn not_found(e: &io::Error) -> bool {
    e.get_ref()
        .and_then(|x| x.downcast_ref::<TftpError>())
        .is_some_and(|t| t.not_found)
}

/// A download that starts over after a broken transfer.
pub struct TftpReader {
    url: TftpUrl,
    get: TftpGet,
    delivered: u64,
    retries_left: u32,
    restart_allowed: bool,
    events: Events,
}

impl TftpReader {
    /// Starts the download. `restart_allowed`: an expected SHA-256 is known,
    /// so a restarted transfer may be trusted to be the same file.
    pub fn open(url: TftpUrl, retries: u32, restart_allowed: bool, events: Events) -> Result<Self> {
        let get = tftp::get(&url.host, url.port, &url.path)?;
        Ok(TftpReader {
            url,
            get,
            delivered: 0,
            retries_left: retries,
            restart_allowed,
            events,
        })
    }

    /// Starts again from byte 0 and reads past what was delivered.
    fn restart(&mut self) -> io::Result<()> {
        self.get = tftp::get(&self.url.host, self.url.port, &self.url.path)?;
        let skipped = io::copy(&mut (&mut self.get).take(self.delivered), &mut io::sink())?;
        if skipped != self.delivered {
            return Err(io::Error::other(format!(
                "tftp://{}/{}: {skipped} bytes on the new transfer, {} were read before",
                self.url.host, self.url.path, self.delivered
            )));
        }
        Ok(())
    }
}

impl Read for TftpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.get.read(buf) {
                Ok(n) => {
                    self.delivered += n as u64;
                    return Ok(n);
                }
                Err(e) if not_found(&e) || self.retries_left == 0 => return Err(e),
                Err(e) if !self.restart_allowed => {
                    return Err(io::Error::other(format!(
                        "{e}; TFTP cannot resume, and without an expected SHA-256 \
                         (--rootfs-sha256 or NAME.sha256) a transfer started again \
                         could be another file"
                    )))
                }
                Err(e) => {
                    self.retries_left -= 1;
                    self.events.message(
                        Level::Warn,
                        format!("{e}: starting the transfer again from byte 0"),
                    );
                    self.restart()?;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> TftpUrl {
        TftpUrl::parse(s).unwrap().unwrap()
    }

    #[test]
    fn urls() {
        assert_eq!(
            url("tftp://10.0.0.1/images/rootfs.tar.zst"),
            TftpUrl {
                host: "10.0.0.1".into(),
                port: 69,
                path: "images/rootfs.tar.zst".into()
            }
        );
        let u = url("tftp://boot-server:6969/r.tgz");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("boot-server", 6969, "r.tgz")
        );
        let u = url("tftp://[fd00::1]:70/a/b");
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("fd00::1", 70, "a/b")
        );
        assert_eq!(u.sidecar().path, "a/b.sha256");
        assert!(TftpUrl::parse("http://x/y").is_none());
        for bad in [
            "tftp://host",
            "tftp://host/",
            "tftp:///file",
            "tftp://host:0/f",
            "tftp://host:99999/f",
            "tftp://user@host/f",
            "tftp://host/dir/",
            "tftp://[fd00::1/f",
        ] {
            assert!(TftpUrl::parse(bad).unwrap().is_err(), "{bad}");
        }
    }
}
