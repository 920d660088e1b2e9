//! [`SledApprovals`]: the embedded [`ApprovalStore`], approval objects persisted in sled and
//! mirrored in memory, with a watch channel per pending approval so a held request can wait
//! for its decision on this node.

use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::json;
use time::{Duration, OffsetDateTime};
use tokio::sync::watch;

use super::index::Inner;
use super::rules::{self, oldest_first};
use super::store::{ApprovalStore, DecideError, OpenError, Opened, Requirement};
use super::types::{Approval, ApprovalState, ApproverRef, NewApproval, Verdict};
use crate::error::{Error, Result};
use crate::model::EventSink;

const APPROVALS: &str = "approvals";

/// Approvals in sled, mirrored in memory; cheap to clone and share.
///
/// Locking: `inner` guards the in-memory map and is held only for memory operations, so
/// readers (the proxy, the API) never wait for the disk. `writes` serializes changes; a
/// change is recorded in the ledger, then persisted in sled, then made visible and
/// announced to waiters; if recording or persisting fails, it is not made visible.
#[derive(Clone)]
pub struct SledApprovals {
    tree: sled::Tree,
    inner: Arc<Mutex<Inner>>,
    writes: Arc<Mutex<()>>,
    sink: Option<Arc<dyn EventSink>>,
    ttl: Duration,
    max_pending_per_agent: usize,
}

impl SledApprovals {
    /// Loads approvals from `db`; pending ones stay pending across restarts.
    pub fn open(
        db: &sled::Db,
        ttl: std::time::Duration,
        max_pending_per_agent: usize,
        sink: Option<Arc<dyn EventSink>>,
    ) -> Result<SledApprovals> {
        let tree = db.open_tree(APPROVALS)?;
        let mut inner = Inner::new();
        for item in tree.iter() {
            let (_, v) = item?;
            let a: Approval = serde_json::from_slice(&v)
                .map_err(|e| Error::Store(format!("corrupt approval: {e}")))?;
            inner.put(a);
        }
        Ok(SledApprovals {
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

    /// Records, persists, then publishes a change (the caller holds the write lock).
    fn commit(&self, kind: &str, a: &Approval, extra: serde_json::Value) -> Result<()> {
        if let Some(s) = &self.sink {
            s.record(kind, rules::entry_data(a, extra))?;
        }
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

    fn create_locked(&self, new: NewApproval, now: OffsetDateTime) -> Result<Approval> {
        let a = rules::new_approval(new, now, self.ttl)?;
        self.commit("approval.created", &a, rules::created_extra(&a))?;
        Ok(a)
    }
}

impl ApprovalStore for SledApprovals {
    fn create(&self, new: NewApproval, now: OffsetDateTime) -> Result<Approval> {
        let _w = self.write_lock();
        self.create_locked(new, now)
    }

    fn open_for(&self, new: NewApproval, now: OffsetDateTime) -> Result<Opened, OpenError> {
        let _w = self.write_lock();
        {
            let inner = self.lock();
            let mut same: Vec<&Approval> = inner
                .with_fingerprint(&new.fingerprint)
                .filter(|a| rules::joinable(a, now))
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
        Ok(Opened::Created(self.create_locked(new, now)?))
    }

    fn get(&self, id: &str) -> Option<Approval> {
        self.lock().approvals.get(id).cloned()
    }

    fn list(&self, state: Option<ApprovalState>) -> Vec<Approval> {
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

    fn subscribe(&self, id: &str) -> Option<watch::Receiver<ApprovalState>> {
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

    fn decide(
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
        let approvals = match rules::apply_verdict(&mut a, approver, verdict, reason, now) {
            Ok(n) => n,
            Err(DecideError::Expired) => {
                self.commit("approval.expired", &a, json!({}))?;
                return Err(DecideError::Expired);
            }
            Err(e) => return Err(e),
        };
        self.commit(
            "approval.decided",
            &a,
            json!({"approver": approver.id, "verdict": verdict, "reason": reason, "approvals": approvals}),
        )?;
        Ok(a)
    }

    fn consume(
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
                        && now <= rules::parse_time(&a.expires_at)
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

    fn prune(&self, now: OffsetDateTime, retention: std::time::Duration) -> Result<usize> {
        let _w = self.write_lock();
        let keep = Duration::try_from(retention).unwrap_or(Duration::days(7));
        let due: Vec<String> = self
            .lock()
            .approvals
            .values()
            .filter(|a| rules::prunable(a, now, keep))
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

    fn expire(&self, now: OffsetDateTime) -> Result<Vec<Approval>> {
        let _w = self.write_lock();
        let due: Vec<Approval> = self
            .lock()
            .approvals
            .values()
            .filter(|a| rules::overdue(a, now))
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
