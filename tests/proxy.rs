//! The proxy as a user drives it: curl with the env from `clawser env`, against a real
//! HTTPS upstream through TLS interception.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{curl, World};

#[tokio::test(flavor = "multi_thread")]
async fn allowed_request_is_intercepted_and_forwarded_without_proxy_headers() {
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    let (code, body) = curl(
        &env,
        &[
            "-H",
            "X-Clawser-Intent: testing",
            w.upstream.url("/repos/acme/api").as_str(),
        ],
    )
    .await;
    assert_eq!(code, 200, "{body}\n{}", w.server.log_text());
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["path"], "/repos/acme/api");
    assert_eq!(w.upstream.hits(), 1);
    let seen = w.upstream.last().unwrap();
    assert!(
        !seen.headers.contains_key("proxy-authorization"),
        "{seen:?}"
    );
    assert!(!seen.headers.contains_key("x-clawser-intent"), "{seen:?}");
    // One canonical decision line for the request.
    let log = w.server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("request decided") && l.contains("/repos/acme/api"))
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["agent"], "dev");
    assert_eq!(v["outcome"], "allow");
    assert_eq!(v["status"], 200);
    assert!(v["policy_rev"].as_str().unwrap().len() == 12);
}

#[tokio::test(flavor = "multi_thread")]
async fn denied_request_never_reaches_upstream() {
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    let out = common::run_with_env(
        "curl",
        &[
            "-sS",
            "-i",
            "--suppress-connect-headers",
            "-X",
            "DELETE",
            w.upstream.url("/repos/acme/api").as_str(),
        ],
        &env,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/1.1 403") || text.starts_with("HTTP/2 403"),
        "{text}"
    );
    assert!(
        text.to_ascii_lowercase()
            .contains("x-clawser-outcome: deny"),
        "{text}"
    );
    let body = text.split("\r\n\r\n").nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(v["outcome"], "deny");
    assert_eq!(v["reasons"][0]["code"], "repo_delete");
    assert!(v["request_id"].as_str().unwrap().starts_with("req_"));
    assert_eq!(w.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn production_write_is_held_and_staging_write_is_not() {
    let w = World::with_proxy_extra("  hold_timeout: 1s\n").await;
    let env = w.server.env_for("dev", None);
    let (code, body) = curl(
        &env,
        &[
            "-X",
            "POST",
            "-d",
            "{}",
            w.upstream.url("/prod/deploy").as_str(),
        ],
    )
    .await;
    assert_eq!(code, 403, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["outcome"], "hold");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("a human must approve"),
        "{body}"
    );
    assert!(v["approval_id"].as_str().unwrap().starts_with("apr_"));
    assert_eq!(v["reasons"][0]["code"], "production_write");
    // The same write to staging is allowed.
    let (code, _) = curl(
        &env,
        &[
            "-X",
            "POST",
            "-d",
            "{}",
            w.upstream.url("/staging/deploy").as_str(),
        ],
    )
    .await;
    assert_eq!(code, 200);
    assert_eq!(w.upstream.hits(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_or_wrong_credentials_get_407_with_challenge() {
    let w = World::new().await;
    let mut env = w.server.env_for("dev", None);
    let proxy = format!("http://{}", w.server.proxy);
    env.insert("HTTPS_PROXY".into(), proxy.clone());
    env.insert("https_proxy".into(), proxy);
    let out =
        common::run_with_env("curl", &["-sS", "-i", w.upstream.url("/").as_str()], &env).await;
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.contains("407"), "{text}");
    assert!(
        text.contains("proxy-authenticate: basic realm=\"clawser\""),
        "{text}"
    );
    let bad = format!("http://dev:clw_wrong@{}", w.server.proxy);
    env.insert("HTTPS_PROXY".into(), bad.clone());
    env.insert("https_proxy".into(), bad);
    let out =
        common::run_with_env("curl", &["-sS", "-i", w.upstream.url("/").as_str()], &env).await;
    assert!(String::from_utf8_lossy(&out.stdout).contains("407"));
    assert_eq!(w.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_to_the_client_and_upstream() {
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    let out = common::run_with_env(
        "curl",
        &[
            "-sS",
            "--http2",
            "-w",
            "\n%{http_version}",
            w.upstream.url("/h2").as_str(),
        ],
        &env,
    )
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    let (json, version) = text.rsplit_once('\n').unwrap();
    assert_eq!(version.trim(), "2", "client side must be h2: {text}");
    let echo: serde_json::Value = serde_json::from_str(json).unwrap();
    assert_eq!(
        echo["version"], "HTTP/2.0",
        "upstream side must be h2 by ALPN"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ip_literal_host_gets_an_ip_certificate() {
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    let url = format!("https://127.0.0.1:{}/ip", w.upstream.port());
    let (code, body) = curl(&env, &[url.as_str()]).await;
    assert_eq!(code, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn host_header_or_sni_disagreeing_with_connect_is_denied() {
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    let (code, body) = curl(
        &env,
        &["-H", "Host: evil.example", w.upstream.url("/").as_str()],
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("host_mismatch"), "{body}");
    // CONNECT to 127.0.0.1 while the TLS SNI says localhost.
    let port = w.upstream.port();
    let connect_to = format!("localhost:{port}:127.0.0.1:{port}");
    let (code, body) = curl(
        &env,
        &[
            "--connect-to",
            connect_to.as_str(),
            w.upstream.url("/").as_str(),
        ],
    )
    .await;
    assert_eq!(code, 403, "{body}");
    assert!(body.contains("host_mismatch"), "{body}");
    assert_eq!(w.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_absolute_form_is_decided_too() {
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    // The upstream only speaks TLS, so an allowed plain request fails upstream (502) ...
    let url = format!("http://localhost:{}/plain", w.upstream.port());
    let (code, body) = curl(&env, &[url.as_str()]).await;
    assert_eq!(code, 502, "{body}");
    assert!(body.contains("upstream_error"), "{body}");
    // ... and a denied one is refused before any connection.
    let url = format!("http://localhost:{}/repos/a/b", w.upstream.port());
    let (code, body) = curl(&env, &["-X", "DELETE", url.as_str()]).await;
    assert_eq!(code, 403, "{body}");
}

fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_and_oversized_input_do_not_crash_the_proxy() {
    let mut w = World::with_proxy_extra("  max_header_bytes: 32768").await;
    let proxy = w.server.proxy;
    let r = tokio::task::spawn_blocking(move || raw_exchange(proxy, b"\x00\x01garbage\r\n\r\n"))
        .await
        .unwrap();
    assert!(r.is_empty() || r.starts_with("HTTP/1.1 400"), "{r}");
    let r = tokio::task::spawn_blocking(move || {
        raw_exchange(
            proxy,
            b"GET /relative HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("not_a_proxy_request"), "{r}");
    // 40 KiB of headers: over proxy.max_header_bytes (32 KiB here), answered by Clawser.
    let env = w.server.env_for("dev", None);
    let big = format!("X-Big: {}", "a".repeat(40 * 1024));
    for version in ["--http1.1", "--http2"] {
        let (code, body) = curl(
            &env,
            &[version, "-H", big.as_str(), w.upstream.url("/").as_str()],
        )
        .await;
        assert_eq!(code, 431, "{version}: {body}");
        assert!(body.contains("headers_too_large"), "{body}");
    }
    // 100 KiB: beyond the parser's hard cap (2x the limit); hyper answers 431 itself.
    let huge = format!("X-Big: {}", "a".repeat(100 * 1024));
    let (code, _) = curl(
        &env,
        &[
            "--http1.1",
            "-H",
            huge.as_str(),
            w.upstream.url("/").as_str(),
        ],
    )
    .await;
    assert_eq!(code, 431);
    assert_eq!(w.upstream.hits(), 0);
    // Still serving.
    let (code, _) = curl(&env, &[w.upstream.url("/after").as_str()]).await;
    assert_eq!(code, 200);
    assert!(w.server.is_running());
}

#[tokio::test(flavor = "multi_thread")]
async fn non_tls_inside_connect_is_refused() {
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    let token = common::Server::token_of(&env);
    let auth = base64_basic("dev", &token);
    let port = w.upstream.port();
    let proxy = w.server.proxy;
    let req = format!(
        "CONNECT localhost:{port} HTTP/1.1\r\nHost: localhost:{port}\r\nProxy-Authorization: Basic {auth}\r\n\r\nGET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
    );
    let r = tokio::task::spawn_blocking(move || raw_exchange(proxy, req.as_bytes()))
        .await
        .unwrap();
    assert!(r.starts_with("HTTP/1.1 200"), "{r}");
    assert!(r.contains("HTTP/1.1 403"), "{r}");
    assert!(r.contains("not_tls"), "{r}");
    assert_eq!(w.upstream.hits(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn passthrough_hosts_are_tunnelled_uninspected_but_decided() {
    let w = World::with_proxy_extra("  passthrough_hosts: [\"127.0.0.1\"]").await;
    let env = w.server.env_for("dev", None);
    // Uninspected: the client sees the upstream's own certificate, so it must trust that CA.
    let url = format!("https://127.0.0.1:{}/tunnelled", w.upstream.port());
    let ca = w.upstream.ca_path.display().to_string();
    let (code, body) = curl(&env, &["--cacert", ca.as_str(), url.as_str()]).await;
    assert_eq!(code, 200, "{body}\n{}", w.server.log_text());
    assert!(w.server.log_text().contains("passthrough"));
}

fn base64_basic(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn clawser_run_executes_a_command_through_the_proxy() {
    let w = World::new().await;
    let url = w.upstream.url("/run");
    let out = w.server.cli(&[
        "run",
        "--agent",
        "oc-1",
        "--",
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url.as_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "200");
    assert!(w.server.log_text().contains("\"agent\":\"oc-1\""));
}
