//! The upstream client: pooled hyper-util client over rustls (h1 and h2 by ALPN). It accepts
//! only a `Permitted` request, which only the pipeline can construct after an allow.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::ProxyBody;
use super::destination::{with_checked, CheckedConnector, Destinations};
use super::permit::Permitted;
use crate::config::UpstreamConfig;
use crate::error::Result;

/// A request and the checked addresses it may be sent to.
pub struct Outbound {
    pub request: Request<ProxyBody>,
    pub addrs: Vec<std::net::SocketAddr>,
}

/// Why forwarding failed.
#[derive(Debug)]
pub enum UpstreamFailure {
    /// No response headers within `upstream.response_timeout`.
    Timeout,
    /// Connecting, TLS or the exchange failed.
    Failed(String),
}

/// The pooled upstream client.
#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<CheckedConnector>, ProxyBody>,
    response_timeout: Duration,
}

impl Upstream {
    /// Builds the client from the config (trust: webpki roots + `extra_ca_files`). Names are
    /// resolved only from what `destinations` checked (no second lookup).
    pub fn new(cfg: &UpstreamConfig, destinations: Arc<Destinations>) -> Result<Upstream> {
        let tls = crate::tls::upstream_config(&cfg.extra_ca_files)?;
        let http = CheckedConnector {
            destinations,
            connect_timeout: cfg.connect_timeout,
        };
        let builder = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1();
        let https = if cfg.http2 {
            builder.enable_http2().wrap_connector(http)
        } else {
            builder.wrap_connector(http)
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_host)
            .build(https);
        Ok(Upstream {
            client,
            response_timeout: cfg.response_timeout,
        })
    }

    /// Sends a permitted request, over a connection to one of its checked addresses (or a
    /// pooled one opened to such an address for the same scheme, host and port), and waits for
    /// the response headers.
    pub async fn forward(
        &self,
        permitted: Permitted<Outbound>,
    ) -> Result<Response<Incoming>, UpstreamFailure> {
        let Outbound { request, addrs } = permitted.into_inner();
        let fut = with_checked(addrs, self.client.request(request));
        match tokio::time::timeout(self.response_timeout, fut).await {
            Err(_) => Err(UpstreamFailure::Timeout),
            Ok(Err(e)) => Err(UpstreamFailure::Failed(error_chain(&e))),
            Ok(Ok(resp)) => Ok(resp),
        }
    }
}

/// An error and its sources, joined with `: `.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}
