//! Where grants live: the [`GrantStore`] trait (what the proxy and the admin API need) and
//! [`SledGrants`], the embedded implementation, mirrored in memory so matching a request
//! never touches the disk. A shared-database implementation for several nodes is planned
//! (DESIGN.md section 11): it counts uses in the same transaction as the ledger entry.
//!
//! Counting: a use is *reserved* under one lock (so concurrent requests never spend more
//! than `max_uses`), the `request.decided` entry naming the grant is made durable, and only
//! then is the use *committed*; a failed append refunds it. The ledger is the durable record
//! of uses: at start, [`GrantStore::reconcile`] raises each grant's count to what the ledger
//! says, so a crash between the append and the store's own write loses nothing.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde_json::json;
use time::OffsetDateTime;

use super::scope::{covers, subject_matches, Holder, Touches};
use super::types::{Grant, GrantState};
use crate::error::{Error, Result};
use crate::identity::revocation::Unfinished;
use crate::model::EventSink;
use crate::time::{format_rfc3339, now_rfc3339};

const GRANTS: &str = "grants";

/// Why a reservation failed: the grant can no longer be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unusable {
    pub id: String,
    pub state: &'static str,
}

/// The grant store every node uses (sled now, PostgreSQL later).
pub trait GrantStore: Send + Sync {
    /// Records `grant.issued`, then stores a new grant (or replaces a declared one, keeping
    /// its uses); a grant that cannot be recorded is refused.
    fn insert(&self, grant: Grant) -> Result<Grant>;
    /// Revokes a grant (`grant.revoked`): refused at once, then saved and recorded. An
    /// error after that says so, and revoking again finishes it; revoking a finished
    /// revocation again is not an error.
    fn revoke(&self, id: &str, by: &str) -> Result<Grant>;
    /// One grant.
    fn get(&self, id: &str) -> Option<Grant>;
    /// Every grant, oldest first.
    fn list(&self) -> Vec<Grant>;
    /// True when no grant was ever issued (requests then skip grant matching).
    fn is_empty(&self) -> bool;
    /// Active grants whose subject is `who` (any scope).
    fn held_by(&self, who: &Holder<'_>, now: OffsetDateTime) -> Vec<Grant>;
    /// Active grants whose subject is `who` and whose scope covers `req`.
    fn applicable(&self, who: &Holder<'_>, req: &Touches<'_>, now: OffsetDateTime) -> Vec<Grant>;
    /// Reserves one use of each grant, all or none.
    fn reserve(&self, ids: &[String], now: OffsetDateTime) -> std::result::Result<(), Unusable>;
    /// Ends a reservation: `commit` counts the uses, else they are refunded. Returns the
    /// grants that this commit exhausted.
    fn settle(&self, ids: &[String], commit: bool) -> Vec<Grant>;
    /// Grants that expired or were exhausted and are not yet recorded as ended; marks and
    /// records them (`grant.expired`, `grant.exhausted`).
    fn sweep(&self, now: OffsetDateTime) -> Result<Vec<Grant>>;
    /// Raises each grant's use count to at least the ledger's count of its uses.
    fn reconcile(&self, counted: &HashMap<String, u64>) -> Result<()>;
}

#[derive(Default)]
struct State {
    grants: HashMap<String, Grant>,
    pending: HashMap<String, u64>,
}

/// The sled implementation, mirrored in memory.
#[derive(Clone)]
pub struct SledGrants {
    db: sled::Db,
    state: Arc<RwLock<State>>,
    sink: Option<Arc<dyn EventSink>>,
    /// Revocations in force whose save or record failed.
    unfinished: Arc<Unfinished>,
}

fn encode(g: &Grant) -> Result<Vec<u8>> {
    serde_json::to_vec(g).map_err(|e| Error::Store(e.to_string()))
}

/// What the ledger records of a grant (no secret value: a grant names its secret only).
pub fn grant_event(g: &Grant) -> serde_json::Value {
    json!({
        "grant": g.id, "subject": g.subject, "scope": g.scope, "secret": g.secret,
        "expires_at": g.expires_at, "max_uses": g.max_uses, "uses": g.uses,
        "issued_by": g.issued_by, "reason": g.reason, "source": g.source,
        "approval": g.approval,
        // Filters of `ledger show --agent/--job` find grants of that subject.
        "agent": (g.subject.kind == super::SubjectKind::Agent).then_some(&g.subject.id),
        "job": (g.subject.kind == super::SubjectKind::Job).then_some(&g.subject.id),
    })
}

impl SledGrants {
    /// Loads every grant of `db`.
    pub fn open(db: sled::Db, sink: Option<Arc<dyn EventSink>>) -> Result<SledGrants> {
        let mut state = State::default();
        for item in db.open_tree(GRANTS)?.iter() {
            let (_, v) = item?;
            let g: Grant = serde_json::from_slice(&v)
                .map_err(|e| Error::Store(format!("corrupt record in {GRANTS}: {e}")))?;
            state.grants.insert(g.id.clone(), g);
        }
        Ok(SledGrants {
            db,
            state: Arc::new(RwLock::new(state)),
            sink,
            unfinished: Arc::default(),
        })
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, g: &Grant, flush: bool) -> Result<()> {
        self.db
            .open_tree(GRANTS)?
            .insert(g.id.as_bytes(), encode(g)?)?;
        if flush {
            self.db.flush()?;
        }
        Ok(())
    }

    fn emit(&self, kind: &str, data: serde_json::Value) -> Result<()> {
        crate::model::record_in(self.sink.as_ref(), kind, data)
    }

    fn matching<F: Fn(&Grant) -> bool>(&self, now: OffsetDateTime, f: F) -> Vec<Grant> {
        let s = self.read();
        let mut v: Vec<Grant> = s
            .grants
            .values()
            .filter(|g| {
                let pending = s.pending.get(&g.id).copied().unwrap_or(0);
                g.state(now, pending) == GrantState::Active && f(g)
            })
            .cloned()
            .collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        v
    }
}

impl GrantStore for SledGrants {
    fn insert(&self, mut grant: Grant) -> Result<Grant> {
        if let Some(old) = self.get(&grant.id) {
            if grant.source != "config" {
                return Err(Error::Invalid(format!("grant {} already exists", grant.id)));
            }
            // A declared grant keeps its count and history across restarts.
            grant.uses = old.uses;
            grant.created_at = old.created_at.clone();
            grant.revoked_at = old.revoked_at.clone();
            grant.revoked_by = old.revoked_by.clone();
            // Still ended only if it still is (a raised max_uses or a later expiry reopens
            // it, and its next end is recorded again).
            let now = time::OffsetDateTime::now_utc();
            grant.ended = old
                .ended
                .clone()
                .filter(|_| grant.state(now, 0) != GrantState::Active);
            if old == grant {
                return Ok(grant);
            }
        }
        // Authority is recorded before it exists: a grant the ledger cannot show is refused.
        self.emit("grant.issued", grant_event(&grant))?;
        self.persist(&grant, true)?;
        self.write().grants.insert(grant.id.clone(), grant.clone());
        Ok(grant)
    }

    fn revoke(&self, id: &str, by: &str) -> Result<Grant> {
        let mut g = self.get(id).ok_or_else(|| Error::NotFound {
            kind: "grant",
            id: id.to_string(),
        })?;
        if g.revoked_at.is_some() && !self.unfinished.contains("grant", id) {
            return Ok(g);
        }
        g.revoked_at.get_or_insert_with(now_rfc3339);
        let by = g.revoked_by.get_or_insert_with(|| by.to_string()).clone();
        // Refused from now on, before the record is even written; a failed save or record
        // leaves it unfinished, and revoking again finishes it.
        self.write().grants.insert(g.id.clone(), g.clone());
        self.unfinished.finish("grant", id, || {
            self.persist(&g, true)?;
            let mut data = grant_event(&g);
            data["revoked_by"] = json!(by);
            self.emit("grant.revoked", data)
        })?;
        Ok(g)
    }

    fn get(&self, id: &str) -> Option<Grant> {
        self.read().grants.get(id).cloned()
    }

    fn list(&self) -> Vec<Grant> {
        let mut v: Vec<Grant> = self.read().grants.values().cloned().collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        v
    }

    fn is_empty(&self) -> bool {
        self.read().grants.is_empty()
    }

    fn held_by(&self, who: &Holder<'_>, now: OffsetDateTime) -> Vec<Grant> {
        self.matching(now, |g| subject_matches(&g.subject, who))
    }

    fn applicable(&self, who: &Holder<'_>, req: &Touches<'_>, now: OffsetDateTime) -> Vec<Grant> {
        self.matching(now, |g| {
            subject_matches(&g.subject, who) && covers(&g.scope, req)
        })
    }

    fn reserve(&self, ids: &[String], now: OffsetDateTime) -> std::result::Result<(), Unusable> {
        let mut s = self.write();
        for id in ids {
            let pending = s.pending.get(id).copied().unwrap_or(0);
            let state = match s.grants.get(id) {
                Some(g) => g.state(now, pending),
                None => GrantState::Revoked,
            };
            if state != GrantState::Active {
                return Err(Unusable {
                    id: id.clone(),
                    state: state.as_str(),
                });
            }
        }
        for id in ids {
            *s.pending.entry(id.clone()).or_insert(0) += 1;
        }
        Ok(())
    }

    fn settle(&self, ids: &[String], commit: bool) -> Vec<Grant> {
        let mut exhausted = Vec::new();
        let mut changed = Vec::new();
        {
            let mut s = self.write();
            for id in ids {
                if let Some(p) = s.pending.get_mut(id) {
                    *p = p.saturating_sub(1);
                    if *p == 0 {
                        s.pending.remove(id);
                    }
                }
                if !commit {
                    continue;
                }
                if let Some(g) = s.grants.get_mut(id) {
                    g.uses = g.uses.saturating_add(1);
                    if g.max_uses == Some(g.uses) && g.ended.is_none() {
                        g.ended = Some(format!("exhausted {}", now_rfc3339()));
                        exhausted.push(g.clone());
                    }
                    changed.push(g.clone());
                }
            }
        }
        // The ledger entry is the durable record of the use; this write is the cache that
        // `reconcile` corrects after a crash.
        for g in &changed {
            if let Err(e) = self.persist(g, false) {
                tracing::error!(grant = %g.id, error = %e, "could not store a grant's use count (the ledger has it)");
            }
        }
        exhausted
    }

    fn sweep(&self, now: OffsetDateTime) -> Result<Vec<Grant>> {
        let due: Vec<(Grant, GrantState)> = {
            let s = self.read();
            s.grants
                .values()
                .filter(|g| g.ended.is_none() && g.revoked_at.is_none())
                .filter_map(|g| match g.state(now, 0) {
                    st @ (GrantState::Expired | GrantState::Exhausted) => Some((g.clone(), st)),
                    _ => None,
                })
                .collect()
        };
        let mut out = Vec::new();
        for (mut g, st) in due {
            g.ended = Some(format!("{} {}", st.as_str(), format_rfc3339(now)));
            self.persist(&g, true)?;
            self.emit(&format!("grant.{}", st.as_str()), grant_event(&g))?;
            if let Some(live) = self.write().grants.get_mut(&g.id) {
                live.ended = g.ended.clone();
            }
            out.push(g);
        }
        Ok(out)
    }

    fn reconcile(&self, counted: &HashMap<String, u64>) -> Result<()> {
        let mut raised = Vec::new();
        {
            let mut s = self.write();
            for (id, n) in counted {
                if let Some(g) = s.grants.get_mut(id) {
                    if *n > g.uses {
                        g.uses = *n;
                        raised.push(g.clone());
                    }
                }
            }
        }
        for g in &raised {
            tracing::warn!(grant = %g.id, uses = g.uses, "grant use count raised to the ledger's");
            self.persist(g, true)?;
        }
        Ok(())
    }
}
