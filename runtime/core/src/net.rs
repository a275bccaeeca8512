//! The outbound network policy: which URLs a call may request and which
//! addresses it may then connect to.
//!
//! Patterns are written as Spin writes `allowed_outbound_hosts`:
//! `scheme://host:port`, where the scheme may be `*`, the host `*`,
//! `*.example.com` or an IP literal, and the port `*` (a missing port means the
//! scheme's default). After DNS, loopback, private, link-local, unspecified and
//! other special addresses are refused unless a granted pattern names that IP
//! literally, so `http://*:*` never opens `127.0.0.1` or the cloud metadata
//! service.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One allowed-host pattern, written `scheme://host:port` with `*`
/// wildcards; deserializes from that text through [`HostPattern::parse`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct HostPattern {
    text: String,
    scheme: SchemePattern,
    host: HostMatch,
    port: PortPattern,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SchemePattern {
    Any,
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostMatch {
    Any,
    /// `*.example.com`: any name ending in `.example.com`.
    Suffix(String),
    Name(String),
    Ip(IpAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    Any,
    Port(u16),
}

/// A host pattern that cannot be parsed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("{pattern:?} {problem}")]
pub struct PatternError {
    pattern: String,
    problem: &'static str,
}

impl HostPattern {
    pub fn parse(text: &str) -> Result<HostPattern, PatternError> {
        let err = |problem| PatternError {
            pattern: text.to_string(),
            problem,
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| err("has no scheme"))?;
        let scheme = match scheme.to_ascii_lowercase().as_str() {
            "*" => SchemePattern::Any,
            "http" => SchemePattern::Http,
            "https" => SchemePattern::Https,
            _ => return Err(err("has a scheme other than http, https or *")),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') || rest.contains('@') || rest.contains('?') {
            return Err(err(
                "has a path, query or user part; give only scheme://host:port",
            ));
        }
        let (host, port) = split_host_port(rest).ok_or_else(|| err("has an unclosed '['"))?;
        let port = match port {
            Some("*") => PortPattern::Any,
            Some(p) => PortPattern::Port(
                p.parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| err("has a port that is not 1-65535 or *"))?,
            ),
            None => match scheme {
                SchemePattern::Http => PortPattern::Port(80),
                SchemePattern::Https => PortPattern::Port(443),
                SchemePattern::Any => {
                    return Err(err("needs a port when the scheme is *; add :* or a number"));
                }
            },
        };
        let host = if host == "*" {
            HostMatch::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.is_empty() || suffix.contains('*') {
                return Err(err("has a wildcard that is not a leading `*.`"));
            }
            HostMatch::Suffix(normalize_name(suffix))
        } else if host.contains('*') {
            return Err(err("has a wildcard that is not a leading `*.`"));
        } else if let Some(ip) = parse_ip_literal(host) {
            HostMatch::Ip(ip)
        } else if host.is_empty() {
            return Err(err("has no host"));
        } else if !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(err("has a host that is not a DNS name or IP address"));
        } else {
            HostMatch::Name(normalize_name(host))
        };
        Ok(HostPattern {
            text: text.to_string(),
            scheme,
            host,
            port,
        })
    }

    /// Whether a request to `scheme://host:port` matches this pattern, by
    /// text alone (before any DNS).
    pub fn matches(&self, target: &Target) -> bool {
        let host_ok = match (&self.host, &target.host) {
            (HostMatch::Any, _) => true,
            // Exactly the literal the operator wrote: `[::ffff:127.0.0.1]`
            // is another spelling, and spellings are not widened.
            (HostMatch::Ip(ip), TargetHost::Ip(t)) => ip == t,
            (HostMatch::Name(name), TargetHost::Name(t)) => name == t,
            (HostMatch::Suffix(suffix), TargetHost::Name(t)) => t
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            _ => false,
        };
        host_ok && self.matches_scheme_and_port(target)
    }

    fn matches_scheme_and_port(&self, target: &Target) -> bool {
        let scheme_ok = match self.scheme {
            SchemePattern::Any => true,
            SchemePattern::Http => !target.https,
            SchemePattern::Https => target.https,
        };
        let port_ok = match self.port {
            PortPattern::Any => true,
            PortPattern::Port(p) => p == target.port,
        };
        scheme_ok && port_ok
    }

    /// Whether this pattern names `ip` literally and allows `target`'s scheme
    /// and port: the only way to reach a loopback or private address.
    fn names_ip(&self, ip: IpAddr, target: &Target) -> bool {
        matches!(self.host, HostMatch::Ip(p) if p == ip) && self.matches_scheme_and_port(target)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl TryFrom<String> for HostPattern {
    type Error = PatternError;
    fn try_from(text: String) -> Result<Self, PatternError> {
        HostPattern::parse(&text)
    }
}

impl From<HostPattern> for String {
    fn from(pattern: HostPattern) -> String {
        pattern.text
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Splits `host:port`, `host`, `[v6]:port` or `[v6]`.
fn split_host_port(s: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':');
        return Some((host, port));
    }
    Some(match s.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (s, None),
    })
}

/// Parses a strict IP literal (dotted-quad IPv4 or IPv6). Legacy forms such as
/// `127.1` or `2130706433` are *not* literals here: they are names, which DNS
/// resolution turns into addresses that are then checked like any other.
fn parse_ip_literal(host: &str) -> Option<IpAddr> {
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse::<IpAddr>().ok()
}

/// Why an address may not be reached without a literal grant, or `None` for
/// an ordinary public address.
pub fn special_address(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_unspecified() => "unspecified",
        (0, _, _) => "this-network",
        (127, _, _) => "loopback",
        (10, _, _) => "private",
        (172, 16..=31, _) => "private",
        (192, 168, _) => "private",
        (169, 254, _) => "link-local (cloud metadata lives here)",
        (100, 64..=127, _) => "shared address space (carrier-grade NAT)",
        (192, 0, 0) => "IETF protocol assignment",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, _, _) => "multicast",
        (240..=255, _, _) => "reserved or broadcast",
        _ => return None,
    })
}

fn special_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return special_v4(v4).map(|_| "IPv4-mapped form of a special IPv4 address");
    }
    let seg = ip.segments();
    // IPv4-compatible (::a.b.c.d, deprecated) and NAT64 (64:ff9b::/96)
    // addresses carry an IPv4 address that decides.
    let embedded = Ipv4Addr::new(
        (seg[6] >> 8) as u8,
        seg[6] as u8,
        (seg[7] >> 8) as u8,
        seg[7] as u8,
    );
    Some(match seg {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        [0, 0, 0, 0, 0, 0, _, _] => {
            return special_v4(embedded).map(|_| "IPv4-compatible form of a special address");
        }
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => {
            return special_v4(embedded).map(|_| "NAT64 form of a special address");
        }
        // IPv4-translated (::ffff:0:a.b.c.d, RFC 2765).
        [0, 0, 0, 0, 0xffff, 0, _, _] => {
            return special_v4(embedded).map(|_| "IPv4-translated form of a special address");
        }
        // Local-use NAT64 (64:ff9b:1::/48, RFC 8215): where the IPv4
        // address sits depends on a prefix length only the local translator
        // knows, so any of it may reach a private address. Refused unless a
        // pattern names the address.
        [0x64, 0xff9b, 0x0001, ..] => "local-use NAT64 (translated by a local gateway)",
        [0x2002, hi, lo, ..] => {
            let v4 = Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
            return special_v4(v4).map(|_| "6to4 form of a special address");
        }
        [s, ..] if s & 0xfe00 == 0xfc00 => "unique local (private)",
        [s, ..] if s & 0xffc0 == 0xfe80 => "link-local",
        [s, ..] if s & 0xffc0 == 0xfec0 => "site-local",
        [s, ..] if s & 0xff00 == 0xff00 => "multicast",
        [0x2001, 0x0db8, ..] => "documentation",
        [0x0100, 0, 0, 0, ..] => "discard-only",
        _ => return None,
    })
}

/// Where a request wants to go, as the URL says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub https: bool,
    pub host: TargetHost,
    pub port: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetHost {
    Name(String),
    Ip(IpAddr),
}

impl Target {
    /// From a URL's scheme and authority host (IPv6 in brackets or not) and
    /// port (the scheme's default when absent).
    pub fn new(https: bool, host: &str, port: Option<u16>) -> Target {
        let host = match parse_ip_literal(host) {
            Some(ip) => TargetHost::Ip(ip),
            None => TargetHost::Name(normalize_name(host)),
        };
        Target {
            https,
            host,
            port: port.unwrap_or(if https { 443 } else { 80 }),
        }
    }

    /// The name to resolve, or the address itself.
    pub fn host_str(&self) -> String {
        match &self.host {
            TargetHost::Name(n) => n.clone(),
            TargetHost::Ip(ip) => ip.to_string(),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.https { "https" } else { "http" };
        match &self.host {
            TargetHost::Name(n) => write!(f, "{scheme}://{n}:{}", self.port),
            TargetHost::Ip(IpAddr::V6(ip)) => write!(f, "{scheme}://[{ip}]:{}", self.port),
            TargetHost::Ip(ip) => write!(f, "{scheme}://{ip}:{}", self.port),
        }
    }
}

/// The outbound HTTP policy of one call: the operator's grant, intersected
/// with the plugin manifest's ceiling when it has a manifest.
#[derive(Debug, Clone, Default)]
pub struct NetPolicy {
    granted: Vec<HostPattern>,
    /// `None`: no manifest, so no ceiling.
    ceiling: Option<Vec<HostPattern>>,
}

/// Why a request or connection was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetDenial {
    #[error("{target} is not allowed by the operator's grant (allowed: {allowed})")]
    NotGranted { target: String, allowed: String },
    #[error("{target} is outside what the plugin's manifest declares")]
    OutsideManifest { target: String },
    #[error(
        "{target} resolved to {ip}, a {why} address; only a pattern naming {ip} literally can allow that"
    )]
    SpecialAddress {
        target: String,
        ip: IpAddr,
        why: &'static str,
    },
}

impl NetPolicy {
    pub fn new(granted: Vec<HostPattern>, ceiling: Option<Vec<HostPattern>>) -> NetPolicy {
        NetPolicy { granted, ceiling }
    }

    /// The first check, on the URL alone.
    pub fn check_target(&self, target: &Target) -> Result<(), NetDenial> {
        if !self.granted.iter().any(|p| p.matches(target)) {
            let allowed = if self.granted.is_empty() {
                "nothing".to_string()
            } else {
                self.granted
                    .iter()
                    .map(HostPattern::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(NetDenial::NotGranted {
                target: target.to_string(),
                allowed,
            });
        }
        if let Some(ceiling) = &self.ceiling
            && !ceiling.iter().any(|p| p.matches(target))
        {
            return Err(NetDenial::OutsideManifest {
                target: target.to_string(),
            });
        }
        Ok(())
    }

    /// The second check, on each address the target resolved to.
    pub fn check_address(&self, target: &Target, ip: IpAddr) -> Result<(), NetDenial> {
        let Some(why) = special_address(ip) else {
            return Ok(());
        };
        if self.granted.iter().any(|p| p.names_ip(ip, target)) {
            return Ok(());
        }
        Err(NetDenial::SpecialAddress {
            target: target.to_string(),
            ip,
            why,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        HostPattern::parse(s).unwrap()
    }
    fn t(url_scheme_https: bool, host: &str, port: u16) -> Target {
        Target::new(url_scheme_https, host, Some(port))
    }

    #[test]
    fn pattern_parsing() {
        assert_eq!(p("https://example.com").port, PortPattern::Port(443));
        assert_eq!(p("http://example.com").port, PortPattern::Port(80));
        assert_eq!(p("*://example.com:*").port, PortPattern::Any);
        assert_eq!(
            p("http://[::1]:8080").host,
            HostMatch::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            p("http://127.0.0.1:1/").host,
            HostMatch::Ip([127, 0, 0, 1].into())
        );
        for bad in [
            "example.com",
            "ftp://example.com:21",
            "*://example.com",
            "https://ex*ample.com",
            "https://*.*.com",
            "https://example.com:0",
            "https://example.com:99999",
            "https://example.com/path",
            "https://user@example.com",
            "https://",
            "https://exa mple.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad} should not parse");
        }
    }

    #[test]
    fn pattern_matching() {
        assert!(p("https://example.com").matches(&t(true, "EXAMPLE.com.", 443)));
        assert!(!p("https://example.com").matches(&t(false, "example.com", 443)));
        assert!(!p("https://example.com").matches(&t(true, "example.com", 8443)));
        assert!(p("https://*.example.com").matches(&t(true, "a.b.example.com", 443)));
        assert!(!p("https://*.example.com").matches(&t(true, "example.com", 443)));
        assert!(!p("https://*.example.com").matches(&t(true, "badexample.com", 443)));
        assert!(p("*://*:*").matches(&t(false, "anything", 1)));
        assert!(p("http://127.0.0.1:80").matches(&t(false, "127.0.0.1", 80)));
        // A name is not an IP, even when it resolves to one.
        assert!(!p("http://127.0.0.1:80").matches(&t(false, "localhost", 80)));
        assert!(!p("http://127.0.0.1:80").matches(&t(false, "127.1", 80)));
    }

    #[test]
    fn special_addresses() {
        for ip in [
            "127.0.0.1",
            "127.255.0.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "::ffff:0:127.0.0.1",
            "::ffff:0:169.254.169.254",
            "::ffff:0:a00:1",
            "64:ff9b:1::7f00:1",
            "64:ff9b:1::a9fe:a9fe",
            "64:ff9b:1:7f00:1::",
            "64:ff9b:1:a9fe:a9:fe00::",
            "2002:7f00:1::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert!(special_address(ip).is_some(), "{ip} should be special");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "::ffff:0:8.8.8.8",
            "64:ff9b::808:808",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(special_address(ip), None, "{ip} should be public");
        }
    }

    #[test]
    fn loopback_needs_a_literal_grant() {
        let lo: IpAddr = [127, 0, 0, 1].into();
        let target = t(false, "127.0.0.1", 8080);

        let wide = NetPolicy::new(vec![p("http://*:*")], None);
        assert!(wide.check_target(&target).is_ok());
        assert!(matches!(
            wide.check_address(&target, lo),
            Err(NetDenial::SpecialAddress { .. })
        ));

        let exact = NetPolicy::new(vec![p("http://127.0.0.1:8080")], None);
        assert!(exact.check_target(&target).is_ok());
        assert!(exact.check_address(&target, lo).is_ok());
        // The literal grant is for one port only.
        let other_port = t(false, "127.0.0.1", 8081);
        assert!(exact.check_target(&other_port).is_err());
        assert!(exact.check_address(&other_port, lo).is_err());
        // Another spelling of the same address is not the literal granted.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert!(
            exact
                .check_target(&t(false, "[::ffff:127.0.0.1]", 8080))
                .is_err()
        );
        assert!(exact.check_address(&target, mapped).is_err());
    }

    #[test]
    fn manifest_ceiling_applies() {
        let policy = NetPolicy::new(
            vec![p("https://*:443")],
            Some(vec![p("https://api.example.com")]),
        );
        assert!(
            policy
                .check_target(&t(true, "api.example.com", 443))
                .is_ok()
        );
        assert_eq!(
            policy.check_target(&t(true, "evil.com", 443)),
            Err(NetDenial::OutsideManifest {
                target: "https://evil.com:443".into()
            })
        );
        let closed = NetPolicy::new(vec![], None);
        assert_eq!(
            closed
                .check_target(&t(true, "example.com", 443))
                .unwrap_err()
                .to_string(),
            "https://example.com:443 is not allowed by the operator's grant (allowed: nothing)"
        );
    }
}
