//! Approval gates end to end: a real `clawser serve`, a real HTTPS upstream, curl as the
//! agent, and approvers acting through the CLI and the admin API.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::time::Duration;

use common::gate::{
    admin, agent_request, approver_token, gate, ledger_kinds, pending, printed_token, APPROVERS,
};
use common::{base_config, Server, Upstream};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread")]
async fn hold_then_approve_forwards_exactly_once() {
    let g = gate("", "").await;
    let bob = approver_token(&g.server, "bob");
    let req = agent_request(
        &g.env,
        "POST",
        g.upstream.url("/prod/deploy?token=s3cret"),
        r#"{"version":"1.4-preview-marker","password":"hunter2"}"#,
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
    // The approver sees a redacted preview of the body it releases.
    let preview = a["request"]["body_preview"].as_str().unwrap();
    assert!(
        preview.contains("\"version\": \"1.4-preview-marker\""),
        "{preview}"
    );
    assert!(!preview.contains("hunter2"), "{preview}");
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
    assert!(
        show.contains("body preview") && show.contains("1.4-preview-marker"),
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
    // The ledger keeps the body's size and hash, never its content.
    let export = g.server.cli_ok(&["ledger", "export"]);
    assert!(!export.contains("1.4-preview-marker") && !export.contains("hunter2"));
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
    // Retrying before anyone decided joins the same approval (no duplicates in the inbox).
    let (code, body, _) = agent_request(&g.env, "POST", url.clone(), "{\"v\":1}", &[])
        .await
        .unwrap();
    assert_eq!(code, 403, "{body}");
    let joined: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(joined["approval_id"], id.as_str());
    assert_eq!(pending(&g.server, &bob, 1).await.len(), 1);

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
    // So is the same request sent with other credentials, or with a second Content-Type.
    for extra in [
        &["Authorization: Bearer someone-elses-token"][..],
        // curl's own Content-Type for -d first (what was approved), then a second one.
        &[
            "Content-Type: application/x-www-form-urlencoded",
            "Content-Type: application/json",
        ][..],
    ] {
        let (code, body, _) = agent_request(&g.env, "POST", url.clone(), "{\"v\":1}", extra)
            .await
            .unwrap();
        assert_eq!(code, 403, "{extra:?}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_ne!(v["approval_id"], id.as_str(), "{extra:?}");
    }
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
    let dave = printed_token(&out);
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
