//! The approval rules, the same whichever store holds the approvals: how a new approval
//! looks, what an approver's verdict does to one, which approvals a retry may join or
//! consume, when an ended one may be pruned, and what the ledger records of a change. Pure
//! functions of their arguments (times are passed in), so every store applies them alike.

use serde_json::json;
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};

use super::store::DecideError;
use super::types::{Approval, ApprovalDecision, ApprovalState, ApproverRef, NewApproval, Verdict};
use crate::error::Result;
use crate::time::format_rfc3339;

/// An RFC 3339 time stored on an approval (an unreadable one counts as the epoch, so it is
/// long expired rather than valid forever).
pub fn parse_time(s: &str) -> OffsetDateTime {
    OffsetDateTime::parse(s, &Rfc3339).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// When an approval stopped changing: its last decision, else when it expired.
pub fn ended_at(a: &Approval) -> OffsetDateTime {
    let last = a.decisions.iter().map(|d| parse_time(&d.at)).max();
    let expired = parse_time(&a.expires_at);
    match (a.state, last) {
        (ApprovalState::Expired, _) | (_, None) => expired,
        (_, Some(t)) => t,
    }
}

/// Order of approvals everywhere: oldest first, then by id.
pub fn oldest_first(a: &Approval, b: &Approval) -> std::cmp::Ordering {
    parse_time(&a.created_at)
        .cmp(&parse_time(&b.created_at))
        .then(a.id.cmp(&b.id))
}

/// True while `a` is pending and inside its TTL (an identical retry joins it).
pub fn joinable(a: &Approval, now: OffsetDateTime) -> bool {
    a.state == ApprovalState::Pending && now <= parse_time(&a.expires_at)
}

/// True when `a` is pending or approved but past its TTL (it is to be marked expired).
pub fn overdue(a: &Approval, now: OffsetDateTime) -> bool {
    matches!(a.state, ApprovalState::Pending | ApprovalState::Approved)
        && now > parse_time(&a.expires_at)
}

/// True when `a` has ended (decided, consumed or expired) more than `keep` ago.
pub fn prunable(a: &Approval, now: OffsetDateTime, keep: Duration) -> bool {
    !matches!(a.state, ApprovalState::Pending | ApprovalState::Approved) && ended_at(a) + keep < now
}

/// A new pending approval with a fresh id, expiring `ttl` after `now`.
pub fn new_approval(new: NewApproval, now: OffsetDateTime, ttl: Duration) -> Result<Approval> {
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
        expires_at: format_rfc3339(now + ttl),
    })
}

/// Checks one approver's verdict on `a` and, when it is accepted, adds it and moves the
/// state: any deny refuses; `required.count` distinct approvers holding `required.role`
/// release it; the human the agent acts for may not approve unless the policy allowed
/// self-approval; an approver decides once. Returns the number of approvals so far.
///
/// `Err(DecideError::Expired)` leaves `a` marked expired: the caller records that change.
pub fn apply_verdict(
    a: &mut Approval,
    approver: &ApproverRef,
    verdict: Verdict,
    reason: &str,
    now: OffsetDateTime,
) -> std::result::Result<u32, DecideError> {
    if a.state != ApprovalState::Pending {
        return Err(DecideError::NotPending(a.state));
    }
    if now > parse_time(&a.expires_at) {
        a.state = ApprovalState::Expired;
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
    Ok(approvals)
}

/// What the ledger records of a change to `a` (`approval.*`), plus `extra`'s fields.
pub fn entry_data(a: &Approval, extra: serde_json::Value) -> serde_json::Value {
    let mut data = json!({
        "approval": a.id, "state": a.state.as_str(), "agent": a.agent, "on_behalf_of": a.on_behalf_of,
        "runtime": a.runtime, "job": a.job, "fingerprint": a.fingerprint,
        "method": a.request.method, "url": a.request.url, "required": a.required,
    });
    if let (Some(d), serde_json::Value::Object(e)) = (data.as_object_mut(), extra) {
        d.extend(e);
    }
    data
}

/// The extra fields of `approval.created`.
pub fn created_extra(a: &Approval) -> serde_json::Value {
    json!({"request_id": a.request_id, "reasons": a.reasons, "intent": a.intent, "evidence": a.evidence, "expires_at": a.expires_at})
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;
    use crate::approval::tests::{approver, new_approval as new_request, t0};

    /// The verdict rules alone, on a bare approval (no store): one row per rule.
    #[test]
    fn verdict_rules_table() {
        let approver_with = |id: &str, role: &str| ApproverRef {
            id: id.into(),
            roles: vec![role.into()],
        };
        let base = new_approval(new_request(2), t0(), Duration::hours(1)).unwrap();
        let decided = |verdicts: &[(&str, Verdict)]| {
            let mut a = base.clone();
            for (who, v) in verdicts {
                apply_verdict(&mut a, &approver(who), *v, "", t0()).unwrap();
            }
            a
        };
        type Row<'a> = (
            &'a str,
            Approval,
            ApproverRef,
            Verdict,
            OffsetDateTime,
            Result<ApprovalState, &'a str>,
        );
        let rows: Vec<Row> = vec![
            (
                "first of two approvals",
                base.clone(),
                approver("bob"),
                Verdict::Approve,
                t0(),
                Ok(ApprovalState::Pending),
            ),
            (
                "second approval releases",
                decided(&[("bob", Verdict::Approve)]),
                approver("carol"),
                Verdict::Approve,
                t0(),
                Ok(ApprovalState::Approved),
            ),
            (
                "any deny refuses",
                decided(&[("bob", Verdict::Approve)]),
                approver("carol"),
                Verdict::Deny,
                t0(),
                Ok(ApprovalState::Denied),
            ),
            (
                "one verdict per approver",
                decided(&[("bob", Verdict::Approve)]),
                approver("bob"),
                Verdict::Approve,
                t0(),
                Err("AlreadyDecided"),
            ),
            (
                "role required",
                base.clone(),
                approver_with("bob", "dev"),
                Verdict::Approve,
                t0(),
                Err("MissingRole"),
            ),
            (
                "no self-approval",
                base.clone(),
                approver("alice"),
                Verdict::Approve,
                t0(),
                Err("SelfApproval"),
            ),
            (
                "self-deny is allowed",
                base.clone(),
                approver("alice"),
                Verdict::Deny,
                t0(),
                Ok(ApprovalState::Denied),
            ),
            (
                "past its TTL",
                base.clone(),
                approver("bob"),
                Verdict::Approve,
                t0() + Duration::hours(2),
                Err("Expired"),
            ),
            (
                "decided already",
                decided(&[("bob", Verdict::Deny)]),
                approver("carol"),
                Verdict::Approve,
                t0(),
                Err("NotPending"),
            ),
        ];
        for (name, mut a, who, verdict, now, want) in rows {
            let before = a.decisions.len();
            let got = apply_verdict(&mut a, &who, verdict, "why", now);
            match (got, want) {
                (Ok(_), Ok(state)) => {
                    assert_eq!(a.state, state, "{name}");
                    assert_eq!(a.decisions.len(), before + 1, "{name}");
                }
                (Err(e), Err(kind)) => {
                    assert!(format!("{e:?}").starts_with(kind), "{name}: {e:?}");
                    assert_eq!(
                        a.decisions.len(),
                        before,
                        "{name}: a refused verdict is not added"
                    );
                    let expired = matches!(e, DecideError::Expired);
                    assert_eq!(a.state == ApprovalState::Expired, expired, "{name}");
                }
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
    }

    /// Joining, expiry and pruning by state and time: one row per case.
    #[test]
    fn lifecycle_rules_table() {
        let base = new_approval(new_request(1), t0(), Duration::hours(1)).unwrap();
        let with = |state: ApprovalState, decided_at: Option<OffsetDateTime>| {
            let mut a = base.clone();
            a.state = state;
            if let Some(at) = decided_at {
                a.decisions.push(ApprovalDecision {
                    approver: "bob".into(),
                    verdict: Verdict::Approve,
                    reason: String::new(),
                    at: format_rfc3339(at),
                });
            }
            a
        };
        let keep = Duration::days(7);
        let in_ttl = t0() + Duration::minutes(30);
        let past_ttl = t0() + Duration::hours(2);
        let long_after = t0() + Duration::days(8);
        // (case, approval, now, joinable, overdue, prunable)
        let rows = [
            (
                "pending in its TTL",
                with(ApprovalState::Pending, None),
                in_ttl,
                true,
                false,
                false,
            ),
            (
                "pending past its TTL",
                with(ApprovalState::Pending, None),
                past_ttl,
                false,
                true,
                false,
            ),
            (
                "approved past its TTL",
                with(ApprovalState::Approved, Some(t0())),
                past_ttl,
                false,
                true,
                false,
            ),
            (
                "approved, never pruned",
                with(ApprovalState::Approved, Some(t0())),
                long_after,
                false,
                true,
                false,
            ),
            (
                "denied, within retention",
                with(ApprovalState::Denied, Some(t0())),
                in_ttl,
                false,
                false,
                false,
            ),
            (
                "denied, past retention",
                with(ApprovalState::Denied, Some(t0())),
                long_after,
                false,
                false,
                true,
            ),
            (
                "consumed late, retention from its last decision",
                with(ApprovalState::Consumed, Some(t0() + Duration::days(2))),
                long_after,
                false,
                false,
                false,
            ),
            (
                "expired, retention from expiry",
                with(ApprovalState::Expired, None),
                long_after,
                false,
                false,
                true,
            ),
            (
                "expired, retention from expiry, not from its last decision",
                with(ApprovalState::Expired, Some(t0())),
                t0() + Duration::days(7) + Duration::minutes(30),
                false,
                false,
                false,
            ),
        ];
        for (case, a, now, join, due, prune) in rows {
            assert_eq!(joinable(&a, now), join, "{case}: joinable");
            assert_eq!(overdue(&a, now), due, "{case}: overdue");
            assert_eq!(prunable(&a, now, keep), prune, "{case}: prunable");
        }
        assert_eq!(parse_time("not a time"), OffsetDateTime::UNIX_EPOCH);
    }
}
