//! Approval gates at their limits and edges: bounded holds, disconnects, expiry, and
//! webhooks to a local receiver.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::eventually;
use common::gate::{admin, agent_request, approver_token, gate, ledger_kinds, pending};
use serde_json::{json, Value};

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

/// The first delivery of `kind` the receiver accepted.
fn delivered(got: &std::sync::Mutex<Vec<Value>>, kind: &str) -> Option<Value> {
    got.lock()
        .unwrap()
        .iter()
        .find(|v| v["event"] == kind)
        .cloned()
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_are_told_with_retries() {
    let (addr, got) = common::gate::webhook_receiver(true).await;
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
        eventually(Duration::from_secs(10), || delivered(
            &got,
            "approval.created"
        )
        .is_some())
        .await,
        "approval.created delivered after a retry"
    );
    let created = delivered(&got, "approval.created").unwrap();
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
        eventually(Duration::from_secs(10), || delivered(
            &got,
            "approval.decided"
        )
        .is_some())
        .await,
        "approval.decided delivered"
    );
    let decided = delivered(&got, "approval.decided").unwrap();
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

#[tokio::test(flavor = "multi_thread")]
async fn a_credential_revoked_while_held_is_not_forwarded_after_approval() {
    let g = gate("", "").await;
    let bob = approver_token(&g.server, "bob");
    let req = agent_request(&g.env, "POST", g.upstream.url("/prod/deploy"), "{}", &[]);
    let id = pending(&g.server, &bob, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    g.server.cli_ok(&["agents", "revoke", "dev"]);
    let (code, a) = admin(
        &g.server,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        &bob,
        Some(json!({})),
    )
    .await;
    assert_eq!(code, 200, "{a}");
    let (code, body, _) = req.await.unwrap();
    assert_eq!(code, 407, "{body}");
    assert_eq!(g.upstream.hits(), 0);
    // The approval was not used up by a request that was refused.
    let (_, a) = admin(&g.server, "GET", &format!("/v1/approvals/{id}"), &bob, None).await;
    assert_eq!(a["state"], "approved");
}
