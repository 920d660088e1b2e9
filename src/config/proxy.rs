//! The `proxy:` section of the config: listener, limits, destinations, redaction.

use std::net::SocketAddr;
use std::time::Duration;

use super::raw::RawProxy;
use super::{lower, Validator};
use crate::error::Result;

/// Proxy listener and request limits.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub listen: SocketAddr,
    pub max_connections: usize,
    pub max_header_bytes: usize,
    pub max_inspect_bytes: usize,
    pub handshake_timeout: Duration,
    pub first_bytes_timeout: Duration,
    pub idle_timeout: Duration,
    pub passthrough_hosts: Vec<String>,
    /// Lower-case header names whose values never reach a policy, log or ledger.
    pub redact_headers: Vec<String>,
    /// Query keys whose values are redacted.
    pub redact_query_keys: Vec<String>,
    /// Longest a held request waits for its approval before the agent gets a 403.
    pub hold_timeout: Duration,
    /// Requests held at once; beyond, 503.
    pub max_held: usize,
    /// Non-global destinations (CIDRs) the proxy may reach; everything else that is not
    /// global unicast is refused. Clawser's own listeners are refused even when listed.
    pub allow_private: Vec<ipnet::IpNet>,
    /// Keep `%2F` in paths (npm scoped packages, GitLab) instead of refusing it as ambiguous.
    pub allow_encoded_slash: bool,
    /// How long a checked DNS answer is reused.
    pub dns_cache_ttl: Duration,
    /// Host names whose checked answers are kept.
    pub dns_cache_size: usize,
    /// Longest wait for the next piece of a request body (idle timeout while reading it).
    pub body_timeout: Duration,
    /// Extra regular expressions: matching path segments and query values are redacted.
    pub redact_patterns: Vec<String>,
    /// Names answered from the config instead of DNS (lower-case name -> addresses), like
    /// curl's `--resolve`: a GitHub Enterprise host on an internal address, a test upstream.
    /// The addresses are checked like any other (`allow_private`).
    pub resolve: Vec<(String, Vec<std::net::IpAddr>)>,
    /// A Unix socket the proxy also listens on (the way out of `clawser run --isolate`);
    /// `None` when set to `""`.
    pub unix_socket: Option<std::path::PathBuf>,
    /// Threads of the shared async runtime (the admin endpoint, background work, the Unix
    /// socket, and the TCP listener when `shards` is 0); `None`: the runtime's default (one
    /// per CPU, or `TOKIO_WORKER_THREADS`).
    pub worker_threads: Option<usize>,
    /// Single-threaded runtimes that serve `listen` (see `proxy/shards.rs`); 0 (the default):
    /// `listen` is served by the shared runtime.
    pub shards: usize,
}

/// Most runtime threads `proxy.worker_threads` (and shards `proxy.shards`) accepts.
pub const MAX_WORKER_THREADS: usize = 1024;

impl Validator<'_> {
    pub(super) fn proxy(&self, p: RawProxy, data_dir: &std::path::Path) -> Result<ProxyConfig> {
        let max_header_bytes =
            self.positive("proxy.max_header_bytes", p.max_header_bytes, 64 * 1024)?;
        if max_header_bytes < 1024 {
            return Err(self.err("proxy.max_header_bytes", "must be at least 1024"));
        }
        let proxy = ProxyConfig {
            listen: self.addr("proxy.listen", p.listen, "127.0.0.1:8080")?,
            max_connections: self.positive("proxy.max_connections", p.max_connections, 1024)?,
            max_header_bytes,
            max_inspect_bytes: self.positive(
                "proxy.max_inspect_bytes",
                p.max_inspect_bytes,
                1024 * 1024,
            )?,
            handshake_timeout: self.duration(
                "proxy.handshake_timeout",
                p.handshake_timeout,
                "10s",
            )?,
            first_bytes_timeout: self.duration(
                "proxy.first_bytes_timeout",
                p.first_bytes_timeout,
                "10s",
            )?,
            idle_timeout: self.duration("proxy.idle_timeout", p.idle_timeout, "60s")?,
            passthrough_hosts: lower(p.passthrough_hosts.unwrap_or_default()),
            redact_headers: lower(p.redact_headers.unwrap_or_default()),
            redact_query_keys: lower(p.redact_query_keys.unwrap_or_default()),
            hold_timeout: self.duration("proxy.hold_timeout", p.hold_timeout, "110s")?,
            max_held: self.positive("proxy.max_held", p.max_held, 1024)?,
            allow_private: p
                .allow_private
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    parse_cidr(e).map_err(|m| self.err(&format!("proxy.allow_private[{i}]"), m))
                })
                .collect::<Result<Vec<_>>>()?,
            allow_encoded_slash: p.allow_encoded_slash.unwrap_or(true),
            dns_cache_ttl: self.duration("proxy.dns_cache_ttl", p.dns_cache_ttl, "30s")?,
            dns_cache_size: self.positive("proxy.dns_cache_size", p.dns_cache_size, 10_000)?,
            body_timeout: self.duration("proxy.body_timeout", p.body_timeout, "30s")?,
            redact_patterns: {
                let pats = p.redact_patterns.unwrap_or_default();
                for (i, pat) in pats.iter().enumerate() {
                    regex::Regex::new(pat).map_err(|e| {
                        self.err(&format!("proxy.redact_patterns[{i}]"), e.to_string())
                    })?;
                }
                pats
            },
            unix_socket: match p.unix_socket.as_deref().map(str::trim) {
                Some("") => None,
                Some(path) => Some(self.path(Some(path.to_string()), "")),
                None => Some(self.path(None, &format!("{}/proxy.sock", data_dir.display()))),
            },
            worker_threads: match p.worker_threads {
                Some(n) if n > MAX_WORKER_THREADS => {
                    return Err(self.err(
                        "proxy.worker_threads",
                        format!("must be at most {MAX_WORKER_THREADS}"),
                    ))
                }
                n => n
                    .map(|n| self.positive("proxy.worker_threads", Some(n), n))
                    .transpose()?,
            },
            shards: match p.shards {
                Some(n) if n > MAX_WORKER_THREADS => {
                    return Err(self.err(
                        "proxy.shards",
                        format!("must be at most {MAX_WORKER_THREADS}"),
                    ))
                }
                n => n.unwrap_or(0),
            },
            resolve: p
                .resolve
                .unwrap_or_default()
                .into_iter()
                .map(|(name, ips)| {
                    let key = format!("proxy.resolve.{name}");
                    if ips.is_empty() {
                        return Err(self.err(&key, "needs at least one address"));
                    }
                    let ips = ips
                        .iter()
                        .map(|ip| {
                            ip.parse()
                                .map_err(|_| self.err(&key, format!("{ip:?} is not an IP address")))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok((name.to_ascii_lowercase(), ips))
                })
                .collect::<Result<Vec<_>>>()?,
        };
        Ok(proxy)
    }
}

/// A `proxy.allow_private` entry: a CIDR (host bits are dropped) or a bare address (/32, /128).
pub fn parse_cidr(entry: &str) -> std::result::Result<ipnet::IpNet, String> {
    if let Ok(net) = entry.parse::<ipnet::IpNet>() {
        return Ok(net.trunc());
    }
    entry
        .parse::<std::net::IpAddr>()
        .map(ipnet::IpNet::from)
        .map_err(|_| format!("{entry:?} is not a CIDR (10.0.0.0/8) or an IP address"))
}
