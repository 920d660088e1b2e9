//! Where approvals live: the [`ApprovalStore`] trait (what the proxy, the admin API and the
//! upkeep task need) and the types its operations return. [`super::SledApprovals`] is the
//! embedded implementation; a shared-database one for several nodes is planned (DESIGN.md
//! section 11: consumption as one conditional update, decisions announced to the other
//! nodes). Every implementation applies the same rules (`rules.rs`) and records every change
//! through the event sink before it is visible. Times are passed in, so the rules are tested
//! without sleeping.

use time::OffsetDateTime;
use tokio::sync::watch;

use super::types::{Approval, ApprovalState, ApproverRef, NewApproval, Verdict};
use crate::error::{Error, Result};

/// Why an approver's decision was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error("approval {0:?} not found")]
    NotFound(String),
    #[error("approval is already {}", .0.as_str())]
    NotPending(ApprovalState),
    #[error("approval expired")]
    Expired,
    #[error("approving needs role {0:?}")]
    MissingRole(String),
    #[error("an approver cannot approve a request made on their own behalf")]
    SelfApproval,
    #[error("{0} already decided on this approval")]
    AlreadyDecided(String),
    #[error(transparent)]
    Store(#[from] Error),
}

/// Why a held request could not open (or join) an approval.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("agent {agent} already has {max} pending approvals (approvals.max_pending_per_agent)")]
    TooManyPending { agent: String, max: usize },
    #[error(transparent)]
    Store(#[from] Error),
}

/// What the current policy requires of an approval that releases a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub role: String,
    pub count: u32,
    pub self_approval: bool,
}

impl Requirement {
    /// True when `a`'s approvals meet this requirement: `count` distinct approvers of `role`,
    /// not counting the human the agent acts for unless self-approval is allowed now.
    pub fn met_by(&self, a: &Approval) -> bool {
        let approvals = a
            .decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Approve)
            .filter(|d| self.self_approval || d.approver != a.on_behalf_of)
            .count() as u32;
        a.required.role == self.role && approvals >= self.count.max(1)
    }
}

/// A held request's approval: newly opened, or an identical request's pending one joined.
#[derive(Debug, Clone)]
pub enum Opened {
    Created(Approval),
    Joined(Approval),
}

impl Opened {
    /// The approval either way.
    pub fn approval(&self) -> &Approval {
        match self {
            Opened::Created(a) | Opened::Joined(a) => a,
        }
    }
}

/// The approval store every node uses (sled now, PostgreSQL later). Shared by the proxy
/// (open, wait, consume), the admin API and CLI (decide, read) and the upkeep task (expire,
/// prune). Each change is recorded (`approval.*`) before it is persisted, made visible and
/// announced to waiters: a change that cannot be recorded is not made. (The sled store
/// serializes changes under one lock; if persisting fails after the record, the change is
/// not made and its entry stays in the ledger as an attempt. A shared store makes the entry
/// and the change in one transaction, so that of two nodes racing to consume an approval
/// only the winner records it.)
pub trait ApprovalStore: Send + Sync {
    /// Opens a pending approval, recorded and persisted before anyone waits on it.
    fn create(&self, new: NewApproval, now: OffsetDateTime) -> Result<Approval>;

    /// For a held request: joins the pending, unexpired approval of an identical request
    /// (same fingerprint) if there is one, so retries do not multiply approvals; else opens
    /// one, up to `approvals.max_pending_per_agent` pending approvals per agent.
    fn open_for(&self, new: NewApproval, now: OffsetDateTime) -> Result<Opened, OpenError>;

    /// One approval.
    fn get(&self, id: &str) -> Option<Approval>;

    /// Approvals in a state (or all), oldest first.
    fn list(&self, state: Option<ApprovalState>) -> Vec<Approval>;

    /// A receiver that sees the approval's state change (held requests wait on it).
    fn subscribe(&self, id: &str) -> Option<watch::Receiver<ApprovalState>>;

    /// Records one approver's verdict (`rules::apply_verdict` says which are accepted and
    /// what they do).
    fn decide(
        &self,
        id: &str,
        approver: &ApproverRef,
        verdict: Verdict,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Approval, DecideError>;

    /// Takes the approved, unexpired approval for `fingerprint` that meets `need` (what the
    /// policy requires now), if any, and marks it consumed: an approval releases the request
    /// it approved exactly once, however many nodes or requests race for it.
    ///
    /// `only` restricts it to one approval (the one a held request waited on); `request_id`
    /// names the request it released in the `approval.consumed` entry.
    fn consume(
        &self,
        fingerprint: &str,
        only: Option<&str>,
        need: &Requirement,
        request_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Approval>>;

    /// Removes decided, consumed and expired approvals that ended more than `retention`
    /// ago (their history stays in the ledger). Returns how many.
    fn prune(&self, now: OffsetDateTime, retention: std::time::Duration) -> Result<usize>;

    /// Marks pending and approved approvals past their TTL as expired (recorded); returns them.
    fn expire(&self, now: OffsetDateTime) -> Result<Vec<Approval>>;
}
