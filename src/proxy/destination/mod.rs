//! Where a request goes, decided on what it will really reach: the host in one canonical
//! spelling (`host.rs`), the target in one canonical form (`path.rs`), and the resolved
//! addresses classified (`class.rs`) and checked against `proxy.allow_private` and
//! Clawser's own listeners.
//!
//! Clawser resolves each name itself, checks every address, and caches the checked answer
//! (`proxy.dns_cache_ttl`). The request then carries those addresses to the upstream client,
//! whose connector (`connect.rs`) connects to nothing else and never looks a name up, so a
//! DNS answer that changes between the check and the connection (rebinding) cannot take the
//! request to an address that was not checked.

mod class;
mod connect;
mod host;
mod path;

pub use class::{classify, AddrClass};
pub use connect::{with_checked, CheckedConnector};
pub use host::{parse_host, Host};
pub use path::{canonical_target, PathRules};

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use crate::model::Destination;

/// Why a destination is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DestinationRefusal {
    /// Not global unicast and not in `proxy.allow_private`, or one of Clawser's listeners.
    NotAllowed(String),
    /// The name did not resolve (or took longer than `upstream.connect_timeout`).
    Unresolvable(String),
}

/// The rules and the cache of checked answers, shared by the pipeline, CONNECT and the
/// upstream client's connector.
pub struct Destinations {
    allow_private: Vec<IpNet>,
    own: Vec<SocketAddr>,
    ttl: Duration,
    lookup_timeout: Duration,
    cache: quick_cache::sync::Cache<String, Arc<Checked>>,
    /// `proxy.resolve`: names answered without DNS.
    pinned: Vec<(String, Vec<IpAddr>)>,
}

struct Checked {
    at: Instant,
    ips: Vec<IpAddr>,
}

impl Destinations {
    /// `own` are the bound proxy and admin addresses: refused even when `allow_private`
    /// lists them.
    pub fn new(
        allow_private: Vec<IpNet>,
        own: Vec<SocketAddr>,
        ttl: Duration,
        cache_size: usize,
        lookup_timeout: Duration,
    ) -> Destinations {
        Destinations {
            allow_private,
            own,
            ttl,
            lookup_timeout,
            cache: quick_cache::sync::Cache::new(cache_size.max(1)),
            pinned: Vec::new(),
        }
    }

    /// Answers these (lower-case) names from the config instead of DNS (`proxy.resolve`).
    pub fn with_pinned(mut self, pinned: Vec<(String, Vec<IpAddr>)>) -> Destinations {
        self.pinned = pinned;
        self
    }

    /// The socket addresses of a checked destination.
    pub fn addrs(dest: &Destination, port: u16) -> Vec<SocketAddr> {
        dest.ips
            .iter()
            .map(|ip| SocketAddr::new(*ip, port))
            .collect()
    }

    /// Checks one address and port.
    pub fn check(&self, ip: IpAddr, port: u16) -> Result<AddrClass, DestinationRefusal> {
        let eff = class::effective(ip);
        let class = classify(ip);
        for own in &self.own {
            let own_ip = class::effective(own.ip());
            let same_host = own_ip == eff
                || (own_ip.is_unspecified() && class != AddrClass::Global)
                || eff.is_unspecified();
            if own.port() == port && same_host {
                return Err(DestinationRefusal::NotAllowed(format!(
                    "{ip} port {port} is Clawser's own listener"
                )));
            }
        }
        if class == AddrClass::Global || self.allowed(ip) {
            return Ok(class);
        }
        Err(DestinationRefusal::NotAllowed(format!(
            "{ip} is a {} address; list it in proxy.allow_private to allow it",
            class.as_str()
        )))
    }

    /// Whether `proxy.allow_private` lists `ip` (or the IPv4 address it embeds).
    pub fn allowed(&self, ip: IpAddr) -> bool {
        let eff = class::effective(ip);
        self.allow_private
            .iter()
            .any(|n| n.contains(&ip) || n.contains(&eff))
    }

    fn check_all(&self, ips: &[IpAddr], port: u16) -> Result<Destination, DestinationRefusal> {
        let mut worst = AddrClass::Global;
        for ip in ips {
            let c = self.check(*ip, port)?;
            if worst == AddrClass::Global {
                worst = c;
            }
        }
        Ok(Destination {
            ips: ips.to_vec(),
            class: worst.as_str().to_string(),
        })
    }

    /// Resolves `host` (from the cache while fresh) and checks every address it has.
    pub async fn resolve(&self, host: &Host, port: u16) -> Result<Destination, DestinationRefusal> {
        let name = match host {
            Host::Ip(ip) => return self.check_all(&[*ip], port),
            Host::Name(n) => n,
        };
        if let Some((_, ips)) = self
            .pinned
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            return self.check_all(ips, port);
        }
        if let Some(c) = self.cache.get(name) {
            if c.at.elapsed() < self.ttl {
                return self.check_all(&c.ips, port);
            }
        }
        let lookup = tokio::net::lookup_host((name.as_str(), port));
        let ips: Vec<IpAddr> = match tokio::time::timeout(self.lookup_timeout, lookup).await {
            Ok(Ok(addrs)) => {
                let mut ips: Vec<IpAddr> = Vec::new();
                for a in addrs {
                    if !ips.contains(&a.ip()) {
                        ips.push(a.ip());
                    }
                }
                ips
            }
            Ok(Err(e)) => {
                return Err(DestinationRefusal::Unresolvable(format!(
                    "{name} did not resolve: {e}"
                )))
            }
            Err(_) => {
                return Err(DestinationRefusal::Unresolvable(format!(
                    "resolving {name} took longer than upstream.connect_timeout"
                )))
            }
        };
        if ips.is_empty() {
            return Err(DestinationRefusal::Unresolvable(format!(
                "{name} has no addresses"
            )));
        }
        let dest = self.check_all(&ips, port)?;
        // Only answers that passed the check are cached (a refused name is looked up again).
        self.cache.insert(
            name.clone(),
            Arc::new(Checked {
                at: Instant::now(),
                ips,
            }),
        );
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_cidr;

    fn dests(allow: &[&str]) -> Destinations {
        Destinations::new(
            allow.iter().map(|a| parse_cidr(a).unwrap()).collect(),
            vec![
                "127.0.0.1:8080".parse().unwrap(),
                "127.0.0.1:8081".parse().unwrap(),
            ],
            Duration::from_secs(30),
            16,
            Duration::from_secs(5),
        )
    }

    #[test]
    fn checks() {
        let none = dests(&[]);
        let lo = dests(&["127.0.0.0/8", "::1"]);
        for (d, ip, port, ok) in [
            (&none, "8.8.8.8", 443, true),
            (&none, "127.0.0.1", 9000, false),
            (&none, "169.254.169.254", 80, false),
            (&none, "::ffff:127.0.0.1", 9000, false),
            (&none, "10.0.0.1", 443, false),
            (&lo, "127.0.0.1", 9000, true),
            (&lo, "::ffff:127.0.0.1", 9000, true),
            (&lo, "::1", 9000, true),
            (&lo, "10.0.0.1", 443, false),
            (&lo, "169.254.169.254", 80, false),
            // Clawser's own listeners: refused even when allowed.
            (&lo, "127.0.0.1", 8081, false),
            (&lo, "127.0.0.1", 8080, false),
            (&lo, "::ffff:127.0.0.1", 8081, false),
            (&lo, "0.0.0.0", 8081, false),
            (&lo, "127.0.0.2", 8081, true),
        ] {
            let got = d.check(ip.parse().unwrap(), port);
            assert_eq!(got.is_ok(), ok, "{ip}:{port} {got:?}");
        }
    }

    #[test]
    fn allow_entries() {
        assert_eq!(parse_cidr("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(parse_cidr("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(parse_cidr("::1").unwrap().to_string(), "::1/128");
        assert!(parse_cidr("10.0.0.0/33").is_err());
        assert!(parse_cidr("localhost").is_err());
    }

    #[tokio::test]
    async fn names_resolve_and_checked_answers_are_cached() {
        let none = dests(&[]);
        let host = parse_host("localhost").unwrap();
        assert!(matches!(
            none.resolve(&host, 9000).await,
            Err(DestinationRefusal::NotAllowed(_))
        ));
        assert!(
            none.cache.get("localhost").is_none(),
            "refused answers are not cached"
        );
        let lo = dests(&["127.0.0.0/8", "::1"]);
        let d = lo.resolve(&host, 9000).await.unwrap();
        assert_eq!(d.class, "loopback");
        assert!(lo.cache.get("localhost").is_some());
        // The cached answer is checked again for each port: an own listener stays refused.
        assert!(lo.resolve(&host, 8081).await.is_err());
    }
}
