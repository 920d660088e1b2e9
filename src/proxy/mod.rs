//! The proxy: the listeners on `proxy.listen` and `proxy.unix_socket`, CONNECT tunnels with
//! TLS interception, and absolute-form plain HTTP, all through one pipeline.
//!
//! - `listener.rs`: TCP and Unix listeners behind one small trait.
//! - `connect.rs`: CONNECT, first-bytes sniffing, interception, passthrough.
//! - `pipeline.rs`: the spine: identify -> bound -> target -> destination -> inspect ->
//!   decide -> record -> hold -> permit -> forward.
//! - `target.rs`: scheme, canonical host and port, canonical path (SNI/CONNECT/Host agree).
//! - `destination/`: host spelling, path canonicalization, address classes, resolution
//!   and the pinned resolver of the upstream client.
//! - `permit.rs`: `Permitted<T>` and the only two ways to build one.
//! - `authority.rs`: the grants that apply and the placeholders a request presents.
//! - `spend.rs`: reserving and counting grant uses; injecting secrets.
//! - `scrub.rs`: masking injected secrets in what the upstream sends back.
//! - `outcome.rs`: the decision line and the one refusal sink (log + ledger + answer).
//! - `hold.rs`: holding a request until its approval is decided (or consumed by a retry).
//! - `forward.rs`: the upstream client.
//! - `body.rs`, `summary.rs`: bounded body inspection; redaction and header hygiene.
//! - `respond.rs`: every response Clawser makes itself.
//! - `rewind.rs`: replaying sniffed bytes.
//! - `relay.rs`: passthrough byte relay with idle timeout and revocation.
//! - `shards.rs`: `proxy.shards`, single-threaded runtimes fed by one acceptor.

mod authority;
mod body;
mod connect;
pub mod destination;
mod forward;
pub mod hold;
pub mod listener;
mod outcome;
mod permit;
pub mod pipeline;
mod record;
mod relay;
pub mod respond;
mod rewind;
mod scrub;
pub mod shards;
mod spend;
mod summary;
mod target;

pub use body::{BoxError, ProxyBody};
pub use destination::Destinations;
pub use forward::Upstream;
pub use permit::Permitted;

use std::sync::Arc;
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::sync::{watch, Semaphore};

use crate::approval::ApprovalStore;
use crate::ca::CertificateAuthority;
use crate::config::{Environments, ProxyConfig};
use crate::events::EventBus;
use crate::identity::Authenticator;
use crate::ledger::Ledger;
use crate::metrics::Metrics;
use crate::policy::PolicyEngine;
use pipeline::ConnInfo;

/// Everything a request needs, shared by all connections (a shard's copy differs only in its
/// upstream pool: see `shards.rs`).
#[derive(Clone)]
pub struct ProxyState {
    pub config: ProxyConfig,
    pub environments: Environments,
    pub auth: Authenticator,
    pub policy: Arc<PolicyEngine>,
    pub ca: Arc<dyn CertificateAuthority>,
    pub upstream: Upstream,
    pub upstream_connect_timeout: Duration,
    pub metrics: Arc<Metrics>,
    /// The work ledger; `None` only under the bench-only `CLAWSER_BENCH_NO_LEDGER`.
    pub ledger: Option<Ledger>,
    /// Approvals: held requests open them and wait; identical retries consume them.
    pub approvals: Arc<dyn ApprovalStore>,
    /// The live event stream (`request.decided` is published when someone listens).
    pub events: EventBus,
    /// Permits for held requests (`proxy.max_held`).
    pub held: Arc<Semaphore>,
    /// Resolution and checks of destinations (shared with the upstream client's resolver).
    pub destinations: Arc<Destinations>,
    /// Secret redaction for summaries, logs and the ledger.
    pub redactor: crate::redact::Redactor,
    /// Grants, secrets and placeholders (the authority a request may carry).
    pub grants: Arc<dyn crate::grant::GrantStore>,
    pub secrets: Arc<crate::grant::Secrets>,
    pub placeholder_key: Arc<crate::grant::PlaceholderKey>,
    pub clock: Arc<dyn crate::grant::Clock>,
    /// Hosts read as GitHub (`input.github`).
    pub github_hosts: Vec<String>,
    /// HTTP/1.1 + h2 server for intercepted connections.
    inner_http: auto::Builder<TokioExecutor>,
}

impl ProxyState {
    /// Assembles the state.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: ProxyConfig,
        environments: Environments,
        auth: Authenticator,
        policy: Arc<PolicyEngine>,
        ca: Arc<dyn CertificateAuthority>,
        upstream: Upstream,
        upstream_connect_timeout: Duration,
        metrics: Arc<Metrics>,
        ledger: Option<Ledger>,
        approvals: Arc<dyn ApprovalStore>,
        events: EventBus,
        destinations: Arc<Destinations>,
        redactor: crate::redact::Redactor,
        authority: crate::grant::GrantContext,
        github_hosts: Vec<String>,
    ) -> ProxyState {
        let held = Arc::new(Semaphore::new(config.max_held));
        let mut inner_http = auto::Builder::new(TokioExecutor::new());
        inner_http
            .http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.idle_timeout)
            .max_buf_size(config.max_header_bytes.saturating_mul(2).max(16 * 1024));
        inner_http
            .http2()
            .timer(TokioTimer::new())
            .max_header_list_size(
                u32::try_from(config.max_header_bytes.saturating_mul(2)).unwrap_or(u32::MAX),
            )
            .max_concurrent_streams(256)
            .keep_alive_interval(Some(config.idle_timeout))
            .keep_alive_timeout(config.idle_timeout);
        ProxyState {
            config,
            environments,
            auth,
            policy,
            ca,
            upstream,
            upstream_connect_timeout,
            metrics,
            ledger,
            held,
            approvals,
            events,
            destinations,
            redactor,
            grants: authority.store,
            secrets: authority.secrets,
            placeholder_key: authority.key,
            clock: authority.clock,
            github_hosts,
            inner_http,
        }
    }
}

/// Serves the proxy on `listener` (TCP or Unix) until `shutdown` turns true.
pub async fn serve<L: listener::Accept>(
    state: Arc<ProxyState>,
    listener: L,
    shutdown: watch::Receiver<bool>,
) {
    let limit = Arc::new(Semaphore::new(state.config.max_connections));
    serve_limited(state, listener, limit, shutdown).await
}

/// [`serve`], with connection slots (`proxy.max_connections`) shared with other listeners
/// of the same endpoint (the shards of `shards.rs`).
pub async fn serve_limited<L: listener::Accept>(
    state: Arc<ProxyState>,
    listener: L,
    limit: Arc<Semaphore>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut outer = hyper::server::conn::http1::Builder::new();
    outer
        .timer(TokioTimer::new())
        .header_read_timeout(state.config.idle_timeout)
        .max_buf_size(
            state
                .config
                .max_header_bytes
                .saturating_mul(2)
                .max(16 * 1024),
        );
    let outer = Arc::new(outer);
    loop {
        let Some((stream, peer)) = listener::next(&listener, &mut shutdown).await else {
            return;
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            state.metrics.connection_refused();
            tracing::warn!(%peer, max = state.config.max_connections, "connection refused: proxy.max_connections reached");
            drop(stream);
            continue;
        };
        let (state, outer) = (state.clone(), outer.clone());
        tokio::spawn(async move {
            state.metrics.connection(1);
            // The permit is shared with any CONNECT tunnel this connection opens: the slot
            // is freed when the connection and its tunnel have both ended.
            let slot = Arc::new(permit);
            let conn = Arc::new(ConnInfo {
                credential_id: None,
                connect: None,
                sni: None,
                slot: Some(slot.clone()),
            });
            let svc_state = state.clone();
            let svc = service_fn(move |req: Request<Incoming>| {
                let (state, conn) = (svc_state.clone(), conn.clone());
                async move { Ok::<_, std::convert::Infallible>(route(state, conn, req).await) }
            });
            if let Err(e) = outer
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!(%peer, error = %e, "proxy connection ended with an error");
            }
            state.metrics.connection(-1);
            drop(slot);
        });
    }
}

async fn route(
    state: Arc<ProxyState>,
    conn: Arc<ConnInfo>,
    req: Request<Incoming>,
) -> Response<ProxyBody> {
    if req.method() == Method::CONNECT {
        return connect::handle_connect(state, conn.slot.clone(), req).await;
    }
    if req.uri().scheme().is_none() {
        return respond::error(
            StatusCode::BAD_REQUEST,
            "not_a_proxy_request",
            "this is the Clawser proxy port: send absolute-form requests (http://host/path) or CONNECT",
            "-",
        );
    }
    pipeline::handle(state, conn, req).await
}
