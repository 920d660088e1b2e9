//! The host a request names, in one canonical spelling: a lower-case DNS name or an IP
//! address in its standard text form. A host that a resolver could read as a number other
//! than a canonical dotted quad (`127.1`, `2130706433`, `0x7f.1`, `0177.0.0.1`) is refused
//! (`bad_host`): the policy must never match a string that resolves somewhere else.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::model::valid_host;

/// A request's host, canonical.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// An IP literal (IPv4-mapped IPv6 kept as written, in standard form).
    Ip(IpAddr),
    /// A lower-case DNS name.
    Name(String),
}

impl Host {
    /// The canonical text: `1.2.3.4`, `::1` (no brackets) or `api.github.com`.
    pub fn as_string(&self) -> String {
        match self {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(n) => n.clone(),
        }
    }
}

/// Parses the host part of an authority (IPv6 in brackets or not).
pub fn parse_host(raw: &str) -> Result<Host, String> {
    let lower = raw.to_ascii_lowercase();
    let bare = lower
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(&lower);
    if let Ok(v6) = bare.parse::<Ipv6Addr>() {
        return Ok(Host::Ip(IpAddr::V6(v6)));
    }
    if bare != lower {
        return Err(format!("{raw:?} is not an IPv6 address"));
    }
    if let Ok(v4) = bare.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(v4)));
    }
    if ends_in_number(bare) {
        return Err(format!(
            "{raw:?} is a number but not a dotted-quad IPv4 address; write the address as a.b.c.d"
        ));
    }
    if !valid_host(bare) {
        return Err(format!("{raw:?} is not a valid host name"));
    }
    Ok(Host::Name(bare.to_string()))
}

/// WHATWG URL's "ends in a number" test: a resolver (or a browser) would read the host as
/// an IPv4 number when its last label is all digits or `0x` hex.
fn ends_in_number(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or("");
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    last.strip_prefix("0x")
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_hosts() {
        for (raw, want) in [
            ("API.GitHub.com", "api.github.com"),
            ("127.0.0.1", "127.0.0.1"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("[::FFFF:127.0.0.1]", "::ffff:127.0.0.1"),
            ("[0:0:0:0:0:0:0:1]", "::1"),
            ("localhost", "localhost"),
            ("a1.example", "a1.example"),
            ("1a.example", "1a.example"),
            ("0x.example", "0x.example"),
        ] {
            assert_eq!(
                parse_host(raw).map(|h| h.as_string()),
                Ok(want.into()),
                "{raw}"
            );
        }
    }

    #[test]
    fn numbers_that_are_not_dotted_quads_are_refused() {
        for raw in [
            "127.1",
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "0177.0.0.1",
            "0xa9fea9fe",
            "127.0.0.1.",
            "1.2.3.4.5",
            "017700000001",
            "example.0x10",
            "example.123",
            "[127.0.0.1]",
            "bad host",
            "",
        ] {
            assert!(parse_host(raw).is_err(), "{raw} should be refused");
        }
    }
}
