//! The approval rules, with explicit times (no sleeping).

use std::sync::{Arc, Mutex};

use time::{Duration, OffsetDateTime};

use super::*;
use crate::model::{EventSink, Reason};

#[derive(Default)]
struct Events(Mutex<Vec<String>>);

impl EventSink for Events {
    fn record(&self, kind: &str, _data: serde_json::Value) -> crate::error::Result<u64> {
        let mut v = self.0.lock().unwrap();
        v.push(kind.to_string());
        Ok(v.len() as u64)
    }
}

pub(super) fn new_approval(count: u32) -> NewApproval {
    NewApproval {
        fingerprint: fingerprint(
            "oc-1",
            Some("job_1"),
            "PUT",
            "https://api.github.com:443/repos/acme/api/pulls/7/merge",
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
            &[],
        ),
        request: ReviewedRequest {
            method: "PUT".into(),
            url: "https://api.github.com:443/repos/acme/api/pulls/7/merge".into(),
            body_size: Some(2),
            body_preview: None,
            headers: Vec::new(),
            body_sha256: "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a".into(),
        },
        agent: "oc-1".into(),
        env: Some("production".into()),
        on_behalf_of: "alice".into(),
        runtime: "openclaw".into(),
        job: Some("job_1".into()),
        reasons: vec![Reason::new("production_write", "needs a release approver")],
        required: Required {
            role: "release-approver".into(),
            count,
        },
        intent: Some("ship 1.4".into()),
        evidence: None,
        allow_self_approval: false,
        request_id: "req_0".into(),
    }
}

pub(super) fn approver(id: &str) -> ApproverRef {
    ApproverRef {
        id: id.into(),
        roles: vec!["release-approver".into()],
    }
}

fn store() -> (tempfile::TempDir, sled::Db, SledApprovals, Arc<Events>) {
    let d = tempfile::tempdir().unwrap();
    let db = sled::open(d.path().join("db")).unwrap();
    let events = Arc::new(Events::default());
    let s = SledApprovals::open(
        &db,
        std::time::Duration::from_secs(3600),
        100,
        Some(events.clone()),
    )
    .unwrap();
    (d, db, s, events)
}

const T0: OffsetDateTime = OffsetDateTime::UNIX_EPOCH;

pub(super) fn t0() -> OffsetDateTime {
    T0 + Duration::days(20_000)
}

#[test]
fn two_of_m_needs_two_distinct_approvers() {
    let (_d, _db, s, events) = store();
    let a = s.create(new_approval(2), t0()).unwrap();
    assert_eq!(a.state, ApprovalState::Pending);
    let a1 = s
        .decide(&a.id, &approver("bob"), Verdict::Approve, "ok", t0())
        .unwrap();
    assert_eq!(a1.state, ApprovalState::Pending);
    assert!(matches!(
        s.decide(&a.id, &approver("bob"), Verdict::Approve, "again", t0()),
        Err(DecideError::AlreadyDecided(_))
    ));
    let a2 = s
        .decide(&a.id, &approver("carol"), Verdict::Approve, "ok", t0())
        .unwrap();
    assert_eq!(a2.state, ApprovalState::Approved);
    assert_eq!(a2.decisions.len(), 2);
    assert!(matches!(
        s.decide(&a.id, &approver("dave"), Verdict::Approve, "late", t0()),
        Err(DecideError::NotPending(ApprovalState::Approved))
    ));
    assert_eq!(
        *events.0.lock().unwrap(),
        ["approval.created", "approval.decided", "approval.decided"]
    );
}

#[test]
fn any_deny_refuses() {
    let (_d, _db, s, _) = store();
    let a = s.create(new_approval(2), t0()).unwrap();
    s.decide(&a.id, &approver("bob"), Verdict::Approve, "ok", t0())
        .unwrap();
    let d = s
        .decide(&a.id, &approver("carol"), Verdict::Deny, "not today", t0())
        .unwrap();
    assert_eq!(d.state, ApprovalState::Denied);
    assert_eq!(d.decisions[1].reason, "not today");
}

#[test]
fn self_approval_and_missing_roles_are_refused() {
    let (_d, _db, s, _) = store();
    let a = s.create(new_approval(1), t0()).unwrap();
    assert!(matches!(
        s.decide(&a.id, &approver("alice"), Verdict::Approve, "mine", t0()),
        Err(DecideError::SelfApproval)
    ));
    let nobody = ApproverRef {
        id: "eve".into(),
        roles: vec!["dev".into()],
    };
    assert!(matches!(
        s.decide(&a.id, &nobody, Verdict::Approve, "", t0()),
        Err(DecideError::MissingRole(_))
    ));
    // The policy may allow it.
    let mut allowed = new_approval(1);
    allowed.allow_self_approval = true;
    let b = s.create(allowed, t0()).unwrap();
    assert_eq!(
        s.decide(&b.id, &approver("alice"), Verdict::Approve, "mine", t0())
            .unwrap()
            .state,
        ApprovalState::Approved
    );
}

#[test]
fn an_approval_releases_its_request_once_and_no_other() {
    let (_d, _db, s, _) = store();
    let a = s.create(new_approval(1), t0()).unwrap();
    assert!(
        s.consume(&a.fingerprint, None, &need(), "req_1", t0())
            .unwrap()
            .is_none(),
        "pending is not consumable"
    );
    s.decide(&a.id, &approver("bob"), Verdict::Approve, "ok", t0())
        .unwrap();
    let other = fingerprint(
        "oc-1",
        Some("job_1"),
        "PUT",
        "https://api.github.com:443/repos/acme/api/pulls/8/merge",
        &a.request.body_sha256,
        &[],
    );
    assert!(s
        .consume(&other, None, &need(), "req_1", t0())
        .unwrap()
        .is_none());
    let used = s
        .consume(&a.fingerprint, None, &need(), "req_1", t0())
        .unwrap()
        .unwrap();
    assert_eq!(used.state, ApprovalState::Consumed);
    assert!(
        s.consume(&a.fingerprint, None, &need(), "req_1", t0())
            .unwrap()
            .is_none(),
        "only once"
    );
}

#[test]
fn approvals_expire() {
    let (_d, _db, s, _) = store();
    let a = s.create(new_approval(1), t0()).unwrap();
    let later = t0() + Duration::hours(2);
    assert!(matches!(
        s.decide(&a.id, &approver("bob"), Verdict::Approve, "", later),
        Err(DecideError::Expired)
    ));
    assert_eq!(s.get(&a.id).unwrap().state, ApprovalState::Expired);
    let b = s.create(new_approval(1), t0()).unwrap();
    s.decide(&b.id, &approver("bob"), Verdict::Approve, "", t0())
        .unwrap();
    assert!(
        s.consume(&b.fingerprint, None, &need(), "req_1", later)
            .unwrap()
            .is_none(),
        "an approval past its TTL releases nothing"
    );
    assert_eq!(s.expire(later).unwrap().len(), 1);
}

#[test]
fn pending_approvals_survive_a_restart() {
    let (d, db, s, _) = store();
    let a = s.create(new_approval(1), t0()).unwrap();
    drop(s);
    drop(db);
    let db = crate::testutil::reopen_sled(&d.path().join("db"));
    let s = SledApprovals::open(&db, std::time::Duration::from_secs(3600), 100, None).unwrap();
    let again = s.get(&a.id).unwrap();
    assert_eq!(again.state, ApprovalState::Pending);
    assert_eq!(s.list(Some(ApprovalState::Pending)).len(), 1);
    assert_eq!(
        s.decide(&a.id, &approver("bob"), Verdict::Approve, "", t0())
            .unwrap()
            .state,
        ApprovalState::Approved
    );
}

#[tokio::test]
async fn a_waiting_request_sees_the_decision() {
    let (_d, _db, s, _) = store();
    let a = s.create(new_approval(1), t0()).unwrap();
    let mut rx = s.subscribe(&a.id).unwrap();
    let s2 = s.clone();
    let id = a.id.clone();
    tokio::spawn(async move {
        s2.decide(&id, &approver("bob"), Verdict::Approve, "go", t0())
            .unwrap();
    });
    rx.changed().await.unwrap();
    assert_eq!(*rx.borrow(), ApprovalState::Approved);
}

fn need() -> Requirement {
    Requirement {
        role: "release-approver".into(),
        count: 1,
        self_approval: false,
    }
}

#[test]
fn identical_requests_join_one_pending_approval_up_to_a_limit() {
    let d = tempfile::tempdir().unwrap();
    let db = sled::open(d.path().join("db")).unwrap();
    let s = SledApprovals::open(&db, std::time::Duration::from_secs(3600), 2, None).unwrap();
    let first = s.open_for(new_approval(1), t0()).unwrap();
    assert!(matches!(first, Opened::Created(_)));
    let again = s.open_for(new_approval(1), t0()).unwrap();
    assert!(matches!(again, Opened::Joined(_)));
    assert_eq!(again.approval().id, first.approval().id);
    let mut other = new_approval(1);
    other.fingerprint = "f2".into();
    assert!(matches!(
        s.open_for(other, t0()).unwrap(),
        Opened::Created(_)
    ));
    let mut third = new_approval(1);
    third.fingerprint = "f3".into();
    assert!(matches!(
        s.open_for(third, t0()),
        Err(OpenError::TooManyPending { max: 2, .. })
    ));
}

#[test]
fn an_approval_releases_only_what_the_policy_requires_now() {
    let (_d, _db, s, _) = store();
    let mut selfish = new_approval(1);
    selfish.allow_self_approval = true;
    let a = s.create(selfish, t0()).unwrap();
    s.decide(&a.id, &approver("alice"), Verdict::Approve, "mine", t0())
        .unwrap();
    // The policy no longer allows self-approval: alice's own approval does not count.
    assert!(s
        .consume(&a.fingerprint, None, &need(), "req_2", t0())
        .unwrap()
        .is_none());
    // Nor does an approval for another role, or fewer approvers than now required.
    let mut other_role = need();
    other_role.self_approval = true;
    other_role.role = "sre".into();
    assert!(s
        .consume(&a.fingerprint, None, &other_role, "req_2", t0())
        .unwrap()
        .is_none());
    let mut two = need();
    two.self_approval = true;
    two.count = 2;
    assert!(s
        .consume(&a.fingerprint, None, &two, "req_2", t0())
        .unwrap()
        .is_none());
    let mut same = need();
    same.self_approval = true;
    assert!(s
        .consume(&a.fingerprint, None, &same, "req_2", t0())
        .unwrap()
        .is_some());
}

#[test]
fn ended_approvals_are_pruned_after_retention_and_indexes_follow() {
    let (_d, db, s, events) = store();
    let week = std::time::Duration::from_secs(7 * 86_400);
    // One consumed, one denied, one still pending.
    let a = s.create(new_approval(1), t0()).unwrap();
    s.decide(&a.id, &approver("bob"), Verdict::Approve, "ok", t0())
        .unwrap();
    s.consume(&a.fingerprint, None, &need(), "req_1", t0())
        .unwrap()
        .unwrap();
    let mut other = new_approval(1);
    other.fingerprint = "fp-denied".into();
    let b = s.create(other, t0()).unwrap();
    s.decide(&b.id, &approver("bob"), Verdict::Deny, "no", t0())
        .unwrap();
    let mut third = new_approval(1);
    third.fingerprint = "fp-pending".into();
    let c = s.create(third, t0()).unwrap();
    let recorded = events.0.lock().unwrap().len();

    assert_eq!(
        s.prune(t0() + Duration::days(6), week).unwrap(),
        0,
        "too young"
    );
    assert_eq!(s.prune(t0() + Duration::days(8), week).unwrap(), 2);
    assert!(s.get(&a.id).is_none() && s.get(&b.id).is_none());
    assert_eq!(
        s.get(&c.id).unwrap().state,
        ApprovalState::Pending,
        "pending stays"
    );
    assert_eq!(
        events.0.lock().unwrap().len(),
        recorded,
        "pruning rewrites no history"
    );
    // Gone from sled too, and the indexes: a new identical request opens a new approval.
    let reopened =
        SledApprovals::open(&db, std::time::Duration::from_secs(3600), 100, None).unwrap();
    assert!(reopened.get(&a.id).is_none());
    assert!(matches!(
        s.open_for(new_approval(1), t0() + Duration::days(8))
            .unwrap(),
        Opened::Created(_)
    ));
}

#[test]
fn the_pending_count_per_agent_follows_state_changes() {
    let (_d, db, _, _) = store();
    let limited = SledApprovals::open(&db, std::time::Duration::from_secs(3600), 2, None).unwrap();
    let mut ids = Vec::new();
    for i in 0..2 {
        let mut n = new_approval(1);
        n.fingerprint = format!("fp-{i}");
        ids.push(limited.open_for(n, t0()).unwrap().approval().id.clone());
    }
    let mut n = new_approval(1);
    n.fingerprint = "fp-2".into();
    assert!(matches!(
        limited.open_for(n.clone(), t0()),
        Err(OpenError::TooManyPending { .. })
    ));
    limited
        .decide(&ids[0], &approver("bob"), Verdict::Deny, "no", t0())
        .unwrap();
    assert!(
        limited.open_for(n, t0()).is_ok(),
        "a decided approval frees its place"
    );
}
