//! The request pipeline: identify -> check -> inspect -> decide -> forward.
//!
//! [`Permitted`] can only be constructed here, after the policy said `allow`, and
//! `Upstream::forward` accepts nothing else: no code path forwards a request the policy did
//! not allow.

use std::sync::Arc;
use std::time::Instant;

use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST, PROXY_AUTHORIZATION};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use super::body::{inspect, ProxyBody};
use super::forward::UpstreamFailure;
use super::summary::{
    header_bytes, redacted_headers, redacted_query, strip_for_upstream, strip_response,
};
use super::ProxyState;
use super::{hold, record, respond};
use crate::approval::{Approval, ApprovalState};
use crate::identity::{AuthFailure, Principal};
use crate::model::{valid_host, Outcome, RequestSummary, TlsSummary};
use crate::policy::{classify, Evaluated, PolicyInput};

/// A request the policy allowed. Only this module can build one.
pub struct Permitted<T> {
    inner: T,
}

impl<T> Permitted<T> {
    /// The request, for the upstream client.
    pub(crate) fn into_inner(self) -> T {
        self.inner
    }
}

fn permit<T>(eval: &Evaluated, inner: T) -> Option<Permitted<T>> {
    (eval.decision.outcome == Outcome::Allow).then_some(Permitted { inner })
}

/// A held request released by the approval consumed for exactly it.
fn permit_approved<T>(
    eval: &Evaluated,
    approval: &Approval,
    fingerprint: &str,
    inner: T,
) -> Option<Permitted<T>> {
    (eval.decision.outcome == Outcome::Hold
        && approval.state == ApprovalState::Consumed
        && approval.fingerprint == fingerprint)
        .then_some(Permitted { inner })
}

/// How the connection carrying a request arrived.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// Credential authenticated at CONNECT (tunnelled requests carry no proxy header).
    pub credential_id: Option<String>,
    /// CONNECT host and port, for tunnelled requests.
    pub connect: Option<(String, u16)>,
    /// SNI sent in the ClientHello.
    pub sni: Option<String>,
}

/// Splits an authority into lower-case host (no IPv6 brackets) and port.
pub fn split_authority(authority: &str, default_port: u16) -> Option<(String, u16)> {
    let uri: Uri = format!("http://{authority}/").parse().ok()?;
    let a = uri.authority()?;
    let host = a
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let port = a.port_u16().unwrap_or(default_port);
    valid_host(&host).then_some((host, port))
}

fn host_for_uri(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

/// Handles one request from an agent (tunnelled or absolute-form plain HTTP).
pub async fn handle(
    state: Arc<ProxyState>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let request_id =
        crate::identity::token::new_id("req").unwrap_or_else(|_| "req_unknown".to_string());

    // 1. Identify: every request, so a revoked credential stops working at once.
    let principal = match &conn.credential_id {
        Some(id) => state.auth.revalidate(id),
        None => state.auth.authenticate(
            req.headers()
                .get(PROXY_AUTHORIZATION)
                .and_then(|v| v.to_str().ok()),
        ),
    };
    let principal = match principal {
        Ok(p) => p,
        Err(failure) => {
            return auth_failed(&state, &failure, &request_id, req.method().as_str(), start)
        }
    };

    // 2. Bounds and where the request goes.
    if header_bytes(req.headers()) > state.config.max_header_bytes {
        return respond::error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "headers_too_large",
            &format!(
                "request headers exceed proxy.max_header_bytes ({} bytes)",
                state.config.max_header_bytes
            ),
            &request_id,
        );
    }
    let target = match resolve_target(&conn, &req) {
        Ok(t) => t,
        Err((status, code, msg)) => {
            DecisionLine {
                principal: &principal,
                request_id: &request_id,
                method: req.method().as_str(),
                host: "-",
                path: "-",
                policy_rev: "-",
                start,
            }
            .emit("deny", code, status.as_u16());
            state.metrics.decided(Outcome::Deny, Default::default());
            return respond::error(status, code, &msg, &request_id);
        }
    };

    // 3. Inspect the body (bounded) and build the redacted summary.
    let (parts, body) = req.into_parts();
    let declared = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let is_json = parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    let (body_summary, body) =
        match inspect(body, declared, is_json, state.config.max_inspect_bytes).await {
            Ok(x) => x,
            Err(e) => {
                return respond::error(
                    StatusCode::BAD_REQUEST,
                    "body_error",
                    &format!("could not read the request body: {e}"),
                    &request_id,
                )
            }
        };
    let summary = RequestSummary {
        id: request_id.clone(),
        scheme: target.scheme.to_string(),
        method: parts.method.as_str().to_string(),
        host: target.host.clone(),
        port: target.port,
        path: parts.uri.path().to_string(),
        query: redacted_query(parts.uri.query(), &state.config.redact_query_keys),
        headers: redacted_headers(&parts.headers, &state.config.redact_headers),
        body: body_summary,
        tls: TlsSummary {
            sni: conn.sni.clone(),
            intercepted: conn.connect.is_some(),
        },
    };

    // 4. Decide.
    let env = classify(&state.environments, &summary.host, &summary.path);
    let input = PolicyInput::new(&principal, &summary, &env);
    let eval = state.policy.decide(&input);
    state.metrics.decided(eval.decision.outcome, eval.elapsed);

    // 5. Forward only what was allowed.
    let mut upstream_req = Request::from_parts(parts, body);
    let path_and_query = upstream_req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let uri = format!(
        "{}://{}:{}{}",
        target.scheme,
        host_for_uri(&target.host),
        target.port,
        path_and_query
    );
    match uri.parse::<Uri>() {
        Ok(u) => *upstream_req.uri_mut() = u,
        Err(_) => {
            return respond::error(
                StatusCode::BAD_REQUEST,
                "bad_uri",
                "the request target is not a valid URI",
                &request_id,
            );
        }
    }
    *upstream_req.version_mut() = http::Version::HTTP_11;
    // What a hold binds to and shows the approver, read before X-Clawser-* are stripped.
    let captured = (eval.decision.outcome == Outcome::Hold).then(|| {
        hold::Captured::of(
            &principal,
            &summary,
            upstream_req.uri(),
            upstream_req.headers(),
        )
    });
    strip_for_upstream(upstream_req.headers_mut());
    let rev = eval.revision.get(..12).unwrap_or("");
    let codes = eval.decision.codes();
    let line = DecisionLine {
        principal: &principal,
        request_id: &request_id,
        method: &summary.method,
        host: &summary.host,
        path: &summary.path,
        policy_rev: rev,
        start,
    };
    // 5a. Write-ahead: the decision is durable in the ledger before anything is forwarded.
    if let Some(ledger) = &state.ledger {
        let entry = record::decided(&principal, &summary, &env, &eval);
        let live = state.events.has_subscribers().then(|| entry.clone());
        let appended = ledger.append("request.decided", entry).await;
        if let (Ok(seq), Some(data)) = (&appended, live) {
            state.events.publish("request.decided", Some(*seq), data);
        }
        if let Err(e) = appended {
            tracing::error!(error = %e, request_id, "ledger append failed; request refused (fail closed)");
            line.emit("deny", "ledger_unavailable", 503);
            return respond::error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ledger_unavailable",
                "the work ledger could not record this request, so it was not forwarded",
                &request_id,
            );
        }
    }
    let mut released_by: Option<String> = None;
    let permitted = match captured {
        // 5b. Held: released only by an approval bound to exactly this request.
        Some(held) => {
            let fp = held.fingerprint.clone();
            match hold::hold(&state, &principal, &summary, &eval.decision, held).await {
                Ok(approval) => {
                    released_by = Some(approval.id.clone());
                    permit_approved(&eval, &approval, &fp, upstream_req)
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
                    return *resp;
                }
            }
        }
        None => permit(&eval, upstream_req),
    };
    let Some(permitted) = permitted else {
        line.emit(eval.decision.outcome.as_str(), &codes, 403);
        return respond::refused(&eval.decision, &request_id);
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
                request_id.clone(),
                principal.clone(),
                status,
                start,
            );
            Response::from_parts(
                parts,
                record::Recorded::new(body, done)
                    .map_err(Into::into)
                    .boxed(),
            )
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
                        &request_id,
                        &principal,
                        status.as_u16(),
                        0,
                        start,
                        Some(&msg),
                    ),
                );
            }
            respond::error(status, code, &msg, &request_id)
        }
    }
}

struct Target {
    scheme: &'static str,
    host: String,
    port: u16,
}

type Refusal = (StatusCode, &'static str, String);

/// Where a request goes, checking that SNI, CONNECT host and Host agree.
fn resolve_target(conn: &ConnInfo, req: &Request<Incoming>) -> Result<Target, Refusal> {
    let host_header = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        });
    let mismatch = |what: &str| {
        (
            StatusCode::FORBIDDEN,
            "host_mismatch",
            format!("{what} does not match the CONNECT host"),
        )
    };
    if let Some((host, port)) = &conn.connect {
        if let Some(sni) = &conn.sni {
            if !sni.eq_ignore_ascii_case(host) {
                return Err(mismatch("the TLS server name (SNI)"));
            }
        }
        if let Some(h) = host_header {
            match split_authority(&h, *port) {
                Some((hh, _)) if &hh == host => {}
                _ => return Err(mismatch("the Host header")),
            }
        }
        return Ok(Target {
            scheme: "https",
            host: host.clone(),
            port: *port,
        });
    }
    let uri = req.uri();
    let scheme = match uri.scheme_str() {
        Some("http") => "http",
        Some("https") => "https",
        _ => {
            return Err((
                StatusCode::BAD_REQUEST,
                "not_a_proxy_request",
                "send absolute-form requests (http://host/path) or use CONNECT".to_string(),
            ))
        }
    };
    let default_port = if scheme == "https" { 443 } else { 80 };
    let (host, port) = uri
        .authority()
        .and_then(|a| split_authority(a.as_str(), default_port))
        .ok_or((
            StatusCode::BAD_REQUEST,
            "bad_host",
            "the request URI has no valid host".to_string(),
        ))?;
    if let Some(h) = req.headers().get(HOST).and_then(|h| h.to_str().ok()) {
        if split_authority(h, port).map(|(hh, _)| hh) != Some(host.clone()) {
            return Err((
                StatusCode::FORBIDDEN,
                "host_mismatch",
                "the Host header does not match the request URI".to_string(),
            ));
        }
    }
    Ok(Target { scheme, host, port })
}

fn auth_failed(
    state: &ProxyState,
    failure: &AuthFailure,
    request_id: &str,
    method: &str,
    start: Instant,
) -> Response<ProxyBody> {
    state.metrics.auth_failed();
    tracing::info!(
        target: "clawser::decision",
        request_id, method, outcome = "deny", reasons = failure.code(), status = 407u16,
        latency_ms = start.elapsed().as_secs_f64() * 1e3,
        "request refused: proxy authentication"
    );
    respond::auth_required(failure, request_id)
}

/// The canonical decision line: one per decided request. Built once with what is known
/// about the request; `emit` adds how it ended.
pub struct DecisionLine<'a> {
    pub principal: &'a Principal,
    pub request_id: &'a str,
    pub method: &'a str,
    pub host: &'a str,
    pub path: &'a str,
    pub policy_rev: &'a str,
    pub start: Instant,
}

impl DecisionLine<'_> {
    /// Logs the line with the outcome, reason codes and the status the agent got.
    pub fn emit(&self, outcome: &str, reasons: &str, status: u16) {
        let p = self.principal;
        tracing::info!(
            target: "clawser::decision",
            request_id = self.request_id,
            agent = %p.agent.id,
            on_behalf_of = %p.agent.on_behalf_of,
            runtime = %p.agent.runtime,
            job = p.job.as_ref().map(|j| j.id.as_str()).unwrap_or("-"),
            credential = %p.credential_id,
            method = self.method,
            host = self.host,
            path = self.path,
            outcome,
            reasons,
            policy_rev = self.policy_rev,
            status,
            latency_ms = self.start.elapsed().as_secs_f64() * 1e3,
            "request decided"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities() {
        assert_eq!(
            split_authority("API.github.com:443", 80),
            Some(("api.github.com".into(), 443))
        );
        assert_eq!(
            split_authority("example.com", 80),
            Some(("example.com".into(), 80))
        );
        assert_eq!(
            split_authority("[::1]:8443", 443),
            Some(("::1".into(), 8443))
        );
        assert_eq!(
            split_authority("127.0.0.1:1", 443),
            Some(("127.0.0.1".into(), 1))
        );
        assert_eq!(split_authority("bad host:1", 443), None);
        assert_eq!(split_authority("", 443), None);
    }
}
