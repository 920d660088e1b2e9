//! Pushes, ref by ref: real `git push` runs through Clawser to `git http-backend`. The
//! policy sees each ref update's kind, a fast-forward is told from the pushed pack, and the
//! shipped policy refuses force-pushes and deletes of `main`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::git::{git, head, ok, seed};

/// A ref of the upstream's bare repository.
fn rev(bare: &std::path::Path, r: &str) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["rev-parse", r])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
use common::World;
use serde_json::Value;

/// The `git` object of the last decided push.
fn last_push(w: &World) -> Value {
    let out = w.server.cli_ok(&["ledger", "show", "--json"]);
    let entries: Vec<Value> = serde_json::from_str(&out).unwrap();
    entries
        .into_iter()
        .rev()
        .find(|e| e["kind"] == "request.decided" && e["data"]["git"]["service"] == "receive-pack")
        .map(|e| e["data"].clone())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_are_decided_ref_by_ref() {
    let w = World::new().await;
    let bare = w.upstream.bare_repo("acme/api.git");
    let env = w.server.env_for("dev", None);
    seed(&bare, &w.tmp.path().join("seed")).await;

    let work = w.tmp.path().join("work");
    ok(&git(
        &env,
        w.tmp.path(),
        &[
            "clone",
            "-q",
            &w.upstream.url("/git/acme/api.git"),
            work.to_str().unwrap(),
        ],
    )
    .await);
    // A feature branch: created.
    ok(&git(&env, &work, &["checkout", "-qb", "feature"]).await);
    std::fs::write(work.join("f"), "feature\n").unwrap();
    ok(&git(&env, &work, &["add", "."]).await);
    ok(&git(&env, &work, &["commit", "-qm", "feature"]).await);
    ok(&git(&env, &work, &["push", "-q", "origin", "feature"]).await);
    let p = last_push(&w);
    assert_eq!(p["git"]["repo"], "acme/api");
    assert_eq!(p["git"]["ref_updates"][0]["ref"], "refs/heads/feature");
    assert_eq!(p["git"]["ref_updates"][0]["kind"], "create");

    // A fast-forward of the feature branch: shown from the pack, allowed.
    let before = head(&bare);
    let feature_before = rev(&bare, "feature");
    std::fs::write(work.join("g"), "more\n").unwrap();
    ok(&git(&env, &work, &["add", "."]).await);
    ok(&git(&env, &work, &["commit", "-qm", "more"]).await);
    ok(&git(&env, &work, &["push", "-q", "origin", "feature"]).await);
    let p = last_push(&w);
    let u = &p["git"]["ref_updates"][0];
    assert_eq!(
        (u["kind"].as_str(), u["fast_forward"].as_bool()),
        (Some("update"), Some(true)),
        "{p}"
    );
    assert_eq!(u["old"], feature_before.as_str());
    assert_ne!(rev(&bare, "feature"), feature_before);
    let after_ff = before;
    ok(&git(&env, &work, &["checkout", "-q", "main"]).await);

    // A force-push of main (history rewritten): refused, nothing changes.
    ok(&git(&env, &work, &["commit", "-q", "--amend", "-m", "rewritten"]).await);
    let out = git(&env, &work, &["push", "--force", "origin", "main"]).await;
    assert!(!out.status.success());
    // git prints the reason, in its own words.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[remote rejected]") && err.contains("protected_branch"),
        "{err}"
    );
    assert_eq!(head(&bare), after_ff);
    let p = last_push(&w);
    assert_eq!(p["outcome"], "deny", "{p}");
    assert_eq!(p["reasons"][0]["code"], "protected_branch");

    // Deleting main: refused. Several refs at once: each one is seen.
    let out = git(&env, &work, &["push", "origin", ":main"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("main (protected_branch: agents may not delete refs/heads/main)"),
        "{err}"
    );
    assert_eq!(head(&bare), after_ff);
    ok(&git(&env, &work, &["checkout", "-qb", "two"]).await);
    ok(&git(
        &env,
        &work,
        &["push", "-q", "origin", "two", "feature:feature-copy"],
    )
    .await);
    let p = last_push(&w);
    let refs: Vec<&str> = p["git"]["ref_updates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["ref"].as_str().unwrap())
        .collect();
    assert_eq!(refs.len(), 2, "{p}");
    assert!(refs.contains(&"refs/heads/two") && refs.contains(&"refs/heads/feature-copy"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_push_is_refused_with_a_reason() {
    let w = World::new().await;
    w.upstream.bare_repo("acme/api.git");
    let env = w.server.env_for("dev", None);
    let url = w.upstream.url("/git/acme/api.git/git-receive-pack");
    let (code, body) = common::curl(
        &env,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: application/x-git-receive-pack-request",
            "-d",
            "zzzzgarbage",
            &url,
        ],
    )
    .await;
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("bad_pktline"), "{body}");
    assert_eq!(w.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_held_push_says_so_and_the_approved_retry_lands() {
    let g = common::gate::gate("  hold_timeout: 1s", "").await;
    // A development repository: the release workflow (policies/release.rego) holds any
    // fast-forward of main for a release-approver.
    let bare = g.upstream.bare_repo("acme/app.git");
    seed(&bare, &g._tmp.path().join("seed")).await;
    let work = g._tmp.path().join("work");
    ok(&git(
        &g.env,
        g._tmp.path(),
        &[
            "clone",
            "-q",
            &g.upstream.url("/git/acme/app.git"),
            work.to_str().unwrap(),
        ],
    )
    .await);
    std::fs::write(work.join("release"), "1.4\n").unwrap();
    ok(&git(&g.env, &work, &["add", "."]).await);
    ok(&git(&g.env, &work, &["commit", "-qm", "release 1.4"]).await);
    let before = head(&bare);
    let out = git(&g.env, &work, &["push", "origin", "main"]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        err.contains("[remote rejected]")
            && err.contains("held for approval apr_")
            && err.contains("protected_branch_update")
            && err.contains("release-approver"),
        "{err}"
    );
    assert_eq!(head(&bare), before);
    let id = err
        .split("approval ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap()
        .to_string();
    let bob = common::gate::approver_token(&g.server, "bob");
    let (code, v) = common::gate::admin(
        &g.server,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        &bob,
        Some(serde_json::json!({"reason": "release 1.4"})),
    )
    .await;
    assert_eq!(code, 200, "{v}");
    // The identical retry goes through once.
    let out = git(&g.env, &work, &["push", "origin", "main"]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_ne!(head(&bare), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_clone_or_fetch_says_why_in_git() {
    // The shipped pack plus an operator rule: one repository may not be read by agents.
    let tmp = tempfile::tempdir().unwrap();
    let up = common::Upstream::start(tmp.path()).await;
    let policies = tmp.path().join("policies");
    clawser::policy::pack::install_if_missing(&policies).unwrap();
    std::fs::write(
        policies.join("secret_repo.rego"),
        r#"package clawser.authz

import rego.v1

deny contains {"code": "secret_repo", "message": "acme/vault is not for agents"} if input.git.repo == "acme/vault"

deny contains {"code": "no_fetch_now", "message": "fetches of acme/frozen are paused"} if {
	input.git.repo == "acme/frozen"
	input.request.method == "POST"
}
"#,
    )
    .unwrap();
    let s = common::Server::start(tmp.path(), &common::base_config(tmp.path(), &up, ""));
    let env = s.env_for("dev", None);
    for name in ["acme/vault.git", "acme/frozen.git"] {
        let bare = up.bare_repo(name);
        seed(
            &bare,
            &tmp.path().join(format!("seed-{}", name.replace('/', "-"))),
        )
        .await;
    }
    // Ref discovery refused: git prints Clawser's reason as `remote: …`.
    let out = git(
        &env,
        tmp.path(),
        &["clone", &up.url("/git/acme/vault.git"), "vault"],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("remote: Clawser: secret_repo: acme/vault is not for agents"),
        "{err}"
    );
    // The fetch itself refused (discovery allowed): git prints it as a remote error.
    let out = git(
        &env,
        tmp.path(),
        &["clone", &up.url("/git/acme/frozen.git"), "frozen"],
    )
    .await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("remote error: Clawser: no_fetch_now: fetches of acme/frozen are paused"),
        "{err}"
    );
}
