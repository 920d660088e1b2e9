//! Grant routes of the admin API.
//!
//! ```text
//! GET  /v1/grants?state=active|all       list, each with its state at the time of the call
//! POST /v1/grants                        NewGrant {"agent"|"role"|"job", "hosts", "repos", "envs",
//!                                        "actions", "secret", "expires": "2h", "max_uses", "reason"}
//! GET  /v1/grants/{id}                   one grant
//! POST /v1/grants/{id}/revoke            revoke (refused from the next request on)
//! GET  /v1/secrets                       configured secrets: names, hosts, injection (never values)
//! ```
//!
//! The admin issues and revokes any grant. An approver grants only by approving a held
//! request for a window (`approvals.rs`, limited by [`approver_may_issue`]) and may revoke
//! the grants they issued.

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

use super::{err, from_error, json, read_json, AdminResponse, AdminState, Caller};
use crate::grant::{build, Grant, NewGrant, SubjectKind};

/// A grant with its state now.
pub fn with_state(g: &Grant, now: time::OffsetDateTime) -> serde_json::Value {
    let mut v = serde_json::to_value(g).unwrap_or_default();
    v["state"] = json!(g.state(now, 0).as_str());
    v["uses_left"] = json!(g.uses_left());
    v
}

/// What an approver's window grant may be: to an agent or a job (never a role), none
/// reaching an agent that acts on the approver's own behalf, no `*` action, no secret, and an
/// expiry within `approvals.max_grant_window`.
#[allow(clippy::result_large_err)]
pub(super) fn approver_may_issue(
    state: &AdminState,
    approver: &str,
    new: &NewGrant,
) -> Result<(), AdminResponse> {
    let refuse = |m: String| Err(err(StatusCode::FORBIDDEN, "self_grant", &m));
    if new.secret.is_some() {
        return Err(err(
            StatusCode::FORBIDDEN,
            "admin_only",
            "only the admin grants the use of a secret",
        ));
    }
    if new.actions.iter().any(|a| a.trim() == "*") {
        return Err(err(
            StatusCode::FORBIDDEN,
            "grant_too_wide",
            "approvers cannot grant every action (*); name the actions",
        ));
    }
    let window = state.approval_limits.max_grant_window;
    let within = new
        .expires
        .as_deref()
        .and_then(|e| crate::config::parse_duration(e).ok())
        .is_some_and(|d| d <= window);
    if !within {
        return Err(err(
            StatusCode::FORBIDDEN,
            "grant_too_long",
            &format!(
                "an approver's grant needs an expiry of at most {}s (approvals.max_grant_window)",
                window.as_secs()
            ),
        ));
    }
    let subject = new
        .subject()
        .map_err(|m| err(StatusCode::BAD_REQUEST, "invalid", &m))?;
    let agents: Vec<String> =
        match subject.kind {
            SubjectKind::Role => return refuse(
                "approvers issue grants to an agent or a job; a role grant needs the admin token"
                    .into(),
            ),
            SubjectKind::Agent => vec![subject.id.clone()],
            SubjectKind::Job => state
                .identity
                .job(&subject.id)
                .map(|j| j.agents.clone())
                .unwrap_or_default(),
        };
    for a in agents {
        if state
            .identity
            .agent(&a)
            .is_some_and(|x| x.on_behalf_of == approver)
        {
            return refuse(format!(
                "agent {a} acts on behalf of {approver}: approvers cannot grant authority to their own agents"
            ));
        }
    }
    Ok(())
}

/// Handles `/v1/grants...` and `/v1/secrets`.
pub async fn handle(
    state: &AdminState,
    caller: &Caller,
    req: Request<Incoming>,
    segs: &[&str],
) -> Result<AdminResponse, AdminResponse> {
    let method = req.method().clone();
    let now = state.grants.clock.now();
    let store = &state.grants.store;
    Ok(match (&method, segs) {
        (&Method::GET, ["v1", "grants"]) => {
            let all = form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .any(|(k, v)| k == "state" && v == "all");
            let list: Vec<_> = store
                .list()
                .iter()
                .filter(|g| all || g.state(now, 0) == crate::grant::GrantState::Active)
                .map(|g| with_state(g, now))
                .collect();
            json(StatusCode::OK, &list)
        }
        (&Method::POST, ["v1", "grants"]) => {
            let new: NewGrant = read_json(req).await?;
            let g = build(
                new,
                caller.id(),
                "api",
                state.identity.as_ref(),
                &state.secrets,
                now,
            )
            .map_err(|e| from_error(&e))?;
            let s = store.clone();
            let g = super::approvals::off_worker(move || s.insert(g)).await?;
            json(StatusCode::CREATED, &with_state(&g, now))
        }
        (&Method::GET, ["v1", "grants", id]) => match store.get(id) {
            Some(g) => json(StatusCode::OK, &with_state(&g, now)),
            None => err(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("grant {id:?} not found"),
            ),
        },
        (&Method::POST, ["v1", "grants", id, "revoke"]) => {
            if let Caller::Approver(a) = caller {
                if store.get(id).is_some_and(|g| g.issued_by != a.id) {
                    return Err(err(
                        StatusCode::FORBIDDEN,
                        "admin_only",
                        &format!("approver {} may revoke only the grants they issued", a.id),
                    ));
                }
            }
            let (s, id, by) = (store.clone(), id.to_string(), caller.id().to_string());
            let g = super::approvals::off_worker(move || s.revoke(&id, &by)).await?;
            json(StatusCode::OK, &with_state(&g, now))
        }
        (&Method::GET, ["v1", "secrets"]) => {
            let list: Vec<_> = state
                .secrets
                .iter()
                .map(|d| json!({"name": d.name, "hosts": d.hosts, "inject": format!("{:?}", d.inject).to_lowercase(), "env": d.env}))
                .collect();
            json(StatusCode::OK, &list)
        }
        _ => err(
            StatusCode::NOT_FOUND,
            "no_route",
            &format!("no route for {method} /{}", segs.join("/")),
        ),
    })
}
