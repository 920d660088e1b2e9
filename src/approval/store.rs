//! The approval store: approval objects persisted in sled (mirrored in memory), every change
//! recorded through the event sink, and a watch channel per approval so a held request can
//! wait for its decision. Times are passed in, so the rules are tested without sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;

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

struct Inner {
    approvals: HashMap<String, Approval>,
    watchers: HashMap<String, watch::Sender<ApprovalState>>,
}

/// Approvals, shared by the proxy (hold, consume) and the admin API (decide).
#[derive(Clone)]
pub struct ApprovalStore {
    tree: sled::Tree,
    inner: Arc<Mutex<Inner>>,
    sink: Option<Arc<dyn EventSink>>,
    ttl: Duration,
}

fn parse_time(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

impl ApprovalStore {
    /// Loads approvals from `db`; pending ones stay pending across restarts.
    pub fn open(
        db: &sled::Db,
        ttl: std::time::Duration,
        sink: Option<Arc<dyn EventSink>>,
    ) -> Result<ApprovalStore> {
        let tree = db.open_tree(APPROVALS)?;
        let mut approvals = HashMap::new();
        for item in tree.iter() {
            let (_, v) = item?;
            let a: Approval = serde_json::from_slice(&v)
                .map_err(|e| Error::Store(format!("corrupt approval: {e}")))?;
            approvals.insert(a.id.clone(), a);
        }
        Ok(ApprovalStore {
            tree,
            inner: Arc::new(Mutex::new(Inner {
                approvals,
                watchers: HashMap::new(),
            })),
            sink,
            ttl: Duration::try_from(ttl).unwrap_or(Duration::hours(24)),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, a: &Approval) -> Result<()> {
        let bytes = serde_json::to_vec(a).map_err(|e| Error::Store(e.to_string()))?;
        self.tree.insert(a.id.as_bytes(), bytes)?;
        self.tree.flush()?;
        Ok(())
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

    /// Opens a pending approval, persisted and recorded before anyone waits on it.
    pub fn create(&self, new: NewApproval, now: OffsetDateTime) -> Result<Approval> {
        let a = Approval {
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
            allow_self_approval: new.allow_self_approval,
            decisions: Vec::new(),
            request_id: new.request_id,
            created_at: format_rfc3339(now),
            expires_at: format_rfc3339(now + self.ttl),
        };
        self.persist(&a)?;
        self.record(
            "approval.created",
            &a,
            json!({"request_id": a.request_id, "reasons": a.reasons, "intent": a.intent, "evidence": a.evidence, "expires_at": a.expires_at}),
        )?;
        let mut inner = self.lock();
        inner.approvals.insert(a.id.clone(), a.clone());
        Ok(a)
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
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        v
    }

    /// A receiver that sees the approval's state change (held requests wait on it).
    pub fn subscribe(&self, id: &str) -> Option<watch::Receiver<ApprovalState>> {
        let mut inner = self.lock();
        let state = inner.approvals.get(id)?.state;
        Some(
            inner
                .watchers
                .entry(id.to_string())
                .or_insert_with(|| watch::channel(state).0)
                .subscribe(),
        )
    }

    fn set(&self, inner: &mut Inner, a: Approval) {
        if let Some(w) = inner.watchers.get(&a.id) {
            let _ = w.send(a.state);
        }
        if a.state != ApprovalState::Pending {
            inner.watchers.remove(&a.id);
        }
        inner.approvals.insert(a.id.clone(), a);
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
        let mut inner = self.lock();
        let mut a = inner
            .approvals
            .get(id)
            .cloned()
            .ok_or_else(|| DecideError::NotFound(id.to_string()))?;
        if a.state != ApprovalState::Pending {
            return Err(DecideError::NotPending(a.state));
        }
        if now > parse_time(&a.expires_at) {
            a.state = ApprovalState::Expired;
            self.persist(&a)?;
            self.record("approval.expired", &a, json!({}))?;
            self.set(&mut inner, a);
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
        self.persist(&a)?;
        self.record(
            "approval.decided",
            &a,
            json!({"approver": approver.id, "verdict": verdict, "reason": reason, "approvals": approvals}),
        )?;
        self.set(&mut inner, a.clone());
        Ok(a)
    }

    /// Takes the approved, unexpired approval for `fingerprint`, if any, and marks it consumed:
    /// an approval releases the request it approved exactly once.
    ///
    /// `only` restricts it to one approval (the one a held request waited on); `request_id`
    /// names the request it released in the `approval.consumed` entry.
    pub fn consume(
        &self,
        fingerprint: &str,
        only: Option<&str>,
        request_id: &str,
        now: OffsetDateTime,
    ) -> Result<Option<Approval>> {
        let mut inner = self.lock();
        let found = inner
            .approvals
            .values()
            .filter(|a| {
                a.fingerprint == fingerprint
                    && only.is_none_or(|id| a.id == id)
                    && a.state == ApprovalState::Approved
                    && now <= parse_time(&a.expires_at)
            })
            .min_by(|a, b| a.created_at.cmp(&b.created_at))
            .cloned();
        let Some(mut a) = found else {
            return Ok(None);
        };
        a.state = ApprovalState::Consumed;
        self.persist(&a)?;
        self.record("approval.consumed", &a, json!({"request_id": request_id}))?;
        self.set(&mut inner, a.clone());
        Ok(Some(a))
    }

    /// Marks pending approvals past their TTL as expired (recorded); returns them.
    pub fn expire(&self, now: OffsetDateTime) -> Result<Vec<Approval>> {
        let mut inner = self.lock();
        let due: Vec<Approval> = inner
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
            self.persist(&a)?;
            self.record("approval.expired", &a, json!({}))?;
            self.set(&mut inner, a.clone());
            out.push(a);
        }
        Ok(out)
    }
}
