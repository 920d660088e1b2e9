//! The identity records: agents, credentials and jobs, as stored (JSON in sled).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An agent principal (DESIGN.md section 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Agent {
    pub id: String,
    /// claude-code | openclaw | hermes | codex | other
    pub runtime: String,
    /// The human principal the agent acts for.
    pub on_behalf_of: String,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// `config` when declared in the config file, `api` when added at run time.
    pub source: String,
}

/// A proxy credential: belongs to one agent and optionally one job. Only the hash of the
/// token is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    pub id: String,
    pub agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    pub token_sha256: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
}

/// A credential as shown to its holder, once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssuedCredential {
    pub credential_id: String,
    pub agent: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    /// The secret: shown once, never stored.
    pub token: String,
    /// Placeholder variables for the secrets this credential may use (`clawser env`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
}

/// One handoff of a job from an agent to another.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    pub from: String,
    pub to: String,
    pub at: String,
}

/// A unit of work; authority and history follow it across runtimes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: String,
    pub title: String,
    pub started_by: String,
    /// Every agent that has worked on the job, in order.
    pub agents: Vec<String>,
    /// `open` or `closed`.
    pub state: String,
    pub created_at: String,
    #[serde(default)]
    pub handoffs: Vec<Handoff>,
}

impl Job {
    /// The agent that holds the job now: the last one it was handed to, else its starter.
    /// A job's grants are usable only by this agent.
    pub fn current_holder(&self) -> &str {
        self.handoffs
            .last()
            .map(|h| h.to.as_str())
            .unwrap_or(&self.started_by)
    }
}

/// A new agent, as posted to `/v1/agents` or `clawser agents add`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAgent {
    pub id: String,
    #[serde(default = "other")]
    pub runtime: String,
    #[serde(default)]
    pub on_behalf_of: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

fn other() -> String {
    "other".to_string()
}

/// A new job: started by `agent`, who gets a credential bound to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewJob {
    pub agent: String,
    pub title: String,
}

/// A job together with the credential issued for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobWithCredential {
    pub job: Job,
    pub credential: IssuedCredential,
}
