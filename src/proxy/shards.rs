//! The proxy's shards (`proxy.shards`): single-threaded runtimes, each on a thread of its own.
//! One acceptor (on the shared runtime) takes each new connection on `proxy.listen` and hands
//! it to the shard that serves the fewest; that shard serves it from start to end with its own
//! upstream pool, so a request and the pooled upstream connection it rides are never handed
//! between CPUs. (On the shared multi-threaded runtime they are: a request's task and its
//! upstream connection's task wake each other across CPUs, and on a virtual machine each such
//! wake-up is an inter-processor interrupt, a VM exit; see README, Performance.)
//!
//! Everything else is shared: policy, identity, ledger, approvals, grants, the DNS cache, the
//! certificate cache and the connection limit. (Letting every shard accept from the socket
//! itself does not spread the load: the first shard to wake takes every connection waiting.)

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;

use super::listener::Accept;
use super::{serve_limited, ProxyState, Upstream};
use crate::config::UpstreamConfig;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

/// How long a stopping shard waits for its blocking tasks (store reads of held requests).
const STOP_WAIT: Duration = Duration::from_secs(1);
/// Blocking threads (DNS lookups, store reads) of all shards together: tokio's default for
/// one runtime, so that shards do not multiply what a flood of slow lookups can start.
const BLOCKING_THREADS: usize = 512;
/// Blocking threads of each shard, however many shards there are.
const MIN_BLOCKING_THREADS: usize = 4;

/// A connection on its way to a shard: the stream (not yet registered with any runtime) and
/// the peer label.
type Handed = (std::net::TcpStream, String);

/// What the acceptor knows of a shard.
struct Door {
    /// The shard's number (its thread is `clawser-proxy-<shard>`).
    shard: usize,
    tx: mpsc::Sender<Handed>,
    /// Connections handed to the shard and not yet closed.
    live: Arc<AtomicUsize>,
}

/// Starts `n` shards and the acceptor that hands them the connections of `listener`, until
/// `shutdown` turns true. Each returned task ends when its part has stopped.
pub fn start(
    state: &ProxyState,
    upstream: &UpstreamConfig,
    listener: TcpListener,
    n: usize,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<JoinHandle<()>>> {
    let limit = Arc::new(Semaphore::new(state.config.max_connections));
    // A shard takes what it is handed at once; at most max_connections wait for it anyway.
    let inbox = state.config.max_connections.max(1);
    let mut doors = Vec::with_capacity(n);
    let mut tasks = Vec::with_capacity(n + 1);
    for i in 0..n {
        let (tx, rx) = mpsc::channel(inbox);
        let live = Arc::new(AtomicUsize::new(0));
        let shard = Inbox {
            rx: tokio::sync::Mutex::new(rx),
            live: live.clone(),
        };
        let state = Arc::new(ProxyState {
            upstream: Upstream::new(upstream, state.destinations.clone())?,
            ..state.clone()
        });
        let (limit, shutdown) = (limit.clone(), shutdown.clone());
        let (done, stopped) = tokio::sync::oneshot::channel::<()>();
        // The runtime is built on its own thread (a runtime must not be dropped inside
        // another's async context, which is where this runs), which reports whether it could.
        let (built_tx, built) = std::sync::mpsc::sync_channel::<io::Result<()>>(1);
        let blocking = (BLOCKING_THREADS / n).max(MIN_BLOCKING_THREADS);
        std::thread::Builder::new()
            .name(format!("clawser-proxy-{i}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .max_blocking_threads(blocking)
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = built_tx.send(Err(e));
                        return;
                    }
                };
                let _ = built_tx.send(Ok(()));
                runtime.block_on(serve_limited(state, shard, limit, shutdown));
                runtime.shutdown_timeout(STOP_WAIT);
                let _ = done.send(());
            })
            .map_err(Error::io(
                "starting the thread of",
                format!("proxy shard {i}"),
            ))?;
        built
            .recv()
            .unwrap_or_else(|_| Err(io::Error::other("its thread ended before saying")))
            .map_err(Error::io(
                "starting the runtime of",
                format!("proxy shard {i}"),
            ))?;
        tasks.push(tokio::spawn(async move {
            let _ = stopped.await;
        }));
        doors.push(Door { shard: i, tx, live });
    }
    state.metrics.shards(n);
    tasks.push(tokio::spawn(accept(
        listener,
        doors,
        state.metrics.clone(),
        shutdown,
    )));
    Ok(tasks)
}

/// The acceptor: hands each new connection to the shard with the fewest live ones.
async fn accept(
    listener: TcpListener,
    mut doors: Vec<Door>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut next = 0;
    loop {
        let Some((stream, peer)) = super::listener::next(&listener, &mut shutdown).await else {
            return;
        };
        let mut handed = match stream.into_std() {
            Ok(s) => (s, peer),
            Err(e) => {
                tracing::warn!(%peer, error = %e, "accepted connection unusable");
                continue;
            }
        };
        loop {
            let live: Vec<usize> = doors
                .iter()
                .map(|d| d.live.load(Ordering::Relaxed))
                .collect();
            let Some(i) = pick(&live, next) else {
                tracing::error!("every proxy shard has stopped: proxy.listen no longer accepts");
                return;
            };
            let door = &doors[i];
            door.live.fetch_add(1, Ordering::Relaxed);
            let sent = tokio::select! {
                r = door.tx.send(handed) => r,
                _ = shutdown.changed() => return,
            };
            match sent {
                Ok(()) => {
                    metrics.shard_connection(door.shard);
                    next = (i + 1) % doors.len();
                    break;
                }
                Err(mpsc::error::SendError(back)) => {
                    door.live.fetch_sub(1, Ordering::Relaxed);
                    if *shutdown.borrow() {
                        return;
                    }
                    // A shard whose serve loop ended (it does not, short of a bug): the
                    // others take its share.
                    tracing::error!(shard = door.shard, "a proxy shard has stopped");
                    doors.remove(i);
                    next = 0;
                    handed = back;
                }
            }
        }
    }
}

/// The shard with the fewest live connections; among equals, the first from `from` on
/// (so that idle shards take turns). `None` without shards.
fn pick(live: &[usize], from: usize) -> Option<usize> {
    let n = live.len();
    (0..n)
        .map(|k| (from + k) % n)
        .min_by_key(|&i| live.get(i).copied().unwrap_or(usize::MAX))
}

/// A shard's side of the hand-off: the connections the acceptor handed it.
struct Inbox {
    rx: tokio::sync::Mutex<mpsc::Receiver<Handed>>,
    live: Arc<AtomicUsize>,
}

impl Accept for Inbox {
    type Io = Counted;
    async fn accept(&self) -> io::Result<(Counted, String)> {
        let Some((stream, peer)) = self.rx.lock().await.recv().await else {
            // The acceptor has stopped: so is the proxy (the serve loop sees shutdown).
            return std::future::pending().await;
        };
        let live = Live(self.live.clone());
        let _ = stream.set_nonblocking(true);
        let stream = TcpStream::from_std(stream)?;
        Ok((
            Counted {
                stream,
                _live: live,
            },
            peer,
        ))
    }
}

/// Counts a connection as live until dropped.
struct Live(Arc<AtomicUsize>);

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A shard's connection: the stream, counted as live until it is dropped (after the
/// connection and any tunnel on it have ended).
struct Counted {
    stream: TcpStream,
    _live: Live,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::pick;

    #[test]
    fn the_shard_with_fewest_live_connections_takes_the_next() {
        // (live per shard, where the turn starts) -> shard
        let cases: &[(&[usize], usize, Option<usize>)] = &[
            (&[], 0, None),
            (&[5], 0, Some(0)),
            (&[3, 1], 0, Some(1)),
            (&[1, 3], 1, Some(0)),
            // Equals take turns from `from` on.
            (&[0, 0, 0], 0, Some(0)),
            (&[0, 0, 0], 1, Some(1)),
            (&[0, 0, 0], 2, Some(2)),
            (&[2, 1, 1], 0, Some(1)),
            (&[2, 1, 1], 2, Some(2)),
        ];
        for &(live, from, want) in cases {
            assert_eq!(pick(live, from), want, "{live:?} from {from}");
        }
    }
}
