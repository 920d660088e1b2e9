//! The trust boundary, attacked as a hostile agent would: through the proxy into Clawser's
//! admin API, loopback, private and metadata addresses; hosts spelled as numbers; paths
//! spelled so the policy sees one thing and the upstream another; secrets in URLs; admin
//! secrets inherited by `clawser run`. Every refusal is one decision line and one ledger
//! entry with its reason code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{base_config, curl, run_with_env, Server, Upstream, World, BIN};

/// `clawser ledger show --json` entries of kind `request.decided`.
fn decided(server: &Server) -> Vec<serde_json::Value> {
    let all: Vec<serde_json::Value> =
        serde_json::from_str(&server.cli_ok(&["ledger", "show", "--json"])).unwrap();
    all.into_iter()
        .filter(|e| e["kind"] == "request.decided")
        .collect()
}

/// Waits until the ledger holds a `request.decided` entry for `request_id` and returns it.
async fn entry_for(server: &Server, request_id: &str) -> serde_json::Value {
    for _ in 0..50 {
        if let Some(e) = decided(server)
            .into_iter()
            .find(|e| e["data"]["request_id"] == request_id)
        {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no ledger entry for {request_id}");
}

/// The decision line of `request_id` in the server log.
fn line_for(server: &Server, request_id: &str) -> serde_json::Value {
    let log = server.log_text();
    let line = log
        .lines()
        .find(|l| l.contains("request decided") && l.contains(request_id))
        .unwrap_or_else(|| panic!("no decision line for {request_id}:\n{log}"));
    serde_json::from_str(line).unwrap()
}

/// curl through the proxy with `-i`: (status, reason code, request id).
async fn refused(env: &HashMap<String, String>, args: &[&str]) -> (u16, String, String) {
    let mut all = vec![
        "-sS",
        "-i",
        "--max-time",
        "20",
        "--suppress-connect-headers",
    ];
    all.extend_from_slice(args);
    let out = run_with_env("curl", &all, env).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").last().unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    (
        status,
        v["reasons"][0]["code"].as_str().unwrap_or("").to_string(),
        v["request_id"].as_str().unwrap_or("").to_string(),
    )
}

/// Sends `head` (request line and headers, no blank line) to the proxy over raw TCP with the
/// agent's credentials, as a client that does not normalize hosts would: (status, reason
/// code, request id).
fn raw(
    server: &Server,
    env: &HashMap<String, String>,
    head: &str,
    body: &str,
) -> (u16, String, String) {
    use base64::Engine;
    use std::io::{Read, Write};
    let creds = format!("dev:{}", Server::token_of(env));
    let auth = base64::engine::general_purpose::STANDARD.encode(creds);
    let mut s = std::net::TcpStream::connect(server.proxy).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "{head}\r\nProxy-Authorization: Basic {auth}\r\nConnection: close\r\n\r\n{body}"
    )
    .unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        let text = String::from_utf8_lossy(&buf);
        if let Some((h, b)) = text.split_once("\r\n\r\n") {
            let len = h
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse::<usize>().unwrap_or(0))
                })
                .unwrap_or(0);
            if b.len() >= len {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    (
        status,
        v["reasons"][0]["code"].as_str().unwrap_or("").to_string(),
        v["request_id"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_api_and_loopback_spellings_are_unreachable_through_the_proxy() {
    // Loopback is allowed for the test upstream, and still the admin API is refused.
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    let admin = w.server.admin.port();
    let proxy = w.server.proxy.port();
    let token = w.server.admin_token();
    let bearer = format!("Authorization: Bearer {token}");
    let body = r#"{"id":"mallory","roles":["release-approver"]}"#;
    let post = |target: String, host: String| {
        format!(
            "POST {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}",
            body.len()
        )
    };
    // Raw requests: no client-side normalization of the host spelling.
    let mut cases: Vec<(String, &str, u16, &str)> = Vec::new();
    for (host, status, code) in [
        (format!("127.0.0.1:{admin}"), 403, "destination_not_allowed"),
        (format!("localhost:{admin}"), 403, "destination_not_allowed"),
        (format!("LOCALHOST:{admin}"), 403, "destination_not_allowed"),
        (
            format!("[::ffff:127.0.0.1]:{admin}"),
            403,
            "destination_not_allowed",
        ),
        (format!("127.0.0.1:{proxy}"), 403, "destination_not_allowed"),
        (format!("2130706433:{admin}"), 400, "bad_host"),
        (format!("127.1:{admin}"), 400, "bad_host"),
        (format!("0x7f000001:{admin}"), 400, "bad_host"),
        (format!("0177.0.0.1:{admin}"), 400, "bad_host"),
        (format!("0x7f.1:{admin}"), 400, "bad_host"),
    ] {
        cases.push((
            post(format!("http://{host}/v1/approvers"), host),
            body,
            status,
            code,
        ));
    }
    // Through a CONNECT tunnel: refused at CONNECT, before a byte is tunnelled.
    for (host, status, code) in [
        (format!("127.0.0.1:{admin}"), 403, "destination_not_allowed"),
        (format!("localhost:{admin}"), 403, "destination_not_allowed"),
        (format!("2130706433:{admin}"), 400, "bad_host"),
    ] {
        cases.push((
            format!("CONNECT {host} HTTP/1.1\r\nHost: {host}"),
            "",
            status,
            code,
        ));
    }
    for (head, content, status, code) in cases {
        let (got, got_code, rid) = raw(&w.server, &env, &head, content);
        let first = head.lines().next().unwrap_or("").to_string();
        assert_eq!(
            (got, got_code.as_str()),
            (status, code),
            "{first}\n{}",
            w.server.log_text()
        );
        let e = entry_for(&w.server, &rid).await;
        assert_eq!(e["data"]["outcome"], "deny", "{e}");
        assert_eq!(e["data"]["reasons"][0]["code"], code, "{e}");
        let line = line_for(&w.server, &rid);
        assert_eq!(line["reasons"], code);
        assert_eq!(line["agent"], "dev");
    }
    // And as curl sends them (curl rewrites numeric hosts to dotted quads itself).
    for url in [
        format!("http://2130706433:{admin}/v1/approvers"),
        format!("http://127.0.0.1:{admin}/v1/approvers"),
    ] {
        for tunnel in [None, Some("-p")] {
            let mut args: Vec<&str> = tunnel.into_iter().collect();
            args.extend([
                "-X",
                "POST",
                "-H",
                bearer.as_str(),
                "-d",
                body,
                url.as_str(),
            ]);
            let (got, _, _) = refused(&env, &args).await;
            // Refused either way (a refused CONNECT leaves curl with no inner status).
            assert!(
                got == 403 || got == 400 || (tunnel.is_some() && got == 0),
                "{url} {tunnel:?}: {got}"
            );
        }
    }
    // No approver was minted.
    let approvers = w.server.cli_ok(&["approvers", "list"]);
    assert!(!approvers.contains("mallory"), "{approvers}");
}

#[tokio::test(flavor = "multi_thread")]
async fn private_and_metadata_destinations_are_refused_unless_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(tmp.path()).await;
    // The base config allows loopback; this one allows nothing private.
    let cfg = base_config(tmp.path(), &upstream, "")
        .replace("  allow_private: [127.0.0.0/8, \"::1\"]\n", "");
    assert!(!cfg.contains("allow_private"));
    let server = Server::start(tmp.path(), &cfg);
    let env = server.env_for("dev", None);
    let up = format!("localhost:{}", upstream.port());
    let (got, code, rid) = raw(
        &server,
        &env,
        &format!("CONNECT {up} HTTP/1.1\r\nHost: {up}"),
        "",
    );
    assert_eq!((got, code.as_str()), (403, "destination_not_allowed"));
    let e = entry_for(&server, &rid).await;
    assert_eq!(e["data"]["reasons"][0]["code"], "destination_not_allowed");
    for (url, status, code) in [
        (
            "http://169.254.169.254/latest/meta-data/",
            403,
            "destination_not_allowed",
        ),
        (
            "http://[fd00:ec2::254]/latest/meta-data/",
            403,
            "destination_not_allowed",
        ),
        ("http://10.0.0.1/", 403, "destination_not_allowed"),
        ("http://100.64.0.1/", 403, "destination_not_allowed"),
        ("http://0.0.0.0:9/", 403, "destination_not_allowed"),
    ] {
        let (got, got_code, rid) = refused(&env, &[url]).await;
        assert_eq!(
            (got, got_code.as_str()),
            (status, code),
            "{url}\n{}",
            server.log_text()
        );
        let e = entry_for(&server, &rid).await;
        assert_eq!(e["data"]["reasons"][0]["code"], code);
    }
    let (got, code, _) = raw(
        &server,
        &env,
        "GET http://0xa9fea9fe/latest/meta-data/ HTTP/1.1\r\nHost: 0xa9fea9fe",
        "",
    );
    assert_eq!((got, code.as_str()), (400, "bad_host"));
    assert_eq!(upstream.hits(), 0, "nothing reached the upstream");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_policy_sees_the_canonical_path_and_the_upstream_gets_it() {
    let w = World::with_proxy_extra("  hold_timeout: 200ms\n").await;
    let env = w.server.env_for("dev", None);
    // Production (POST /prod/*) is held; every spelling of it must be held too.
    for path in [
        "/prod/deploy",
        "/PROD/deploy",
        "/%70rod/deploy",
        "/x/../prod/deploy",
        "/./prod/deploy",
        "/prod/./deploy",
        "/prod%2Fdeploy",
        "/prod;v=1/deploy",
    ] {
        let url = w.upstream.url(path);
        let (status, code, rid) = refused(
            &env,
            &["--path-as-is", "-X", "POST", "-d", "{}", url.as_str()],
        )
        .await;
        assert_eq!((status, code.as_str()), (403, "production_write"), "{path}");
        let e = entry_for(&w.server, &rid).await;
        assert_eq!(e["data"]["target"]["env"], "production", "{path}: {e}");
        assert_eq!(e["data"]["outcome"], "hold");
    }
    assert_eq!(w.upstream.hits(), 0);
    // Ambiguous targets are refused before the policy, and recorded.
    for path in [
        "/prod/%2e%2e/x",
        "//prod/deploy",
        "/x/..;/prod/deploy",
        "/x/%252e%252e/prod",
        "/prod/a%5cb",
        "/prod/%00",
    ] {
        let url = w.upstream.url(path);
        let (status, code, rid) = refused(&env, &["--path-as-is", url.as_str()]).await;
        assert_eq!((status, code.as_str()), (400, "ambiguous_path"), "{path}");
        let e = entry_for(&w.server, &rid).await;
        assert_eq!(e["data"]["reasons"][0]["code"], "ambiguous_path");
    }
    assert_eq!(w.upstream.hits(), 0);
    // What is allowed is forwarded in the canonical form the policy saw.
    let url = w.upstream.url("/a/%7Euser/./b/../c?q=%61%2f");
    let (code, body) = curl(&env, &["--path-as-is", url.as_str()]).await;
    assert_eq!(code, 200, "{body}");
    let seen = w.upstream.last().unwrap();
    assert_eq!(seen.path, "/a/~user/c", "{seen:?}");
    let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["path"], "/a/~user/c");
}

#[tokio::test(flavor = "multi_thread")]
async fn destination_reaches_the_policy_and_the_ledger() {
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    let (code, body) = curl(&env, &["-i", w.upstream.url("/hello").as_str()]).await;
    assert_eq!(code, 200, "{body}");
    let rid = body
        .lines()
        .find_map(|l| l.strip_prefix("x-clawser-request-id: "))
        .map(str::trim)
        .map(str::to_string);
    let e = match rid {
        Some(rid) => entry_for(&w.server, &rid).await,
        None => decided(&w.server)
            .into_iter()
            .rev()
            .find(|e| e["data"]["request"]["path"] == "/hello")
            .unwrap(),
    };
    assert_eq!(e["data"]["destination"]["class"], "loopback", "{e}");
    assert!(!e["data"]["destination"]["ips"]
        .as_array()
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn secrets_in_urls_never_reach_the_ledger_logs_approvals_events_or_webhooks() {
    let (hook, delivered) = common::gate::webhook_receiver(false).await;
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(tmp.path()).await;
    let cfg = format!(
        "{}notify:\n  webhooks:\n    - url: http://{hook}/hook\n",
        base_config(
            tmp.path(),
            &upstream,
            "  hold_timeout: 200ms\n  redact_patterns: [\"corp-[0-9]{6}\"]\n"
        )
    );
    let server = Server::start(tmp.path(), &cfg);
    let w = Canary { server, upstream };
    let env = w.server.env_for("dev", None);
    // The live event stream, as the web page and tools read it.
    let events = {
        let (admin, token) = (w.server.admin, w.server.admin_token());
        tokio::spawn(async move {
            let out = tokio::process::Command::new("curl")
                .args(["-sS", "-N", "--max-time", "8", "-H"])
                .arg(format!("Authorization: Bearer {token}"))
                .arg(format!("http://{admin}/v1/events"))
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let shapes = [
        "ghp_CANARYAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "github_pat_11CANARY0aaaaaaaaaaaa_bbbbbbbbbbbbbbbbbbbbbbbbb",
        "AKIACANARY0000000000",
        "xoxb-123456789012-canaryslack",
        "eyJhbGciOiJIUzI1NiJ9.eyJjYW5hcnkiOjF9.c2lnbmF0dXJl",
        "corp-314159",
    ];
    let secret_values = [
        "canary-client-secret",
        "canary-refresh",
        "canary-oauth-code",
    ];
    let mut urls = vec![
        w.upstream.url("/services/T0001/B0002/CANARYslackwebhook0001"),
        w.upstream.url("/api/webhooks/123456789/CANARY-discord_token"),
        w.upstream.url("/bot123456789:CANARYtelegramtoken000000000/getMe"),
        w.upstream.url("/x?client_secret=canary-client-secret&refresh_token=canary-refresh&code=canary-oauth-code"),
    ];
    for s in shapes {
        urls.push(w.upstream.url(&format!("/path/{s}/x?v={s}")));
        // Held (production): the approval object keeps the URL too.
        urls.push(w.upstream.url(&format!("/prod/{s}?v={s}")));
    }
    for url in &urls {
        let method = if url.contains("/prod/") {
            "POST"
        } else {
            "GET"
        };
        let _ = curl(&env, &["-X", method, "-d", "{}", url.as_str()]).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let export = w.server.cli_ok(&["ledger", "export"]);
    let approvals = w
        .server
        .cli_ok(&["approvals", "list", "--state", "pending", "--json"]);
    let log = w.server.log_text();
    let events = events.await.unwrap();
    assert!(events.contains("request.decided"), "{events}");
    let hooks = serde_json::to_string(&*delivered.lock().unwrap()).unwrap();
    assert!(hooks.contains("approval.created"), "{hooks}");
    let forbidden: Vec<&str> = shapes
        .iter()
        .copied()
        .chain(secret_values.iter().copied())
        .chain([
            "CANARYslackwebhook0001",
            "CANARY-discord_token",
            "CANARYtelegramtoken",
        ])
        .collect();
    for (what, text) in [
        ("ledger export", &export),
        ("approvals", &approvals),
        ("log", &log),
        ("event stream", &events),
        ("webhooks", &hooks),
    ] {
        for f in &forbidden {
            assert!(!text.contains(f), "{f} reached the {what}");
        }
    }
    assert!(export.contains("<redacted>"));
    assert!(
        approvals.contains("apr_"),
        "the held requests opened approvals: {approvals}"
    );
}

/// A server and its upstream, started by hand (with a top-level `notify:` section).
struct Canary {
    server: Server,
    upstream: Upstream,
}

#[tokio::test(flavor = "multi_thread")]
async fn clawser_run_withholds_admin_secrets() {
    let w = World::new().await;
    let out = tokio::process::Command::new(BIN)
        .arg("-c")
        .arg(&w.server.config)
        .args(["run", "--agent", "dev", "--", "env"])
        .env("CLAWSER_ADMIN_TOKEN", w.server.admin_token())
        .env("CLAWSER_CONFIG", &w.server.config)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(env.contains("HTTPS_PROXY="), "{env}");
    assert!(!env.contains(&w.server.admin_token()), "{env}");
    let leaked: Vec<&str> = env
        .lines()
        .filter(|l| l.starts_with("CLAWSER_ADMIN_TOKEN=") || l.starts_with("CLAWSER_CONFIG="))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn presented_but_refused_credentials_are_recorded_a_missing_one_only_logged() {
    let w = World::new().await;
    let env = w.server.env_for("oc-1", None);
    let url = w.upstream.url("/x");
    w.server.cli_ok(&["agents", "revoke", "oc-1"]);
    let (code, _) = curl(&env, &[url.as_str()]).await;
    assert_eq!(code, 407);
    // The challenge git waits for (no credentials at all): logged, not recorded.
    let mut bare = env.clone();
    for k in ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"] {
        if let Some(v) = bare.get_mut(k) {
            *v = format!("http://{}", w.server.proxy);
        }
    }
    let (code, _) = curl(&bare, &[url.as_str()]).await;
    assert_eq!(code, 407);
    let mut found = Vec::new();
    for _ in 0..50 {
        found = decided(&w.server)
            .into_iter()
            .filter(|e| {
                e["data"]["reasons"][0]["code"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("auth_")
            })
            .collect();
        if !found.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["data"]["reasons"][0]["code"], "auth_revoked");
    assert_eq!(found[0]["data"]["claimed_agent"], "oc-1");
    assert_eq!(w.upstream.hits(), 0);
}
