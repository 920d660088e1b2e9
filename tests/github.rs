//! GitHub, understood: requests to a host in `github.hosts` give policies `input.github`
//! (REST action, repository, GraphQL operation), and the ledger records what was done.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

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

#[tokio::test(flavor = "multi_thread")]
async fn rest_and_graphql_requests_are_understood_and_recorded() {
    let tmp = tempfile::tempdir().unwrap();
    let up = Upstream::start(tmp.path()).await;
    // The local upstream stands in for GitHub.
    let cfg = format!(
        "{}github:\n  hosts: [localhost]\n",
        base_config(tmp.path(), &up, "")
    );
    let s = Server::start(tmp.path(), &cfg);
    let env = s.env_for("dev", None);

    let (code, body) = curl(
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
    assert_eq!(code, 200, "{body}");
    let (code, body) = curl(&env, &["-X", "DELETE", &up.url("/repos/acme/api")]).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("repo_delete"));
    // GraphQL sent as text/plain is still read.
    let merge = r#"{"query": "mutation M { mergePullRequest(input: {pullRequestId: \"x\"}) { clientMutationId } }"}"#;
    let (code, body) = curl(
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
    assert_eq!(code, 200, "{body}");
    let delete = r#"{"query": "mutation { deleteRepository(input: {repositoryId: \"x\"}) { clientMutationId } }"}"#;
    let (code, body) = curl(&env, &["-X", "POST", "-d", delete, &up.url("/graphql")]).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("repo_delete"), "{body}");
    let broken = r#"{"query": "mutation { mergePullRequest("}"#;
    let (code, body) = curl(&env, &["-X", "POST", "-d", broken, &up.url("/graphql")]).await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("graphql_unreadable"), "{body}");
    let persisted = r#"{"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "abc"}}}"#;
    let (code, _) = curl(&env, &["-X", "POST", "-d", persisted, &up.url("/graphql")]).await;
    assert_eq!(code, 403);

    let entries = decided(&s);
    let gh: Vec<&Value> = entries.iter().map(|e| &e["data"]["github"]).collect();
    assert_eq!(gh[0]["action"], "pulls.merge", "{entries:?}");
    assert_eq!(gh[0]["repo"], "acme/api");
    assert_eq!(gh[1]["action"], "repos.delete");
    assert_eq!(gh[2]["graphql"]["operation"], "mutation");
    assert_eq!(gh[2]["graphql"]["fields"][0], "mergePullRequest");
    assert_eq!(gh[3]["graphql"]["fields"][0], "deleteRepository");
    // A host that is not GitHub gets no input.github.
    let other = format!(
        "https://127.0.0.1:{}/repos/acme/api/pulls/7/merge",
        up.port()
    );
    let (code, _) = curl(&env, &["-X", "PUT", "-d", "{}", &other]).await;
    assert_eq!(code, 200);
    let last = decided(&s).pop().unwrap();
    assert!(last["data"].get("github").is_none(), "{last}");
}
