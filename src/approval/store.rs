//! The approval store: approval objects persisted in sled (mirrored in memory), every change
//! recorded through the event sink, and a watch channel per approval so a held request can
//! wait for its decision. Times are passed in, so the rules are tested without sleeping.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;

use super::index::Inner;
use super::types::{Approval, ApprovalDecision, ApprovalState, ApproverRef, NewApproval, Verdict};
use crate::error::{Error, Result};
use crate::model::EventSink;
use crate::time::format_rfc3339;

const APPROVALS: &str = "approvals";

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

/// Approvals, shared by the proxy (hold, consume) and the admin API (decide).
///
/// Locking: `inner` guards the in-memory map and is held only for memory operations, so
/// readers (the proxy, the API) never wait for the disk. `writes` serializes changes; a
/// change is recorded in the ledger, then persisted in sled, then made visible and
/// announced to waiters, and is rolled back if recording or persisting fails.
#[derive(Clone)]
pub struct ApprovalStore {
    tree: sled::Tree,
    inner: Arc<Mutex<Inner>>,
    writes: Arc<Mutex<()>>,
    sink: Option<Arc<dyn EventSink>>,
    ttl: Duration,
    max_pending_per_agent: usize,
}

fn parse_time(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// When an approval stopped changing: its last decision, else when it expired.
fn ended_at(a: &Approval) -> OffsetDateTime {
    let last = a.decisions.iter().map(|d| parse_time(&d.at)).max();
    let expired = parse_time(&a.expires_at);
    match (a.state, last) {
        (ApprovalState::Expired, _) | (_, None) => expired,
        (_, Some(t)) => t,
    }
}

fn oldest_first(a: &Approval, b: &Approval) -> std::cmp::Ordering {
    parse_time(&a.created_at)
        .cmp(&parse_time(&b.created_at))
        .then(a.id.cmp(&b.id))
}

impl ApprovalStore {
    /// Loads approvals from `db`; pending ones stay pending across restarts.
    pub fn open(
        db: &sled::Db,
        ttl: std::time::Duration,
        max_pending_per_agent: usize,
        sink: Option<Arc<dyn EventSink>>,
    ) -> Result<ApprovalStore> {
        let tree = db.open_tree(APPROVALS)?;
        let mut inner = Inner::new();
        for item in tree.iter() {
            let (_, v) = item?;
            let a: Approval = serde_json::from_slice(&v)
                .map_err(|e| Error::Store(format!("corrupt approval: {e}")))?;
            inner.put(a);
        }
        Ok(ApprovalStore {
            tree,
            inner: Arc::new(Mutex::new(inner)),
            writes: Arc::new(Mutex::new(())),
            sink,
            ttl: Duration::try_from(ttl).unwrap_or(Duration::hours(24)),
            max_pending_per_agent,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, kind: &str, a: &Approval, extra: serde_json::Value) -> Result<()> {
        if let Some(s) = &self.sink {
            let mut data = json!({
                "approval": a.id, "state": a.state.as_str(), "agent": a.agent, "on_behalf_of": a.on_behalf_of,
                "runtime": a.runtime, "job": a.job, "fingerprint": a.fingerprint,
                "method": a.request.method, "url": a.request.url, "required": a.required,
            });
            if let (Some(d), serde_json::Value::Object(e)) = (data.as_object_mut(), extra) {
                d.extend(e);
            }
            s.record(kind, data)?;
        }
        Ok(())
    }

    /// Records, persists, then publishes a change (the caller holds the write lock).
    fn commit(&self, kind: &str, a: &Approval, extra: serde_json::Value) -> Result<()> {
        self.record(kind, a, extra)?;
        let bytes = serde_json::to_vec(a).map_err(|e| Error::Store(e.to_string()))?;
        self.tree.insert(a.id.as_bytes(), bytes)?;
        self.tree.flush()?;
        let mut inner = self.lock();
        if let Some(w) = inner.watchers.get(&a.id) {
            let _ = w.send(a.state);
        }
        if a.state != ApprovalState::Pending {
            inner.watchers.remove(&a.id);
        }
        inner.put(a.clone());
        Ok(())
    }

    fn new_approval(&self, new: NewApproval, now: OffsetDateTime) -> Result<Approval> {
        Ok(Approval {
            id: crate::identity::token::new_id("apr")?,
            state: ApprovalState::Pending,
            fingerprint: new.fingerprint,
            request: new.request,
            agent: new.agent,
            on_behalf_of: new.on_behalf_of,
            runtime: new.runtime,
            job: new.job,
            reasons: new.reasons,
            required: new.required,
            intent: new.intent,
            evidence: new.evidence,
            env: new.env,
            allow_self_approval: new.allow_self_approval,
            decisions: Vec::new(),
            request_id: new.request_id,
            created_at: format_rfc3339(now),
            expires_at: format_rfc3339(now + self.ttl),
        })
    }

    fn created_extra(a: &Approval) -> serde_json::Value {
        json!({"request_id": a.request_id, "reasons": a.reasons, "intent": a.intent, "evidence": a.evidence, "expires_at": a.expires_at})
    }

    /// Opens a pending approval, recorded and persisted before anyone waits on it.
    pub fn create(&self, new: NewApproval, now: OffsetDateTime) -> Result<Approval> {
        let _w = self.write_lock();
        let a = self.new_approval(new, now)?;
        self.commit("approval.created", &a, Self::created_extra(&a))?;
        Ok(a)
    }

    /// For a held request: joins the pending, unexpired approval of an identical request
    /// (same fingerprint) if there is one, so retries do not multiply approvals; else opens
    /// one, up to `max_pending_per_agent` pending approvals per agent.
    pub fn open_for(&self, new: NewApproval, now: OffsetDateTime) -> Result<Opened, OpenError> {
        let _w = self.write_lock();
        {
            let inner = self.lock();
            let mut same: Vec<&Approval> = inner
                .with_fingerprint(&new.fingerprint)
                .filter(|a| a.state == ApprovalState::Pending && now <= parse_time(&a.expires_at))
                .collect();
            same.sort_by(|a, b| oldest_first(a, b));
            if let Some(a) = same.first() {
                return Ok(Opened::Joined((*a).clone()));
            }
            let pending = inner.pending_of(&new.agent);
            if pending >= self.max_pending_per_agent {
                return Err(OpenError::TooManyPending {
                    agent: new.agent,
                    max: self.max_pending_per_agent,
                });
            }
        }
        let a = self.new_approval(new, now)?;
        self.commit("approval.created", &a, Self::created_extra(&a))?;
        Ok(Opened::Created(a))
    }

    /// One approval.
    pub fn get(&self, id: &str) -> Option<Approval> {
        self.lock().approvals.get(id).cloned()
    }

    /// Approvals in a state (or all), oldest first.
    pub fn list(&self, state: Option<ApprovalState>) -> Vec<Approval> {
        let mut v: Vec<Approval> = self
            .lock()
            .approvals
            .values()
            .filter(|a| state.is_none_or(|s| a.state == s))
            .cloned()
            .collect();
        v.sort_by(oldest_first);
        v
    }

    /// A receiver that sees the approval's state change (held requests wait on it).
    pub fn subscribe(&self, id: &str) -> Option<watch::Receiver<ApprovalState>> {
        let mut inner = self.lock();
        let state = inner.approvals.get(id)?.state;
        if state != ApprovalState::Pending {
            // Decided already: nothing will change; keep no sender around for it.
            return Some(watch::channel(state).1);
        }
        Some(
            inner
                .watchers
                .entry(id.to_string())
                .or_insert_with(|| watch::channel(state).0)
                .subscribe(),
        )
    }

    /// Records one approver's verdict. Any deny refuses; `required.count` distinct approvers
    /// holding `required.role` release it. The human the agent acts for may not approve
    /// unless the policy allowed self-approval.
    pub fn decide(
        &self,
        id: &str,
        approver: &ApproverRef,
        verdict: Verdict,
        reason: &str,
        now: OffsetDateTime,
    ) -> Result<Approval, DecideError> {
        let _w = self.write_lock();
        let mut a = self
            .get(id)
            .ok_or_else(|| DecideError::NotFound(id.to_string()))?;
        if a.state != ApprovalState::Pending {
            return Err(DecideError::NotPending(a.state));
        }
        if now > parse_time(&a.expires_at) {
            a.state = ApprovalState::Expired;
            self.commit("approval.expired", &a, json!({}))?;
            return Err(DecideError::Expired);
        }
        if !approver.roles.iter().any(|r| r == &a.required.role) {
            return Err(DecideError::MissingRole(a.required.role.clone()));
        }
        if verdict == Verdict::Approve && approver.id == a.on_behalf_of && !a.allow_self_approval {
            return Err(DecideError::SelfApproval);
        }
        if a.decisions.iter().any(|d| d.approver == approver.id) {
            return Err(DecideError::AlreadyDecided(approver.id.clone()));
        }
        a.decisions.push(ApprovalDecision {
            approver: approver.id.clone(),
            verdict,
            reason: reason.to_string(),
            at: format_rfc3339(now),
        });
        let approvals = a
            .decisions
            .iter()
            .filter(|d| d.verdict == Verdict::Approve)
            .count() as u32;
        a.state = match verdict {
            Verdict::Deny => ApprovalState::Denied,
            Verdict::Approve if approvals >= a.required.count.max(1) => ApprovalState::Approved,
            Verdict::Approve => ApprovalState::Pending,
        };
        self.commit(
            "approval.decided",
            &a,
            json!({"approver": approver.id, "verdict": verdict, "reason": reason, "approvals": approvals}),
        )?;
        Ok(a)
    }

    /// Takes the approved, unexpired approval for `fingerprint` that meets `need` (what the
    /// policy requires now), if any, and marks it consumed: an approval releases the request
    /// it approved exactly once.
    ///
    /// `only` restricts it to one approval (the one a held request waited on); `request_id`
    /// names the request it released in the `approval.consumed` entry.
    pub fn consume(
        &self,
        fingerprint: &str,
        only: Option<&str>,
        need: &Requirement,
        request_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Approval>> {
        let _w = self.write_lock();
        let found = {
            let inner = self.lock();
            let mut v: Vec<&Approval> = inner
                .with_fingerprint(fingerprint)
                .filter(|a| {
                    only.is_none_or(|id| a.id == id)
                        && a.state == ApprovalState::Approved
                        && now <= parse_time(&a.expires_at)
                        && need.met_by(a)
                })
                .collect();
            v.sort_by(|a, b| oldest_first(a, b));
            v.first().map(|a| (*a).clone())
        };
        let Some(mut a) = found else {
            return Ok(None);
        };
        a.state = ApprovalState::Consumed;
        self.commit("approval.consumed", &a, json!({"request_id": request_id}))?;
        Ok(Some(a))
    }

    /// Removes decided, consumed and expired approvals that ended more than `retention`
    /// ago (from memory and sled; their history stays in the ledger). Returns how many.
    pub fn prune(&self, now: OffsetDateTime, retention: std::time::Duration) -> Result<usize> {
        let _w = self.write_lock();
        let keep = Duration::try_from(retention).unwrap_or(Duration::days(7));
        let due: Vec<String> = self
            .lock()
            .approvals
            .values()
            .filter(|a| {
                !matches!(a.state, ApprovalState::Pending | ApprovalState::Approved)
                    && ended_at(a) + keep < now
            })
            .map(|a| a.id.clone())
            .collect();
        for id in &due {
            self.tree.remove(id.as_bytes())?;
        }
        if !due.is_empty() {
            self.tree.flush()?;
        }
        let mut inner = self.lock();
        for id in &due {
            inner.remove(id);
        }
        Ok(due.len())
    }

    /// Marks pending approvals past their TTL as expired (recorded); returns them.
    pub fn expire(&self, now: OffsetDateTime) -> Result<Vec<Approval>> {
        let _w = self.write_lock();
        let due: Vec<Approval> = self
            .lock()
            .approvals
            .values()
            .filter(|a| {
                matches!(a.state, ApprovalState::Pending | ApprovalState::Approved)
                    && now > parse_time(&a.expires_at)
            })
            .cloned()
            .collect();
        let mut out = Vec::new();
        for mut a in due {
            a.state = ApprovalState::Expired;
            self.commit("approval.expired", &a, json!({}))?;
            out.push(a);
        }
        Ok(out)
    }
}
