//! The request pipeline, one straight line of named steps:
//!
//! identify -> bound -> target (canonical host + path) -> destination (resolve + check) ->
//! inspect (body) -> decide (policy) -> record (write-ahead) -> hold -> permit -> forward ->
//! record (completion).
//!
//! Each step before the decision returns a typed [`Refusal`]; [`handle`] sends every one to
//! the single sink (`outcome::refuse`), which logs, records and answers it. Only `permit.rs`
//! builds a `Permitted`, and `Upstream::forward` accepts nothing else.

use std::sync::Arc;

use http::header::{CONTENT_LENGTH, PROXY_AUTHORIZATION};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::authority::{self, Authority};
use super::body::{inspect, BodyError, ProxyBody};
use super::destination::{DestinationRefusal, Destinations, Host, PathRules};
use super::forward::{Outbound, UpstreamFailure};
use super::outcome::{auth_refused, ledger_refusal, refuse, DecisionLine, Refusal, Seen};
use super::summary::{
    header_bytes, inspect_protocols, redacted_headers, redacted_query, strip_for_upstream,
    strip_response, Inspected,
};
use super::target::{of_request, RequestTarget};
use super::ProxyState;
use super::{hold, permit, record, respond, scrub, spend};
use crate::identity::{AuthFailure, Principal};
use crate::model::{BodySummary, Destination, Outcome, RequestSummary, TlsSummary};
use crate::policy::{classify, PolicyInput, Target};

/// How the connection carrying a request arrived.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Credential authenticated at CONNECT (tunnelled requests carry no proxy header).
    pub credential_id: Option<String>,
    /// CONNECT host and port, for tunnelled requests.
    pub connect: Option<(Host, u16)>,
    /// SNI sent in the ClientHello.
    pub sni: Option<String>,
    /// The client connection's place under `proxy.max_connections`; a CONNECT tunnel keeps
    /// a clone for its whole life.
    pub slot: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
}

/// Handles one request from an agent (tunnelled or absolute-form plain HTTP).
pub async fn handle(
    state: Arc<ProxyState>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let _busy = state.ledger.as_ref().map(crate::ledger::Ledger::busy);
    let mut seen = Seen::new(req.method());
    let principal = match identify(&state, &conn, &req) {
        Ok(p) => p,
        Err(failure) => {
            let header = req
                .headers()
                .get(PROXY_AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            return auth_refused(&state, &seen, &failure, header);
        }
    };
    match run(&state, &conn, &principal, &mut seen, req).await {
        Ok(resp) => resp,
        Err(refusal) => refuse(&state, &principal, &seen, refusal),
    }
}

/// Every request is identified, so a revoked credential stops working at once.
fn identify(
    state: &ProxyState,
    conn: &ConnInfo,
    req: &Request<Incoming>,
) -> Result<Principal, AuthFailure> {
    match &conn.credential_id {
        Some(id) => state.auth.revalidate(id),
        None => state.auth.authenticate(
            req.headers()
                .get(PROXY_AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        ),
    }
}

async fn run(
    state: &Arc<ProxyState>,
    conn: &ConnInfo,
    principal: &Principal,
    seen: &mut Seen,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Refusal> {
    bound(state, &req)?;
    let target = target(state, conn, seen, &req)?;
    let destination = destination(state, &target).await?;
    let (parts, body) = req.into_parts();
    let (body_summary, body, inspected) = read_body(state, &parts.headers, body).await?;
    let mut summary = summarize(state, conn, seen, &target, &parts, body_summary);
    // Classified on the real host (the summary's may have a credential-shaped part redacted).
    let env = classify(&state.environments, &target.host.as_string(), &target.path);
    let authority = authority::gather(
        state,
        principal,
        &target,
        &env,
        &parts.headers,
        &summary.body,
    )?;
    summary.placeholders = authority.found.iter().map(|(f, _)| f.seen()).collect();
    let mut upstream_req = Request::from_parts(parts, body);
    *upstream_req.uri_mut() = target.upstream_uri()?;
    *upstream_req.version_mut() = http::Version::HTTP_11;
    let protocols = inspect_protocols(&state.github_hosts, &target, &summary, &inspected)?;
    let ready = Ready {
        protocols,
        target,
        destination,
        env,
        authority,
        summary,
        upstream: upstream_req,
        inspected,
    };
    Ok(decide_and_forward(state, principal, seen, ready).await)
}

/// A request ready for the decision: where it goes, what the policy sees of it, what would
/// be sent, and the inspected body (for an approver's preview).
struct Ready {
    protocols: Inspected,
    target: RequestTarget,
    destination: Destination,
    env: Target,
    authority: Authority,
    summary: RequestSummary,
    upstream: Request<ProxyBody>,
    inspected: bytes::Bytes,
}

/// Reads the body for inspection (bounded, with `proxy.body_timeout` between pieces).
async fn read_body(
    state: &ProxyState,
    headers: &http::HeaderMap,
    body: Incoming,
) -> Result<(BodySummary, ProxyBody, bytes::Bytes), Refusal> {
    let declared = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    inspect(
        body,
        declared,
        state.config.max_inspect_bytes,
        state.config.body_timeout,
    )
    .await
    .map_err(|e| match e {
        BodyError::Idle(_) => {
            Refusal::new(StatusCode::REQUEST_TIMEOUT, "body_timeout", e.to_string())
        }
        BodyError::Read(e) => Refusal::new(
            StatusCode::BAD_REQUEST,
            "body_error",
            format!("could not read the request body: {e}"),
        ),
    })
}

/// The redacted view of the request that the policy, the log and the ledger see.
fn summarize(
    state: &ProxyState,
    conn: &ConnInfo,
    seen: &Seen,
    target: &RequestTarget,
    parts: &http::request::Parts,
    body: BodySummary,
) -> RequestSummary {
    RequestSummary {
        id: seen.request_id.clone(),
        scheme: target.scheme.to_string(),
        method: parts.method.as_str().to_string(),
        // Redacted once already, when `seen` learnt the target.
        host: seen.host.clone(),
        port: target.port,
        path: seen.path.clone(),
        query: redacted_query(
            target.path_and_query.split_once('?').map(|(_, q)| q),
            &state.redactor,
        ),
        headers: redacted_headers(&parts.headers, &state.redactor),
        body,
        tls: TlsSummary {
            sni: conn.sni.clone(),
            intercepted: conn.connect.is_some(),
        },
        placeholders: Vec::new(),
    }
}

/// Bounds checked before anything else is read.
fn bound(state: &ProxyState, req: &Request<Incoming>) -> Result<(), Refusal> {
    if header_bytes(req.headers()) > state.config.max_header_bytes {
        return Err(Refusal::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            format!(
                "request headers exceed proxy.max_header_bytes ({} bytes)",
                state.config.max_header_bytes
            ),
        ));
    }
    Ok(())
}

/// The canonical target; `seen` learns it (the path redacted) for the log and the ledger.
fn target(
    state: &ProxyState,
    conn: &ConnInfo,
    seen: &mut Seen,
    req: &Request<Incoming>,
) -> Result<RequestTarget, Refusal> {
    let rules = PathRules {
        allow_encoded_slash: state.config.allow_encoded_slash,
    };
    let got = of_request(conn.connect.as_ref(), conn.sni.as_deref(), req, rules);
    match &got {
        Ok(t) => {
            seen.scheme = t.scheme;
            seen.host = state.redactor.text(&t.host.as_string()).into_owned();
            seen.port = t.port;
            seen.path = state.redactor.text(&t.path).into_owned();
        }
        Err(_) => {
            if let Some((h, p)) = &conn.connect {
                seen.host = state.redactor.text(&h.as_string()).into_owned();
                seen.port = *p;
            }
            // Not canonical: decode what can be decoded so encoded secrets are seen too.
            let decoded = percent_decode_lossy(req.uri().path());
            seen.path = state.redactor.text(&decoded).into_owned();
        }
    }
    got
}

/// Resolves and checks where the request would really go.
async fn destination(state: &ProxyState, target: &RequestTarget) -> Result<Destination, Refusal> {
    state
        .destinations
        .resolve(&target.host, target.port)
        .await
        .map_err(destination_refusal)
}

/// The answer to a refused destination.
pub fn destination_refusal(r: DestinationRefusal) -> Refusal {
    match r {
        DestinationRefusal::NotAllowed(m) => {
            Refusal::new(StatusCode::FORBIDDEN, "destination_not_allowed", m)
        }
        DestinationRefusal::Unresolvable(m) => {
            Refusal::new(StatusCode::BAD_GATEWAY, "destination_unresolvable", m)
        }
    }
}

/// decide -> record (write-ahead) -> hold -> permit -> forward -> record.
async fn decide_and_forward(
    state: &Arc<ProxyState>,
    principal: &Principal,
    seen: &Seen,
    ready: Ready,
) -> Response<ProxyBody> {
    let Ready {
        protocols,
        target,
        destination,
        env,
        authority,
        summary,
        upstream: mut upstream_req,
        inspected,
    } = ready;
    let (target, destination) = (&target, &destination);
    let (github, git) = (protocols.github, protocols.git);
    let rid = seen.request_id.as_str();
    let mut input = PolicyInput::new(principal, &summary, &env);
    input.destination = Some(destination);
    input.grants = authority.views();
    input.github = github.as_ref().and_then(|g| serde_json::to_value(g).ok());
    input.git = git.as_ref().and_then(|g| serde_json::to_value(g).ok());
    let mut eval = state.policy.decide(&input);
    // An allowed request reserves the uses it spends before its write-ahead record; the
    // record names them, and they count once it is durable.
    let reservation = spend::reserve(state, &authority, &mut eval);
    state.metrics.decided(eval.decision.outcome, eval.elapsed);

    // What a hold binds to and shows the approver, read before X-Clawser-* are stripped.
    let captured = (eval.decision.outcome == Outcome::Hold).then(|| hold::Captured {
        env: Some(env.env.clone()),
        ..hold::Captured::of(
            principal,
            &summary,
            upstream_req.uri(),
            upstream_req.headers(),
            &inspected,
            &state.redactor,
        )
    });
    strip_for_upstream(upstream_req.headers_mut());
    let codes = eval.decision.codes();
    let line = DecisionLine {
        principal,
        seen,
        policy_rev: eval.revision.get(..12).unwrap_or(""),
    };
    // Write-ahead: the decision is durable in the ledger before anything is forwarded.
    if let Some(ledger) = &state.ledger {
        let mut entry = record::decided(
            principal,
            &summary,
            &env,
            Some(destination),
            &eval,
            &state.redactor,
        );
        // Who changed what: the ref updates, the GitHub action and repository, for auditors.
        if let Some(g) = &git {
            entry.git = Some(serde_json::to_value(g).unwrap_or_default());
        }
        if let Some(g) = &github {
            entry.github = Some(record::github(g));
        }
        let live = state
            .events
            .has_subscribers()
            .then(|| serde_json::to_value(&entry).unwrap_or_default());
        let appended = ledger.append_sorted("request.decided", &entry).await;
        if let (Ok(seq), Some(data)) = (&appended, live) {
            state.events.publish("request.decided", Some(*seq), data);
        }
        if let Err(e) = appended {
            return ledger_refusal(&line, &seen.request_id, &e);
        }
    }
    spend::commit(state, reservation);
    let mut released_by: Option<String> = None;
    let permitted = match captured {
        // Held: released only by an approval bound to exactly this request.
        Some(held) => {
            let fp = held.fingerprint.clone();
            match hold::hold(state, principal, &summary, &eval.decision, held).await {
                Ok(approval) => {
                    if let Err(resp) = spend::on_release(
                        state,
                        principal,
                        seen,
                        &line,
                        &authority,
                        &eval,
                        &approval.id,
                    )
                    .await
                    {
                        return *resp;
                    }
                    released_by = Some(approval.id.clone());
                    permit::approved(
                        &eval,
                        &approval,
                        &fp,
                        outbound(upstream_req, destination, target),
                    )
                }
                Err(resp) => {
                    let id = resp
                        .headers()
                        .get(respond::APPROVAL_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    line.emit(
                        "hold",
                        &format!("{codes};approval={id}"),
                        resp.status().as_u16(),
                    );
                    let held = respond::git_held(git.as_ref(), &eval.decision, id, &codes, rid);
                    return held.unwrap_or(*resp);
                }
            }
        }
        None => permit::allowed(&eval, outbound(upstream_req, destination, target)),
    };
    let Some(permitted) = permitted else {
        line.emit(eval.decision.outcome.as_str(), &codes, 403);
        let pushed = respond::git_refused(git.as_ref(), &eval.decision, &state.redactor, rid);
        return pushed.unwrap_or_else(|| respond::refused(&eval.decision, rid));
    };
    // Secrets go in last: only into a permitted request, after its record is durable.
    let (permitted, needles) = match spend::inject(state, &authority, permitted, &seen.request_id) {
        Ok(p) => p,
        Err(resp) => {
            line.emit("allow", "secret_unavailable", 503);
            if let Some(l) = &state.ledger {
                let msg = "secret_unavailable: not forwarded";
                let entry =
                    record::completed(&seen.request_id, principal, 503, 0, seen.start, Some(msg));
                l.append_detached("request.completed", entry);
            }
            return *resp;
        }
    };
    match state.upstream.forward(permitted).await {
        Ok(resp) => {
            let status = resp.status().as_u16();
            match &released_by {
                Some(id) => line.emit("allow", &format!("{codes};approval={id}"), status),
                None => line.emit("allow", &codes, status),
            }
            let (mut parts, body) = resp.into_parts();
            strip_response(&mut parts.headers);
            let done = record::on_complete(
                state.ledger.clone(),
                seen.request_id.clone(),
                principal.clone(),
                status,
                seen.start,
            );
            let body = record::Recorded::new(body, done)
                .map_err(Into::into)
                .boxed();
            // A response to a request that carried an injected secret never shows it; one
            // from a secret's host is checked too (best effort).
            let (needles, strict) = if needles.is_empty() {
                (spend::host_needles(state, &authority.host), false)
            } else {
                (needles, true)
            };
            if needles.is_empty() {
                Response::from_parts(parts, body)
            } else {
                scrub::response(parts, body, needles, strict, &seen.request_id)
            }
        }
        Err(failure) => {
            state.metrics.upstream_error();
            let (status, code, msg) = match failure {
                UpstreamFailure::Timeout => (
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream_timeout",
                    "the upstream server did not answer in time".to_string(),
                ),
                UpstreamFailure::Failed(e) => (
                    StatusCode::BAD_GATEWAY,
                    "upstream_error",
                    format!("the upstream request failed: {e}"),
                ),
            };
            line.emit("allow", code, status.as_u16());
            if let Some(l) = &state.ledger {
                l.append_detached(
                    "request.completed",
                    record::completed(
                        &seen.request_id,
                        principal,
                        status.as_u16(),
                        0,
                        seen.start,
                        Some(&msg),
                    ),
                );
            }
            respond::error(status, code, &msg, &seen.request_id)
        }
    }
}

/// `%XX` escapes decoded where they are valid (the rest kept), for redacting a raw path.
fn percent_decode_lossy(path: &str) -> String {
    percent_encoding::percent_decode_str(path)
        .decode_utf8_lossy()
        .into_owned()
}

fn outbound(
    request: Request<ProxyBody>,
    destination: &Destination,
    target: &RequestTarget,
) -> Outbound {
    Outbound {
        request,
        addrs: Destinations::addrs(destination, target.port),
    }
}
