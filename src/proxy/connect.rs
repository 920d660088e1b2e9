//! CONNECT tunnels: authenticate, resolve and check the destination, answer 200, then
//! either tunnel uninspected to a passthrough host (decided by policy on host/port, with an
//! idle timeout and revocation), or read the first bytes (with a timeout) and intercept TLS,
//! or refuse.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::body::{empty, ProxyBody};
use super::destination::{Destinations, Host};
use super::outcome::{auth_refused, note, refuse, DecisionLine, Refusal, Seen};
use super::permit::{self, Permitted};
use super::pipeline::{self, destination_refusal, ConnInfo};
use super::relay::relay;
use super::rewind::Rewind;
use super::target::split_authority;
use super::{record, respond, ProxyState};
use crate::identity::Principal;
use crate::model::{BodySummary, RequestSummary, TlsSummary};
use crate::policy::{classify, glob_match, PolicyInput};

/// Handles a CONNECT request on the proxy port.
pub async fn handle_connect(
    state: Arc<ProxyState>,
    slot: Option<Arc<tokio::sync::OwnedSemaphorePermit>>,
    mut req: Request<Incoming>,
) -> Response<ProxyBody> {
    let mut seen = Seen::new(req.method());
    seen.scheme = "tcp";
    seen.path = String::new();
    let header = req
        .headers()
        .get(http::header::PROXY_AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let principal = match state.auth.authenticate(header) {
        Ok(p) => p,
        Err(f) => return auth_refused(&state, &seen, &f, header),
    };
    let (host, port) = match req.uri().authority() {
        Some(a) => match split_authority(a.as_str(), 443) {
            Ok(hp) => hp,
            Err(r) => {
                seen.host = state.redactor.text(a.host()).into_owned();
                return refuse(&state, &principal, &seen, r);
            }
        },
        None => {
            let r = Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_connect",
                "CONNECT needs host:port",
            );
            return refuse(&state, &principal, &seen, r);
        }
    };
    let host_name = host.as_string();
    seen.host = state.redactor.text(&host_name).into_owned();
    seen.port = port;
    // Decided on the resolved addresses before a byte is tunnelled: a forbidden destination
    // is refused here, whether the tunnel would be intercepted or passed through.
    let destination = match state.destinations.resolve(&host, port).await {
        Ok(d) => d,
        Err(r) => return refuse(&state, &principal, &seen, destination_refusal(r)),
    };
    let passthrough = state
        .config
        .passthrough_hosts
        .iter()
        .any(|g| glob_match(g, &host_name));
    let mut permitted = None;
    if passthrough {
        // Decided now, on host and port, so a refusal is a proper HTTP answer.
        let summary = connect_summary(&seen.request_id, &seen.host, port);
        // Classified on the real host (`seen.host` may have a credential-shaped part redacted).
        let env = classify(&state.environments, &host_name, "");
        let mut input = PolicyInput::new(&principal, &summary, &env);
        input.destination = Some(&destination);
        let eval = state.policy.decide(&input);
        state.metrics.decided(eval.decision.outcome, eval.elapsed);
        let line = DecisionLine {
            principal: &principal,
            seen: &seen,
            policy_rev: eval.revision.get(..12).unwrap_or(""),
        };
        if let Some(ledger) = &state.ledger {
            let entry = record::decided(
                &principal,
                &summary,
                &env,
                Some(&destination),
                &eval,
                &state.redactor,
            );
            if let Err(e) = ledger.append_sorted("request.decided", &entry).await {
                return super::outcome::ledger_refusal(&line, &seen.request_id, &e);
            }
        }
        match permit::allowed(&eval, Destinations::addrs(&destination, port)) {
            Some(p) => permitted = Some(p),
            None => {
                line.emit(eval.decision.outcome.as_str(), &eval.decision.codes(), 403);
                return respond::refused(&eval.decision, &seen.request_id);
            }
        }
        line.emit("allow", "passthrough", 200);
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        // Counted against proxy.max_connections until the tunnel ends.
        let _slot = slot;
        match on_upgrade.await {
            Ok(upgraded) => {
                let t = Tunnel {
                    state,
                    principal,
                    host,
                    port,
                    seen,
                };
                t.run(permitted, TokioIo::new(upgraded)).await
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    Response::new(empty())
}

/// An accepted CONNECT tunnel.
struct Tunnel {
    state: Arc<ProxyState>,
    principal: Principal,
    host: Host,
    port: u16,
    seen: Seen,
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
        placeholders: Vec::new(),
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

impl Tunnel {
    /// Passes through at once (when `passthrough` was permitted: the server may speak
    /// first, as SSH does), or reads the first bytes and then intercepts TLS or refuses.
    async fn run<T>(self, passthrough: Option<Permitted<Vec<SocketAddr>>>, mut io: T)
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let state = &self.state;
        if let Some(permitted) = passthrough {
            // Already allowed (and logged) at CONNECT: tunnel uninspected, to exactly the
            // addresses that were checked.
            passthrough_to(state, &self.principal, permitted, io).await;
            return;
        }
        let prefix =
            match tokio::time::timeout(state.config.first_bytes_timeout, read_prefix(&mut io, 5))
                .await
            {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => return,
                Err(_) => {
                    tracing::debug!(
                        host = self.seen.host.as_str(),
                        "no bytes after CONNECT within proxy.first_bytes_timeout"
                    );
                    return;
                }
            };
        if prefix.is_empty() {
            return;
        }
        if !crate::tls::looks_like_tls(&prefix) {
            const MSG: &str = "only TLS can be inspected inside CONNECT, and this host is not on proxy.passthrough_hosts";
            let r = Refusal::new(StatusCode::FORBIDDEN, "not_tls", MSG);
            note(state, &self.principal, &self.seen, r);
            if prefix.iter().all(|b| b.is_ascii()) {
                // Plain HTTP inside the tunnel: answer in kind so the client sees why.
                let body = serde_json::json!({
                    "error": MSG, "outcome": "deny", "request_id": self.seen.request_id,
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
        intercept(
            self.state,
            self.principal,
            self.host,
            self.port,
            Rewind::new(prefix, io),
        )
        .await;
    }
}

/// How often a passthrough tunnel checks that its credential is still valid.
const REVOCATION_CHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Connects to the permitted addresses (in order) and copies bytes both ways.
async fn passthrough_to<T>(
    state: &ProxyState,
    principal: &Principal,
    permitted: Permitted<Vec<SocketAddr>>,
    io: T,
) where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let addrs = permitted.into_inner();
    match state
        .destinations
        .connect(&addrs, state.upstream_connect_timeout)
        .await
    {
        Ok(up) => {
            let ended = relay(io, up, state.config.idle_timeout, REVOCATION_CHECK, || {
                state.auth.revalidate(&principal.credential_id).is_ok()
            })
            .await;
            tracing::info!(agent = %principal.agent.id, credential = %principal.credential_id, ?addrs, ?ended, "passthrough tunnel ended");
        }
        Err(e) => tracing::info!(?addrs, error = %e, "passthrough connect failed"),
    }
}

async fn intercept<T>(state: Arc<ProxyState>, principal: Principal, host: Host, port: u16, io: T)
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
        let config = crate::tls::intercept_config(state.ca.clone(), &host.as_string())
            .map_err(std::io::Error::other)?;
        let tls = start.into_stream(config).await?;
        Ok::<_, std::io::Error>((tls, sni))
    };
    let (tls, sni) = match tokio::time::timeout(state.config.handshake_timeout, handshake).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            tracing::info!(host = %host.as_string(), error = %e, agent = %principal.agent.id, "TLS handshake with client failed");
            return;
        }
        Err(_) => {
            tracing::info!(host = %host.as_string(), agent = %principal.agent.id, "TLS handshake timed out");
            return;
        }
    };
    let conn = Arc::new(ConnInfo {
        credential_id: Some(principal.credential_id.clone()),
        connect: Some((host, port)),
        sni,
        slot: None,
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
