//! CONNECT tunnels: authenticate, answer 200, read the first bytes (fully, with a timeout)
//! and then either intercept TLS, tunnel uninspected to a passthrough host (decided by
//! policy on host/port), or refuse.

use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::body::{empty, ProxyBody};
use super::pipeline::{self, split_authority, ConnInfo, DecisionLine};
use super::rewind::Rewind;
use super::{record, respond, ProxyState};
use crate::identity::Principal;
use crate::model::{BodySummary, Outcome, RequestSummary, TlsSummary};
use crate::policy::{classify, glob_match, PolicyInput};

/// Handles a CONNECT request on the proxy port.
pub async fn handle_connect(
    state: Arc<ProxyState>,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let start = Instant::now();
    let request_id =
        crate::identity::token::new_id("req").unwrap_or_else(|_| "req_unknown".to_string());
    let principal = match state.auth.authenticate(
        req.headers()
            .get(http::header::PROXY_AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    ) {
        Ok(p) => p,
        Err(f) => {
            state.metrics.auth_failed();
            tracing::info!(target: "clawser::decision", request_id, method = "CONNECT", outcome = "deny", reasons = f.code(), status = 407u16, "request refused: proxy authentication");
            return respond::auth_required(&f, &request_id);
        }
    };
    let Some((host, port)) = req
        .uri()
        .authority()
        .and_then(|a| split_authority(a.as_str(), 443))
    else {
        return respond::error(
            StatusCode::BAD_REQUEST,
            "bad_connect",
            "CONNECT needs host:port",
            &request_id,
        );
    };
    let passthrough = state
        .config
        .passthrough_hosts
        .iter()
        .any(|g| glob_match(g, &host));
    if passthrough {
        // Decided now, on host and port, so a refusal is a proper HTTP answer.
        let summary = connect_summary(&request_id, &host, port);
        let env = classify(&state.environments, &host, "");
        let eval = state
            .policy
            .decide(&PolicyInput::new(&principal, &summary, &env));
        state.metrics.decided(eval.decision.outcome, eval.elapsed);
        let line = DecisionLine {
            principal: &principal,
            request_id: &request_id,
            method: "CONNECT",
            host: &host,
            path: "",
            policy_rev: eval.revision.get(..12).unwrap_or(""),
            start,
        };
        if let Some(ledger) = &state.ledger {
            if let Err(e) = ledger
                .append(
                    "request.decided",
                    record::decided(&principal, &summary, &env, &eval),
                )
                .await
            {
                tracing::error!(error = %e, "ledger append failed; CONNECT refused (fail closed)");
                line.emit("deny", "ledger_unavailable", 503);
                return respond::error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ledger_unavailable",
                    "the work ledger could not record this request",
                    &request_id,
                );
            }
        }
        if eval.decision.outcome != Outcome::Allow {
            line.emit(eval.decision.outcome.as_str(), &eval.decision.codes(), 403);
            return respond::refused(&eval.decision, &request_id);
        }
        line.emit("allow", "passthrough", 200);
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                tunnel(
                    state,
                    principal,
                    host,
                    port,
                    passthrough,
                    TokioIo::new(upgraded),
                    request_id,
                )
                .await
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    Response::new(empty())
}

fn connect_summary(request_id: &str, host: &str, port: u16) -> RequestSummary {
    RequestSummary {
        id: request_id.to_string(),
        scheme: "tcp".to_string(),
        method: "CONNECT".to_string(),
        host: host.to_string(),
        port,
        path: String::new(),
        query: Default::default(),
        headers: Default::default(),
        body: BodySummary::default(),
        tls: TlsSummary {
            sni: None,
            intercepted: false,
        },
    }
}

/// Reads until at least `want` bytes arrived, EOF, or the buffer holds `want`.
async fn read_prefix<T: AsyncRead + Unpin>(io: &mut T, want: usize) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(want.max(512));
    while buf.len() < want {
        if io.read_buf(&mut buf).await? == 0 {
            break;
        }
    }
    Ok(buf.freeze())
}

async fn tunnel<T>(
    state: Arc<ProxyState>,
    principal: Principal,
    host: String,
    port: u16,
    passthrough: bool,
    mut io: T,
    request_id: String,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let start = Instant::now();
    let prefix =
        match tokio::time::timeout(state.config.first_bytes_timeout, read_prefix(&mut io, 5)).await
        {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return,
            Err(_) => {
                tracing::debug!(
                    host,
                    "no bytes after CONNECT within proxy.first_bytes_timeout"
                );
                return;
            }
        };
    if prefix.is_empty() {
        return;
    }
    if passthrough {
        // Already allowed (and logged) at CONNECT: tunnel uninspected.
        let addr = format!(
            "{}:{port}",
            if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            }
        );
        match tokio::time::timeout(
            state.upstream_connect_timeout,
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(mut up)) => {
                let _ = up.set_nodelay(true);
                if up.write_all(&prefix).await.is_ok() {
                    let _ = tokio::io::copy_bidirectional(&mut io, &mut up).await;
                }
            }
            _ => tracing::info!(host, port, "passthrough connect failed"),
        }
        return;
    }
    if !crate::tls::looks_like_tls(&prefix) {
        state.metrics.decided(Outcome::Deny, Default::default());
        DecisionLine {
            principal: &principal,
            request_id: &request_id,
            method: "CONNECT",
            host: &host,
            path: "",
            policy_rev: "-",
            start,
        }
        .emit("deny", "not_tls", 403);
        if let Some(l) = &state.ledger {
            // Not a policy decision (nothing could be inspected), recorded as a deny.
            let summary = connect_summary(&request_id, &host, port);
            let entry = record::refused_connect(
                &principal,
                &summary,
                "not_tls",
                "non-TLS bytes inside CONNECT",
            );
            l.append_detached("request.decided", entry);
        }
        if prefix.iter().all(|b| b.is_ascii()) {
            // Plain HTTP inside the tunnel: answer in kind so the client sees why.
            const MSG: &str = "only TLS can be inspected inside CONNECT, and this host is not on proxy.passthrough_hosts";
            let body = serde_json::json!({
                "error": MSG, "outcome": "deny", "request_id": request_id,
                "reasons": [{"code": "not_tls", "message": MSG}],
            })
            .to_string();
            let raw = format!(
                "HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\nx-clawser-outcome: deny\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = io.write_all(raw.as_bytes()).await;
            let _ = io.shutdown().await;
        }
        return;
    }
    intercept(state, principal, host, port, Rewind::new(prefix, io)).await;
}

async fn intercept<T>(state: Arc<ProxyState>, principal: Principal, host: String, port: u16, io: T)
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let acceptor = tokio_rustls::LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let handshake = async {
        let start = acceptor.await?;
        let sni = start
            .client_hello()
            .server_name()
            .map(|s| s.to_ascii_lowercase());
        let config =
            crate::tls::intercept_config(state.ca.clone(), &host).map_err(std::io::Error::other)?;
        let tls = start.into_stream(config).await?;
        Ok::<_, std::io::Error>((tls, sni))
    };
    let (tls, sni) = match tokio::time::timeout(state.config.handshake_timeout, handshake).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::info!(host, error = %e, agent = %principal.agent.id, "TLS handshake with client failed");
            return;
        }
        Err(_) => {
            tracing::info!(host, agent = %principal.agent.id, "TLS handshake timed out");
            return;
        }
    };
    let conn = Arc::new(ConnInfo {
        credential_id: Some(principal.credential_id.clone()),
        connect: Some((host, port)),
        sni,
    });
    let svc_state = state.clone();
    let svc = service_fn(move |req| {
        let (state, conn) = (svc_state.clone(), conn.clone());
        async move { Ok::<_, std::convert::Infallible>(pipeline::handle(state, conn, req).await) }
    });
    if let Err(e) = state
        .inner_http
        .serve_connection(TokioIo::new(tls), svc)
        .await
    {
        tracing::debug!(error = %e, "intercepted connection ended with an error");
    }
}
