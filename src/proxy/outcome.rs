//! How a request ends, said once: the canonical decision line, and the one sink that turns
//! every refusal made before or beside the policy (bad host, ambiguous path, forbidden
//! destination, body errors, non-TLS tunnels...) into that line, a `request.decided` ledger
//! entry with its reason code, and Clawser's JSON answer.

use std::time::Instant;

use http::{Method, Response, StatusCode};

use super::body::ProxyBody;
use super::{record, respond, ProxyState};
use crate::identity::{AuthFailure, Principal};
use crate::model::Outcome;

/// A refusal: the status the agent gets, a stable reason code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    /// Builds a refusal.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }
}

/// What is known about a request so far; the pipeline fills it in as it learns. `host` and
/// `path` are `-` until known, and both are always the redacted form.
#[derive(Debug, Clone)]
pub struct Seen {
    pub request_id: String,
    pub start: Instant,
    pub method: String,
    pub scheme: &'static str,
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl Seen {
    /// A new request with a fresh id.
    pub fn new(method: &Method) -> Seen {
        Seen {
            request_id: crate::identity::token::new_id("req")
                .unwrap_or_else(|_| "req_unknown".to_string()),
            start: Instant::now(),
            method: method.as_str().to_string(),
            scheme: "-",
            host: "-".to_string(),
            port: 0,
            path: "-".to_string(),
        }
    }
}

/// The canonical decision line: one per decided request.
pub struct DecisionLine<'a> {
    pub principal: &'a Principal,
    pub seen: &'a Seen,
    pub policy_rev: &'a str,
}

impl DecisionLine<'_> {
    /// Logs the line with the outcome, reason codes and the status the agent got.
    pub fn emit(&self, outcome: &str, reasons: &str, status: u16) {
        let p = self.principal;
        let s = self.seen;
        tracing::info!(
            target: "clawser::decision",
            request_id = s.request_id.as_str(),
            agent = %p.agent.id,
            on_behalf_of = %p.agent.on_behalf_of,
            runtime = %p.agent.runtime,
            job = p.job.as_ref().map(|j| j.id.as_str()).unwrap_or("-"),
            credential = %p.credential_id,
            method = s.method.as_str(),
            host = s.host.as_str(),
            port = s.port,
            path = s.path.as_str(),
            outcome,
            reasons,
            policy_rev = self.policy_rev,
            status,
            latency_ms = s.start.elapsed().as_secs_f64() * 1e3,
            "request decided"
        );
    }
}

/// A `407`: one decision line and, when credentials were presented but not accepted
/// (malformed, unknown, revoked), a `request.decided` entry naming the agent they claim, so
/// "a revoked agent kept trying" is in the ledger. A missing credential is only logged: it is
/// the challenge git waits for before it sends any.
pub fn auth_refused(
    state: &ProxyState,
    seen: &Seen,
    failure: &AuthFailure,
    header: Option<&str>,
) -> Response<ProxyBody> {
    state.metrics.auth_failed();
    tracing::info!(
        target: "clawser::decision",
        request_id = seen.request_id.as_str(), method = seen.method.as_str(),
        outcome = "deny", reasons = failure.code(), status = 407u16,
        latency_ms = seen.start.elapsed().as_secs_f64() * 1e3,
        "request refused: proxy authentication"
    );
    if *failure != AuthFailure::Missing {
        if let Some(l) = &state.ledger {
            let claimed = header
                .and_then(crate::identity::token::parse_basic)
                .map(|(user, _)| state.redactor.text(&user).into_owned());
            l.append_detached(
                "request.decided",
                record::auth_refused(seen, failure.code(), &failure.message(), claimed),
            );
        }
    }
    respond::auth_required(failure, &seen.request_id)
}

/// The sink of every refusal that the policy did not make: one decision line, one
/// `request.decided` deny entry (nothing was forwarded, so it need not be awaited) and the
/// JSON answer.
pub fn refuse(
    state: &ProxyState,
    principal: &Principal,
    seen: &Seen,
    r: Refusal,
) -> Response<ProxyBody> {
    let r = note(state, principal, seen, r);
    respond::error(r.status, r.code, &r.message, &seen.request_id)
}

/// The log line and the ledger entry of a refusal; returns it with its message redacted (a
/// message may quote the agent's input), for the answer.
pub fn note(state: &ProxyState, principal: &Principal, seen: &Seen, r: Refusal) -> Refusal {
    let r = Refusal {
        message: state.redactor.text(&r.message).into_owned(),
        ..r
    };
    state.metrics.decided(Outcome::Deny, Default::default());
    DecisionLine {
        principal,
        seen,
        policy_rev: "-",
    }
    .emit("deny", r.code, r.status.as_u16());
    if let Some(l) = &state.ledger {
        l.append_detached(
            "request.decided",
            record::refused(principal, seen, r.code, &r.message),
        );
    }
    r
}
/// The answer when the write-ahead record failed: nothing is forwarded.
pub fn ledger_refusal(
    line: &DecisionLine<'_>,
    request_id: &str,
    e: &crate::error::Error,
) -> http::Response<super::body::ProxyBody> {
    let (code, msg) = match e {
        crate::error::Error::LedgerBusy(_) => {
            ("ledger_busy", format!("{e}; the request was not forwarded"))
        }
        _ => (
            "ledger_unavailable",
            "the work ledger could not record this request, so it was not forwarded".to_string(),
        ),
    };
    tracing::error!(error = %e, request_id, code, "ledger append failed; request refused (fail closed)");
    line.emit("deny", code, 503);
    super::respond::error(
        http::StatusCode::SERVICE_UNAVAILABLE,
        code,
        &msg,
        request_id,
    )
}
