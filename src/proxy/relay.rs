//! Copying bytes both ways for a passthrough tunnel, bounded: the tunnel ends when either
//! side closes, when no byte moves for `idle`, or when `still_allowed` turns false (the
//! agent's credential was revoked), checked every `recheck`.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let (mut abuf, mut bbuf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    let (mut a_open, mut b_open) = (true, true);
    let mut last = Instant::now();
    let mut tick = tokio::time::interval(recheck.min(idle));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while a_open || b_open {
        tokio::select! {
            r = ar.read(&mut abuf), if a_open => match r {
                Ok(0) | Err(_) => { a_open = false; let _ = bw.shutdown().await; }
                Ok(n) => {
                    last = Instant::now();
                    if bw.write_all(&abuf[..n]).await.is_err() { return Ended::Closed; }
                }
            },
            r = br.read(&mut bbuf), if b_open => match r {
                Ok(0) | Err(_) => { b_open = false; let _ = aw.shutdown().await; }
                Ok(n) => {
                    last = Instant::now();
                    if aw.write_all(&bbuf[..n]).await.is_err() { return Ended::Closed; }
                }
            },
            _ = tick.tick() => {
                if !still_allowed() {
                    return Ended::Revoked;
                }
                if last.elapsed() >= idle {
                    return Ended::Idle;
                }
            }
        }
    }
    Ended::Closed
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

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
