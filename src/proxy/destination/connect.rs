//! Connecting to exactly the addresses that were checked. The pipeline runs the upstream
//! request inside [`with_checked`]; the upstream client's connector ([`CheckedConnector`])
//! reads those addresses when it opens a connection and never resolves a name itself. Every
//! connection (and every passthrough tunnel) is checked once more on the address and port
//! it really reached: the rules again, and "is this Clawser's own listener" by comparing the
//! connection's two ends, which also catches the host's own global addresses.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::Destinations;

tokio::task_local! {
    static CHECKED: Arc<[SocketAddr]>;
}

/// Runs `f` (an upstream request) with `addrs` as the only addresses a new connection may go
/// to. The connector reads them when it is called, so it must be called while `f` is polled
/// (hyper-util's `Client::request` future does that), not while `f` is built.
pub async fn with_checked<F: Future>(addrs: Vec<SocketAddr>, f: F) -> F::Output {
    CHECKED.scope(addrs.into(), f).await
}

impl Destinations {
    /// Connects to the first of `addrs` that passes the rules and answers within `timeout`;
    /// refuses a connection that turns out to be to one of Clawser's own listeners.
    pub async fn connect(&self, addrs: &[SocketAddr], timeout: Duration) -> io::Result<TcpStream> {
        let mut last = io::Error::other("no address to connect to");
        for addr in addrs {
            if let Err(r) = self.check(addr.ip(), addr.port()) {
                last = io::Error::other(format!("{r:?}"));
                continue;
            }
            match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
                Ok(Ok(s)) => {
                    let (peer, local) = (s.peer_addr()?, s.local_addr()?);
                    if let Some(why) = self.lands_on_this_host(peer, local) {
                        return Err(io::Error::other(why));
                    }
                    let _ = s.set_nodelay(true);
                    return Ok(s);
                }
                Ok(Err(e)) => last = e,
                Err(_) => {
                    last = io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("connecting to {addr} timed out"),
                    )
                }
            }
        }
        Err(last)
    }

    /// Why a connection from `local` to `peer` must not be used, if it must not: it landed on
    /// one of Clawser's listeners (refused always), or it never left this host (its two ends
    /// share an address: the host's own global address reaches every local service) and that
    /// address is not in `proxy.allow_private`.
    pub fn lands_on_this_host(&self, peer: SocketAddr, local: SocketAddr) -> Option<String> {
        let (p, l) = (
            super::class::effective(peer.ip()),
            super::class::effective(local.ip()),
        );
        let own = self
            .own
            .iter()
            .any(|o| o.port() == peer.port() && (p == l || super::class::effective(o.ip()) == p));
        if own {
            return Some(format!("{peer} is Clawser's own listener"));
        }
        if p == l && !self.allowed(peer.ip()) {
            return Some(format!(
                "{peer} is this host itself; list it in proxy.allow_private to allow it"
            ));
        }
        None
    }
}

/// The upstream client's connector: plain TCP to the addresses of [`with_checked`], nothing
/// else (TLS is layered on top by hyper-rustls).
#[derive(Clone)]
pub struct CheckedConnector {
    pub destinations: Arc<Destinations>,
    pub connect_timeout: Duration,
}

impl tower_service::Service<Uri> for CheckedConnector {
    type Response = TokioIo<TcpStream>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<TokioIo<TcpStream>>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, dst: Uri) -> Self::Future {
        // Read now: hyper-util calls this synchronously inside the request's own task.
        let checked = CHECKED.try_with(Arc::clone);
        let d = self.destinations.clone();
        let timeout = self.connect_timeout;
        Box::pin(async move {
            let addrs = checked.map_err(|_| {
                io::Error::other(format!(
                    "no checked destination for {dst}: Clawser connects only to addresses it checked"
                ))
            })?;
            let port = dst
                .port_u16()
                .unwrap_or(if dst.scheme_str() == Some("https") {
                    443
                } else {
                    80
                });
            if addrs.iter().any(|a| a.port() != port) {
                return Err(io::Error::other(format!(
                    "the checked addresses are not for port {port} of {dst}"
                )));
            }
            d.connect(&addrs, timeout).await.map(TokioIo::new)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service;

    fn dests(own: Vec<SocketAddr>) -> Arc<Destinations> {
        Arc::new(Destinations::new(
            vec!["127.0.0.0/8".parse().unwrap()],
            own,
            Duration::from_secs(30),
            16,
            Duration::from_secs(5),
        ))
    }

    #[tokio::test]
    async fn connects_only_inside_a_checked_scope() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let mut c = CheckedConnector {
            destinations: dests(vec![]),
            connect_timeout: Duration::from_secs(5),
        };
        let uri: Uri = format!("http://example.test:{}/", addr.port())
            .parse()
            .unwrap();
        assert!(
            c.call(uri.clone()).await.is_err(),
            "no scope, no connection"
        );
        let ok = with_checked(vec![addr], async { c.clone().call(uri.clone()).await }).await;
        assert!(ok.is_ok(), "{ok:?}");
        let other: Uri = "http://example.test:1/".parse().unwrap();
        let r = with_checked(vec![addr], async { c.call(other).await }).await;
        assert!(r.is_err(), "port mismatch");
    }

    #[tokio::test]
    async fn own_listeners_are_refused_after_connect_too() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let d = dests(vec![SocketAddr::new(
            "0.0.0.0".parse().unwrap(),
            addr.port(),
        )]);
        assert!(d.connect(&[addr], Duration::from_secs(5)).await.is_err());
        assert!(d
            .lands_on_this_host(addr, "127.0.0.1:5555".parse().unwrap())
            .is_some());
        assert!(d
            .lands_on_this_host(
                "8.8.8.8:443".parse().unwrap(),
                "10.0.0.2:5555".parse().unwrap()
            )
            .is_none());
        // The host's own global address, on any port: refused unless listed.
        let own_global = "203.0.113.7:5432".parse().unwrap();
        let local = "203.0.113.7:40000".parse().unwrap();
        let none = Destinations::new(
            vec![],
            vec![],
            Duration::from_secs(30),
            16,
            Duration::from_secs(5),
        );
        assert!(none.lands_on_this_host(own_global, local).is_some());
        let listed = Destinations::new(
            vec!["203.0.113.7/32".parse().unwrap()],
            vec![],
            Duration::from_secs(30),
            16,
            Duration::from_secs(5),
        );
        assert!(listed.lands_on_this_host(own_global, local).is_none());
    }
}
