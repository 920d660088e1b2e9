//! The serde mirror of the YAML config file. Every key is optional here; `deny_unknown_fields`
//! turns a typo into an error that names the key. Validation lives in `config/mod.rs`.

use serde::Deserialize;
use std::collections::BTreeMap;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub data_dir: Option<String>,
    #[serde(default)]
    pub proxy: RawProxy,
    #[serde(default)]
    pub admin: RawAdmin,
    #[serde(default)]
    pub ca: RawCa,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub upstream: RawUpstream,
    pub environments: Option<RawEnvironments>,
    #[serde(default)]
    pub runtime_env: RawRuntimeEnv,
    #[serde(default)]
    pub ledger: RawLedger,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub agents: Vec<RawAgent>,
    #[serde(default)]
    pub approvers: Vec<RawApprover>,
    #[serde(default)]
    pub approvals: RawApprovals,
    #[serde(default)]
    pub notify: RawNotify,
    #[serde(default)]
    pub secrets: Vec<RawSecret>,
    #[serde(default)]
    pub grants: Vec<RawGrant>,
    #[serde(default)]
    pub github: RawGithub,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGithub {
    pub hosts: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxy {
    pub listen: Option<String>,
    pub max_connections: Option<usize>,
    pub max_header_bytes: Option<usize>,
    pub max_inspect_bytes: Option<usize>,
    pub handshake_timeout: Option<String>,
    pub first_bytes_timeout: Option<String>,
    pub idle_timeout: Option<String>,
    pub passthrough_hosts: Option<Vec<String>>,
    pub redact_headers: Option<Vec<String>>,
    pub redact_query_keys: Option<Vec<String>>,
    pub hold_timeout: Option<String>,
    pub max_held: Option<usize>,
    pub allow_private: Option<Vec<String>>,
    pub allow_encoded_slash: Option<bool>,
    pub dns_cache_ttl: Option<String>,
    pub dns_cache_size: Option<usize>,
    pub body_timeout: Option<String>,
    pub redact_patterns: Option<Vec<String>>,
    pub resolve: Option<std::collections::BTreeMap<String, Vec<String>>>,
    pub unix_socket: Option<String>,
    pub worker_threads: Option<usize>,
    pub shards: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAdmin {
    pub listen: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCa {
    pub dir: Option<String>,
    pub leaf_validity_days: Option<u32>,
    pub cache_size: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub dir: Option<String>,
    pub engine: Option<String>,
    pub max_instructions: Option<usize>,
    pub max_memory_mib: Option<u64>,
    pub reload_interval: Option<String>,
    pub eval_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub extra_ca_files: Option<Vec<String>>,
    pub connect_timeout: Option<String>,
    pub response_timeout: Option<String>,
    pub pool_idle_timeout: Option<String>,
    pub pool_max_idle_per_host: Option<usize>,
    pub http2: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvironments {
    pub default: Option<String>,
    #[serde(default)]
    pub rules: Vec<RawEnvRule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEnvRule {
    pub env: String,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    #[serde(default)]
    pub repos: Vec<String>,
    pub service: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRuntimeEnv {
    pub proxy_host: Option<String>,
    pub no_proxy: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLedger {
    pub checkpoint_every: Option<u64>,
    pub checkpoint_interval: Option<String>,
    pub max_batch: Option<usize>,
    pub apply_batch: Option<usize>,
    pub max_queue: Option<usize>,
    pub origin: Option<String>,
    pub cache_mib: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<String>,
    pub level: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub id: String,
    pub runtime: Option<String>,
    pub on_behalf_of: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprover {
    pub id: String,
    #[serde(default)]
    pub roles: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApprovals {
    pub ttl: Option<String>,
    pub expire_interval: Option<String>,
    pub max_pending_per_agent: Option<usize>,
    pub retention: Option<String>,
    pub max_grant_window: Option<String>,
    pub window_uses: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    #[serde(default)]
    pub webhooks: Vec<RawWebhook>,
    pub timeout: Option<String>,
    pub max_attempts: Option<u32>,
    pub retry_base: Option<String>,
    pub queue: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: String,
    pub events: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSecret {
    pub name: String,
    pub from: RawSource,
    #[serde(default)]
    pub hosts: Vec<String>,
    pub inject: Option<RawInject>,
    #[serde(default)]
    pub env: Vec<String>,
    pub add: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub env: Option<String>,
    pub file: Option<String>,
    pub command: Option<String>,
    pub ttl: Option<String>,
}

/// `bearer`, `basic`, `{header: NAME, format: "..."}` or `{query: NAME}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawInject {
    Name(String),
    Header {
        header: String,
        format: Option<String>,
    },
    Query {
        query: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrant {
    pub name: String,
    pub agent: Option<String>,
    pub role: Option<String>,
    pub job: Option<String>,
    #[serde(default)]
    pub hosts: Vec<String>,
    #[serde(default)]
    pub repos: Vec<String>,
    #[serde(default)]
    pub envs: Vec<String>,
    #[serde(default)]
    pub actions: Vec<String>,
    pub secret: Option<String>,
    pub expires_at: Option<String>,
    pub max_uses: Option<u64>,
    pub reason: Option<String>,
}
