//! Approval gates end to end: a real `clawser serve`, a real HTTPS upstream, curl as the
//! agent, and approvers acting through the CLI and the admin API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use common::{base_config, curl, eventually, Server, Upstream};
use serde_json::{json, Value};

const APPROVERS: &str = r#"approvers:
  - id: bob
    roles: [release-approver]
  - id: carol
    roles: [release-approver]
  - id: alice
    roles: [release-approver]
  - id: mallory
    roles: [viewer]
"#;

struct Gate {
    _tmp: tempfile::TempDir,
    upstream: Upstream,
    server: Server,
    env: HashMap<String, String>,
}

async fn gate(proxy_extra: &str, extra: &str) -> Gate {
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
fn approver_token(s: &Server, id: &str) -> String {
    let out = s.cli_ok(&["approvers", "token", id]);
    out.lines()
        .find_map(|l| l.strip_prefix("token:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string()
}

/// An admin API call with curl (no proxy); returns (status, JSON body).
async fn admin(
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
fn agent_request(
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
async fn pending(s: &Server, token: &str, n: usize) -> Vec<Value> {
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

fn ledger_kinds(s: &Server) -> Vec<String> {
    let out = s.cli_ok(&["ledger", "tail", "-n", "1000"]);
    out.lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn hold_then_approve_forwards_exactly_once() {
    let g = gate("", "").await;
    let bob = approver_token(&g.server, "bob");
    let req = agent_request(
        &g.env,
        "POST",
        g.upstream.url("/prod/deploy?token=s3cret"),
        r#"{"version":"1.4"}"#,
        &[
            "Content-Type: application/json",
            "X-Clawser-Intent: deploy 1.4 to production",
            "X-Clawser-Evidence: CI run 88 green",
        ],
    );
    let list = pending(&g.server, &bob, 1).await;
    let a = &list[0];
    assert_eq!(a["agent"], "dev");
    assert_eq!(a["on_behalf_of"], "alice");
    assert_eq!(a["runtime"], "claude-code");
    assert_eq!(a["request"]["method"], "POST");
    assert!(a["request"]["url"]
        .as_str()
        .unwrap()
        .contains("/prod/deploy?token=<redacted>"));
    assert_eq!(a["intent"], "deploy 1.4 to production");
    assert_eq!(a["evidence"], "CI run 88 green");
    assert_eq!(
        a["required"],
        json!({"role": "release-approver", "count": 1})
    );
    assert_eq!(a["reasons"][0]["code"], "production_write");
    assert_eq!(g.upstream.hits(), 0, "nothing forwarded while held");
    let id = a["id"].as_str().unwrap().to_string();

    // The CLI shows it and approves it with bob's token.
    let show = g
        .server
        .cli_ok(&["approvals", "show", &id, "--token", &bob]);
    assert!(
        show.contains("deploy 1.4 to production") && show.contains("production_write"),
        "{show}"
    );
    let out = g.server.cli_ok(&[
        "approvals",
        "approve",
        &id,
        "--reason",
        "looks good",
        "--token",
        &bob,
    ]);
    assert!(out.contains("approved"), "{out}");

    let (code, body, _) = req.await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(g.upstream.hits(), 1);
    let seen = g.upstream.last().unwrap();
    assert!(
        !seen.headers.contains_key("x-clawser-intent"),
        "stripped before forwarding"
    );
    assert!(!seen.headers.contains_key("x-clawser-evidence"));
    let (_, a) = admin(&g.server, "GET", &format!("/v1/approvals/{id}"), &bob, None).await;
    assert_eq!(a["state"], "consumed");
    assert_eq!(a["decisions"][0]["approver"], "bob");
    assert_eq!(a["decisions"][0]["reason"], "looks good");

    let kinds = ledger_kinds(&g.server);
    for k in [
        "approval.created",
        "approval.decided",
        "approval.consumed",
        "request.completed",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} missing from {kinds:?}");
    }
    let timeline = g
        .server
        .cli_ok(&["ledger", "show", "--approval", &id, "--json"]);
    assert!(
        timeline.contains("looks good") && timeline.contains("bob"),
        "{timeline}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn hold_then_deny_is_a_403_with_the_reason() {
    let g = gate("", "").await;
    let bob = approver_token(&g.server, "bob");
    // `clawser approvals watch` prints the events as they happen.
    let mut watch = std::process::Command::new(common::BIN)
        .arg("-c")
        .arg(&g.server.config)
        .args(["approvals", "watch"])
        .env("CLAWSER_ADMIN_TOKEN", &bob)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let stdout = watch.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for l in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(l);
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await; // subscribed before the hold
    let req = agent_request(&g.env, "POST", g.upstream.url("/prod/deploy"), "{}", &[]);
    let id = pending(&g.server, &bob, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    g.server.cli_ok(&[
        "approvals",
        "deny",
        &id,
        "--reason",
        "freeze week",
        "--token",
        &bob,
    ]);
    let (code, body, hdrs) = req.await.unwrap();
    assert_eq!(code, 403, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["outcome"], "hold");
    assert_eq!(v["approval_id"], id.as_str());
    assert!(
        v["error"].as_str().unwrap().contains("freeze week"),
        "{body}"
    );
    assert!(hdrs
        .to_ascii_lowercase()
        .contains(&format!("x-clawser-approval: {id}")));
    assert_eq!(g.upstream.hits(), 0);
    let mut lines = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !lines
        .iter()
        .any(|l: &String| l.contains("approval.decided"))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "watch printed {lines:?}"
        );
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
            lines.push(l);
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let created = lines
        .iter()
        .find(|l| l.contains("approval.created"))
        .unwrap();
    assert!(
        created.contains(&id) && created.contains("/prod/deploy") && created.contains("agent=dev"),
        "{created}"
    );
    let decided = lines
        .iter()
        .find(|l| l.contains("approval.decided"))
        .unwrap();
    assert!(
        decided.contains("state=denied") && decided.contains("by=bob"),
        "{decided}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn timeout_then_approve_releases_one_identical_retry() {
    let g = gate("  hold_timeout: 1s\n", "").await;
    let bob = approver_token(&g.server, "bob");
    let url = g.upstream.url("/prod/deploy");
    let (code, body, hdrs) = agent_request(&g.env, "POST", url.clone(), "{\"v\":1}", &[])
        .await
        .unwrap();
    assert_eq!(code, 403, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let id = v["approval_id"].as_str().unwrap().to_string();
    let msg = v["error"].as_str().unwrap();
    assert!(
        msg.contains("a human must approve") && msg.contains("same request again"),
        "{msg}"
    );
    assert!(
        hdrs.to_ascii_lowercase()
            .contains(&format!("x-clawser-approval: {id}")),
        "{hdrs}"
    );
    assert_eq!(v["approval"]["state"], "pending");

    let (code, a) = admin(
        &g.server,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        &bob,
        Some(json!({"reason": "ok"})),
    )
    .await;
    assert_eq!(code, 200, "{a}");
    assert_eq!(a["state"], "approved");

    // A different body is a different request: held again, not released.
    let (code, body, _) = agent_request(&g.env, "POST", url.clone(), "{\"v\":2}", &[])
        .await
        .unwrap();
    assert_eq!(code, 403, "{body}");
    let other: Value = serde_json::from_str(&body).unwrap();
    assert_ne!(other["approval_id"], id.as_str());
    assert_eq!(g.upstream.hits(), 0);

    // The identical retry goes through once...
    let (code, body, _) = agent_request(&g.env, "POST", url.clone(), "{\"v\":1}", &[])
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(g.upstream.hits(), 1);
    // ...and a second identical retry is held again.
    let (code, body, _) = agent_request(&g.env, "POST", url.clone(), "{\"v\":1}", &[])
        .await
        .unwrap();
    assert_eq!(code, 403, "{body}");
    let again: Value = serde_json::from_str(&body).unwrap();
    assert_ne!(again["approval_id"], id.as_str());
    assert_eq!(g.upstream.hits(), 1);
}

const TWO_OF_M: &str = r#"package clawser.authz

import rego.v1

allow if input.request.method == "GET"

hold contains {
	"code": "release",
	"message": "a release needs two release approvers",
	"approvers": {"role": "release-approver", "count": 2},
} if input.request.method == "POST"
"#;

fn write_policy(dir: &Path, authz: &str) {
    let p = dir.join("policies");
    std::fs::create_dir_all(&p).unwrap();
    std::fs::write(
        p.join("clawser.rego"),
        include_str!("../policies/clawser.rego"),
    )
    .unwrap();
    std::fs::write(p.join("authz.rego"), authz).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn two_of_m_distinct_approvers_and_no_self_approval() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(tmp.path()).await;
    write_policy(tmp.path(), TWO_OF_M);
    let cfg = format!("{}{APPROVERS}", base_config(tmp.path(), &upstream, ""));
    let server = Server::start(tmp.path(), &cfg);
    let env = server.env_for("dev", None);
    let (bob, carol, alice, mallory) = (
        approver_token(&server, "bob"),
        approver_token(&server, "carol"),
        approver_token(&server, "alice"),
        approver_token(&server, "mallory"),
    );
    let req = agent_request(&env, "POST", upstream.url("/release"), "{}", &[]);
    let a = &pending(&server, &bob, 1).await[0];
    assert_eq!(a["required"]["count"], 2);
    let path = format!("/v1/approvals/{}/approve", a["id"].as_str().unwrap());

    // alice is the human dev acts for: she may not approve her own agent's request.
    let (code, v) = admin(&server, "POST", &path, &alice, Some(json!({}))).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (403, Some("self_approval")),
        "{v}"
    );
    // mallory lacks the role.
    let (code, v) = admin(&server, "POST", &path, &mallory, Some(json!({}))).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (403, Some("missing_role")),
        "{v}"
    );
    // The bootstrap admin token is not an approver.
    let (code, v) = admin(
        &server,
        "POST",
        &path,
        &server.admin_token(),
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (403, Some("not_an_approver")),
        "{v}"
    );

    let (code, v) = admin(&server, "POST", &path, &bob, Some(json!({"reason": "one"}))).await;
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["state"], "pending", "one of two");
    // The same approver twice does not count.
    let (code, v) = admin(
        &server,
        "POST",
        &path,
        &bob,
        Some(json!({"reason": "again"})),
    )
    .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("already_decided")),
        "{v}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(upstream.hits(), 0, "one approval of two releases nothing");
    assert!(!req.is_finished());

    let (code, v) = admin(
        &server,
        "POST",
        &path,
        &carol,
        Some(json!({"reason": "two"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let (code, body, _) = req.await.unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_roles_agent_tokens_and_approver_management() {
    let g = gate("", "").await;
    let agent = Server::token_of(&g.env);
    let (code, v) = admin(&g.server, "GET", "/v1/approvals", &agent, None).await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (403, Some("agent_token")),
        "{v}"
    );
    let (code, _) = admin(
        &g.server,
        "POST",
        "/v1/approvals/apr_x/approve",
        &agent,
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 403);

    // Approvers added at run time, via the CLI (admin token from the data dir).
    let out = g
        .server
        .cli_ok(&["approvers", "add", "dave", "--role", "release-approver"]);
    let dave = out
        .lines()
        .find_map(|l| l.strip_prefix("token:"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (code, me) = admin(&g.server, "GET", "/v1/whoami", &dave, None).await;
    assert_eq!(code, 200);
    assert_eq!(me["id"], "dave");
    // An approver reads and decides, but does not manage.
    let (code, v) = admin(
        &g.server,
        "POST",
        "/v1/agents",
        &dave,
        Some(json!({"id": "x"})),
    )
    .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (403, Some("admin_only")),
        "{v}"
    );
    let list = g.server.cli_ok(&["approvers", "list"]);
    assert!(list.contains("dave") && list.contains("bob"), "{list}");
    // Revoked: the token stops working at once.
    g.server.cli_ok(&["approvers", "revoke", "dave"]);
    let (code, _) = admin(&g.server, "GET", "/v1/whoami", &dave, None).await;
    assert_eq!(code, 401);
    // No token is stored in clear.
    let db = std::fs::read_dir(g.server.dir.join("data/db")).unwrap();
    for f in db.flatten() {
        if f.path().is_file() {
            let bytes = std::fs::read(f.path()).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains(&dave));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn pending_approval_survives_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(tmp.path()).await;
    let cfg = format!(
        "{}{APPROVERS}",
        base_config(tmp.path(), &upstream, "  hold_timeout: 1s\n")
    );
    let mut server = Server::start(tmp.path(), &cfg);
    let env = server.env_for("dev", None);
    let bob = approver_token(&server, "bob");
    let (code, body, _) = agent_request(&env, "PUT", upstream.url("/prod/cfg"), "x=1", &[])
        .await
        .unwrap();
    assert_eq!(code, 403, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["approval_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(server.terminate().success());

    let server = Server::start(tmp.path(), &cfg);
    let list = pending(&server, &bob, 1).await;
    assert_eq!(
        list[0]["id"],
        id.as_str(),
        "still pending after the restart"
    );
    let (code, v) = admin(
        &server,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        &bob,
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    // The proxy listens on a new port after the restart: the agent gets a fresh env (a new
    // credential for the same agent); its identical retry is released.
    let env = server.env_for("dev", None);
    let (code, body, _) = agent_request(&env, "PUT", upstream.url("/prod/cfg"), "x=1", &[])
        .await
        .unwrap();
    assert_eq!(code, 200, "{body}");
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn held_requests_are_bounded_and_a_disconnect_leaves_the_approval_pending() {
    let g = gate("  max_held: 1\n  hold_timeout: 30s\n", "").await;
    let bob = approver_token(&g.server, "bob");
    let first = agent_request(&g.env, "POST", g.upstream.url("/prod/a"), "{}", &[]);
    pending(&g.server, &bob, 1).await;
    let (code, body, _) = agent_request(&g.env, "POST", g.upstream.url("/prod/b"), "{}", &[])
        .await
        .unwrap();
    assert_eq!(code, 503, "{body}");
    assert!(
        body.contains("too_many_held") && body.contains("proxy.max_held"),
        "{body}"
    );
    // The agent gives up (its curl is killed): the slot is freed, the approval stays pending.
    first.abort();
    let _ = std::process::Command::new("pkill")
        .args(["-f", "/prod/a$"])
        .status();
    let admin_token = g.server.admin_token();
    let metrics_url = format!("http://{}/metrics", g.server.admin);
    let freed = eventually(Duration::from_secs(10), || {
        let out = std::process::Command::new("curl")
            .args([
                "-s",
                "-H",
                &format!("Authorization: Bearer {admin_token}"),
                &metrics_url,
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("clawser_held_requests 0")
    })
    .await;
    assert!(
        freed,
        "the held slot is released when the agent disconnects"
    );
    assert_eq!(pending(&g.server, &bob, 1).await.len(), 1);
    // With the slot free, the next request is held (not refused with 503).
    let second = agent_request(&g.env, "POST", g.upstream.url("/prod/b"), "{}", &[]);
    let list = pending(&g.server, &bob, 2).await;
    let b = list
        .iter()
        .find(|a| a["request"]["url"].as_str().unwrap().ends_with("/prod/b"))
        .unwrap();
    let (code, _) = admin(
        &g.server,
        "POST",
        &format!("/v1/approvals/{}/deny", b["id"].as_str().unwrap()),
        &bob,
        Some(json!({"reason": "no"})),
    )
    .await;
    assert_eq!(code, 200);
    let (code, body, _) = second.await.unwrap();
    assert_eq!(code, 403, "{body}");
    assert_eq!(g.upstream.hits(), 0);
}

/// A local webhook receiver: answers 503 to the first delivery (to exercise retries), then
/// 200; keeps every JSON body it accepted.
async fn webhook_receiver() -> (
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
                            let status = if n == 0 { 503 } else { 200 };
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

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_told_with_retries() {
    let (addr, got) = webhook_receiver().await;
    let notify =
        format!("notify:\n  retry_base: 100ms\n  webhooks:\n    - url: http://{addr}/hook\n");
    let g = gate("", &notify).await;
    let bob = approver_token(&g.server, "bob");
    let req = agent_request(
        &g.env,
        "POST",
        g.upstream.url("/prod/deploy"),
        "{}",
        &["X-Clawser-Intent: ship it"],
    );
    let id = pending(&g.server, &bob, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        eventually(Duration::from_secs(10), || got
            .lock()
            .unwrap()
            .iter()
            .any(|v| v["event"] == "approval.created"))
        .await,
        "approval.created delivered after a retry"
    );
    let created = got
        .lock()
        .unwrap()
        .iter()
        .find(|v| v["event"] == "approval.created")
        .cloned()
        .unwrap();
    let text = created["text"].as_str().unwrap();
    assert!(
        text.contains(&id) && text.contains("dev") && text.contains("/prod/deploy"),
        "{text}"
    );
    assert_eq!(created["data"]["intent"], "ship it");
    admin(
        &g.server,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        &bob,
        Some(json!({"reason": "go"})),
    )
    .await;
    assert_eq!(req.await.unwrap().0, 200);
    assert!(
        eventually(Duration::from_secs(10), || got
            .lock()
            .unwrap()
            .iter()
            .any(|v| v["event"] == "approval.decided"))
        .await,
        "approval.decided delivered"
    );
    let decided = got
        .lock()
        .unwrap()
        .iter()
        .find(|v| v["event"] == "approval.decided")
        .cloned()
        .unwrap();
    assert_eq!(decided["data"]["approver"], "bob");
    assert_eq!(decided["data"]["verdict"], "approve");
    // Nothing but the two subscribed kinds is sent.
    assert!(got
        .lock()
        .unwrap()
        .iter()
        .all(|v| v["event"] == "approval.created" || v["event"] == "approval.decided"));
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_approvals_are_recorded_and_release_nothing() {
    let g = gate(
        "  hold_timeout: 5s\n",
        "approvals:\n  ttl: 1s\n  expire_interval: 100ms\n",
    )
    .await;
    let bob = approver_token(&g.server, "bob");
    // The approval expires while the request waits: the agent is told, nothing is sent.
    let (code, body, _) = agent_request(&g.env, "POST", g.upstream.url("/prod/x"), "{}", &[])
        .await
        .unwrap();
    assert_eq!(code, 403, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let id = v["approval_id"].as_str().unwrap().to_string();
    assert!(v["error"].as_str().unwrap().contains("expired"), "{body}");
    let (_, a) = admin(&g.server, "GET", &format!("/v1/approvals/{id}"), &bob, None).await;
    assert_eq!(a["state"], "expired");
    let (code, v) = admin(
        &g.server,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        &bob,
        Some(json!({})),
    )
    .await;
    assert_eq!(
        (code, v["error"]["code"].as_str()),
        (409, Some("not_pending")),
        "{v}"
    );
    assert!(ledger_kinds(&g.server)
        .iter()
        .any(|k| k == "approval.expired"));
    assert_eq!(g.upstream.hits(), 0);
}
