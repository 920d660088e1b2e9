//! The embedded identity store: declared agents, hashed credentials, jobs across handoffs,
//! reopening, and what happens when the ledger cannot record a change.

use std::sync::Arc;

use super::token::hash_token;
use super::*;
use crate::config::AgentDecl;

fn store() -> SledIdentity {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let decl = AgentDecl {
        id: "oc-1".into(),
        runtime: "openclaw".into(),
        on_behalf_of: "alice".into(),
        roles: vec!["dev".into()],
        labels: Default::default(),
    };
    SledIdentity::open(db, &[decl]).unwrap()
}

#[test]
fn declared_agents_are_loaded() {
    let s = store();
    let a = s.agent("oc-1").unwrap();
    assert_eq!(a.on_behalf_of, "alice");
    assert_eq!(a.source, "config");
}

#[test]
fn credentials_are_stored_hashed_and_revocable() {
    let s = store();
    let issued = s.issue_credential("oc-1", None).unwrap();
    let c = s.credential_by_hash(&hash_token(&issued.token)).unwrap();
    assert_eq!(c.id, issued.credential_id);
    assert_ne!(c.token_sha256, issued.token);
    s.revoke_credential(&c.id).unwrap();
    assert!(s.credential(&c.id).unwrap().revoked_at.is_some());
}

#[test]
fn jobs_follow_handoffs() {
    let s = store();
    s.add_agent(NewAgent {
        id: "hermes-2".into(),
        runtime: "hermes".into(),
        on_behalf_of: Some("alice".into()),
        roles: vec![],
        labels: Default::default(),
    })
    .unwrap();
    let started = s
        .start_job(NewJob {
            agent: "oc-1".into(),
            title: "release 1.4".into(),
        })
        .unwrap();
    assert_eq!(
        started.credential.job.as_deref(),
        Some(started.job.id.as_str())
    );
    let h = s.handoff_job(&started.job.id, "hermes-2").unwrap();
    assert_eq!(h.job.agents, vec!["oc-1", "hermes-2"]);
    assert_eq!(h.job.handoffs[0].from, "oc-1");
    assert_eq!(h.credential.agent, "hermes-2");
    // An agent that is not on the job cannot get a credential for it.
    s.add_agent(NewAgent {
        id: "codex-3".into(),
        runtime: "codex".into(),
        on_behalf_of: None,
        roles: vec![],
        labels: Default::default(),
    })
    .unwrap();
    assert!(s.issue_credential("codex-3", Some(&h.job.id)).is_err());
}

#[test]
fn bad_agents_are_refused() {
    let s = store();
    let mk = |id: &str, rt: &str| NewAgent {
        id: id.into(),
        runtime: rt.into(),
        on_behalf_of: None,
        roles: vec![],
        labels: Default::default(),
    };
    assert!(s.add_agent(mk("oc-1", "other")).is_err(), "duplicate");
    assert!(s.add_agent(mk("Bad Id", "other")).is_err());
    assert!(s.add_agent(mk("ok", "emacs")).is_err());
    s.revoke_agent("oc-1").unwrap();
    assert!(s.issue_credential("oc-1", None).is_err());
}

#[test]
fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let issued = {
        let db = sled::open(dir.path()).unwrap();
        let s = SledIdentity::open(db, &[]).unwrap();
        s.add_agent(NewAgent {
            id: "a".into(),
            runtime: "codex".into(),
            on_behalf_of: None,
            roles: vec![],
            labels: Default::default(),
        })
        .unwrap();
        s.issue_credential("a", None).unwrap()
    };
    let s = SledIdentity::open(crate::testutil::reopen_sled(dir.path()), &[]).unwrap();
    assert!(s.credential_by_hash(&hash_token(&issued.token)).is_some());
}

/// A ledger that can be made to fail; it keeps what it recorded.
#[derive(Default)]
struct Flaky(
    std::sync::atomic::AtomicBool,
    std::sync::Mutex<Vec<(String, serde_json::Value)>>,
);

impl Flaky {
    fn fail(&self, yes: bool) {
        self.0.store(yes, std::sync::atomic::Ordering::SeqCst);
    }

    fn recorded(&self, kind: &str) -> Vec<serde_json::Value> {
        let all = self.1.lock().unwrap();
        all.iter()
            .filter(|(k, _)| k == kind)
            .map(|(_, d)| d.clone())
            .collect()
    }
}

impl crate::model::EventSink for Flaky {
    fn record(&self, kind: &str, data: serde_json::Value) -> crate::error::Result<u64> {
        if self.0.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crate::error::Error::Store(format!("cannot record {kind}")));
        }
        let mut all = self.1.lock().unwrap();
        all.push((kind.to_string(), data));
        Ok(all.len() as u64)
    }
}

fn new_agent(id: &str) -> NewAgent {
    NewAgent {
        id: id.into(),
        runtime: "codex".into(),
        on_behalf_of: None,
        roles: vec![],
        labels: Default::default(),
    }
}

/// Authority is not given unless it is recorded (nothing stored, nothing usable, also
/// after a restart); authority is taken away even when the record fails (the error is
/// reported, the revocation stands).
#[test]
fn unrecorded_grants_of_authority_are_refused_revocations_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let sink = Arc::new(Flaky::default());
    let (issued, job) = {
        let s =
            SledIdentity::open_recorded(sled::open(dir.path()).unwrap(), &[], Some(sink.clone()))
                .unwrap();
        s.add_agent(new_agent("a")).unwrap();
        let issued = s.issue_credential("a", None).unwrap();
        let job = s
            .start_job(NewJob {
                agent: "a".into(),
                title: "t".into(),
            })
            .unwrap();
        sink.fail(true);
        assert!(s.add_agent(new_agent("b")).is_err());
        assert!(s.agent("b").is_none(), "an unrecorded agent is not added");
        let before = s.credentials(Some("a")).len();
        assert!(s.issue_credential("a", None).is_err());
        assert_eq!(
            s.credentials(Some("a")).len(),
            before,
            "no unrecorded credential"
        );
        assert!(s
            .start_job(NewJob {
                agent: "a".into(),
                title: "u".into(),
            })
            .is_err());
        assert_eq!(s.jobs().len(), 1, "no unrecorded job");
        assert!(s.handoff_job(&job.job.id, "a").is_err());
        assert_eq!(
            s.job(&job.job.id).unwrap().handoffs.len(),
            0,
            "no unrecorded handoff"
        );
        // Revoking while the ledger fails: reported, and in force at once.
        assert!(s.revoke_credential(&issued.credential_id).is_err());
        assert!(s
            .credential(&issued.credential_id)
            .unwrap()
            .revoked_at
            .is_some());
        assert!(s.revoke_agent("a").is_err());
        assert!(s.agent("a").unwrap().revoked_at.is_some());
        (issued, job)
    };
    let s = SledIdentity::open(crate::testutil::reopen_sled(dir.path()), &[]).unwrap();
    assert!(s.agent("b").is_none());
    assert_eq!(s.jobs().len(), 1);
    assert_eq!(s.job(&job.job.id).unwrap().handoffs.len(), 0);
    let c = s.credential_by_hash(&hash_token(&issued.token)).unwrap();
    assert!(
        c.revoked_at.is_some(),
        "the revocation survived the restart"
    );
    assert!(s.agent("a").unwrap().revoked_at.is_some());
    assert_eq!(
        s.credentials(Some("a")).len(),
        2,
        "no unrecorded credential on disk"
    );
}

/// A revocation whose record failed is finished by revoking again (one entry, dated when
/// it took effect); a finished one is not recorded twice.
#[test]
fn a_failed_revocation_is_finished_by_the_retry() {
    let sink = Arc::new(Flaky::default());
    let db = sled::Config::new().temporary(true).open().unwrap();
    let s = SledIdentity::open_recorded(db, &[], Some(sink.clone())).unwrap();
    s.add_agent(new_agent("a")).unwrap();
    let cred = s.issue_credential("a", None).unwrap();
    sink.fail(true);
    let e = s.revoke_agent("a").unwrap_err().to_string();
    assert!(
        e.contains("is revoked and refused from now on") && e.contains("revoke it again"),
        "{e}"
    );
    assert!(s.revoke_credential(&cred.credential_id).is_err());
    let at = s.agent("a").unwrap().revoked_at.clone();
    sink.fail(false);
    assert!(sink.recorded("agent.revoked").is_empty());
    s.revoke_agent("a").unwrap();
    s.revoke_credential(&cred.credential_id).unwrap();
    let entries = sink.recorded("agent.revoked");
    assert_eq!(entries.len(), 1, "the retry records it");
    assert_eq!(
        entries[0]["revoked_at"].as_str(),
        at.as_deref(),
        "dated when it took effect"
    );
    assert_eq!(sink.recorded("credential.revoked").len(), 1);
    s.revoke_agent("a").unwrap();
    s.revoke_credential(&cred.credential_id).unwrap();
    assert_eq!(
        sink.recorded("agent.revoked").len(),
        1,
        "finished: not recorded again"
    );
    assert_eq!(sink.recorded("credential.revoked").len(), 1);
}

/// A handoff names the agent that held the job (the last receiver), also when the job comes
/// back to an agent that had it before.
#[test]
fn handoffs_name_the_current_holder() {
    let sink = Arc::new(Flaky::default());
    let db = sled::Config::new().temporary(true).open().unwrap();
    let s = SledIdentity::open_recorded(db, &[], Some(sink.clone())).unwrap();
    for id in ["a", "b", "c"] {
        s.add_agent(new_agent(id)).unwrap();
    }
    let job = s
        .start_job(NewJob {
            agent: "a".into(),
            title: "t".into(),
        })
        .unwrap()
        .job
        .id;
    for to in ["b", "a", "c"] {
        s.handoff_job(&job, to).unwrap();
    }
    let froms: Vec<_> = s
        .job(&job)
        .unwrap()
        .handoffs
        .iter()
        .map(|h| h.from.clone())
        .collect();
    assert_eq!(froms, ["a", "b", "a"]);
    let recorded: Vec<_> = sink
        .recorded("job.handed_off")
        .iter()
        .map(|d| {
            (
                d["from"].as_str().unwrap().to_string(),
                d["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        recorded,
        [
            ("a".into(), "b".into()),
            ("b".into(), "a".into()),
            ("a".into(), "c".into())
        ]
    );
    assert_eq!(s.job(&job).unwrap().agents, ["a", "b", "c"]);
}
