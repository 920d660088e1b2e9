//! Spending authority: reserving the grant uses of an allowed request before its
//! write-ahead record, counting them once the record is durable, spending them for a held
//! request when its approval releases it, and injecting secrets into a permitted request.

use http::{Response, StatusCode};
use serde_json::json;

use super::authority::Authority;
use super::body::ProxyBody;
use super::forward::Outbound;
use super::outcome::{DecisionLine, Seen};
use super::permit::Permitted;
use super::{respond, ProxyState};
use crate::grant::{grant_event, inject as inject_secrets, Reservation};
use crate::identity::Principal;
use crate::model::{Decision, Outcome};
use crate::policy::Evaluated;

/// Sets the decision's `grants_used` to what the request spends and, for an allow,
/// reserves those uses. A grant used up (or expired, or revoked) meanwhile turns the allow
/// into a deny (`grant_exhausted`): concurrent requests never spend more than `max_uses`.
pub fn reserve(
    state: &ProxyState,
    authority: &Authority,
    eval: &mut Evaluated,
) -> Option<Reservation> {
    let spent = authority.spent(&eval.decision.grants_used);
    eval.decision.grants_used = spent.clone();
    if eval.decision.outcome != Outcome::Allow || spent.is_empty() {
        return None;
    }
    match Reservation::take(state.grants.clone(), spent, authority.now) {
        Ok(r) => Some(r),
        Err(u) => {
            eval.decision = Decision::deny(
                "grant_exhausted",
                format!(
                    "grant {} is {}: this request would exceed it",
                    u.id, u.state
                ),
            );
            None
        }
    }
}

/// Counts reserved uses once the decision is durable, and records grants this exhausted.
pub fn commit(state: &ProxyState, reservation: Option<Reservation>) {
    let Some(r) = reservation else { return };
    for g in r.commit() {
        tracing::info!(grant = %g.id, uses = g.uses, "grant exhausted");
        if let Some(l) = &state.ledger {
            l.append_detached("grant.exhausted", grant_event(&g));
        }
    }
}

/// A held request released by its approval spends its grants now: reserved, recorded
/// (`grant.used`, durable before forwarding) and counted. On failure the answer is returned.
#[allow(clippy::too_many_arguments)]
pub async fn on_release(
    state: &ProxyState,
    principal: &Principal,
    seen: &Seen,
    line: &DecisionLine<'_>,
    authority: &Authority,
    eval: &Evaluated,
    approval: &str,
) -> Result<(), Box<Response<ProxyBody>>> {
    let spent = eval.decision.grants_used.clone();
    if spent.is_empty() {
        return Ok(());
    }
    let r = match Reservation::take(state.grants.clone(), spent.clone(), state.clock.now()) {
        Ok(r) => r,
        Err(u) => {
            let msg = format!(
                "approved, but grant {} is {} now, so the request was not forwarded",
                u.id, u.state
            );
            line.emit("deny", "grant_exhausted", 403);
            if let Some(l) = &state.ledger {
                l.append_detached(
                    "request.decided",
                    super::record::refused(principal, seen, "grant_exhausted", &msg),
                );
            }
            return Err(Box::new(respond::error(
                StatusCode::FORBIDDEN,
                "grant_exhausted",
                &msg,
                &seen.request_id,
            )));
        }
    };
    if let Some(l) = &state.ledger {
        let entry = json!({
            "request_id": seen.request_id, "approval": approval, "grants_used": r.ids(),
            "agent": principal.agent.id, "job": principal.job.as_ref().map(|j| j.id.clone()),
            "authority_of": authority.found.iter().map(|(f, g)| json!({"secret": f.secret, "grant": g})).collect::<Vec<_>>(),
        });
        if let Err(e) = l.append("grant.used", entry).await {
            return Err(Box::new(super::pipeline::ledger_refusal(
                line,
                &seen.request_id,
                &e,
            )));
        }
    }
    commit(state, Some(r));
    Ok(())
}

/// Swaps the placeholders of a permitted request for the real values.
pub fn inject(
    state: &ProxyState,
    authority: &Authority,
    permitted: Permitted<Outbound>,
    request_id: &str,
) -> Result<Permitted<Outbound>, Box<Response<ProxyBody>>> {
    if authority.found.is_empty() {
        return Ok(permitted);
    }
    let found: Vec<_> = authority.found.iter().map(|(f, _)| f.clone()).collect();
    permitted
        .amend(|out| {
            let uri = out.request.uri().to_string();
            // An uncompressed answer, so an echoed secret can be masked (`scrub.rs`).
            out.request.headers_mut().insert(
                http::header::ACCEPT_ENCODING,
                http::HeaderValue::from_static("identity"),
            );
            let method = out.request.method().as_str().to_string();
            let rewritten = inject_secrets(
                &found,
                &state.secrets,
                &method,
                out.request.headers_mut(),
                &uri,
                authority.body_sha256.as_deref(),
            )?;
            if let Some(u) = rewritten {
                *out.request.uri_mut() = u
                    .parse()
                    .map_err(|_| "the secret does not fit in a URL".to_string())?;
            }
            Ok(())
        })
        .map_err(|e: String| {
            tracing::error!(error = %e, "secret injection failed; request not forwarded");
            Box::new(respond::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "secret_unavailable",
                &format!("{e}; the request was not forwarded"),
                request_id,
            ))
        })
}

/// The values injected into a request (what its response is scrubbed of).
pub fn injected_values(state: &ProxyState, authority: &Authority) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = authority
        .found
        .iter()
        .flat_map(|(f, _)| state.secrets.needles(&f.secret))
        .map(String::into_bytes)
        .collect();
    v.sort();
    v.dedup();
    v
}
