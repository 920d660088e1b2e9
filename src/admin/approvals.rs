//! Approval and approver routes of the admin API.
//!
//! ```text
//! GET  /v1/approvals?state=pending        list (state: pending|approved|denied|expired|consumed|all)
//! GET  /v1/approvals/{id}                 one approval
//! POST /v1/approvals/{id}/approve         {"reason": "...", "grant_for": "1h", "max_uses": 5}
//!                                         (approvers only; grant_for also issues a grant to
//!                                         the agent or its job, scoped to the held request)
//! POST /v1/approvals/{id}/deny            {"reason": "..."}   (approvers only)
//! GET  /v1/approvers                      list;  POST /v1/approvers {"id", "roles"}
//! POST /v1/approvers/{id}/token           a fresh token, shown once (replaces the old one)
//! POST /v1/approvers/{id}/revoke
//! ```

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;

use super::{err, from_error, json, read_json, AdminResponse, AdminState, Caller};
use crate::approval::{ApprovalState, ApproverRef, DecideError, Verdict};
use crate::identity::NewApprover;

/// Longest reason an approver may give (characters).
pub const MAX_REASON_CHARS: usize = 2048;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecideRequest {
    #[serde(default)]
    reason: String,
    /// Approve for a window: also issue a grant for this long (`1h`).
    #[serde(default)]
    grant_for: Option<String>,
    /// With `grant_for`: how many requests the grant covers.
    #[serde(default)]
    max_uses: Option<u64>,
}

fn state_param(query: Option<&str>) -> Result<Option<ApprovalState>, String> {
    let wanted = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.to_string());
    Ok(match wanted.as_deref() {
        None | Some("all") | Some("") => None,
        Some("pending") => Some(ApprovalState::Pending),
        Some("approved") => Some(ApprovalState::Approved),
        Some("denied") => Some(ApprovalState::Denied),
        Some("expired") => Some(ApprovalState::Expired),
        Some("consumed") => Some(ApprovalState::Consumed),
        Some(other) => {
            return Err(format!(
                "state {other:?} is not one of pending, approved, denied, expired, consumed, all"
            ))
        }
    })
}

fn decide_error(e: DecideError) -> AdminResponse {
    let status = match &e {
        DecideError::NotFound(_) => StatusCode::NOT_FOUND,
        DecideError::MissingRole(_) | DecideError::SelfApproval => StatusCode::FORBIDDEN,
        DecideError::NotPending(_) | DecideError::Expired | DecideError::AlreadyDecided(_) => {
            StatusCode::CONFLICT
        }
        DecideError::Store(inner) => return from_error(inner),
    };
    let code = match &e {
        DecideError::NotFound(_) => "not_found",
        DecideError::MissingRole(_) => "missing_role",
        DecideError::SelfApproval => "self_approval",
        DecideError::NotPending(_) => "not_pending",
        DecideError::Expired => "expired",
        DecideError::AlreadyDecided(_) => "already_decided",
        DecideError::Store(_) => "internal",
    };
    err(status, code, &e.to_string())
}

/// Runs a store change (a durable write) off the async workers.
pub(super) async fn off_worker<T: Send + 'static>(
    f: impl FnOnce() -> crate::error::Result<T> + Send + 'static,
) -> Result<T, AdminResponse> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(from_error(&e)),
        Err(e) => Err(err(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            &e.to_string(),
        )),
    }
}

/// Handles `/v1/approvals...` and `/v1/approvers...`.
pub async fn handle(
    state: &AdminState,
    caller: &Caller,
    req: Request<Incoming>,
    segs: &[&str],
) -> Result<AdminResponse, AdminResponse> {
    let method = req.method().clone();
    Ok(match (&method, segs) {
        (&Method::GET, ["v1", "approvals"]) => match state_param(req.uri().query()) {
            Ok(s) => json(StatusCode::OK, &state.approvals.list(s)),
            Err(m) => err(StatusCode::BAD_REQUEST, "bad_state", &m),
        },
        (&Method::GET, ["v1", "approvals", id]) => match state.approvals.get(id) {
            Some(a) => json(StatusCode::OK, &a),
            None => err(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("approval {id:?} not found"),
            ),
        },
        (&Method::POST, ["v1", "approvals", id, verb @ ("approve" | "deny")]) => {
            let Caller::Approver(approver) = caller else {
                return Err(err(
                    StatusCode::FORBIDDEN,
                    "not_an_approver",
                    "only approvers decide approvals",
                ));
            };
            let verdict = if *verb == "approve" {
                Verdict::Approve
            } else {
                Verdict::Deny
            };
            let body: DecideRequest = read_json(req).await?;
            if body.reason.chars().count() > MAX_REASON_CHARS {
                return Err(err(
                    StatusCode::BAD_REQUEST,
                    "reason_too_long",
                    &format!("a reason has at most {MAX_REASON_CHARS} characters"),
                ));
            }
            let who = ApproverRef {
                id: approver.id.clone(),
                roles: approver.roles.clone(),
            };
            if let Some(w) = &body.grant_for {
                if verdict != Verdict::Approve {
                    return Err(err(
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        "grant_for goes with approve",
                    ));
                }
                let d = crate::config::parse_duration(w).map_err(|m| {
                    err(
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        &format!("grant_for: {m}"),
                    )
                })?;
                let most = state.approval_limits.max_grant_window;
                if d > most {
                    return Err(err(
                        StatusCode::BAD_REQUEST,
                        "grant_too_long",
                        &format!(
                            "grant_for: at most {}s (approvals.max_grant_window)",
                            most.as_secs()
                        ),
                    ));
                }
                // One approver cannot open a window on a hold that needs several, nor one
                // for an agent acting on their own behalf: checked before deciding.
                if let Some(held) = state.approvals.get(id) {
                    if held.required.count > 1 {
                        return Err(err(
                            StatusCode::FORBIDDEN,
                            "window_needs_one_approver",
                            "this hold needs more than one approver: approve it once, without a window",
                        ));
                    }
                    let new = crate::grant::for_approval(&held, w, body.max_uses.or(Some(1)))
                        .map_err(|m| err(StatusCode::BAD_REQUEST, "invalid", &m))?;
                    super::grants::approver_may_issue(state, &approver.id, &new)?;
                }
            }
            let window = body.grant_for.clone().map(|w| (w, body.max_uses));
            let (store, id) = (state.approvals.clone(), id.to_string());
            // Deciding records a ledger entry (a durable write): off the async workers.
            let decided = tokio::task::spawn_blocking(move || {
                store.decide(
                    &id,
                    &who,
                    verdict,
                    body.reason.trim(),
                    time::OffsetDateTime::now_utc(),
                )
            })
            .await
            .map_err(|e| {
                err(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    &e.to_string(),
                )
            })?;
            match decided {
                Ok(a) => match window {
                    Some((w, max_uses)) => {
                        let grant = grant_for(state, &a, &approver.id, &w, max_uses).await?;
                        let mut v = serde_json::to_value(&a).unwrap_or_default();
                        v["grant"] = grant;
                        json(StatusCode::OK, &v)
                    }
                    None => json(StatusCode::OK, &a),
                },
                Err(e) => decide_error(e),
            }
        }
        (&Method::GET, ["v1", "approvers"]) => json(StatusCode::OK, &state.approvers.list()),
        (&Method::GET, ["v1", "approvers", id]) => match state.approvers.get(id) {
            Some(a) => json(StatusCode::OK, &a),
            None => err(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("approver {id:?} not found"),
            ),
        },
        (&Method::POST, ["v1", "approvers"]) => {
            let new: NewApprover = read_json(req).await?;
            let (store, by) = (state.approvers.clone(), caller.id().to_string());
            let added = off_worker(move || store.add(new, &by)).await?;
            json(StatusCode::CREATED, &added)
        }
        (&Method::POST, ["v1", "approvers", id, "token"]) => {
            let (store, by, id) = (
                state.approvers.clone(),
                caller.id().to_string(),
                id.to_string(),
            );
            json(
                StatusCode::CREATED,
                &off_worker(move || store.issue_token(&id, &by)).await?,
            )
        }
        (&Method::POST, ["v1", "approvers", id, "revoke"]) => {
            let (store, by, id) = (
                state.approvers.clone(),
                caller.id().to_string(),
                id.to_string(),
            );
            json(
                StatusCode::OK,
                &off_worker(move || store.revoke(&id, &by)).await?,
            )
        }
        _ => err(
            StatusCode::NOT_FOUND,
            "no_route",
            &format!("no route for {method} /{}", segs.join("/")),
        ),
    })
}

/// Issues the grant of an approval decided "for a window" (once the approval is approved;
/// while it still waits for more approvers, nothing is issued and the answer says so).
async fn grant_for(
    state: &AdminState,
    a: &crate::approval::Approval,
    approver: &str,
    window: &str,
    max_uses: Option<u64>,
) -> Result<serde_json::Value, AdminResponse> {
    if a.state != ApprovalState::Approved {
        return Ok(
            serde_json::json!({"issued": false, "why": format!("approval is {}; the grant is issued by the approval that completes it", a.state.as_str())}),
        );
    }
    let uses = max_uses.or(Some(state.approval_limits.window_uses));
    let new = crate::grant::for_approval(a, window, uses)
        .map_err(|m| err(StatusCode::BAD_REQUEST, "invalid", &m))?;
    super::grants::approver_may_issue(state, approver, &new)?;
    let now = state.grants.clock.now();
    let mut g = crate::grant::build(
        new,
        approver,
        "approval",
        state.identity.as_ref(),
        &state.secrets,
        now,
    )
    .map_err(|e| from_error(&e))?;
    g.approval = Some(a.id.clone());
    let store = state.grants.store.clone();
    let g = off_worker(move || store.insert(g)).await?;
    Ok(super::grants::with_state(&g, now))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_filter() {
        assert_eq!(state_param(None), Ok(None));
        assert_eq!(
            state_param(Some("state=pending")),
            Ok(Some(ApprovalState::Pending))
        );
        assert_eq!(state_param(Some("state=all")), Ok(None));
        assert!(state_param(Some("state=nope")).is_err());
    }
}
