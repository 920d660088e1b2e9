//! Bounds that hold for a hostile agent: CONNECT tunnels count against
//! `proxy.max_connections` for their whole life, and passthrough tunnels end when the
//! credential is revoked or nothing moves for `proxy.idle_timeout`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, World};

/// Waits until `s` is closed by the other end (EOF or reset) or `within` passes.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return true,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn tunnels_count_against_max_connections_for_their_whole_life() {
    let w = World::with_proxy_extra("  max_connections: 2\n  first_bytes_timeout: 30s\n").await;
    let env = w.server.env_for("dev", None);
    let target = format!("localhost:{}", w.upstream.port());
    let (first, head) = w.server.tunnel(&env, "dev", &target);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (_second, head) = w.server.tunnel(&env, "dev", &target);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // Both tunnels are open (waiting for their first bytes): a third connection is refused.
    let (_third, head) = w.server.tunnel(&env, "dev", &target);
    assert_eq!(head, "", "a third connection got an answer: {head}");
    // One tunnel ends: its place is free again.
    drop(first);
    let mut ok = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (_s, head) = w.server.tunnel(&env, "dev", &target);
        if head.starts_with("HTTP/1.1 200") {
            ok = true;
            break;
        }
    }
    assert!(ok, "the freed slot was not reusable");
}

/// A TCP echo server on loopback; returns its address.
async fn echo_server() -> std::net::SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

fn echo_once(s: &mut TcpStream, msg: &[u8], server: &Server) {
    s.write_all(msg).unwrap();
    let mut got = vec![0u8; msg.len()];
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let r = s.read_exact(&mut got);
    assert!(
        r.is_ok() && got == msg,
        "{r:?} {got:?}\n{}",
        server.log_text()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn passthrough_tunnels_end_on_revocation_and_when_idle() {
    let echo = echo_server().await;
    let w =
        World::with_proxy_extra("  passthrough_hosts: [\"127.0.0.1\"]\n  idle_timeout: 3s\n").await;
    let target = echo.to_string();

    // Revocation ends a busy tunnel.
    let env = w.server.env_for("oc-1", None);
    let (mut s, head) = w.server.tunnel(&env, "oc-1", &target);
    assert!(
        head.starts_with("HTTP/1.1 200"),
        "{head}\n{}",
        w.server.log_text()
    );
    echo_once(&mut s, b"hello", &w.server);
    w.server.cli_ok(&["agents", "revoke", "oc-1"]);
    assert!(
        closed_within(&mut s, Duration::from_secs(3)),
        "the tunnel outlived its credential"
    );

    // Idle tunnels end after proxy.idle_timeout.
    let env = w.server.env_for("dev", None);
    let (mut s, head) = w.server.tunnel(&env, "dev", &target);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    echo_once(&mut s, b"x", &w.server);
    let started = Instant::now();
    assert!(
        closed_within(&mut s, Duration::from_secs(8)),
        "an idle tunnel stayed open"
    );
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "closed before the idle timeout"
    );
    // The server's line for each ending (written just after it closed the tunnel).
    let ended = common::eventually(Duration::from_secs(5), || {
        let log = w.server.log_text();
        log.contains("Revoked") && log.contains("Idle")
    })
    .await;
    assert!(ended, "{}", w.server.log_text());
}
