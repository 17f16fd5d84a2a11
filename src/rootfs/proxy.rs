//! Which proxy an http(s) request goes through: `http_proxy`,
//! `https_proxy` and `no_proxy`, read the way curl reads them.
//!
//! * `http_proxy` (lower case only: a CGI program can have `HTTP_PROXY`
//!   set from a request's `Proxy:` header, which is why curl ignores the
//!   upper-case form) for `http://` URLs; `https_proxy` or `HTTPS_PROXY`
//!   for `https://` URLs; `all_proxy`/`ALL_PROXY` for both when the
//!   specific one is unset.
//! * The proxy itself is reached over plain HTTP: `http://[USER:PASS@]HOST[:PORT]`
//!   (a bare `HOST:PORT` is taken as `http://`; the port defaults to 1080,
//!   curl's). `http://` requests are sent to it with the absolute URL as the
//!   request target; `https://` ones go through a `CONNECT` tunnel, so TLS
//!   still runs end to end with the server.
//! * `no_proxy` (or `NO_PROXY`): a comma-separated list of host names
//!   (matching the name and every name under it; a leading `.` or `*.` is
//!   the same), IP addresses, CIDR ranges (`10.0.0.0/8`, `fd00::/8`), each
//!   optionally with `:PORT`; `*` alone turns the proxy off.
//!
//! Everything here is pure: the environment is passed in as a lookup.
#![deny(clippy::indexing_slicing)]

use super::http::Secret;
use std::net::IpAddr;

/// curl's default proxy port.
const DEFAULT_PROXY_PORT: u16 = 1080;

/// One proxy.
#[derive(Clone, PartialEq, Eq)]
pub struct Proxy {
    /// Host name or address (without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
    /// `Proxy-Authorization` value (`Basic …`) from `USER:PASS@`.
    pub authorization: Option<Secret>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.shown())
    }
}

impl Proxy {
    /// `http://HOST:PORT`, without credentials, for messages.
    pub fn shown(&self) -> String {
        if self.host.contains(':') {
            format!("http://[{}]:{}", self.host, self.port)
        } else {
            format!("http://{}:{}", self.host, self.port)
        }
    }

    /// Parses a proxy setting (`http://[USER:PASS@]HOST[:PORT][/]`).
    pub fn parse(text: &str) -> Result<Proxy, String> {
        let t = text.trim();
        let rest = if let Some(r) = t.strip_prefix("http://") {
            r
        } else if t.contains("://") {
            return Err(format!(
                "proxy {}: only http:// proxies are supported",
                without_userinfo(t)
            ));
        } else {
            t
        };
        let authority = rest.split('/').next().unwrap_or_default();
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let shown = || without_userinfo(t);
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("proxy {}: unclosed [", shown()))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p
                    .parse()
                    .map_err(|_| format!("proxy {}: bad port {p:?}", shown()))?,
                None if after.is_empty() => DEFAULT_PROXY_PORT,
                None => return Err(format!("proxy {}: junk after the host", shown())),
            };
            (h.to_owned(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (
                    h.to_owned(),
                    p.parse()
                        .map_err(|_| format!("proxy {}: bad port {p:?}", shown()))?,
                ),
                None => (hostport.to_owned(), DEFAULT_PROXY_PORT),
            }
        };
        if host.is_empty() {
            return Err(format!("proxy {}: no host", shown()));
        }
        let authorization = match userinfo {
            None => None,
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                let user = percent_decode(user)
                    .ok_or_else(|| format!("proxy {}: bad %-escape in the user", shown()))?;
                let pass = percent_decode(pass)
                    .ok_or_else(|| format!("proxy {}: bad %-escape in the password", shown()))?;
                Some(Secret::new(super::http::basic_authorization(&user, &pass)))
            }
        };
        Ok(Proxy {
            host,
            port,
            authorization,
        })
    }
}

/// The setting with any `USER:PASS@` removed (errors must not show it).
fn without_userinfo(t: &str) -> String {
    let (scheme, rest) = match t.split_once("://") {
        Some((s, r)) => (format!("{s}://"), r),
        None => (String::new(), t),
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}{host}{path}")
}

/// `%XX` decoding of a URL's user or password.
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// One `no_proxy` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Rule {
    /// `*`: no proxy for anything.
    All,
    /// A host name: itself and every name under it (lower case, no leading dot).
    Domain(String, Option<u16>),
    /// An address or a range of them.
    Net(IpAddr, u8, Option<u16>),
}

/// The `no_proxy` list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NoProxy {
    rules: Vec<Rule>,
}

impl NoProxy {
    /// Parses a `no_proxy` value. Entries that are neither a name nor an
    /// address are ignored, as curl ignores them.
    pub fn parse(text: &str) -> NoProxy {
        let mut rules = Vec::new();
        for raw in text.split([',', ' ']) {
            let e = raw.trim();
            if e.is_empty() {
                continue;
            }
            if e == "*" {
                rules.push(Rule::All);
                continue;
            }
            if let Some(r) = parse_net(e) {
                rules.push(r);
                continue;
            }
            let (name, port) = match e.rsplit_once(':') {
                Some((n, p)) => match p.parse::<u16>() {
                    Ok(p) => (n, Some(p)),
                    Err(_) => continue,
                },
                None => (e, None),
            };
            let name = name.trim_start_matches("*.").trim_start_matches('.');
            if name.is_empty() {
                continue;
            }
            rules.push(Rule::Domain(name.to_ascii_lowercase(), port));
        }
        NoProxy { rules }
    }

    /// True when a request to `host:port` goes without the proxy.
    pub fn bypass(&self, host: &str, port: u16) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let ip: Option<IpAddr> = host.parse().ok();
        let lower = host.trim_end_matches('.').to_ascii_lowercase();
        self.rules.iter().any(|r| match r {
            Rule::All => true,
            Rule::Domain(d, p) => {
                p.map_or(true, |p| p == port)
                    && (lower == *d
                        || lower
                            .strip_suffix(d.as_str())
                            .is_some_and(|head| head.ends_with('.')))
            }
            Rule::Net(net, bits, p) => {
                p.map_or(true, |p| p == port) && ip.is_some_and(|a| in_net(a, *net, *bits))
            }
        })
    }
}

/// An address, `[v6]`, `ADDR/BITS`, each with an optional `:PORT`.
fn parse_net(e: &str) -> Option<Rule> {
    // `[v6]:port` or `[v6]`.
    if let Some(rest) = e.strip_prefix('[') {
        let (addr, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return net_of(addr, port);
    }
    // A bare IPv6 address (with or without /bits) has several colons.
    if e.matches(':').count() > 1 {
        return net_of(e, None);
    }
    match e.rsplit_once(':') {
        Some((a, p)) => net_of(a, Some(p.parse().ok()?)),
        None => net_of(e, None),
    }
}

fn net_of(addr: &str, port: Option<u16>) -> Option<Rule> {
    let (a, bits) = match addr.split_once('/') {
        Some((a, b)) => (a, Some(b.parse::<u8>().ok()?)),
        None => (addr, None),
    };
    let ip: IpAddr = a.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let bits = bits.unwrap_or(max);
    (bits <= max).then_some(Rule::Net(ip, bits, port))
}

fn in_net(a: IpAddr, net: IpAddr, bits: u8) -> bool {
    let (a, net, width) = match (a, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(u32::from(a)), u128::from(u32::from(n)), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (u128::from(a), u128::from(n), 128),
        // An IPv4-mapped IPv6 address against a v4 range.
        (IpAddr::V6(a), IpAddr::V4(n)) => match a.to_ipv4_mapped() {
            Some(a) => (u128::from(u32::from(a)), u128::from(u32::from(n)), 32),
            None => return false,
        },
        (IpAddr::V4(_), IpAddr::V6(_)) => return false,
    };
    let shift = width - u32::from(bits);
    if shift >= 128 {
        return true;
    }
    (a >> shift) == (net >> shift)
}

/// The proxies of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyConfig {
    /// For `http://` URLs.
    pub http: Option<Proxy>,
    /// For `https://` URLs (through `CONNECT`).
    pub https: Option<Proxy>,
    /// Hosts reached directly.
    pub no_proxy: NoProxy,
}

impl ProxyConfig {
    /// Reads `http_proxy`, `https_proxy`/`HTTPS_PROXY`, `all_proxy`/`ALL_PROXY`
    /// and `no_proxy`/`NO_PROXY` through `env` (empty values count as unset).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<ProxyConfig, String> {
        let get = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| env(n).filter(|v| !v.trim().is_empty()))
        };
        let all = get(&["all_proxy", "ALL_PROXY"]);
        let parse = |v: Option<String>, name: &str| {
            v.map(|v| Proxy::parse(&v).map_err(|e| format!("{name}: {e}")))
                .transpose()
        };
        Ok(ProxyConfig {
            http: parse(get(&["http_proxy"]).or_else(|| all.clone()), "http_proxy")?,
            https: parse(get(&["https_proxy", "HTTPS_PROXY"]).or(all), "https_proxy")?,
            no_proxy: NoProxy::parse(&get(&["no_proxy", "NO_PROXY"]).unwrap_or_default()),
        })
    }

    /// The proxy for a request to `host:port` (`tls`: an https URL).
    pub fn for_target(&self, tls: bool, host: &str, port: u16) -> Option<&Proxy> {
        let p = if tls { &self.https } else { &self.http };
        p.as_ref().filter(|_| !self.no_proxy.bypass(host, port))
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn proxy_settings() {
        let p = Proxy::parse("http://proxy.lab:3128/").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("proxy.lab", 3128));
        assert!(p.authorization.is_none());
        let p = Proxy::parse("10.0.0.1").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("10.0.0.1", 1080));
        let p = Proxy::parse("http://[fd00::1]:8080").unwrap();
        assert_eq!((p.host.as_str(), p.port), ("fd00::1", 8080));
        assert_eq!(p.shown(), "http://[fd00::1]:8080");
        let p = Proxy::parse("http://us%40er:p%3Ass@proxy:3128").unwrap();
        // base64("us@er:p:ss")
        assert_eq!(p.authorization.unwrap().expose(), "Basic dXNAZXI6cDpzcw==");
        let e = Proxy::parse("https://user:secret@proxy:443").unwrap_err();
        assert!(e.contains("only http://") && !e.contains("secret"), "{e}");
        let e = Proxy::parse("http://user:secret@proxy:x").unwrap_err();
        assert!(e.contains("bad port") && !e.contains("secret"), "{e}");
        assert!(Proxy::parse("http://:3128").is_err());
    }

    #[test]
    fn no_proxy_matching() {
        let n = NoProxy::parse("example.com, .lab.internal,*.corp, 10.0.0.0/8,192.168.1.5:8080, fd00::/8, [::1], localhost");
        assert!(n.bypass("example.com", 443));
        assert!(n.bypass("a.b.example.com", 80));
        assert!(n.bypass("EXAMPLE.com.", 80));
        assert!(!n.bypass("notexample.com", 80));
        assert!(n.bypass("lab.internal", 80));
        assert!(n.bypass("x.lab.internal", 80));
        assert!(n.bypass("x.corp", 80));
        assert!(n.bypass("10.20.30.40", 80));
        assert!(!n.bypass("11.0.0.1", 80));
        assert!(n.bypass("192.168.1.5", 8080));
        assert!(!n.bypass("192.168.1.5", 80));
        assert!(n.bypass("fd12::3", 80));
        assert!(n.bypass("::1", 80));
        assert!(n.bypass("[::1]", 80));
        assert!(n.bypass("::ffff:10.1.2.3", 80));
        assert!(!n.bypass("fe80::1", 80));
        assert!(n.bypass("localhost", 80));
        assert!(!n.bypass("registry.io", 443));
        assert!(NoProxy::parse("*").bypass("anything", 1));
        assert!(NoProxy::parse("0.0.0.0/0").bypass("1.2.3.4", 1));
        assert!(!NoProxy::parse("").bypass("a", 1));
        // Junk is ignored, the rest still applies.
        let n = NoProxy::parse("10.0.0.0/99,host:notaport,,good.lab");
        assert!(!n.bypass("10.0.0.1", 80));
        assert!(n.bypass("good.lab", 80));
    }

    #[test]
    fn from_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == n)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        let c = ProxyConfig::from_env(env(&[
            ("http_proxy", "http://p1:3128"),
            ("HTTPS_PROXY", "p2:3129"),
            ("no_proxy", "127.0.0.1,.local"),
        ]))
        .unwrap();
        assert_eq!(c.for_target(false, "a.b", 80).unwrap().host, "p1");
        assert_eq!(c.for_target(true, "a.b", 443).unwrap().port, 3129);
        assert!(c.for_target(true, "127.0.0.1", 443).is_none());
        assert!(c.for_target(false, "x.local", 80).is_none());
        // Upper-case HTTP_PROXY is not used (curl's rule); ALL_PROXY is.
        let c = ProxyConfig::from_env(env(&[("HTTP_PROXY", "http://evil:1")])).unwrap();
        assert!(c.http.is_none());
        let c = ProxyConfig::from_env(env(&[("ALL_PROXY", "http://all:1"), ("http_proxy", "")]))
            .unwrap();
        assert_eq!(c.http.unwrap().host, "all");
        assert_eq!(c.https.unwrap().host, "all");
        let e = ProxyConfig::from_env(env(&[("https_proxy", "socks5://x:1")])).unwrap_err();
        assert!(e.starts_with("https_proxy: "), "{e}");
    }
}
