//! Plain data shared by every layer: who is calling, what they asked for and what was
//! decided. Nothing here does I/O.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An agent's identifier: a slug such as `oc-1` or `claude-alice`.
pub type AgentId = String;
/// A job's identifier, `job_<hex>`.
pub type JobId = String;
/// A request's identifier, `req_<hex>`, unique per decided request.
pub type RequestId = String;

/// What the policy decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The request may be forwarded.
    Allow,
    /// The request waits for (or, until approvals exist, needs) a human approver.
    Hold,
    /// The request is refused.
    Deny,
}

impl Outcome {
    /// The lower-case name used in logs, headers and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Hold => "hold",
            Outcome::Deny => "deny",
        }
    }
}

/// Why a decision came out as it did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reason {
    /// A stable machine-readable code, e.g. `no_rule`, `production_write`.
    pub code: String,
    /// A sentence for humans (and agents).
    #[serde(default)]
    pub message: String,
}

impl Reason {
    /// Builds a reason from a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Reason {
            code: code.into(),
            message: message.into(),
        }
    }
}

/// Who must approve a held request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approvers {
    /// The approver role, e.g. `release-approver`.
    pub role: String,
    /// How many distinct approvers of that role must say yes.
    #[serde(default = "one")]
    pub count: u32,
    /// Whether the human the agent acts for may approve it (policy opt-in).
    #[serde(default)]
    pub self_approval: bool,
}

fn one() -> u32 {
    1
}

/// The policy's decision object (DESIGN.md section 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// allow, hold or deny.
    pub outcome: Outcome,
    /// Why; empty only for a plain allow.
    #[serde(default)]
    pub reasons: Vec<Reason>,
    /// For `hold`: who must approve.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvers: Option<Approvers>,
    /// Grant ids the policy relied on.
    #[serde(default)]
    pub grants_used: Vec<String>,
}

impl Decision {
    /// A deny with one reason.
    pub fn deny(code: impl Into<String>, message: impl Into<String>) -> Self {
        Decision {
            outcome: Outcome::Deny,
            reasons: vec![Reason::new(code, message)],
            approvers: None,
            grants_used: Vec::new(),
        }
    }

    /// The reason codes joined with commas, for log lines.
    pub fn codes(&self) -> String {
        self.reasons
            .iter()
            .map(|r| r.code.as_str())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Where a request really goes (`input.destination`): the addresses Clawser resolved,
/// checked and will connect to, and their class (`global`, `loopback`, `private`, ...; the
/// first non-global class among them, else `global`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Destination {
    pub ips: Vec<std::net::IpAddr>,
    pub class: String,
}

/// What the policy (and later the ledger) sees of a request body: never its content.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BodySummary {
    /// The declared length (Content-Length), else the length read when the whole body was
    /// inspected; `null` when unknown (a streamed body larger than `proxy.max_inspect_bytes`).
    pub size: Option<u64>,
    /// Hex SHA-256 of the inspected bytes (the whole body unless `truncated`).
    pub sha256: String,
    /// The parsed body, when it parses as JSON (whatever its Content-Type) and was inspected
    /// whole.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json: Option<serde_json::Value>,
    /// True when the body was larger than `proxy.max_inspect_bytes`.
    pub truncated: bool,
}

/// TLS facts about how the request arrived.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsSummary {
    /// The SNI the client sent, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    /// True when Clawser terminated TLS and inspected the request.
    pub intercepted: bool,
}

/// The redacted view of one request that policies and logs see.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestSummary {
    /// `req_...`
    pub id: RequestId,
    /// `https` or `http`.
    pub scheme: String,
    /// Upper-case method.
    pub method: String,
    /// Lower-case host name or IP literal (no brackets).
    pub host: String,
    /// Destination port.
    pub port: u16,
    /// The path, without the query.
    pub path: String,
    /// Query parameters, secrets redacted.
    pub query: BTreeMap<String, Vec<String>>,
    /// Lower-case header names to values, secrets redacted.
    pub headers: BTreeMap<String, Vec<String>>,
    /// Body size and hash.
    pub body: BodySummary,
    /// How it arrived.
    pub tls: TlsSummary,
    /// Placeholders of secrets the request carries (never the values).
    #[serde(default)]
    pub placeholders: Vec<PlaceholderSeen>,
}

/// A secret's placeholder found in a request (`input.request.placeholders`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlaceholderSeen {
    /// The secret's name.
    pub secret: String,
    /// `authorization`, a header name, or `query:NAME`.
    #[serde(rename = "where")]
    pub where_: String,
}

/// Where lower layers (identity, policy) record events without knowing the ledger. The
/// ledger implements it; `record` returns once the event is durable.
pub trait EventSink: Send + Sync {
    /// Records an event; returns its sequence number.
    fn record(&self, kind: &str, data: serde_json::Value) -> crate::error::Result<u64>;
}

/// Records in `sink` when there is one (a store opened without a ledger records nothing).
pub fn record_in(
    sink: Option<&std::sync::Arc<dyn EventSink>>,
    kind: &str,
    data: serde_json::Value,
) -> crate::error::Result<()> {
    match sink {
        Some(s) => s.record(kind, data).map(|_| ()),
        None => Ok(()),
    }
}

/// The placeholder that replaces every secret value.
pub const REDACTED: &str = "<redacted>";

/// `text` as one printable line of at most `max_chars` characters (control characters
/// become spaces): for what is shown in a terminal or stored in the ledger.
pub fn one_line(text: &str, max_chars: usize) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max_chars)
        .collect()
}

/// True for a host the proxy will talk to: an IP literal, or a DNS name of labels of
/// `a-z 0-9 - _` (1-63 characters each, 253 at most in all). Callers lower-case first.
pub fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts() {
        for ok in [
            "api.github.com",
            "localhost",
            "127.0.0.1",
            "::1",
            "a_b.example",
            "xn--bcher-kva.example",
        ] {
            assert!(valid_host(ok), "{ok}");
        }
        for bad in [
            "",
            "a..b",
            "bad name",
            "a\u{0}",
            "UPPER.case",
            ".lead",
            "trail.",
            &"a".repeat(64),
        ] {
            assert!(!valid_host(bad), "{bad:?}");
        }
    }
}
