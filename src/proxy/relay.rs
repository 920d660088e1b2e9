//! Copying bytes both ways for a passthrough tunnel, bounded: the tunnel ends when both
//! sides have closed, when no byte has moved for `idle` (a peer that stops reading, so a
//! write blocks, counts as idle too), or when `still_allowed` turns false (the agent's
//! credential was revoked), checked every `recheck`. The copy runs beside a watchdog, so a
//! blocked read or write never keeps the watchdog from ending the tunnel.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;

/// How a relay ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Both sides closed (or one failed).
    Closed,
    /// Nothing moved for the idle timeout.
    Idle,
    /// The credential stopped being valid.
    Revoked,
}

/// Relays between `a` and `b` until one of the ends above.
pub async fn relay<A, B>(
    a: A,
    b: B,
    idle: Duration,
    recheck: Duration,
    still_allowed: impl Fn() -> bool,
) -> Ended
where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let last = Arc::new(Mutex::new(Instant::now()));
    let mut a = Active {
        inner: a,
        last: last.clone(),
    };
    let mut b = Active {
        inner: b,
        last: last.clone(),
    };
    let mut tick = tokio::time::interval(recheck.min(idle));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let copy = tokio::io::copy_bidirectional(&mut a, &mut b);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            _ = &mut copy => return Ended::Closed,
            _ = tick.tick() => {
                if !still_allowed() {
                    return Ended::Revoked;
                }
                let quiet = last.lock().map(|l| l.elapsed()).unwrap_or(idle);
                if quiet >= idle {
                    return Ended::Idle;
                }
            }
        }
    }
}

/// A stream that notes when bytes last moved through it.
struct Active<T> {
    inner: T,
    last: Arc<Mutex<Instant>>,
}

impl<T> Active<T> {
    fn touch(&self) {
        if let Ok(mut l) = self.last.lock() {
            *l = Instant::now();
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Active<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.touch();
        }
        r
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Active<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn bytes_flow_both_ways_until_closed() {
        let (a, mut a_peer) = tokio::io::duplex(64);
        let (b, mut b_peer) = tokio::io::duplex(64);
        let t = tokio::spawn(relay(
            a,
            b,
            Duration::from_secs(60),
            Duration::from_secs(1),
            || true,
        ));
        a_peer.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        b_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        b_peer.write_all(b"pong").await.unwrap();
        a_peer.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        drop(a_peer);
        drop(b_peer);
        assert_eq!(t.await.unwrap(), Ended::Closed);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_tunnel_ends() {
        let (a, _a_peer) = tokio::io::duplex(64);
        let (b, _b_peer) = tokio::io::duplex(64);
        let ended = relay(
            a,
            b,
            Duration::from_secs(60),
            Duration::from_secs(1),
            || true,
        )
        .await;
        assert_eq!(ended, Ended::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_peer_that_stops_reading_cannot_hold_the_tunnel() {
        // b's peer never reads: once the small pipe is full, every write blocks.
        let (a, mut a_peer) = tokio::io::duplex(1 << 16);
        let (b, _b_peer_not_reading) = tokio::io::duplex(64);
        let t = tokio::spawn(relay(
            a,
            b,
            Duration::from_secs(60),
            Duration::from_secs(1),
            || true,
        ));
        a_peer.write_all(&vec![b'x'; 4096]).await.unwrap();
        tokio::time::sleep(Duration::from_secs(61)).await;
        assert_eq!(t.await.unwrap(), Ended::Idle);
    }

    #[tokio::test(start_paused = true)]
    async fn a_revoked_credential_ends_a_busy_tunnel() {
        let (a, mut a_peer) = tokio::io::duplex(1 << 16);
        let (b, mut b_peer) = tokio::io::duplex(1 << 16);
        let valid = Arc::new(AtomicBool::new(true));
        let v = valid.clone();
        let t = tokio::spawn(relay(
            a,
            b,
            Duration::from_secs(60),
            Duration::from_secs(1),
            move || v.load(Ordering::SeqCst),
        ));
        // Keep it busy, then revoke.
        for _ in 0..3 {
            a_peer.write_all(b"x").await.unwrap();
            let mut one = [0u8; 1];
            b_peer.read_exact(&mut one).await.unwrap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        valid.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(t.await.unwrap(), Ended::Revoked);
    }
}
