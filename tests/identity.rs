//! Agents, credentials, jobs and the admin API as an operator uses them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::client::TunnelClient;
use common::{curl, Server, World};

#[tokio::test(flavor = "multi_thread")]
async fn revoked_credential_is_refused_at_once_even_on_an_open_connection() {
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    let token = Server::token_of(&env);
    let ca = w.tmp.path().join("certs/ca.pem");
    let mut client = TunnelClient::connect(
        w.server.proxy,
        "localhost",
        w.upstream.port(),
        "dev",
        &token,
        &ca,
    )
    .await;
    assert_eq!(client.get("/before").await.0, 200);
    // Find the credential id and revoke it through the CLI (which uses the admin API).
    let log = w.server.log_text();
    let line = log.lines().rev().find(|l| l.contains("/before")).unwrap();
    let cred = serde_json::from_str::<serde_json::Value>(line).unwrap()["credential"]
        .as_str()
        .unwrap()
        .to_string();
    let out = w.server.cli_ok(&["credentials", "revoke", &cred]);
    assert!(out.contains("revoked_at"), "{out}");
    // The open connection: the next request is refused.
    let (status, body) = client.get("/after").await;
    assert_eq!(status, 407, "{body}");
    assert!(body.contains("auth_revoked"), "{body}");
    // A new connection too.
    let (code, _) = curl(&env, &[w.upstream.url("/new").as_str()]).await;
    assert_eq!(code, 407);
    assert_eq!(w.upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn revoking_an_agent_refuses_all_its_credentials() {
    let w = World::new().await;
    let env = w.server.env_for("oc-1", None);
    assert_eq!(curl(&env, &[w.upstream.url("/").as_str()]).await.0, 200);
    w.server.cli_ok(&["agents", "revoke", "oc-1"]);
    assert_eq!(curl(&env, &[w.upstream.url("/").as_str()]).await.0, 407);
    let out = w.server.cli(&["env", "--agent", "oc-1"]);
    assert!(
        !out.status.success(),
        "a revoked agent gets no new credential"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_added_at_run_time_and_jobs_handed_off_across_runtimes() {
    let w = World::new().await;
    let out = w.server.cli_ok(&[
        "agents",
        "add",
        "hermes-2",
        "--runtime",
        "hermes",
        "--on-behalf-of",
        "alice",
        "--role",
        "dev",
    ]);
    assert!(out.contains("via admin API"), "{out}");
    let list = w.server.cli_ok(&["agents", "list"]);
    assert!(
        list.contains("hermes-2") && list.contains("dev") && list.contains("oc-1"),
        "{list}"
    );

    let started = w
        .server
        .cli_ok(&["jobs", "start", "--agent", "oc-1", "--title", "release 1.4"]);
    let job = started.split_whitespace().nth(2).unwrap().to_string();
    assert!(job.starts_with("job_"), "{started}");
    let env_oc = w.server.env_for("oc-1", Some(&job));
    assert_eq!(curl(&env_oc, &[w.upstream.url("/a").as_str()]).await.0, 200);

    // hermes-2 is not on the job yet.
    let out = w.server.cli(&["env", "--agent", "hermes-2", "--job", &job]);
    assert!(!out.status.success());
    let handed = w
        .server
        .cli_ok(&["jobs", "handoff", &job, "--to", "hermes-2"]);
    assert!(handed.contains("oc-1 -> hermes-2"), "{handed}");
    let env_h = w.server.env_for("hermes-2", Some(&job));
    assert_eq!(curl(&env_h, &[w.upstream.url("/b").as_str()]).await.0, 200);

    // The decision lines attribute both requests to the same job, different runtimes.
    let log = w.server.log_text();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter(|l| l.contains("request decided"))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let a = lines.iter().find(|v| v["path"] == "/a").unwrap();
    let b = lines.iter().find(|v| v["path"] == "/b").unwrap();
    assert_eq!(a["job"], job.as_str());
    assert_eq!(b["job"], job.as_str());
    assert_eq!(a["runtime"], "openclaw");
    assert_eq!(b["runtime"], "hermes");
    let shown: serde_json::Value =
        serde_json::from_str(&w.server.cli_ok(&["jobs", "show", &job])).unwrap();
    assert_eq!(shown["agents"], serde_json::json!(["oc-1", "hermes-2"]));
    assert_eq!(shown["handoffs"][0]["from"], "oc-1");
}

async fn admin_get(addr: std::net::SocketAddr, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut args = vec!["-sS".to_string(), "-w".into(), "\n%{http_code}".into()];
    if let Some(b) = bearer {
        args.push("-H".into());
        args.push(format!("Authorization: Bearer {b}"));
    }
    args.push(format!("http://{addr}{path}"));
    let out = tokio::process::Command::new("curl")
        .args(&args)
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (code.parse().unwrap(), body.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_api_needs_the_admin_token_and_never_takes_an_agent_token() {
    let w = World::new().await;
    let admin = w.server.admin;
    assert_eq!(admin_get(admin, "/healthz", None).await.0, 200);
    let (code, body) = admin_get(admin, "/v1/agents", None).await;
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("\"code\""), "{body}");
    let env = w.server.env_for("dev", None);
    let agent_token = Server::token_of(&env);
    let (code, body) = admin_get(admin, "/v1/agents", Some(&agent_token)).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("agent_token"));
    assert_eq!(
        admin_get(admin, "/v1/agents", Some("cla_wrong")).await.0,
        401
    );
    let token = w.server.admin_token();
    let (code, body) = admin_get(admin, "/v1/agents", Some(&token)).await;
    assert_eq!(code, 200);
    assert!(body.contains("\"dev\""));
    // Metrics count decisions and policy evaluation time.
    curl(&env, &[w.upstream.url("/m").as_str()]).await;
    let (code, metrics) = admin_get(admin, "/metrics", Some(&token)).await;
    assert_eq!(code, 200);
    assert!(
        metrics.contains("clawser_requests_total{outcome=\"allow\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("clawser_policy_eval_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("clawser_ledger_groups_total{committer=\"appender\"}"),
        "{metrics}"
    );
    // The admin token file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(w.tmp.path().join("data/admin.token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_works_offline_on_the_data_dir_and_the_server_sees_it_after() {
    let mut w = World::new().await;
    w.server.kill();
    let out = w
        .server
        .cli_ok(&["agents", "add", "codex-9", "--runtime", "codex"]);
    assert!(out.contains("data dir"), "{out}");
    let cfg = std::fs::read_to_string(&w.server.config).unwrap();
    let server = Server::start(w.tmp.path(), &cfg);
    let env = server.env_for("codex-9", None);
    assert_eq!(curl(&env, &[w.upstream.url("/").as_str()]).await.0, 200);
}
