//! The admin endpoint (`admin.listen`, loopback only). Every route but `/healthz` needs
//! `Authorization: Bearer <admin token>`; agent tokens are never accepted. Errors are
//! `{"error": {"code": "...", "message": "..."}}`.
//!
//! ```text
//! GET  /healthz                           liveness
//! GET  /metrics                           Prometheus text
//! GET  /v1/policy                         policy in force, last reload error
//! GET  /v1/agents                         list;  POST /v1/agents {id, runtime, on_behalf_of, roles, labels}
//! GET  /v1/agents/{id}                    one agent;  POST /v1/agents/{id}/revoke
//! GET  /v1/agents/{id}/credentials        credentials (no secrets)
//! POST /v1/agents/{id}/credentials        {"job": "job_..."?} -> a new token, shown once
//! POST /v1/credentials/{id}/revoke        refuse this credential from now on
//! GET  /v1/ledger...                     the work ledger (routes in `ledger.rs`)
//! GET  /v1/jobs                           list;  POST /v1/jobs {agent, title} -> job + credential
//! GET  /v1/jobs/{id};  POST /v1/jobs/{id}/handoff {"to": "agent"} -> job + credential for it
//! GET  /v1/approvals...                  approvals and approvers (routes in `approvals.rs`)
//! GET  /v1/events                         server-sent events (`events.rs`)
//! GET  /v1/whoami                         the caller: admin or an approver with roles
//! POST /v1/sandboxes...                  isolated runs started and ended (`sandboxes.rs`)
//! GET  /                                  the approval inbox web page (`web.rs`)
//! ```
//!
//! Who may do what: the bootstrap admin token may do everything except decide approvals;
//! an approver's token may read everything and approve or deny, nothing else.
//!
//! `client.rs` is the CLI's side of this API.

mod approvals;
pub mod client;
mod events;
mod grants;
pub use grants::with_state as grant_json;
mod ledger;
mod sandboxes;
mod web;

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::approval::ApprovalStore;
use crate::error::{Blame, Error};
use crate::events::EventBus;
use crate::identity::token::AGENT_TOKEN_PREFIX;
use crate::identity::{AdminToken, Approver, ApproverStore, IdentityStore, NewAgent, NewJob};
use crate::metrics::Metrics;
use crate::policy::PolicyEngine;

/// Largest admin request body accepted.
pub const MAX_ADMIN_BODY: usize = 64 * 1024;

/// What the admin API serves from.
pub struct AdminState {
    pub identity: Arc<dyn IdentityStore>,
    pub policy: Arc<PolicyEngine>,
    pub metrics: Arc<Metrics>,
    pub token: AdminToken,
    pub ledger: Option<crate::ledger::Ledger>,
    pub approvals: Arc<dyn ApprovalStore>,
    pub approvers: Arc<dyn ApproverStore>,
    pub bus: EventBus,
    /// Grants (issued, listed, revoked here) and the placeholder key for `clawser env`.
    pub grants: crate::grant::GrantContext,
    /// The configured secrets (names, hosts, env names; never values).
    pub secrets: Vec<crate::config::SecretDecl>,
    /// Limits on grants approvers issue (`approvals.max_grant_window`, `window_uses`).
    pub approval_limits: crate::config::ApprovalsConfig,
}

/// The body of every admin response (SSE streams too).
pub(crate) type AdminBody = BoxBody<Bytes, std::convert::Infallible>;
pub(crate) type AdminResponse = Response<AdminBody>;

/// A body from bytes.
pub(crate) fn full(bytes: impl Into<Bytes>) -> AdminBody {
    Full::new(bytes.into()).boxed()
}

/// Who is calling the admin API.
#[derive(Debug, Clone)]
pub enum Caller {
    /// The bootstrap admin token of the data dir.
    Admin,
    /// A human approver.
    Approver(Approver),
}

impl Caller {
    /// The principal's name, as recorded in the ledger.
    pub fn id(&self) -> &str {
        match self {
            Caller::Admin => "admin",
            Caller::Approver(a) => &a.id,
        }
    }
}

/// Serves the admin API until `shutdown` turns true.
pub async fn serve(
    state: Arc<AdminState>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (stream, _) = tokio::select! {
            r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
            _ = shutdown.changed() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(state, req).await) }
            });
            let mut b = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            b.http1().timer(TokioTimer::new());
            let _ = b.serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

pub(crate) fn json<T: Serialize>(status: StatusCode, v: &T) -> AdminResponse {
    let mut r = Response::new(full(serde_json::to_vec_pretty(v).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

pub(crate) fn err(status: StatusCode, code: &str, message: &str) -> AdminResponse {
    json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

pub(crate) fn from_error(e: &Error) -> AdminResponse {
    match (e, e.blame()) {
        (Error::NotFound { .. }, _) => err(StatusCode::NOT_FOUND, "not_found", &e.to_string()),
        (_, Blame::Client) => err(StatusCode::BAD_REQUEST, "invalid", &e.to_string()),
        _ => {
            tracing::error!(error = %e, "admin request failed");
            err(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            )
        }
    }
}

#[allow(clippy::result_large_err)]
pub(crate) async fn read_json<T: DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, AdminResponse> {
    let bytes = Limited::new(req.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
        .map_err(|e| {
            err(
                StatusCode::BAD_REQUEST,
                "bad_body",
                &format!("could not read body (max {MAX_ADMIN_BODY} bytes): {e}"),
            )
        })?
        .to_bytes();
    let bytes = if bytes.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        err(
            StatusCode::BAD_REQUEST,
            "bad_json",
            &format!("invalid JSON body: {e}"),
        )
    })
}

#[allow(clippy::result_large_err)]
fn authorized(state: &AdminState, req: &Request<Incoming>) -> Result<Caller, AdminResponse> {
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match bearer {
        None => Err(err(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Authorization: Bearer <admin token> required",
        )),
        Some(t) if t.starts_with(AGENT_TOKEN_PREFIX) => Err(err(
            StatusCode::FORBIDDEN,
            "agent_token",
            "agent credentials are never accepted by the admin API",
        )),
        Some(t) if state.token.matches(t) => Ok(Caller::Admin),
        Some(t) => match state.approvers.authenticate(t) {
            Some(a) => Ok(Caller::Approver(a)),
            None => Err(err(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "unknown or revoked admin token",
            )),
        },
    }
}

/// What each caller may do: approvers read and decide approvals; the admin manages
/// everything but cannot decide approvals (decisions are made by named humans).
#[allow(clippy::result_large_err)]
fn permitted(caller: &Caller, method: &Method, segs: &[&str]) -> Result<(), AdminResponse> {
    let deciding = matches!(segs, ["v1", "approvals", _, "approve" | "deny"]);
    // Approvers grant only by approving a held request for a window; they may revoke the
    // grants they issued (checked in `grants.rs`).
    let granting = matches!(segs, ["v1", "grants", _, "revoke"]);
    match caller {
        Caller::Admin if deciding => Err(err(
            StatusCode::FORBIDDEN,
            "not_an_approver",
            "the bootstrap admin token cannot approve or deny; add an approver (`clawser approvers add ID --role ROLE`) and use its token",
        )),
        Caller::Admin => Ok(()),
        Caller::Approver(_) if deciding || granting || method == Method::GET => Ok(()),
        Caller::Approver(a) => Err(err(
            StatusCode::FORBIDDEN,
            "admin_only",
            &format!("approver {} may read and decide approvals; this needs the admin token", a.id),
        )),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialRequest {
    #[serde(default)]
    job: Option<String>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct HandoffRequest {
    to: String,
}

async fn handle(state: Arc<AdminState>, req: Request<Incoming>) -> AdminResponse {
    let path = req.uri().path().to_string();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let method = req.method().clone();
    if method == Method::GET && path == "/healthz" {
        return json(StatusCode::OK, &serde_json::json!({"status": "ok"}));
    }
    if method == Method::GET {
        if let Some(page) = web::page(&path) {
            return page;
        }
    }
    let caller = match authorized(&state, &req) {
        Ok(c) => c,
        Err(r) => return r,
    };
    if let Err(r) = permitted(&caller, &method, &segs) {
        return r;
    }
    let id = &state.identity;
    let result: Result<AdminResponse, AdminResponse> = async {
        Ok(match (&method, segs.as_slice()) {
            (&Method::GET, ["metrics"]) => {
                let mut text = state.metrics.render();
                if let Some(l) = &state.ledger {
                    text.push_str(&crate::metrics::render_ledger_groups(l.group_counts()));
                }
                let mut r = Response::new(full(text));
                r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4"));
                r
            }
            (&Method::GET, ["v1", "policy"]) => json(StatusCode::OK, &state.policy.status()),
            (&Method::GET, ["v1", "whoami"]) => json(StatusCode::OK, &match &caller {
                Caller::Admin => serde_json::json!({"id": "admin", "kind": "admin", "roles": []}),
                Caller::Approver(a) => serde_json::json!({"id": a.id, "kind": "approver", "roles": a.roles}),
            }),
            (&Method::GET, ["v1", "events"]) => events::stream(&state.bus, match &caller {
                Caller::Admin => Box::new(|| true),
                Caller::Approver(a) => {
                    let (store, id, issued) = (state.approvers.clone(), a.id.clone(), a.token_issued_at.clone());
                    // Revoked, or its token replaced: the stream ends.
                    Box::new(move || store.get(&id).is_some_and(|now| now.revoked_at.is_none() && now.token_issued_at == issued))
                }
            }),
            (_, ["v1", "approvals" | "approvers", ..]) => approvals::handle(&state, &caller, req, &segs).await?,
            (_, ["v1", "grants" | "secrets", ..]) => grants::handle(&state, &caller, req, &segs).await?,
            (_, ["v1", "sandboxes", ..]) => sandboxes::handle(&state, &caller, req, &segs).await?,
            (&Method::GET, ["v1", "ledger", rest @ ..]) => {
                let (ledger, rest, query) = (state.ledger.clone(), rest.iter().map(|s| s.to_string()).collect::<Vec<String>>(), req.uri().query().map(str::to_string));
                // Scans and verification read the whole store: keep them off the async workers.
                tokio::task::spawn_blocking(move || ledger::handle(ledger.as_ref(), &rest.iter().map(String::as_str).collect::<Vec<_>>(), query.as_deref()))
                    .await
                    .unwrap_or_else(|e| err(StatusCode::INTERNAL_SERVER_ERROR, "internal", &e.to_string()))
            }
            (&Method::GET, ["v1", "agents"]) => json(StatusCode::OK, &id.agents()),
            (&Method::POST, ["v1", "agents"]) => {
                let new: NewAgent = read_json(req).await?;
                json(StatusCode::CREATED, &id.add_agent(new).map_err(|e| from_error(&e))?)
            }
            (&Method::GET, ["v1", "agents", a]) => match id.agent(a) {
                Some(agent) => json(StatusCode::OK, &agent),
                None => err(StatusCode::NOT_FOUND, "not_found", &format!("agent {a:?} not found")),
            },
            (&Method::POST, ["v1", "agents", a, "revoke"]) => {
                json(StatusCode::OK, &id.revoke_agent(a).map_err(|e| from_error(&e))?)
            }
            (&Method::GET, ["v1", "agents", a, "credentials"]) => {
                let creds: Vec<_> = id
                    .credentials(Some(a))
                    .iter()
                    .map(|c| serde_json::json!({"id": c.id, "agent": c.agent, "job": c.job, "created_at": c.created_at, "revoked_at": c.revoked_at}))
                    .collect();
                json(StatusCode::OK, &creds)
            }
            (&Method::POST, ["v1", "agents", a, "credentials"]) => {
                let a = a.to_string();
                let body: CredentialRequest = read_json(req).await?;
                let mut issued = id.issue_credential(&a, body.job.as_deref()).map_err(|e| from_error(&e))?;
                issued.env = crate::grant::env_for(&state.grants, id.as_ref(), &state.secrets, &a, body.job.as_deref(), &issued.credential_id);
                json(StatusCode::CREATED, &issued)
            }
            (&Method::POST, ["v1", "credentials", c, "revoke"]) => {
                let c = id.revoke_credential(c).map_err(|e| from_error(&e))?;
                json(StatusCode::OK, &serde_json::json!({"id": c.id, "agent": c.agent, "job": c.job, "revoked_at": c.revoked_at}))
            }
            (&Method::GET, ["v1", "jobs"]) => json(StatusCode::OK, &id.jobs()),
            (&Method::POST, ["v1", "jobs"]) => {
                let new: NewJob = read_json(req).await?;
                json(StatusCode::CREATED, &id.start_job(new).map_err(|e| from_error(&e))?)
            }
            (&Method::GET, ["v1", "jobs", j]) => match id.job(j) {
                Some(job) => json(StatusCode::OK, &job),
                None => err(StatusCode::NOT_FOUND, "not_found", &format!("job {j:?} not found")),
            },
            (&Method::POST, ["v1", "jobs", j, "handoff"]) => {
                let j = j.to_string();
                let body: HandoffRequest = read_json(req).await?;
                json(StatusCode::OK, &id.handoff_job(&j, &body.to).map_err(|e| from_error(&e))?)
            }
            _ => err(StatusCode::NOT_FOUND, "no_route", &format!("no route for {method} {path}")),
        })
    }
    .await;
    result.unwrap_or_else(|r| r)
}
