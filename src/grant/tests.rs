//! Grant store behaviour: counting under concurrency, expiry on a paused clock,
//! revocation, handoff, reconciliation with the ledger.

use std::collections::HashMap;
use std::sync::Arc;

use super::*;
use crate::identity::{NewAgent, NewJob};

fn identity() -> crate::identity::SledIdentity {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let s = crate::identity::SledIdentity::open(db, &[]).unwrap();
    for (id, rt) in [("oc-1", "openclaw"), ("hermes-2", "hermes")] {
        s.add_agent(NewAgent {
            id: id.into(),
            runtime: rt.into(),
            on_behalf_of: Some("alice".into()),
            roles: vec!["dev".into()],
            labels: Default::default(),
        })
        .unwrap();
    }
    s
}

fn store() -> Arc<SledGrants> {
    let db = sled::Config::new().temporary(true).open().unwrap();
    Arc::new(SledGrants::open(db, None).unwrap())
}

fn new_for_agent(agent: &str) -> NewGrant {
    NewGrant {
        agent: Some(agent.into()),
        hosts: vec!["api.github.com".into()],
        actions: vec!["deploy".into()],
        ..Default::default()
    }
}

fn touches() -> Touches<'static> {
    Touches {
        host: "api.github.com",
        repo: Some("acme/api"),
        env: "staging",
    }
}

#[test]
fn concurrent_reservations_never_exceed_max_uses() {
    let id = identity();
    let grants = store();
    let now = time::OffsetDateTime::now_utc();
    let mut new = new_for_agent("oc-1");
    new.max_uses = Some(3);
    let g = grants
        .insert(build(new, "admin", "api", &id, &[], now).unwrap())
        .unwrap();
    let dyn_store: Arc<dyn GrantStore> = grants.clone();
    let handles: Vec<_> = (0..10)
        .map(|_| {
            let s = dyn_store.clone();
            let gid = g.id.clone();
            std::thread::spawn(move || {
                Reservation::take(s, vec![gid], now)
                    .ok()
                    .map(|r| r.commit().len())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_some()).count(), 3);
    // Exactly one commit reported the exhaustion.
    assert_eq!(results.iter().flatten().sum::<usize>(), 1);
    let after = grants.get(&g.id).unwrap();
    assert_eq!(after.uses, 3);
    assert_eq!(after.state(now, 0), GrantState::Exhausted);
}

#[test]
fn a_refunded_reservation_is_not_a_use() {
    let id = identity();
    let grants = store();
    let now = time::OffsetDateTime::now_utc();
    let mut new = new_for_agent("oc-1");
    new.max_uses = Some(1);
    let g = grants
        .insert(build(new, "admin", "api", &id, &[], now).unwrap())
        .unwrap();
    let s: Arc<dyn GrantStore> = grants.clone();
    let r = Reservation::take(s.clone(), vec![g.id.clone()], now).unwrap();
    // While reserved, nobody else can spend the last use.
    assert!(Reservation::take(s.clone(), vec![g.id.clone()], now).is_err());
    drop(r); // the ledger append failed: refunded
    assert_eq!(grants.get(&g.id).unwrap().uses, 0);
    assert!(Reservation::take(s, vec![g.id.clone()], now).is_ok());
}

#[tokio::test(start_paused = true)]
async fn grants_expire_on_the_clock() {
    let clock = TokioClock::new();
    let id = identity();
    let grants = store();
    let mut new = new_for_agent("oc-1");
    new.expires = Some("2h".into());
    let g = grants
        .insert(build(new, "admin", "api", &id, &[], clock.now()).unwrap())
        .unwrap();
    let roles = vec!["dev".to_string()];
    let who = Holder {
        agent: "oc-1",
        roles: &roles,
        job: None,
    };
    assert_eq!(grants.applicable(&who, &touches(), clock.now()).len(), 1);
    tokio::time::advance(std::time::Duration::from_secs(7199)).await;
    assert_eq!(grants.applicable(&who, &touches(), clock.now()).len(), 1);
    tokio::time::advance(std::time::Duration::from_secs(2)).await;
    assert!(grants.applicable(&who, &touches(), clock.now()).is_empty());
    let ended = grants.sweep(clock.now()).unwrap();
    assert_eq!(ended.len(), 1);
    assert!(ended[0].ended.as_deref().unwrap().starts_with("expired"));
    // Recorded once.
    assert!(grants.sweep(clock.now()).unwrap().is_empty());
    assert!(grants.get(&g.id).unwrap().ended.is_some());
}

#[test]
fn revocation_and_handoff() {
    let id = identity();
    let grants = store();
    let now = time::OffsetDateTime::now_utc();
    let job = id
        .start_job(NewJob {
            agent: "oc-1".into(),
            title: "release".into(),
        })
        .unwrap()
        .job;
    let g = grants
        .insert(
            build(
                NewGrant {
                    job: Some(job.id.clone()),
                    ..Default::default()
                },
                "admin",
                "api",
                &id,
                &[],
                now,
            )
            .unwrap(),
        )
        .unwrap();
    let roles = vec!["dev".to_string()];
    let as_holder = |agent: &'static str, holder: String| {
        let who = Holder {
            agent,
            roles: &roles,
            job: Some((job.id.as_str(), holder.as_str())),
        };
        grants.applicable(&who, &touches(), now).len()
    };
    assert_eq!(as_holder("oc-1", "oc-1".into()), 1);
    let handed = id.handoff_job(&job.id, "hermes-2").unwrap().job;
    let now_holder = handed.current_holder().to_string();
    assert_eq!(as_holder("oc-1", now_holder.clone()), 0, "A lost it");
    assert_eq!(as_holder("hermes-2", now_holder.clone()), 1, "B has it");
    grants.revoke(&g.id, "admin").unwrap();
    assert_eq!(as_holder("hermes-2", now_holder), 0);
}

#[test]
fn bad_grants_are_refused() {
    let id = identity();
    let now = time::OffsetDateTime::now_utc();
    let bad = [
        NewGrant::default(),
        NewGrant {
            agent: Some("oc-1".into()),
            role: Some("dev".into()),
            ..Default::default()
        },
        NewGrant {
            agent: Some("nobody".into()),
            ..Default::default()
        },
        NewGrant {
            agent: Some("oc-1".into()),
            secret: Some("unknown".into()),
            ..Default::default()
        },
        NewGrant {
            agent: Some("oc-1".into()),
            max_uses: Some(0),
            ..Default::default()
        },
        NewGrant {
            agent: Some("oc-1".into()),
            expires: Some("soon".into()),
            ..Default::default()
        },
        NewGrant {
            agent: Some("oc-1".into()),
            hosts: vec!["evil host".into()],
            ..Default::default()
        },
    ];
    for (i, b) in bad.into_iter().enumerate() {
        assert!(build(b, "admin", "api", &id, &[], now).is_err(), "case {i}");
    }
}

#[test]
fn reconcile_raises_counts_from_the_ledger() {
    let id = identity();
    let grants = store();
    let now = time::OffsetDateTime::now_utc();
    let g = grants
        .insert(build(new_for_agent("oc-1"), "admin", "api", &id, &[], now).unwrap())
        .unwrap();
    let mut counted = HashMap::new();
    counted.insert(g.id.clone(), 4);
    counted.insert("grt_gone".to_string(), 9);
    grants.reconcile(&counted).unwrap();
    assert_eq!(grants.get(&g.id).unwrap().uses, 4);
}

/// A ledger that fails while told to, and keeps what it recorded.
#[derive(Default)]
struct Flaky(std::sync::atomic::AtomicBool, std::sync::Mutex<Vec<String>>);

impl crate::model::EventSink for Flaky {
    fn record(&self, kind: &str, _data: serde_json::Value) -> crate::error::Result<u64> {
        if self.0.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(crate::error::Error::Store(format!("cannot record {kind}")));
        }
        let mut v = self.1.lock().unwrap();
        v.push(kind.to_string());
        Ok(v.len() as u64)
    }
}

/// A grant the ledger cannot record is not issued (not even after a restart); a revocation
/// is in force at once, and the retry after a failed record finishes it, recorded once.
#[test]
fn grants_are_recorded_before_they_exist_and_revocations_finish_on_retry() {
    let dir = tempfile::tempdir().unwrap();
    let id = identity();
    let now = time::OffsetDateTime::now_utc();
    let sink = Arc::new(Flaky::default());
    let fail = |yes: bool| sink.0.store(yes, std::sync::atomic::Ordering::SeqCst);
    let revoked = sink.clone();
    let count = move || {
        revoked
            .1
            .lock()
            .unwrap()
            .iter()
            .filter(|k| *k == "grant.revoked")
            .count()
    };
    let kept = {
        let grants = SledGrants::open(sled::open(dir.path()).unwrap(), Some(sink.clone())).unwrap();
        let kept = grants
            .insert(build(new_for_agent("oc-1"), "admin", "api", &id, &[], now).unwrap())
            .unwrap();
        fail(true);
        let refused = build(new_for_agent("oc-1"), "admin", "api", &id, &[], now).unwrap();
        let refused_id = refused.id.clone();
        assert!(grants.insert(refused).is_err());
        assert!(
            grants.get(&refused_id).is_none(),
            "an unrecorded grant is not issued"
        );
        let e = grants.revoke(&kept.id, "admin").unwrap_err().to_string();
        assert!(
            e.contains("refused from now on") && e.contains("revoke it again"),
            "{e}"
        );
        assert_eq!(
            grants.get(&kept.id).unwrap().state(now, 0),
            GrantState::Revoked
        );
        assert_eq!(count(), 0);
        fail(false);
        grants.revoke(&kept.id, "admin").unwrap();
        assert_eq!(count(), 1, "the retry records it");
        grants.revoke(&kept.id, "admin").unwrap();
        assert_eq!(count(), 1, "finished: not recorded again");
        kept
    };
    let grants = SledGrants::open(crate::testutil::reopen_sled(dir.path()), None).unwrap();
    assert_eq!(
        grants.list().len(),
        1,
        "only the recorded grant exists after a restart"
    );
    assert!(grants.get(&kept.id).unwrap().revoked_at.is_some());
}
