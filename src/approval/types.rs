//! Approval objects (DESIGN.md section 5): durable, bound to the exact request reviewed.

use serde::{Deserialize, Serialize};

use crate::model::Reason;

/// Where an approval is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ApprovalState {
    Pending,
    Approved,
    Denied,
    Expired,
    /// Approved and used by the request it approved (once).
    Consumed,
}

impl ApprovalState {
    /// Lower-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalState::Pending => "pending",
            ApprovalState::Approved => "approved",
            ApprovalState::Denied => "denied",
            ApprovalState::Expired => "expired",
            ApprovalState::Consumed => "consumed",
        }
    }
}

/// An approver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Approve,
    Deny,
}

/// One approver's decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalDecision {
    pub approver: String,
    pub verdict: Verdict,
    #[serde(default)]
    pub reason: String,
    pub at: String,
}

/// Who must approve: `count` distinct approvers holding `role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Required {
    pub role: String,
    pub count: u32,
}

/// What the approver reviews (no secrets: the URL carries the redacted query).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReviewedRequest {
    pub method: String,
    /// `scheme://host:port/path?redacted-query`
    pub url: String,
    pub body_size: Option<u64>,
    pub body_sha256: String,
    /// A bounded, redacted preview of the body (on the approval object only, never in the
    /// ledger).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_preview: Option<String>,
    /// Headers that change what the request means and are bound into the fingerprint
    /// (content type and encoding, method overrides), every value, redacted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
}

/// An approval object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub state: ApprovalState,
    /// SHA-256 binding the approval to agent, job, method, URL and body hash.
    pub fingerprint: String,
    pub request: ReviewedRequest,
    pub agent: String,
    pub on_behalf_of: String,
    pub runtime: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job: Option<String>,
    pub reasons: Vec<Reason>,
    pub required: Required,
    /// The agent's stated expected impact (`X-Clawser-Intent`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<String>,
    /// The agent's evidence (`X-Clawser-Evidence`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
    /// Whether the policy lets the human the agent acts for approve it.
    /// `target.env` of the held request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    #[serde(default)]
    pub allow_self_approval: bool,
    #[serde(default)]
    pub decisions: Vec<ApprovalDecision>,
    /// The request that opened it (`req_...`).
    #[serde(default)]
    pub request_id: String,
    pub created_at: String,
    pub expires_at: String,
}

/// Everything needed to open an approval for a held request.
#[derive(Debug, Clone)]
pub struct NewApproval {
    /// From [`super::fingerprint`], over the request as received (the unredacted URL).
    pub fingerprint: String,
    pub request: ReviewedRequest,
    pub agent: String,
    pub on_behalf_of: String,
    pub runtime: String,
    pub job: Option<String>,
    pub reasons: Vec<Reason>,
    pub required: Required,
    pub intent: Option<String>,
    pub evidence: Option<String>,
    pub env: Option<String>,
    pub allow_self_approval: bool,
    /// The request that opened it.
    pub request_id: String,
}

/// An approver acting on an approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverRef {
    pub id: String,
    pub roles: Vec<String>,
}
