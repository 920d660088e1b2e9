//! GitHub, understood: requests to a host in `github.hosts` give policies `input.github`
//! (REST action, repository, deployment environment, GraphQL operation), the shipped release
//! workflow (policies/release.rego) decides on them, and the ledger records what was done.
//! Driven with curl and with a real `gh` client against a local GitHub-like upstream.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;

use common::{base_config, curl, Server, Upstream};
use serde_json::Value;

fn decided(s: &Server) -> Vec<Value> {
    let out = s.cli_ok(&["ledger", "show", "--json"]);
    serde_json::from_str::<Vec<Value>>(&out)
        .unwrap()
        .into_iter()
        .filter(|e| e["kind"] == "request.decided")
        .collect()
}

/// The local upstream stands in for GitHub (as `localhost`, and as `github.test`, a
/// GitHub Enterprise-like name that Clawser resolves from `proxy.resolve`).
async fn world() -> (tempfile::TempDir, Upstream, Server) {
    let tmp = tempfile::tempdir().unwrap();
    let up = Upstream::start(tmp.path()).await;
    let proxy_extra = "  hold_timeout: 1s\n  resolve: {github.test: [127.0.0.1]}";
    let cfg = format!(
        "{}github:\n  hosts: [localhost, github.test]\n",
        base_config(tmp.path(), &up, proxy_extra)
    );
    let s = Server::start(tmp.path(), &cfg);
    (tmp, up, s)
}

/// `(status, outcome header, body)` of a curl request.
async fn call(env: &HashMap<String, String>, args: &[&str]) -> (u16, Value) {
    let (code, body) = curl(env, args).await;
    (
        code,
        serde_json::from_str(&body).unwrap_or(Value::String(body)),
    )
}

fn codes(v: &Value) -> Vec<String> {
    let mut c: Vec<String> = v["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|r| r["code"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default();
    c.sort();
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn rest_and_graphql_through_curl() {
    let (_tmp, up, s) = world().await;
    let env = s.env_for("dev", None);
    let hits = up.hits();

    // A merge waits for a release-approver; the upstream never sees it.
    let (code, v) = call(
        &env,
        &[
            "-X",
            "PUT",
            "-d",
            "{}",
            &up.url("/repos/ACME/Api/pulls/7/merge"),
        ],
    )
    .await;
    assert_eq!((code, v["outcome"].as_str()), (403, Some("hold")), "{v}");
    assert_eq!(codes(&v), ["merge"]);
    assert_eq!(v["approval"]["required"]["role"], "release-approver", "{v}");
    // Repository delete: denied.
    let (code, v) = call(&env, &["-X", "DELETE", &up.url("/repos/acme/api")]).await;
    assert_eq!(
        (code, codes(&v)),
        (403, vec!["repo_delete".to_string()]),
        "{v}"
    );
    // The same through /repositories/{id}: denied too.
    let (code, v) = call(&env, &["-X", "DELETE", &up.url("/repositories/42")]).await;
    assert_eq!(code, 403, "{v}");
    assert!(codes(&v).contains(&"repo_delete".to_string()), "{v}");
    // Deployments: staging goes through, production waits for two approvers.
    let staging = r#"{"ref": "main", "environment": "staging"}"#;
    let (code, v) = call(
        &env,
        &[
            "-X",
            "POST",
            "-d",
            staging,
            &up.url("/repos/acme/api/deployments"),
        ],
    )
    .await;
    assert_eq!(code, 200, "{v}");
    let prod = r#"{"ref": "main", "environment": "production"}"#;
    let (code, v) = call(
        &env,
        &[
            "-X",
            "POST",
            "-d",
            prod,
            &up.url("/repos/acme/api/deployments"),
        ],
    )
    .await;
    assert_eq!(
        (code, codes(&v)),
        (403, vec!["production_deploy".to_string()]),
        "{v}"
    );
    assert_eq!(v["approval"]["required"]["count"], 2, "{v}");
    // GraphQL sent as text/plain is still read: mergePullRequest waits.
    let merge = r#"{"query": "mutation M { mergePullRequest(input: {pullRequestId: \"x\"}) { clientMutationId } }"}"#;
    let (code, v) = call(
        &env,
        &[
            "-X",
            "POST",
            "-H",
            "Content-Type: text/plain",
            "-d",
            merge,
            &up.url("/graphql"),
        ],
    )
    .await;
    assert_eq!((code, codes(&v)), (403, vec!["merge".to_string()]), "{v}");
    let delete = r#"{"query": "mutation { deleteRepository(input: {repositoryId: \"x\"}) { clientMutationId } }"}"#;
    let (code, v) = call(&env, &["-X", "POST", "-d", delete, &up.url("/graphql")]).await;
    assert_eq!(
        (code, codes(&v)),
        (403, vec!["repo_delete".to_string()]),
        "{v}"
    );
    let broken = r#"{"query": "mutation { mergePullRequest("}"#;
    let (code, v) = call(&env, &["-X", "POST", "-d", broken, &up.url("/graphql")]).await;
    assert_eq!(
        (code, codes(&v)),
        (403, vec!["graphql_unreadable".to_string()]),
        "{v}"
    );
    let persisted = r#"{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "abc"}}}"#;
    let (code, v) = call(&env, &["-X", "POST", "-d", persisted, &up.url("/graphql")]).await;
    assert_eq!(
        (code, codes(&v)),
        (403, vec!["graphql_unreadable".to_string()]),
        "{v}"
    );
    // A query is a read.
    let query = r#"{"query": "{ viewer { login } }"}"#;
    let (code, v) = call(&env, &["-X", "POST", "-d", query, &up.url("/graphql")]).await;
    assert_eq!(code, 200, "{v}");
    // Only the staging deployment and the query reached the upstream.
    assert_eq!(up.hits(), hits + 2);

    let entries = decided(&s);
    let gh: Vec<&Value> = entries.iter().map(|e| &e["data"]["github"]).collect();
    assert_eq!(gh[0]["action"], "pulls.merge", "{entries:?}");
    assert_eq!(gh[0]["repo"], "acme/api");
    assert_eq!(gh[1]["action"], "repos.delete");
    assert_eq!(gh[2]["repository_id"], "42");
    assert_eq!(gh[3]["environment"], "staging");
    assert_eq!(gh[4]["environment"], "production");
    assert_eq!(gh[5]["graphql"]["operation"], "mutation");
    assert_eq!(gh[5]["graphql"]["fields"][0], "mergePullRequest");
    assert_eq!(gh[6]["graphql"]["fields"][0], "deleteRepository");
    // A host that is not GitHub gets no input.github (and the release rules do not apply).
    let other = format!(
        "https://127.0.0.1:{}/repos/acme/api/pulls/7/merge",
        up.port()
    );
    let (code, _) = curl(&env, &["-X", "PUT", "-d", "{}", &other]).await;
    assert_eq!(code, 200);
    let last = decided(&s).pop().unwrap();
    assert!(last["data"].get("github").is_none(), "{last}");
}

/// Runs `gh` with the agent's environment, pointed at `github.test` as a GitHub Enterprise
/// host.
async fn gh(
    env: &HashMap<String, String>,
    home: &std::path::Path,
    port: u16,
    args: &[&str],
) -> (bool, String, String) {
    let mut env = env.clone();
    env.insert("GH_HOST".into(), format!("github.test:{port}"));
    env.insert("GH_ENTERPRISE_TOKEN".into(), "agent-token".into());
    env.insert(
        "GH_CONFIG_DIR".into(),
        home.join("gh").display().to_string(),
    );
    env.insert("HOME".into(), home.display().to_string());
    env.insert("GH_NO_UPDATE_NOTIFIER".into(), "1".into());
    env.insert("GH_PROMPT_DISABLED".into(), "1".into());
    let out = common::run_with_env("gh", args, &env).await;
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_gh_client_is_decided_like_any_other() {
    assert!(
        std::process::Command::new("gh")
            .arg("--version")
            .output()
            .is_ok(),
        "this test needs the GitHub CLI: apt-get install gh (.ci/run installs it)"
    );
    let (tmp, up, s) = world().await;
    let env = s.env_for("dev", None);
    let home = tmp.path().join("gh-home");
    std::fs::create_dir_all(&home).unwrap();
    let port = up.port();

    // A read goes through, to the GitHub Enterprise API path.
    let (ok, out, err) = gh(&env, &home, port, &["api", "repos/acme/api"]).await;
    assert!(ok, "{out}{err}");
    let echo: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(echo["path"], "/api/v3/repos/acme/api");
    let hits = up.hits();
    // A merge is held: gh prints Clawser's message and fails.
    let (ok, out, err) = gh(
        &env,
        &home,
        port,
        &["api", "-X", "PUT", "repos/acme/api/pulls/7/merge"],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        format!("{out}{err}").contains("merge of /api/v3/repos/acme/api/pulls/7/merge"),
        "{out}{err}"
    );
    // Repository delete is denied, with the reason.
    let (ok, out, err) = gh(
        &env,
        &home,
        port,
        &["api", "-X", "DELETE", "repos/acme/api"],
    )
    .await;
    assert!(!ok);
    assert!(
        format!("{out}{err}").contains("agents may not repos.delete"),
        "{out}{err}"
    );
    // A deployment to production waits for two release approvers.
    let (ok, out, err) = gh(
        &env,
        &home,
        port,
        &[
            "api",
            "repos/acme/api/deployments",
            "-f",
            "ref=main",
            "-f",
            "environment=production",
        ],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        format!("{out}{err}").contains("production_deploy")
            || format!("{out}{err}").contains("two release approvers"),
        "{out}{err}"
    );
    // GraphQL mergePullRequest (gh sends it to /api/graphql) is held.
    let (ok, out, err) = gh(
        &env,
        &home,
        port,
        &[
            "api",
            "graphql",
            "-f",
            "query=mutation { mergePullRequest(input: {pullRequestId: \"PR_1\"}) { clientMutationId } }",
        ],
    )
    .await;
    assert!(!ok, "{out}");
    assert!(
        format!("{out}{err}").contains("held") || format!("{out}{err}").contains("apr_"),
        "{out}{err}"
    );
    assert_eq!(
        up.hits(),
        hits,
        "nothing refused or held reached the upstream"
    );

    // The README's walk-through: two release approvers release the production deploy
    // (one is not enough), and gh's identical retry goes through once.
    let deploy = [
        "api",
        "repos/acme/api/deployments",
        "-f",
        "ref=main",
        "-f",
        "environment=production",
    ];
    let pending: Value = serde_json::from_str(&s.cli_ok(&["approvals", "list", "--json"])).unwrap();
    let id = pending
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["reasons"][0]["code"] == "production_deploy")
        .map(|a| a["id"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("{pending}"));
    for (i, who) in ["bob", "carol"].into_iter().enumerate() {
        let out = s.cli_ok(&["approvers", "add", who, "--role", "release-approver"]);
        let token = common::gate::printed_token(&out);
        s.cli_ok(&[
            "approvals",
            "approve",
            &id,
            "--token",
            &token,
            "--reason",
            "1.4 verified",
        ]);
        if i == 0 {
            let (ok, out, _) = gh(&env, &home, port, &deploy).await;
            assert!(!ok, "one approver released a two-approver hold: {out}");
        }
    }
    let (ok, out, err) = gh(&env, &home, port, &deploy).await;
    assert!(ok, "{out}{err}");
    assert_eq!(up.hits(), hits + 1);
    let (ok, _, _) = gh(&env, &home, port, &deploy).await;
    assert!(!ok, "an approval releases one request");

    let entries = decided(&s);
    let ours: Vec<&Value> = entries
        .iter()
        .filter(|e| e["data"]["request"]["host"] == "github.test")
        .collect();
    let outcomes: Vec<(&str, &str)> = ours
        .iter()
        .map(|e| {
            (
                e["data"]["outcome"].as_str().unwrap_or("?"),
                e["data"]["github"]["action"]
                    .as_str()
                    .or(e["data"]["github"]["resource"].as_str())
                    .unwrap_or("?"),
            )
        })
        .collect();
    assert_eq!(
        outcomes[..5],
        [
            ("allow", "repos.get"),
            ("hold", "pulls.merge"),
            ("deny", "repos.delete"),
            ("hold", "deployments.create"),
            ("hold", "graphql"),
        ],
        "{entries:?}"
    );
}
