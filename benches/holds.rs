//! Held-request benchmark (`cargo bench --bench holds`; `HELD=1000` by default):
//! - N concurrent requests held for approval by a real `clawser serve` (release build),
//!   each on its own connection: the server's resident memory per held request (RSS after
//!   all N wait minus RSS before, over N);
//! - the time from an approver's approve call to the upstream receiving the request, for
//!   each of the N approvals (one at a time), p50/p99/max.
//!
//! Plain-HTTP absolute-form requests keep the client cheap; the upstream and this client
//! share the machine with the server, so figures are for this machine only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};

type Seen = Arc<(Mutex<HashMap<String, Instant>>, tokio::sync::Notify)>;

async fn upstream() -> (SocketAddr, Seen) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen: Seen = Arc::default();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = l.accept().await.unwrap();
            let s = s.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let s = s.clone();
                    async move {
                        s.0.lock()
                            .unwrap()
                            .insert(req.uri().path().to_string(), Instant::now());
                        s.1.notify_waiters();
                        Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> (u16, Bytes) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

async fn admin(addr: SocketAddr, token: &str, method: &str, path: &str, body: &str) -> Value {
    let req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("authorization", format!("Bearer {token}"))
        .header("host", addr.to_string())
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let (status, b) = send(addr, req).await;
    assert!(
        status < 300,
        "{method} {path}: {status} {}",
        String::from_utf8_lossy(&b)
    );
    serde_json::from_slice(&b).unwrap_or(Value::Null)
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

fn pct(v: &[Duration], p: f64) -> Duration {
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let n: usize = std::env::var("HELD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let tmp = tempfile::tempdir().unwrap();
    let (up, seen) = upstream().await;
    let cfg = format!(
        r#"data_dir: {d}/data
proxy:
  listen: 127.0.0.1:0
  allow_private: [127.0.0.0/8]
  max_held: {max}
  max_connections: {conns}
  hold_timeout: 600s
admin:
  listen: 127.0.0.1:0
ca:
  dir: {d}/certs
policy:
  dir: {d}/policies
environments:
  default: development
  rules:
    - env: production
      hosts: [127.0.0.1]
      paths: ["/prod/*"]
approvals:
  max_pending_per_agent: {max}
log:
  level: warn
agents:
  - id: dev
    runtime: claude-code
    on_behalf_of: alice
approvers:
  - id: bob
    roles: [release-approver]
"#,
        d = tmp.path().display(),
        max = n + 10,
        conns = n + 100
    );
    let cfg_path = tmp.path().join("clawser.yaml");
    std::fs::write(&cfg_path, cfg).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_clawser"))
        .arg("-c")
        .arg(&cfg_path)
        .arg("serve")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let info = tmp.path().join("data/server.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    let info: Value = loop {
        if let Ok(t) = std::fs::read_to_string(&info) {
            if let Ok(v) = serde_json::from_str(&t) {
                break v;
            }
        }
        assert!(Instant::now() < deadline, "server did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let proxy: SocketAddr = info["proxy"].as_str().unwrap().parse().unwrap();
    let adm: SocketAddr = info["admin"].as_str().unwrap().parse().unwrap();
    let admin_token = std::fs::read_to_string(tmp.path().join("data/admin.token"))
        .unwrap()
        .trim()
        .to_string();
    let cred = admin(
        adm,
        &admin_token,
        "POST",
        "/v1/agents/dev/credentials",
        "{}",
    )
    .await;
    let basic = base64::engine::general_purpose::STANDARD
        .encode(format!("dev:{}", cred["token"].as_str().unwrap()));
    let bob = admin(adm, &admin_token, "POST", "/v1/approvers/bob/token", "{}").await["token"]
        .as_str()
        .unwrap()
        .to_string();

    // Warm up one hold -> approve cycle so first-use allocations are not counted.
    let mut holds = Vec::new();
    for i in 0..=n {
        let req = Request::builder()
            .method("POST")
            .uri(format!("http://{up}/prod/deploy-{i}"))
            .header("host", up.to_string())
            .header("proxy-authorization", format!("Basic {basic}"))
            .body(Full::new(Bytes::from(format!("{{\"n\":{i}}}"))))
            .unwrap();
        if i == 0 {
            let h = tokio::spawn(send(proxy, req));
            let a = loop {
                let l = admin(adm, &bob, "GET", "/v1/approvals?state=pending", "").await;
                if let Some(a) = l.as_array().and_then(|v| v.first().cloned()) {
                    break a;
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            };
            let id = a["id"].as_str().unwrap();
            admin(
                adm,
                &bob,
                "POST",
                &format!("/v1/approvals/{id}/approve"),
                "{}",
            )
            .await;
            assert_eq!(h.await.unwrap().0, 200);
            tokio::time::sleep(Duration::from_millis(200)).await;
            let before = rss_kib(child.id());
            holds.push((before, None));
            continue;
        }
        holds.push((0, Some(tokio::spawn(send(proxy, req)))));
    }
    let before = holds[0].0;
    let started = Instant::now();
    let pending = loop {
        let l = admin(adm, &bob, "GET", "/v1/approvals?state=pending", "").await;
        let l = l.as_array().cloned().unwrap_or_default();
        if l.len() >= n {
            break l;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "only {} of {n} held",
            l.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let all_held = started.elapsed();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = rss_kib(child.id());
    let per_held = (after.saturating_sub(before)) as f64 * 1024.0 / n as f64;

    let mut lat = Vec::with_capacity(n);
    let mut call = Vec::with_capacity(n);
    for a in &pending {
        let id = a["id"].as_str().unwrap();
        let path = a["request"]["url"]
            .as_str()
            .unwrap()
            .rsplit_once(':')
            .unwrap()
            .1;
        let path = &path[path.find('/').unwrap()..];
        let t0 = Instant::now();
        admin(
            adm,
            &bob,
            "POST",
            &format!("/v1/approvals/{id}/approve"),
            "{}",
        )
        .await;
        call.push(t0.elapsed());
        let got = loop {
            let arrived = seen.1.notified();
            if let Some(t) = seen.0.lock().unwrap().get(path) {
                break *t;
            }
            // Woken by the upstream (no polling: the machine's two cores are shared).
            assert!(
                tokio::time::timeout(Duration::from_secs(10), arrived)
                    .await
                    .is_ok(),
                "{path} not forwarded"
            );
        };
        lat.push(got.duration_since(t0));
    }
    let mut ok = 0;
    for (_, h) in holds {
        if let Some(h) = h {
            if h.await.unwrap().0 == 200 {
                ok += 1;
            }
        }
    }
    lat.sort();
    call.sort();
    println!(
        "held requests:        {n} (all held after {:.2} s), {ok} forwarded after approval",
        all_held.as_secs_f64()
    );
    println!(
        "server RSS:           {:.1} MiB before, {:.1} MiB with {n} held -> {:.1} KiB per held request",
        before as f64 / 1024.0,
        after as f64 / 1024.0,
        per_held / 1024.0
    );
    println!(
        "approve -> forwarded: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms (one approval at a time; includes the approve call's durable ledger write)",
        pct(&lat, 0.5).as_secs_f64() * 1e3,
        pct(&lat, 0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "approve call alone:   p50 {:.2} ms, p99 {:.2} ms (admin API round trip on a new connection, decision recorded durably)",
        pct(&call, 0.5).as_secs_f64() * 1e3,
        pct(&call, 0.99).as_secs_f64() * 1e3
    );
    let _ = child.kill();
    let _ = child.wait();
}
