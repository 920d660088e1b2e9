//! Policies as an operator edits them: hot reload with keep-last-good, file:line errors,
//! and the `clawser policy` commands.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::{curl, eventually, World};

const BLOCK_PING: &str = r#"package clawser.authz

import rego.v1

deny contains {"code": "no_ping", "message": "ping is blocked"} if input.request.path == "/ping"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn hot_reload_good_then_broken_then_good_never_leaves_the_proxy_without_policy() {
    // On the VM (the default, named here all the same), so the reloads also show when a
    // revision must use the interpreter.
    let w = World::with_policy_engine("vm").await;
    let env = w.server.env_for("dev", None);
    let url = w.upstream.url("/ping");
    assert_eq!(curl(&env, &[url.as_str()]).await.0, 200);
    let token = w.server.admin_token();
    let status = |t: &str| {
        let out = std::process::Command::new("curl")
            .args([
                "-sS",
                "-H",
                &format!("Authorization: Bearer {t}"),
                &format!("http://{}/v1/policy", w.server.admin),
            ])
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let rev0 = status(&token)["revision"].as_str().unwrap().to_string();
    // The shipped pack runs on the VM when it is configured.
    assert_eq!(status(&token)["engine"], "vm");
    assert!(status(&token)["engine_note"].is_null());

    // Good: a new rule is picked up.
    let extra = w.tmp.path().join("policies/block.rego");
    std::fs::write(&extra, BLOCK_PING).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || status(&token)["revision"]
            != rev0.as_str())
        .await
    );
    let (code, body) = curl(&env, &[url.as_str()]).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("no_ping"));
    let rev1 = status(&token)["revision"].as_str().unwrap().to_string();
    assert_eq!(status(&token)["engine"], "vm");

    // A construct the VM evaluates differently (an object literal with a computed key): the
    // revision runs on the interpreter, and the status says why, with file:line.
    std::fs::write(
        &extra,
        format!("{BLOCK_PING}\nhosts := {{input.request.host: true}}\n"),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || status(&token)["engine"]
            == "interpreter")
        .await
    );
    let note = status(&token)["engine_note"].as_str().unwrap().to_string();
    assert!(note.contains("block.rego:"), "{note}");
    assert_eq!(curl(&env, &[url.as_str()]).await.0, 403);
    // A construct that is not on the VM's allow-list (unification `=`): the same.
    std::fs::write(
        &extra,
        format!(
            "{BLOCK_PING}
same_host if input.request.host = \"example.com\"\n"
        ),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || status(&token)["engine_note"]
            .as_str()
            .is_some_and(|n| n.contains("not on the VM's list")))
        .await,
        "{}",
        status(&token)
    );
    assert!(status(&token)["engine_note"]
        .as_str()
        .unwrap()
        .contains("block.rego:7: unification `=`"));
    assert_eq!(status(&token)["engine"], "interpreter");
    let out = w.server.cli_ok(&["policy", "check"]);
    assert!(out.contains("engine interpreter"), "{out}");
    assert!(out.contains("note: the interpreter decides: "), "{out}");
    assert!(out.contains("block.rego:7: unification `=`"), "{out}");
    assert_eq!(curl(&env, &[url.as_str()]).await.0, 403);
    std::fs::write(&extra, BLOCK_PING).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || status(&token)["revision"]
            == rev1.as_str())
        .await
    );
    assert_eq!(status(&token)["engine"], "vm");

    // Broken: a syntax error. The last good policy stays in force; the error names file:line.
    std::fs::write(
        &extra,
        "package clawser.authz\n\ndeny contains x if {\n  input.request.path ==\n",
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || !status(&token)["last_error"]
            .is_null())
        .await
    );
    let st = status(&token);
    assert_eq!(st["revision"], rev1.as_str());
    let err = st["last_error"].as_str().unwrap();
    assert!(err.contains("block.rego:"), "{err}");
    assert!(w.server.log_text().contains("policy reload rejected"));
    for _ in 0..5 {
        assert_eq!(
            curl(&env, &[url.as_str()]).await.0,
            403,
            "old policy must still deny /ping"
        );
    }
    // A policy whose test fails is rejected the same way.
    std::fs::write(
        &extra,
        format!("{BLOCK_PING}\ntest_always_fails if false\n"),
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || status(&token)["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("test_always_fails"))
        .await
    );
    assert_eq!(status(&token)["revision"], rev1.as_str());

    // Good again: removing the file restores the original behaviour.
    std::fs::remove_file(&extra).unwrap();
    assert!(
        eventually(Duration::from_secs(10), || status(&token)["revision"]
            == rev0.as_str())
        .await
    );
    assert!(status(&token)["last_error"].is_null());
    assert_eq!(curl(&env, &[url.as_str()]).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_check_test_and_eval_commands() {
    let w = World::new().await;
    let out = w.server.cli_ok(&["policy", "check"]);
    assert!(out.starts_with("ok: revision"), "{out}");
    assert!(out.contains("engine vm"), "{out}");
    // The start-up line names the engine too.
    let log = w.server.log_text();
    let running = log.lines().find(|l| l.contains("clawser is running"));
    assert!(
        running.is_some_and(|l| l.contains("\"engine\":\"vm\"")),
        "{running:?}"
    );
    let out = w.server.cli_ok(&["policy", "test"]);
    assert!(
        out.contains("PASS data.clawser.authz_test.test_repo_delete_is_denied"),
        "{out}"
    );
    assert!(
        out.contains("decisions_test.yaml: merge a pull request in production"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("0 failed"), "{out}");

    let input = w.tmp.path().join("req.json");
    std::fs::write(
        &input,
        r#"{"version":1,"agent":{"id":"dev","roles":[]},"request":{"method":"PUT","host":"api.github.com","path":"/repos/acme/api/pulls/7/merge"},"target":{"env":"production"}}"#,
    )
    .unwrap();
    let out = w
        .server
        .cli_ok(&["policy", "eval", "--input", input.to_str().unwrap()]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["decision"]["outcome"], "hold");
    assert_eq!(v["decision"]["approvers"]["role"], "release-approver");
    // It says which engine decided (the default, the VM: the shipped pack is on its list).
    assert_eq!(v["engine"], "vm");

    // A failing test makes `policy test` exit 1 and `policy check` name the test.
    std::fs::write(
        w.tmp.path().join("policies/bad_test.rego"),
        "package clawser.bad_test\n\nimport rego.v1\n\ntest_nope if 1 == 2\n",
    )
    .unwrap();
    let out = w.server.cli(&["policy", "test"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL data.clawser.bad_test.test_nope"));
    let out = w.server.cli(&["policy", "check"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bad_test.rego:5"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_that_errors_at_evaluation_fails_closed() {
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    // A builtin error, only for /boom (so the reload's own tests still pass).
    std::fs::write(
        w.tmp.path().join("policies/boom.rego"),
        "package clawser.authz\n\nimport rego.v1\n\ndeny contains {\"code\": \"x\"} if {\n  input.request.path == \"/boom\"\n  to_number(\"not a number\") > 0\n}\n",
    )
    .unwrap();
    assert!(
        eventually(Duration::from_secs(10), || w
            .server
            .log_text()
            .contains("policy reloaded"))
        .await,
        "{}",
        w.server.log_text()
    );
    let (code, body) = curl(&env, &[w.upstream.url("/boom").as_str()]).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("policy_error"), "{body}");
    assert_eq!(w.upstream.hits(), 0);
    assert!(w.server.log_text().contains("policy evaluation failed"));
    // Other requests are unaffected.
    assert_eq!(curl(&env, &[w.upstream.url("/fine").as_str()]).await.0, 200);
}

/// regorus's memory limit (`policy.max_memory_mib`): an evaluation that would grow the heap
/// past it fails, and the request is denied (`policy_error`), fail closed; the same policy on
/// a small input still allows.
#[cfg(feature = "mimalloc")]
#[tokio::test(flavor = "multi_thread")]
async fn an_evaluation_past_the_memory_limit_denies() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = common::Upstream::start(tmp.path()).await;
    let policies = tmp.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("clawser.rego"),
        include_str!("../policies/clawser.rego"),
    )
    .unwrap();
    std::fs::write(
        policies.join("authz.rego"),
        r#"package clawser.authz

import rego.v1

allow if input.request.path != "/big"

allow if {
	input.request.path == "/big"
	count([x | some x in numbers.range(1, 4000000)]) > 0
}
"#,
    )
    .unwrap();
    let cfg = common::base_config(tmp.path(), &upstream, "").replace(
        "  eval_timeout: 10s\n",
        "  eval_timeout: 60s\n  max_memory_mib: 64\n",
    );
    assert!(cfg.contains("max_memory_mib: 64"));
    let server = common::Server::start(tmp.path(), &cfg);
    let env = server.env_for("dev", None);
    let (code, body) = curl(&env, &[upstream.url("/small").as_str()]).await;
    assert_eq!(code, 200, "{body}");
    let (code, body) = curl(&env, &[upstream.url("/big").as_str()]).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("policy_error"), "{body}");
    let log = server.log_text();
    assert!(
        log.to_ascii_lowercase().contains("memory"),
        "the error names the memory limit: {log}"
    );
    assert_eq!(upstream.hits(), 1);
}
