//! Validated configuration. `Config::load` finds the file (`-c`, `CLAWSER_CONFIG`,
//! `./clawser.yaml`, else embedded defaults), parses it strictly (`raw.rs`) and checks every
//! value, so the rest of the program only sees a consistent `Config`.
//!
//! Relative paths in a config file are resolved against the file's directory; the embedded
//! defaults resolve against the working directory (`./data`, `./certs`, `./policies`).

mod approvals;
mod duration;
mod github;
mod proxy;
mod raw;
mod secrets;

pub use approvals::{ApprovalsConfig, ApproverDecl, NotifyConfig, Webhook, WEBHOOK_EVENTS};
pub use duration::parse_duration;
pub use github::GithubConfig;
pub use proxy::{parse_cidr, ProxyConfig};
pub use secrets::{GrantDecl, Inject, SecretDecl, SecretSource};

use crate::error::{Error, Result};
use raw::{RawAgent, RawConfig};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The file name looked for in the working directory when no `-c` is given.
pub const DEFAULT_CONFIG_FILE: &str = "clawser.yaml";
/// The environment variable naming the config file.
pub const CONFIG_ENV: &str = "CLAWSER_CONFIG";

/// Admin endpoint.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
}

/// Local certificate authority.
#[derive(Debug, Clone)]
pub struct CaConfig {
    pub dir: PathBuf,
    pub leaf_validity_days: u32,
    pub cache_size: usize,
}

/// Policy directory and evaluation limits.
#[derive(Debug, Clone)]
pub struct PolicyConfig {
    pub dir: PathBuf,
    pub eval: crate::policy::EvalOptions,
    pub reload_interval: Duration,
    pub eval_timeout: Duration,
    /// regorus's memory limit (process-wide heap, MiB): beyond it evaluations fail and so deny.
    pub max_memory_mib: u64,
}

/// Upstream client.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    pub extra_ca_files: Vec<PathBuf>,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub pool_max_idle_per_host: usize,
    /// Offer h2 to upstreams (ALPN); h1 only when false.
    pub http2: bool,
}

/// One rule of the environment map: requests whose host (and path) match are in `env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvRule {
    pub env: String,
    /// Host globs (`*` matches any run of characters); empty matches any host.
    pub hosts: Vec<String>,
    /// Path globs (lower-case), matched case-insensitively; empty matches any path.
    pub paths: Vec<String>,
    /// Repository globs (`owner/name`, lower-case), matched against the repository a GitHub
    /// API path or a git URL names; empty matches any request.
    pub repos: Vec<String>,
    /// Optional service name handed to policies as `target.service`.
    pub service: Option<String>,
}

/// The environment map: first matching rule wins, else `default`.
#[derive(Debug, Clone)]
pub struct Environments {
    pub default: String,
    pub rules: Vec<EnvRule>,
}

/// What `clawser env` prints.
#[derive(Debug, Clone)]
pub struct RuntimeEnvConfig {
    /// The host runtimes use to reach the proxy.
    pub proxy_host: String,
    /// Hosts that bypass Clawser (empty by default: everything is decided).
    pub no_proxy: Vec<String>,
}

/// Log output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A runtime label, as declared or as `other`.
pub const RUNTIMES: &[&str] = &["claude-code", "openclaw", "hermes", "codex", "other"];

/// An agent declared in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentDecl {
    pub id: String,
    pub runtime: String,
    pub on_behalf_of: String,
    pub roles: Vec<String>,
    pub labels: BTreeMap<String, String>,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (a path or `<embedded defaults>`).
    pub source: String,
    pub data_dir: PathBuf,
    pub proxy: ProxyConfig,
    pub admin: AdminConfig,
    pub ca: CaConfig,
    pub policy: PolicyConfig,
    pub upstream: UpstreamConfig,
    pub environments: Environments,
    pub runtime_env: RuntimeEnvConfig,
    pub ledger: crate::ledger::LedgerConfig,
    /// sled's page cache for the data dir's database, in bytes (`ledger.cache_mib`; sled's
    /// own default, 1 GiB, lets a long-running server's memory grow with the ledger).
    pub db_cache_bytes: u64,
    pub log_format: LogFormat,
    pub log_level: String,
    pub agents: Vec<AgentDecl>,
    pub approvers: Vec<ApproverDecl>,
    pub approvals: ApprovalsConfig,
    pub notify: NotifyConfig,
    /// Named credentials Clawser holds and injects (`secrets:`).
    pub secrets: Vec<SecretDecl>,
    /// Grants declared for a fixed team (`grants:`).
    pub grants: Vec<GrantDecl>,
    /// Hosts read as GitHub (`github.hosts`).
    pub github: GithubConfig,
}

impl Config {
    /// Finds and loads the config: `explicit` (from `-c`/`CLAWSER_CONFIG`), else
    /// `./clawser.yaml` when present, else the embedded defaults.
    pub fn load(explicit: Option<&Path>) -> Result<Config> {
        match explicit {
            Some(path) => Config::from_file(path),
            None if Path::new(DEFAULT_CONFIG_FILE).is_file() => {
                Config::from_file(Path::new(DEFAULT_CONFIG_FILE))
            }
            None => Config::from_yaml("", "<embedded defaults>", Path::new(".")),
        }
    }

    /// Loads one file; relative paths in it are resolved against its directory.
    pub fn from_file(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        Config::from_yaml(&text, &path.display().to_string(), base)
    }

    /// Parses and validates YAML text (empty text means all defaults).
    pub fn from_yaml(text: &str, source: &str, base: &Path) -> Result<Config> {
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_yaml::from_str(text).map_err(|e| Error::Config {
                path: source.to_string(),
                message: e.to_string(),
            })?
        };
        Validator { source, base }.validate(raw)
    }
}

struct Validator<'a> {
    source: &'a str,
    base: &'a Path,
}

impl Validator<'_> {
    fn err(&self, key: &str, message: impl std::fmt::Display) -> Error {
        Error::Config {
            path: self.source.to_string(),
            message: format!("{key}: {message}"),
        }
    }

    fn path(&self, value: Option<String>, default: &str) -> PathBuf {
        let p = PathBuf::from(value.unwrap_or_else(|| default.to_string()));
        if p.is_absolute() {
            p
        } else {
            self.base.join(p.strip_prefix(".").unwrap_or(&p))
        }
    }

    fn addr(&self, key: &str, value: Option<String>, default: &str) -> Result<SocketAddr> {
        let v = value.unwrap_or_else(|| default.to_string());
        v.parse()
            .map_err(|_| self.err(key, format!("{v:?} is not an address like 127.0.0.1:8080")))
    }

    fn duration(&self, key: &str, value: Option<String>, default: &str) -> Result<Duration> {
        let v = value.unwrap_or_else(|| default.to_string());
        parse_duration(&v).map_err(|m| self.err(key, m))
    }

    fn positive(&self, key: &str, value: Option<usize>, default: usize) -> Result<usize> {
        match value.unwrap_or(default) {
            0 => Err(self.err(key, "must be greater than 0")),
            n => Ok(n),
        }
    }

    fn validate(&self, raw: RawConfig) -> Result<Config> {
        let data_dir = self.path(raw.data_dir.clone(), "data");
        let proxy = self.proxy(raw.proxy, &data_dir)?;
        let admin = AdminConfig {
            listen: self.addr("admin.listen", raw.admin.listen, "127.0.0.1:8081")?,
        };
        if !admin.listen.ip().is_loopback() {
            return Err(self.err(
                "admin.listen",
                "must be a loopback address (admin TLS is not supported yet)",
            ));
        }
        let leaf_validity_days = raw.ca.leaf_validity_days.unwrap_or(30);
        if !(1..=397).contains(&leaf_validity_days) {
            return Err(self.err("ca.leaf_validity_days", "must be between 1 and 397"));
        }
        let ca = CaConfig {
            dir: self.path(raw.ca.dir, "certs"),
            leaf_validity_days,
            cache_size: self.positive("ca.cache_size", raw.ca.cache_size, 10_000)?,
        };
        let engine = match raw.policy.engine.as_deref() {
            None => crate::policy::EvalEngine::default(),
            Some("interpreter") => crate::policy::EvalEngine::Interpreter,
            Some("vm") => crate::policy::EvalEngine::Vm,
            Some(other) => {
                return Err(self.err(
                    "policy.engine",
                    format!("{other:?} is not interpreter or vm"),
                ))
            }
        };
        let policy = PolicyConfig {
            dir: self.path(raw.policy.dir, "policies"),
            eval: crate::policy::EvalOptions {
                engine,
                max_instructions: self.positive(
                    "policy.max_instructions",
                    raw.policy.max_instructions,
                    crate::policy::DEFAULT_MAX_INSTRUCTIONS,
                )?,
            },
            reload_interval: self.duration(
                "policy.reload_interval",
                raw.policy.reload_interval,
                "1s",
            )?,
            eval_timeout: self.duration("policy.eval_timeout", raw.policy.eval_timeout, "250ms")?,
            max_memory_mib: match raw.policy.max_memory_mib.unwrap_or(2048) {
                n if n < 16 => return Err(self.err("policy.max_memory_mib", "must be at least 16")),
                n => n,
            },
        };
        let u = raw.upstream;
        let upstream = UpstreamConfig {
            extra_ca_files: u
                .extra_ca_files
                .unwrap_or_default()
                .into_iter()
                .map(|f| self.path(Some(f), ""))
                .collect(),
            connect_timeout: self.duration("upstream.connect_timeout", u.connect_timeout, "10s")?,
            response_timeout: self.duration(
                "upstream.response_timeout",
                u.response_timeout,
                "120s",
            )?,
            pool_idle_timeout: self.duration(
                "upstream.pool_idle_timeout",
                u.pool_idle_timeout,
                "90s",
            )?,
            pool_max_idle_per_host: u.pool_max_idle_per_host.unwrap_or(64),
            http2: u.http2.unwrap_or(true),
        };
        let environments = self.environments(raw.environments)?;
        let runtime_env = RuntimeEnvConfig {
            proxy_host: raw.runtime_env.proxy_host.unwrap_or_else(|| {
                if proxy.listen.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else {
                    proxy.listen.ip().to_string()
                }
            }),
            no_proxy: raw.runtime_env.no_proxy.unwrap_or_default(),
        };
        let origin = raw.ledger.origin.unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            let host = host.trim();
            format!(
                "clawser.local/{}",
                if host.is_empty() { "node" } else { host }
            )
        });
        if origin.is_empty() || origin.contains(char::is_whitespace) || origin.contains('+') {
            return Err(self.err("ledger.origin", "must be non-empty, without spaces or '+'"));
        }
        let ledger = crate::ledger::LedgerConfig {
            checkpoint_every: raw.ledger.checkpoint_every.unwrap_or(1000).max(1),
            checkpoint_interval: self.duration(
                "ledger.checkpoint_interval",
                raw.ledger.checkpoint_interval,
                "10s",
            )?,
            max_batch: self.positive("ledger.max_batch", raw.ledger.max_batch, 1024)?,
            apply_batch: self.positive("ledger.apply_batch", raw.ledger.apply_batch, 256)?,
            max_queue: self.positive("ledger.max_queue", raw.ledger.max_queue, 65_536)?,
            origin,
        };
        let db_cache_bytes = self
            .positive("ledger.cache_mib", raw.ledger.cache_mib, 4)?
            .saturating_mul(1024 * 1024) as u64;
        let log_format = match raw.log.format.as_deref().unwrap_or("text") {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(self.err("log.format", format!("{other:?} is not text or json"))),
        };
        let agents = raw
            .agents
            .into_iter()
            .enumerate()
            .map(|(i, a)| self.agent(i, a))
            .collect::<Result<Vec<_>>>()?;
        let approvers = self.approvers(raw.approvers)?;
        let approvals = self.approvals(raw.approvals)?;
        let notify = self.notify(raw.notify)?;
        let secrets = self.secrets(raw.secrets)?;
        let grants = self.grants(raw.grants, &secrets)?;
        let github = self.github(raw.github)?;
        Ok(Config {
            source: self.source.to_string(),
            data_dir,
            proxy,
            admin,
            ca,
            policy,
            upstream,
            environments,
            runtime_env,
            ledger,
            db_cache_bytes,
            log_format,
            log_level: raw.log.level.unwrap_or_else(|| "info".to_string()),
            agents,
            approvers,
            approvals,
            notify,
            secrets,
            grants,
            github,
        })
    }

    fn environments(&self, raw: Option<raw::RawEnvironments>) -> Result<Environments> {
        let Some(raw) = raw else {
            return Ok(Environments::builtin());
        };
        let rules = raw
            .rules
            .into_iter()
            .enumerate()
            .map(|(i, r)| {
                if r.env.trim().is_empty() {
                    return Err(
                        self.err(&format!("environments.rules[{i}].env"), "must not be empty")
                    );
                }
                Ok(EnvRule {
                    env: r.env,
                    hosts: lower(r.hosts),
                    paths: lower(r.paths),
                    repos: lower(r.repos)
                        .into_iter()
                        .map(|r| r.trim_end_matches(".git").to_string())
                        .collect(),
                    service: r.service,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Environments {
            default: raw.default.unwrap_or_else(|| "development".to_string()),
            rules,
        })
    }

    fn agent(&self, i: usize, a: RawAgent) -> Result<AgentDecl> {
        let key = format!("agents[{i}]");
        crate::identity::validate_slug(&a.id).map_err(|m| self.err(&format!("{key}.id"), m))?;
        let runtime = a.runtime.unwrap_or_else(|| "other".to_string());
        if !RUNTIMES.contains(&runtime.as_str()) {
            return Err(self.err(
                &format!("{key}.runtime"),
                format!("{runtime:?} is not one of {}", RUNTIMES.join(", ")),
            ));
        }
        let on_behalf_of = a.on_behalf_of.unwrap_or_else(|| a.id.clone());
        // The same namespace as approver ids: self-approval is refused by comparing them.
        crate::identity::validate_slug(&on_behalf_of)
            .map_err(|m| self.err(&format!("{key}.on_behalf_of"), m))?;
        Ok(AgentDecl {
            on_behalf_of,
            id: a.id,
            runtime,
            roles: a.roles,
            labels: a.labels,
        })
    }
}

impl Environments {
    /// The map used when the config has no `environments:` key: host names that say
    /// `prod`/`production` are production, `staging` is staging, the rest development.
    pub fn builtin() -> Environments {
        let rule = |env: &str, hosts: &[&str]| EnvRule {
            env: env.to_string(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            paths: Vec::new(),
            repos: Vec::new(),
            service: None,
        };
        Environments {
            default: "development".to_string(),
            rules: vec![
                rule(
                    "production",
                    &["prod.*", "*.prod.*", "production.*", "*.production.*"],
                ),
                rule(
                    "staging",
                    &["staging.*", "*.staging.*", "stage.*", "*.stage.*"],
                ),
            ],
        }
    }
}

pub(super) fn lower(v: Vec<String>) -> Vec<String> {
    v.into_iter().map(|s| s.to_ascii_lowercase()).collect()
}

#[cfg(test)]
mod tests;
