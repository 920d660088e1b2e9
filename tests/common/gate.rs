//! Helpers for approval tests: a server with approvers, approver tokens, admin API calls,
//! agent requests in the background, and waiting for pending approvals.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::{base_config, curl, Server, Upstream};

pub const APPROVERS: &str = r#"approvers:
  - id: bob
    roles: [release-approver]
  - id: carol
    roles: [release-approver]
  - id: alice
    roles: [release-approver]
  - id: mallory
    roles: [viewer]
"#;

pub struct Gate {
    pub _tmp: tempfile::TempDir,
    pub upstream: Upstream,
    pub server: Server,
    pub env: HashMap<String, String>,
}

pub async fn gate(proxy_extra: &str, extra: &str) -> Gate {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(tmp.path()).await;
    let cfg = format!(
        "{}{APPROVERS}{extra}",
        base_config(tmp.path(), &upstream, proxy_extra)
    );
    let server = Server::start(tmp.path(), &cfg);
    let env = server.env_for("dev", None);
    Gate {
        _tmp: tmp,
        upstream,
        server,
        env,
    }
}

/// `clawser approvers token ID` -> the token it printed.
pub fn approver_token(s: &Server, id: &str) -> String {
    printed_token(&s.cli_ok(&["approvers", "token", id]))
}

/// The token on the `token:` line that `approvers add|token` print.
pub fn printed_token(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("token:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string()
}

/// An admin API call with curl (no proxy); returns (status, JSON body).
pub async fn admin(
    s: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("http://{}{path}", s.admin);
    let auth = format!("Authorization: Bearer {token}");
    let data = body.map(|b| b.to_string());
    let mut args = vec!["-X", method, "-H", auth.as_str(), url.as_str()];
    if let Some(d) = &data {
        args.extend(["-H", "Content-Type: application/json", "-d", d.as_str()]);
    }
    let (code, text) = curl(&HashMap::new(), &args).await;
    (code, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Starts a request through the proxy in the background.
pub fn agent_request(
    env: &HashMap<String, String>,
    method: &str,
    url: String,
    body: &str,
    headers: &[&str],
) -> tokio::task::JoinHandle<(u16, String, String)> {
    let env = env.clone();
    let (method, body) = (method.to_string(), body.to_string());
    let headers: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    tokio::spawn(async move {
        let hdr_file = tempfile::NamedTempFile::new().unwrap();
        let hdr_path = hdr_file.path().to_str().unwrap().to_string();
        let mut args = vec![
            "-X",
            method.as_str(),
            "-d",
            body.as_str(),
            "-D",
            hdr_path.as_str(),
        ];
        for h in &headers {
            args.extend(["-H", h.as_str()]);
        }
        args.push(url.as_str());
        let (code, text) = curl(&env, &args).await;
        let hdrs = std::fs::read_to_string(hdr_file.path()).unwrap_or_default();
        (code, text, hdrs)
    })
}

/// Waits for `n` pending approvals and returns them.
pub async fn pending(s: &Server, token: &str, n: usize) -> Vec<Value> {
    for _ in 0..200 {
        let (code, v) = admin(s, "GET", "/v1/approvals?state=pending", token, None).await;
        assert_eq!(code, 200, "{v}");
        let list = v.as_array().unwrap().clone();
        if list.len() >= n {
            return list;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {n} pending approvals");
}

pub fn ledger_kinds(s: &Server) -> Vec<String> {
    let out = s.cli_ok(&["ledger", "tail", "-n", "1000"]);
    out.lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect()
}

/// A local webhook receiver: answers 503 to the first delivery when `fail_first` (to
/// exercise retries), then 200; keeps every JSON body it accepted.
pub async fn webhook_receiver(
    fail_first: bool,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::Mutex<Vec<Value>>>,
) {
    use http_body_util::BodyExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let g = got.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (g, calls) = (g.clone(), calls.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (g, calls) = (g.clone(), calls.clone());
                        async move {
                            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let event = req
                                .headers()
                                .get("x-clawser-event")
                                .map(|v| v.to_str().unwrap().to_string());
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let status = if n == 0 && fail_first { 503 } else { 200 };
                            if status == 200 {
                                let v: Value = serde_json::from_slice(&body).unwrap();
                                assert_eq!(event.as_deref(), v["event"].as_str());
                                g.lock().unwrap().push(v);
                            }
                            Ok::<_, std::convert::Infallible>(
                                http::Response::builder()
                                    .status(status)
                                    .body(http_body_util::Full::new(bytes::Bytes::new()))
                                    .unwrap(),
                            )
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, got)
}
