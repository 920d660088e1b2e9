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
use crate::grant::{grant_event, holder_of, inject as inject_secrets, Reservation};
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
    // Judged again now: the wait may have seen a handoff of the job, a revocation, expiry.
    let now = state.clock.now();
    let still = match state.auth.revalidate(&principal.credential_id) {
        Ok(fresh) => {
            let applicable = state
                .grants
                .applicable(&holder_of(&fresh), &authority.touches(), now);
            spent
                .iter()
                .find(|id| !applicable.iter().any(|g| &g.id == *id))
                .cloned()
        }
        Err(_) => spent.first().cloned(),
    };
    let reserved = match still {
        Some(id) => Err(crate::grant::Unusable {
            id,
            state: "no longer applicable to this caller",
        }),
        None => Reservation::take(state.grants.clone(), spent.clone(), now),
    };
    let r = match reserved {
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
            return Err(Box::new(super::outcome::ledger_refusal(
                line,
                &seen.request_id,
                &e,
            )));
        }
    }
    commit(state, Some(r));
    Ok(())
}

/// What a response from one of a secret's hosts is scrubbed of when the request carried no
/// secret: a value stored by that host earlier must not be read back (best effort: only
/// uncompressed bodies can be checked).
pub fn host_needles(state: &ProxyState, host: &str) -> Needles {
    let mut v: Needles = state
        .secrets
        .decls()
        .iter()
        .filter(|d| crate::grant::host_allowed(&d.hosts, host))
        .flat_map(|d| {
            state
                .secrets
                .forms(&d.name)
                .iter()
                .cloned()
                .collect::<Vec<_>>()
        })
        .collect();
    v.sort();
    v.dedup();
    v
}

/// The forms in which injected secrets went out.
pub type Needles = Vec<Vec<u8>>;

/// Swaps the placeholders of a permitted request for the real values. Returns the request
/// and every form in which a value went out (what its response is scrubbed of), captured
/// here so a secret refreshed meanwhile cannot slip through.
pub fn inject(
    state: &ProxyState,
    authority: &Authority,
    permitted: Permitted<Outbound>,
    request_id: &str,
) -> Result<(Permitted<Outbound>, Needles), Box<Response<ProxyBody>>> {
    if authority.found.is_empty() {
        return Ok((permitted, Vec::new()));
    }
    let found: Vec<_> = authority.found.iter().map(|(f, _)| f.clone()).collect();
    let mut needles = Vec::new();
    let permitted = permitted
        .amend(|out| {
            // An uncompressed, whole answer, so an echoed secret can be masked (`scrub.rs`):
            // a range could return the value in slices too short to recognise.
            let h = out.request.headers_mut();
            h.insert(
                http::header::ACCEPT_ENCODING,
                http::HeaderValue::from_static("identity"),
            );
            h.remove(http::header::RANGE);
            h.remove(http::header::IF_RANGE);
            let uri = out.request.uri().to_string();
            let method = out.request.method().as_str().to_string();
            let injected = inject_secrets(
                &found,
                &state.secrets,
                &method,
                out.request.headers_mut(),
                &uri,
                authority.body_sha256.as_deref(),
            )?;
            if let Some(u) = injected.uri {
                *out.request.uri_mut() = u
                    .parse()
                    .map_err(|_| "the secret does not fit in a URL".to_string())?;
            }
            needles = injected.needles;
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
        })?;
    Ok((permitted, needles))
}
