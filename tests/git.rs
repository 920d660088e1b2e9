//! git as an agent runs it: `git clone` and `git push` over HTTPS through Clawser, with
//! nothing but the environment from `clawser env`, against `git http-backend`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::git::{git, head, ok, seed};
use common::World;

#[tokio::test(flavor = "multi_thread")]
async fn clone_and_push_through_the_proxy_production_push_held_until_approved() {
    // Production pushes are held; nobody approves within the (short) hold timeout.
    let w = World::with_proxy_extra("  hold_timeout: 1s\n").await;
    let tmp = w.tmp.path();
    let dev = w.upstream.bare_repo("dev/app.git");
    let prod = w.upstream.bare_repo("prod/app.git");
    seed(&dev, &tmp.join("seed-dev")).await;
    seed(&prod, &tmp.join("seed-prod")).await;

    let mut env = w.server.env_for("dev", None);
    let home = tmp.join("home");
    std::fs::create_dir_all(&home).unwrap();
    env.insert("HOME".into(), home.display().to_string());
    env.insert("GIT_TERMINAL_PROMPT".into(), "0".into());
    // Prove the GIT_CONFIG_* form alone carries the CA (as under OpenClaw, which strips GIT_SSL_CAINFO).
    env.remove("GIT_SSL_CAINFO");

    // Clone (GET info/refs + POST git-upload-pack: reads).
    let url = w.upstream.url("/git/dev/app.git");
    ok(&git(&env, tmp, &["clone", "-q", url.as_str(), "work-dev"]).await);
    let work = tmp.join("work-dev");
    assert_eq!(
        std::fs::read_to_string(work.join("README")).unwrap(),
        "hello\n"
    );

    // Push a branch to a development repository: allowed and received.
    std::fs::write(work.join("change.txt"), "agent change\n").unwrap();
    ok(&git(&env, &work, &["add", "."]).await);
    ok(&git(&env, &work, &["commit", "-qm", "agent change"]).await);
    ok(&git(&env, &work, &["push", "-q", "origin", "HEAD:agent-change"]).await);
    let local = String::from_utf8_lossy(&git(&env, &work, &["rev-parse", "HEAD"]).await.stdout)
        .trim()
        .to_string();
    let upstream = std::process::Command::new("git")
        .arg("-C")
        .arg(&dev)
        .args(["rev-parse", "agent-change"])
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&upstream.stdout).trim(),
        local,
        "the push reached the upstream"
    );

    // Production: clone is a read (allowed), push is held -> refused, upstream unchanged.
    let url = w.upstream.url("/git/prod/app.git");
    ok(&git(&env, tmp, &["clone", "-q", url.as_str(), "work-prod"]).await);
    let work = tmp.join("work-prod");
    let before = head(&prod);
    std::fs::write(work.join("deploy.txt"), "ship\n").unwrap();
    ok(&git(&env, &work, &["add", "."]).await);
    ok(&git(&env, &work, &["commit", "-qm", "deploy"]).await);
    let out = git(&env, &work, &["push", "origin", "main"]).await;
    assert!(
        !out.status.success(),
        "push to production must not go through"
    );
    // git says why, in its own words.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[remote rejected]") && err.contains("held for approval apr_"),
        "{err}"
    );
    assert_eq!(head(&prod), before);

    let log = w.server.log_text();
    assert!(
        log.contains("git-receive-pack") && log.contains("production_write"),
        "{log}"
    );

    // A release approver approves the held push; git's identical retry goes through once.
    let out = w
        .server
        .cli_ok(&["approvers", "add", "bob", "--role", "release-approver"]);
    let bob = common::gate::printed_token(&out);
    let list: serde_json::Value =
        serde_json::from_str(
            &w.server
                .cli_ok(&["approvals", "list", "--json", "--token", &bob]),
        )
        .unwrap();
    let push = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| {
            a["request"]["url"]
                .as_str()
                .unwrap()
                .ends_with("/git-receive-pack")
        })
        .unwrap();
    let id = push["id"].as_str().unwrap();
    w.server.cli_ok(&[
        "approvals",
        "approve",
        id,
        "--reason",
        "release",
        "--token",
        &bob,
    ]);
    ok(&git(&env, &work, &["push", "origin", "main"]).await);
    assert_ne!(head(&prod), before, "the approved push landed");
}
