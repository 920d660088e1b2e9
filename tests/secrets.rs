//! No secret ever reaches a log line: agent tokens, Authorization, Cookie, configured
//! headers and query keys, and request bodies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{curl, Server, World};

#[tokio::test(flavor = "multi_thread")]
async fn canary_secrets_never_reach_the_log() {
    let w = World::with_proxy_extra("  redact_headers: [x-canary-header]").await;
    let env = w.server.env_for("dev", None);
    let token = Server::token_of(&env);
    let canary = "CANARY-7f3a9c";
    let url = w
        .upstream
        .url(&format!("/echo?access_token={canary}-q&ok=1"));
    let auth = format!("Authorization: Bearer {canary}-auth");
    let cookie = format!("Cookie: session={canary}-cookie");
    let custom = format!("X-Canary-Header: {canary}-custom");
    let body = format!("{{\"password\": \"{canary}-body\"}}");
    let (code, _) = curl(
        &env,
        &[
            "-H",
            auth.as_str(),
            "-H",
            cookie.as_str(),
            "-H",
            custom.as_str(),
            "-H",
            "Content-Type: application/json",
            "-d",
            body.as_str(),
            url.as_str(),
        ],
    )
    .await;
    assert_eq!(code, 200);
    // A denied one too, and a failed authentication with a wrong token.
    let (code, _) = curl(
        &env,
        &[
            "-X",
            "DELETE",
            "-H",
            auth.as_str(),
            w.upstream.url("/repos/a/b").as_str(),
        ],
    )
    .await;
    assert_eq!(code, 403);
    let mut bad = env.clone();
    let wrong = format!("http://dev:{canary}-token@{}", w.server.proxy);
    bad.insert("HTTPS_PROXY".into(), wrong.clone());
    bad.insert("https_proxy".into(), wrong);
    assert_eq!(curl(&bad, &[w.upstream.url("/").as_str()]).await.0, 407);

    let log = w.server.log_text();
    assert!(log.contains("request decided"), "{log}");
    assert!(
        !log.contains(canary),
        "a canary secret reached the log:\n{log}"
    );
    assert!(!log.contains(&token), "the agent token reached the log");
    // The upstream did get them (Clawser forwards, it only keeps them out of its records).
    let seen = w.upstream.seen.lock().unwrap().first().cloned().unwrap();
    assert!(seen.headers["authorization"].contains(canary));
}
