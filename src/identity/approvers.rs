//! Approvers: the humans who release or refuse held requests. Declared in the config
//! (`approvers:`) or added through the admin API; each holds roles and at most one admin
//! token (random 256-bit, shown once, stored as SHA-256; issuing a new one replaces it).
//! Every change is recorded (`approver.*`), naming who made it: before it is made when it
//! gives authority (a change that cannot be recorded is refused), after it is in force when
//! it takes authority away (in force at once; if saving or recording it fails, the error
//! says so and revoking again finishes it).
//!
//! The [`ApproverStore`] trait is what the admin API and the CLI use; [`SledApprovers`] is
//! the embedded implementation.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::token::{hash_token, new_token, ADMIN_TOKEN_PREFIX};
use super::validate_slug;
use crate::config::ApproverDecl;
use crate::error::{Error, Result};
use crate::model::EventSink;
use crate::time::now_rfc3339;

const APPROVERS: &str = "identity.approvers";

/// An approver as shown by the API (no token hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approver {
    pub id: String,
    pub roles: Vec<String>,
    /// `config` or `api`.
    pub source: String,
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// When the current token was issued (none yet: cannot log in).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_issued_at: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Stored {
    #[serde(flatten)]
    approver: Approver,
    #[serde(default)]
    token_sha256: Option<String>,
}

/// A request to add an approver.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApprover {
    pub id: String,
    pub roles: Vec<String>,
}

/// An approver and its new token (shown once).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IssuedApproverToken {
    pub approver: Approver,
    pub token: String,
}

#[derive(Default)]
struct State {
    approvers: HashMap<String, Stored>,
    by_hash: HashMap<String, String>,
}

/// Where approvers live (sled now, PostgreSQL later). Every change is recorded
/// (`approver.*`, naming who made it): grants of authority before they are made,
/// revocations after they are in force.
pub trait ApproverStore: Send + Sync {
    /// All approvers, by id.
    fn list(&self) -> Vec<Approver>;

    /// One approver.
    fn get(&self, id: &str) -> Option<Approver>;

    /// Adds an approver (no token yet: issue one with [`ApproverStore::issue_token`]).
    fn add(&self, new: NewApprover, by: &str) -> Result<Approver>;

    /// Issues a fresh token for `id`, replacing any previous one; the token is shown once.
    fn issue_token(&self, id: &str, by: &str) -> Result<IssuedApproverToken>;

    /// Revokes an approver: its token stops working at once. An error after that (the save
    /// or the record failed) says so; revoking again saves and records it.
    fn revoke(&self, id: &str, by: &str) -> Result<Approver>;

    /// The active approver holding `token`, if any.
    fn authenticate(&self, token: &str) -> Option<Approver>;
}

/// Approvers in sled, mirrored in memory; cheap to clone and share.
#[derive(Clone)]
pub struct SledApprovers {
    tree: sled::Tree,
    state: Arc<RwLock<State>>,
    /// Serializes changes (check, record, save, publish) so none undoes another.
    writes: Arc<std::sync::Mutex<()>>,
    sink: Option<Arc<dyn EventSink>>,
}

impl SledApprovers {
    /// Loads approvers from `db` and upserts those declared in the config.
    pub fn open(
        db: &sled::Db,
        declared: &[ApproverDecl],
        sink: Option<Arc<dyn EventSink>>,
    ) -> Result<SledApprovers> {
        let tree = db.open_tree(APPROVERS)?;
        let mut state = State::default();
        for item in tree.iter() {
            let (_, v) = item?;
            let s: Stored = serde_json::from_slice(&v)
                .map_err(|e| Error::Store(format!("corrupt record in {APPROVERS}: {e}")))?;
            if let Some(h) = &s.token_sha256 {
                state.by_hash.insert(h.clone(), s.approver.id.clone());
            }
            state.approvers.insert(s.approver.id.clone(), s);
        }
        let store = SledApprovers {
            tree,
            state: Arc::new(RwLock::new(state)),
            writes: Arc::new(std::sync::Mutex::new(())),
            sink,
        };
        for d in declared {
            store.upsert_declared(d)?;
        }
        // An approver removed from the config loses its access.
        let gone: Vec<String> = store
            .list()
            .into_iter()
            .filter(|a| a.source == "config" && a.revoked_at.is_none())
            .filter(|a| !declared.iter().any(|d| d.id == a.id))
            .map(|a| a.id)
            .collect();
        for id in gone {
            store.revoke(&id, "config")?;
        }
        Ok(store)
    }

    fn write_lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn persist(&self, s: &Stored) -> Result<()> {
        let bytes = serde_json::to_vec(s).map_err(|e| Error::Store(e.to_string()))?;
        self.tree.insert(s.approver.id.as_bytes(), bytes)?;
        self.tree.flush()?;
        Ok(())
    }

    fn emit(&self, kind: &str, data: serde_json::Value) -> Result<()> {
        crate::model::record_in(self.sink.as_ref(), kind, data)
    }

    fn upsert_declared(&self, d: &ApproverDecl) -> Result<()> {
        let _w = self.write_lock();
        let existing = self.read().approvers.get(&d.id).cloned();
        let mut s = existing.clone().unwrap_or_else(|| Stored {
            approver: Approver {
                id: d.id.clone(),
                roles: Vec::new(),
                source: "config".to_string(),
                created_at: now_rfc3339(),
                revoked_at: None,
                token_issued_at: None,
            },
            token_sha256: None,
        });
        s.approver.roles = d.roles.clone();
        s.approver.source = "config".to_string();
        // Declared means active; a revocation took its token, which stays gone.
        s.approver.revoked_at = None;
        if existing.as_ref().map(|e| &e.approver) != Some(&s.approver) {
            self.emit(
                "approver.declared",
                json!({"approver": d.id, "roles": d.roles, "source": "config", "by": "config"}),
            )?;
            self.persist(&s)?;
            self.write().approvers.insert(d.id.clone(), s);
        }
        Ok(())
    }

    fn stored(&self, id: &str) -> Result<Stored> {
        self.read()
            .approvers
            .get(id)
            .cloned()
            .ok_or_else(|| Error::NotFound {
                kind: "approver",
                id: id.to_string(),
            })
    }

    /// Makes a change visible: the record and its token index.
    fn apply(&self, s: Stored, old_token: Option<String>) -> Approver {
        let mut st = self.write();
        if let Some(o) = old_token {
            st.by_hash.remove(&o);
        }
        if let Some(h) = &s.token_sha256 {
            st.by_hash.insert(h.clone(), s.approver.id.clone());
        }
        let approver = s.approver.clone();
        st.approvers.insert(approver.id.clone(), s);
        approver
    }
}

impl ApproverStore for SledApprovers {
    fn list(&self) -> Vec<Approver> {
        let mut v: Vec<Approver> = self
            .read()
            .approvers
            .values()
            .map(|s| s.approver.clone())
            .collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn get(&self, id: &str) -> Option<Approver> {
        self.read().approvers.get(id).map(|s| s.approver.clone())
    }

    fn add(&self, new: NewApprover, by: &str) -> Result<Approver> {
        let _w = self.write_lock();
        validate_slug(&new.id).map_err(|m| Error::Invalid(format!("approver id: {m}")))?;
        if new.roles.is_empty() {
            return Err(Error::Invalid(
                "an approver needs at least one role".to_string(),
            ));
        }
        for r in &new.roles {
            validate_slug(r).map_err(|m| Error::Invalid(format!("role: {m}")))?;
        }
        if self.read().approvers.contains_key(&new.id) {
            return Err(Error::Invalid(format!(
                "approver {:?} already exists",
                new.id
            )));
        }
        let s = Stored {
            approver: Approver {
                id: new.id.clone(),
                roles: new.roles,
                source: "api".to_string(),
                created_at: now_rfc3339(),
                revoked_at: None,
                token_issued_at: None,
            },
            token_sha256: None,
        };
        self.emit(
            "approver.added",
            json!({"approver": s.approver.id, "roles": s.approver.roles, "source": "api", "by": by}),
        )?;
        self.persist(&s)?;
        let a = s.approver.clone();
        self.write().approvers.insert(a.id.clone(), s);
        Ok(a)
    }

    fn issue_token(&self, id: &str, by: &str) -> Result<IssuedApproverToken> {
        let _w = self.write_lock();
        let mut s = self.stored(id)?;
        if s.approver.revoked_at.is_some() {
            return Err(Error::Invalid(format!("approver {id:?} is revoked")));
        }
        let token = new_token(ADMIN_TOKEN_PREFIX)?;
        let old = s.token_sha256.replace(hash_token(&token));
        s.approver.token_issued_at = Some(now_rfc3339());
        self.emit(
            "approver.token_issued",
            json!({"approver": id, "replaced_previous": old.is_some(), "by": by}),
        )?;
        self.persist(&s)?;
        let approver = self.apply(s, old);
        Ok(IssuedApproverToken { approver, token })
    }

    fn revoke(&self, id: &str, by: &str) -> Result<Approver> {
        let _w = self.write_lock();
        let mut s = self.stored(id)?;
        if s.approver.revoked_at.is_none() {
            s.approver.revoked_at = Some(now_rfc3339());
        }
        let old = s.token_sha256.take();
        // Taking authority away never waits for the record: in force first (memory, then
        // disk), then recorded; a failed record is reported, the revocation stands.
        let approver = self.apply(s.clone(), old);
        self.persist(&s)
            .and_then(|()| self.emit("approver.revoked", json!({"approver": id, "by": by})))
            .map_err(|e| super::revocation::unfinished_error("approver", id, e))?;
        Ok(approver)
    }

    fn authenticate(&self, token: &str) -> Option<Approver> {
        let st = self.read();
        let id = st.by_hash.get(&hash_token(token))?;
        let s = st.approvers.get(id)?;
        s.approver.revoked_at.is_none().then(|| s.approver.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn db() -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path().join("db")).unwrap();
        (dir, db)
    }

    #[test]
    fn tokens_are_hashed_replaced_and_revoked() {
        let (_d, db) = db();
        let decl = [ApproverDecl {
            id: "bob".into(),
            roles: vec!["release-approver".into()],
        }];
        let store = SledApprovers::open(&db, &decl, None).unwrap();
        assert!(store.get("bob").is_some());
        let t1 = store.issue_token("bob", "admin").unwrap().token;
        assert_eq!(store.authenticate(&t1).unwrap().id, "bob");
        let t2 = store.issue_token("bob", "admin").unwrap().token;
        assert!(store.authenticate(&t1).is_none(), "old token replaced");
        assert!(store.authenticate(&t2).is_some());
        // Not stored in clear.
        for item in db.open_tree(APPROVERS).unwrap().iter() {
            let (_, v) = item.unwrap();
            assert!(!String::from_utf8_lossy(&v).contains(&t2));
        }
        // Survives a reopen.
        let again = SledApprovers::open(&db, &decl, None).unwrap();
        assert_eq!(again.authenticate(&t2).unwrap().id, "bob");
        again.revoke("bob", "admin").unwrap();
        assert!(again.authenticate(&t2).is_none());
        assert!(again.issue_token("bob", "admin").is_err());
        // Removed from the config: revoked; declared again: active, but with no token until
        // a new one is issued.
        let back = SledApprovers::open(&db, &decl, None).unwrap();
        let t3 = back.issue_token("bob", "admin").unwrap().token;
        let without = SledApprovers::open(&db, &[], None).unwrap();
        assert!(without.authenticate(&t3).is_none());
        assert!(without.get("bob").unwrap().revoked_at.is_some());
        let redeclared = SledApprovers::open(&db, &decl, None).unwrap();
        assert!(redeclared.authenticate(&t3).is_none());
        assert!(redeclared.get("bob").unwrap().revoked_at.is_none());
    }

    #[test]
    fn added_through_the_api_with_validation() {
        let (_d, db) = db();
        let store = SledApprovers::open(&db, &[], None).unwrap();
        let a = store
            .add(
                NewApprover {
                    id: "carol".into(),
                    roles: vec!["release-approver".into()],
                },
                "admin",
            )
            .unwrap();
        assert_eq!(a.source, "api");
        assert!(store
            .add(
                NewApprover {
                    id: "carol".into(),
                    roles: vec!["x".into()]
                },
                "admin"
            )
            .is_err());
        assert!(store
            .add(
                NewApprover {
                    id: "Bad Id".into(),
                    roles: vec!["x".into()]
                },
                "admin"
            )
            .is_err());
        assert!(store
            .add(
                NewApprover {
                    id: "dave".into(),
                    roles: vec![]
                },
                "admin"
            )
            .is_err());
        assert!(store.authenticate("cla_unknown").is_none());
    }

    /// A ledger that fails from the moment it is told to.
    #[derive(Default)]
    struct Flaky(std::sync::atomic::AtomicBool);

    impl EventSink for Flaky {
        fn record(&self, kind: &str, _data: serde_json::Value) -> Result<u64> {
            if self.0.load(std::sync::atomic::Ordering::SeqCst) {
                return Err(Error::Store(format!("cannot record {kind}")));
            }
            Ok(0)
        }
    }

    #[test]
    fn unrecorded_tokens_are_refused_revocations_stand() {
        let (_dir, db) = db();
        let sink = Arc::new(Flaky::default());
        let store = SledApprovers::open(&db, &[], Some(sink.clone())).unwrap();
        let bob = NewApprover {
            id: "bob".into(),
            roles: vec!["release-approver".into()],
        };
        store.add(bob, "admin").unwrap();
        let token = store.issue_token("bob", "admin").unwrap().token;
        sink.0.store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(store.issue_token("bob", "admin").is_err());
        assert!(
            store.authenticate(&token).is_some(),
            "an unrecorded token replaces nothing"
        );
        let e = store.revoke("bob", "admin").unwrap_err().to_string();
        assert!(
            e.contains("refused from now on") && e.contains("revoke it again"),
            "{e}"
        );
        assert!(
            store.authenticate(&token).is_none(),
            "the revocation is in force"
        );
        let again = SledApprovers::open(&db, &[], None).unwrap();
        assert!(
            again.authenticate(&token).is_none(),
            "and survives a restart"
        );
    }
}
