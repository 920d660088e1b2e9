//! Secrets and grants as users run them: the agent holds only a placeholder, Clawser
//! injects the real value into allowed requests to the secret's hosts, counts grant uses
//! atomically, and never lets the value out (ledger, logs, admin API, the agent).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use common::gate::{admin, agent_request, approver_token, pending};
use common::git::{git, head, seed};
use common::{base_config, curl, Server, Upstream};
use serde_json::Value;

use common::secrets::{grant_id, ledger, world, REAL};

#[tokio::test(flavor = "multi_thread")]
async fn the_agent_holds_a_placeholder_and_the_upstream_gets_the_secret() {
    let (_tmp, up, s) = world("bearer", "").await;
    // No grant yet: `clawser env` exports no placeholder.
    let before = s.env_for("dev", None);
    assert!(!before.contains_key("GH_TOKEN"));

    let out = s.cli_ok(&[
        "grants", "add", "--agent", "dev", "--secret", "gh", "--reason", "ci",
    ]);
    let gid = grant_id(&out);
    let env = s.env_for("dev", None);
    let ph = env["GH_TOKEN"].clone();
    assert!(ph.starts_with("clwp_"), "{ph}");
    assert_eq!(env["GITHUB_TOKEN"], ph);
    assert!(!serde_json::to_string(&env).unwrap().contains(REAL));

    // The placeholder, sent to the secret's host, is swapped for the value.
    let auth = format!("Authorization: Bearer {ph}");
    let (code, body) = curl(&env, &["-H", &auth, &up.url("/private/repos/acme/api")]).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        up.last().unwrap().headers["authorization"],
        format!("Bearer {REAL}")
    );
    // The upstream echoes the headers it got: the agent still never sees the value.
    assert!(!body.contains(REAL), "{body}");
    assert!(body.contains("[clawser-secret]"), "{body}");

    // The same placeholder to a host the secret does not allow: refused, nothing sent.
    let hits = up.hits();
    let other = format!("https://127.0.0.1:{}/private/x", up.port());
    let (code, body) = curl(&env, &["-H", &auth, &other]).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("placeholder_misuse"), "{body}");
    assert_eq!(up.hits(), hits, "the other host received nothing");

    // Another agent presenting dev's placeholder: refused (it is bound to dev's credential).
    let oc = s.env_for("oc-1", None);
    let (code, body) = curl(&oc, &["-H", &auth, &up.url("/private/x")]).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("placeholder_misuse"), "{body}");
    // A made-up placeholder too.
    let (code, _) = curl(
        &env,
        &[
            "-H",
            "Authorization: Bearer clwp_guess",
            &up.url("/private/x"),
        ],
    )
    .await;
    assert_eq!(code, 403);
    assert_eq!(up.hits(), hits);

    // The request's ledger entry names the grant and where the placeholder was.
    let entries = ledger(&s);
    let used = entries
        .iter()
        .find(|e| {
            e["kind"] == "request.decided"
                && e["data"]["outcome"] == "allow"
                && e["data"]["grants_used"][0] == gid.as_str()
        })
        .unwrap_or_else(|| panic!("no allowed entry with {gid}: {entries:?}"));
    assert_eq!(used["data"]["request"]["path"], "/private/repos/acme/api");
    let misuse = entries
        .iter()
        .filter(|e| e["data"]["reasons"][0]["code"] == "placeholder_misuse")
        .count();
    assert_eq!(misuse, 3, "every refusal is recorded");

    // Revoked mid-job: the placeholder stops working at once.
    s.cli_ok(&["grants", "revoke", &gid]);
    let (code, body) = curl(&env, &["-H", &auth, &up.url("/private/x")]).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("no_grant"), "{body}");
    assert_eq!(up.hits(), hits);
    let kinds: Vec<String> = ledger(&s)
        .iter()
        .map(|e| e["kind"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(
        kinds.contains(&"grant.issued".to_string()) && kinds.contains(&"grant.revoked".to_string())
    );

    // Canary: the value is nowhere Clawser writes or answers.
    let export = s.dir.join("export.jsonl");
    s.cli_ok(&["ledger", "export", "--out", export.to_str().unwrap()]);
    let token = s.admin_token();
    let mut seen = vec![
        ("ledger export", std::fs::read_to_string(&export).unwrap()),
        ("log", s.log_text()),
        (
            "grants list",
            s.cli_ok(&["grants", "list", "--all", "--json"]),
        ),
        ("secrets check", s.cli_ok(&["secrets", "check"])),
    ];
    for path in [
        "/v1/grants?state=all",
        "/v1/secrets",
        "/v1/approvals?state=all",
        "/v1/ledger",
        "/v1/agents",
        "/",
    ] {
        let url = format!("http://{}{path}", s.admin);
        let (_, text) = curl(
            &HashMap::new(),
            &["-H", &format!("Authorization: Bearer {token}"), &url],
        )
        .await;
        seen.push(("admin API", text));
    }
    for (what, text) in seen {
        assert!(!text.contains(REAL), "the secret leaked into the {what}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn git_clone_and_push_with_a_placeholder() {
    let (tmp, up, s) = world("basic", "").await;
    let bare = up.bare_repo("private/app.git");
    seed(&bare, &tmp.path().join("seed")).await;
    s.cli_ok(&["grants", "add", "--agent", "dev", "--secret", "gh"]);
    let env = s.env_for("dev", None);
    assert!(!serde_json::to_string(&env).unwrap().contains(REAL));
    let url = up.url("/git/private/app.git");
    let work = tmp.path().join("work");
    let out = git(
        &env,
        tmp.path(),
        &["clone", "-q", &url, work.to_str().unwrap()],
    )
    .await;
    assert!(
        out.status.success(),
        "clone: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(work.join("CHANGE"), "agent work\n").unwrap();
    assert!(git(&env, &work, &["add", "."]).await.status.success());
    assert!(git(&env, &work, &["commit", "-qm", "agent change"])
        .await
        .status
        .success());
    let out = git(&env, &work, &["push", "-q", "origin", "HEAD:agent-work"]).await;
    assert!(
        out.status.success(),
        "push: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let seen = up.seen.lock().unwrap().clone();
    let basic = seen
        .iter()
        .filter_map(|r| r.headers.get("authorization"))
        .find(|a| a.starts_with("Basic "))
        .expect("git sent Basic credentials");
    use base64::Engine as _;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(basic.trim_start_matches("Basic "))
        .unwrap();
    assert_eq!(
        String::from_utf8(decoded).unwrap(),
        format!("x-access-token:{REAL}")
    );
    // Without the grant, the same placeholder gets nothing.
    let bare_head = head(&bare);
    assert!(!bare_head.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn max_uses_holds_under_concurrency() {
    let (_tmp, up, s) = world("bearer", "").await;
    // Production writes are held unless a grant covers them (shipped policy).
    let out = s.cli_ok(&[
        "grants",
        "add",
        "--agent",
        "dev",
        "--hosts",
        "localhost",
        "--actions",
        "production_write",
        "--max-uses",
        "3",
    ]);
    let gid = grant_id(&out);
    let env = s.env_for("dev", None);
    let hits = up.hits();
    let reqs: Vec<_> = (0..10)
        .map(|i| agent_request(&env, "PUT", up.url(&format!("/prod/deploy/{i}")), "{}", &[]))
        .collect();
    let mut codes = Vec::new();
    for r in reqs {
        codes.push(r.await.unwrap().0);
    }
    assert_eq!(codes.iter().filter(|c| **c == 200).count(), 3, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 403).count(), 7, "{codes:?}");
    assert_eq!(up.hits() - hits, 3);
    let spent = ledger(&s)
        .iter()
        .filter(|e| e["kind"] == "request.decided" && e["data"]["outcome"] == "allow")
        .filter(|e| {
            e["data"]["grants_used"]
                .as_array()
                .is_some_and(|a| a.iter().any(|g| g == gid.as_str()))
        })
        .count();
    assert_eq!(spent, 3, "the ledger agrees");
    let g: Value = serde_json::from_str(&s.cli_ok(&["grants", "show", &gid])).unwrap();
    assert_eq!(g["uses"], 3);
    assert_eq!(g["state"], "exhausted");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_for_a_window_grants_the_next_similar_request() {
    let (_tmp, up, s) = world("bearer", "").await;
    let env = s.env_for("dev", None);
    let bob = approver_token(&s, "bob");
    let first = agent_request(&env, "PUT", up.url("/prod/deploy/1"), "{}", &[]);
    let list = pending(&s, &bob, 1).await;
    let id = list[0]["id"].as_str().unwrap().to_string();
    // Through the CLI, as an approver would.
    let out = std::process::Command::new(common::BIN)
        .arg("-c")
        .arg(&s.config)
        .args([
            "approvals",
            "approve",
            &id,
            "--grant-for",
            "1h",
            "--max-uses",
            "5",
        ])
        .env("CLAWSER_ADMIN_TOKEN", &bob)
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(printed.contains("issued grant grt_"), "{printed}");
    assert_eq!(first.await.unwrap().0, 200);
    // The next similar request passes without another hold, under the grant.
    let (code, body) = curl(&env, &["-X", "PUT", "-d", "{}", &up.url("/prod/deploy/2")]).await;
    assert_eq!(code, 200, "{body}");
    let (_, grants) = admin(&s, "GET", "/v1/grants", &s.admin_token(), None).await;
    let g = &grants[0];
    assert_eq!(g["issued_by"], "bob");
    assert_eq!(g["source"], "approval");
    assert_eq!(g["approval"], id.as_str());
    assert_eq!(g["scope"]["actions"][0], "production_write");
    assert_eq!(g["scope"]["envs"][0], "production");
    assert_eq!(g["uses"], 1);
    // A different host is outside its scope: held again.
    let other = format!("https://127.0.0.1:{}/prod/deploy/3", up.port());
    let (code, _) = curl(&env, &["-X", "PUT", "-d", "{}", &other]).await;
    assert_eq!(code, 403, "held, then timed out");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_grant_follows_the_job_across_a_handoff() {
    let (_tmp, up, s) = world("bearer", "").await;
    let started = s.cli_ok(&["jobs", "start", "--agent", "oc-1", "--title", "release 1.4"]);
    let job = started
        .split_whitespace()
        .find(|w| w.starts_with("job_"))
        .unwrap()
        .to_string();
    s.cli_ok(&["grants", "add", "--job", &job, "--secret", "gh"]);
    let a = s.env_for("oc-1", Some(&job));
    let a_auth = format!("Authorization: Bearer {}", a["GH_TOKEN"]);
    let (code, body) = curl(&a, &["-H", &a_auth, &up.url("/private/a")]).await;
    assert_eq!(code, 200, "{body}");
    s.cli_ok(&["jobs", "handoff", &job, "--to", "dev"]);
    // A no longer holds the job: its placeholder is refused.
    let (code, body) = curl(&a, &["-H", &a_auth, &up.url("/private/a")]).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("no_grant"), "{body}");
    let b = s.env_for("dev", Some(&job));
    let b_auth = format!("Authorization: Bearer {}", b["GH_TOKEN"]);
    let (code, body) = curl(&b, &["-H", &b_auth, &up.url("/private/b")]).await;
    assert_eq!(code, 200, "{body}");
    // `ledger show --job` says which grant each request used.
    let shown = s.cli_ok(&["ledger", "show", "--job", &job]);
    assert!(shown.contains("grt_"), "{shown}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_secret_source_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(tmp.path()).await;
    let cfg = format!(
        "{}secrets:\n  - name: deploy-key\n    from: {{env: CLAWSER_TEST_SURELY_UNSET_42}}\n    hosts: [localhost]\n",
        base_config(tmp.path(), &upstream, "")
    );
    let err = Server::try_start(tmp.path(), &cfg)
        .err()
        .expect("refused to start");
    assert!(
        err.contains("deploy-key") && err.contains("CLAWSER_TEST_SURELY_UNSET_42"),
        "{err}"
    );
    let out = std::process::Command::new(common::BIN)
        .arg("-c")
        .arg(tmp.path().join("clawser.yaml"))
        .args(["secrets", "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("deploy-key"));
}

#[tokio::test(flavor = "multi_thread")]
async fn approvers_grant_only_through_approvals() {
    let (_tmp, up, s) = world("bearer", "").await;
    let bob = approver_token(&s, "bob");
    let alice = approver_token(&s, "alice");
    // No direct grants from approvers, whatever they ask for.
    let body = serde_json::json!({"agent": "dev", "actions": ["deploy"], "expires": "1h"});
    let (got, v) = admin(&s, "POST", "/v1/grants", &bob, Some(body)).await;
    assert_eq!(
        (got, v["error"]["code"].as_str()),
        (403, Some("admin_only")),
        "{v}"
    );
    // A window on a request made on the approver's own behalf: refused before deciding.
    let env = s.env_for("dev", None);
    let held = agent_request(&env, "PUT", up.url("/prod/deploy/9"), "{}", &[]);
    let id = pending(&s, &bob, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let path = format!("/v1/approvals/{id}/approve");
    let (got, v) = admin(
        &s,
        "POST",
        &path,
        &alice,
        Some(serde_json::json!({"grant_for": "1h"})),
    )
    .await;
    assert_eq!(got, 403, "{v}");
    // Longer than approvals.max_grant_window (8h): refused, still pending.
    let (got, v) = admin(
        &s,
        "POST",
        &path,
        &bob,
        Some(serde_json::json!({"grant_for": "30d"})),
    )
    .await;
    assert_eq!(
        (got, v["error"]["code"].as_str()),
        (400, Some("grant_too_long")),
        "{v}"
    );
    // Within it, without --max-uses: approvals.window_uses (10) uses.
    let (got, v) = admin(
        &s,
        "POST",
        &path,
        &bob,
        Some(serde_json::json!({"grant_for": "1h"})),
    )
    .await;
    assert_eq!(got, 200, "{v}");
    assert_eq!(v["grant"]["max_uses"], 10, "{v}");
    assert_eq!(held.await.unwrap().0, 200);
    // The admin's grants are not limited this way; an absurd expiry is a clear error.
    let (got, v) = admin(
        &s,
        "POST",
        "/v1/grants",
        &s.admin_token(),
        Some(serde_json::json!({"agent": "dev", "expires": "99999999d"})),
    )
    .await;
    assert_eq!(got, 400, "{v}");
    let (got, _) = admin(
        &s,
        "POST",
        "/v1/grants",
        &s.admin_token(),
        Some(serde_json::json!({"role": "dev", "actions": ["*"]})),
    )
    .await;
    assert_eq!(got, 201);
    // An approver revokes only what they issued.
    let (_, all) = admin(&s, "GET", "/v1/grants", &bob, None).await;
    for g in all.as_array().unwrap() {
        let (got, _) = admin(
            &s,
            "POST",
            &format!("/v1/grants/{}/revoke", g["id"].as_str().unwrap()),
            &bob,
            None,
        )
        .await;
        assert_eq!(got, if g["issued_by"] == "bob" { 200 } else { 403 }, "{g}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_declared_grant_removed_from_the_config_is_revoked() {
    let decl = "grants:\n  - name: ci\n    agent: dev\n    actions: [deploy]\n";
    let (tmp, _up, mut s) = world("bearer", decl).await;
    let g: Value = serde_json::from_str(&s.cli_ok(&["grants", "show", "grt_ci"])).unwrap();
    assert_eq!(
        (g["state"].as_str(), g["issued_by"].as_str()),
        (Some("active"), Some("config"))
    );
    s.terminate();
    let cfg = std::fs::read_to_string(tmp.path().join("clawser.yaml"))
        .unwrap()
        .replace(decl, "");
    let s = Server::start(tmp.path(), &cfg);
    let g: Value = serde_json::from_str(&s.cli_ok(&["grants", "show", "grt_ci"])).unwrap();
    assert_eq!(
        (g["state"].as_str(), g["revoked_by"].as_str()),
        (Some("revoked"), Some("config")),
        "{g}"
    );
}
