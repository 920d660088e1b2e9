//! Canary: real secret values from every source shape (env, file, command) are used by an
//! agent through placeholders, in allowed and held requests, and never appear in the ledger
//! export, the log, the event stream, webhooks, approvals, admin API answers, the web page or
//! what `clawser env` prints.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::gate::{admin, approver_token, pending, webhook_receiver, APPROVERS};
use common::{base_config, curl, Server, Upstream};

const FROM_ENV: &str = "canaryENV_b6f1d2e3a4c5b6a7d8e9f0a1b2c3d4e5";
const FROM_FILE: &str = "canaryFILE_0a1b2c3d4e5f60718293a4b5c6d7e8f9";
const FROM_COMMAND: &str = "canaryCMD_f9e8d7c6b5a4938271605f4e3d2c1b0a";

#[tokio::test(flavor = "multi_thread")]
async fn secret_values_from_every_source_never_leave_clawser() {
    // The server inherits this process's environment: a name no other test uses.
    std::env::set_var("CLAWSER_CANARY_ENV_SECRET", FROM_ENV);
    let (hook, delivered) = webhook_receiver(false).await;
    let tmp = tempfile::tempdir().unwrap();
    let upstream = Upstream::start(tmp.path()).await;
    let file = tmp.path().join("file.secret");
    std::fs::write(&file, FROM_FILE).unwrap();
    let cmd_file = tmp.path().join("cmd.secret");
    std::fs::write(&cmd_file, FROM_COMMAND).unwrap();
    let cfg = format!(
        r#"{base}{APPROVERS}notify:
  webhooks:
    - url: http://{hook}/hook
secrets:
  - name: env-secret
    from: {{env: CLAWSER_CANARY_ENV_SECRET}}
    hosts: [localhost]
    inject: bearer
    env: [ENV_SECRET]
  - name: file-secret
    from: {{file: {file}}}
    hosts: [localhost]
    inject: {{header: X-Api-Key}}
    env: [FILE_SECRET]
  - name: cmd-secret
    from: {{command: "cat {cmd}", ttl: 1h}}
    hosts: [localhost]
    inject: {{query: key}}
    env: [CMD_SECRET]
"#,
        base = base_config(tmp.path(), &upstream, "  hold_timeout: 5s"),
        file = file.display(),
        cmd = cmd_file.display(),
    );
    let s = Server::start(tmp.path(), &cfg);
    for secret in ["env-secret", "file-secret", "cmd-secret"] {
        s.cli_ok(&["grants", "add", "--agent", "dev", "--secret", secret]);
    }
    let events = {
        let (admin_addr, token) = (s.admin, s.admin_token());
        tokio::spawn(async move {
            let out = tokio::process::Command::new("curl")
                .args(["-sS", "-N", "--max-time", "10", "-H"])
                .arg(format!("Authorization: Bearer {token}"))
                .arg(format!("http://{admin_addr}/v1/events"))
                .output()
                .await
                .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let env_out = s.cli_ok(&["env", "--agent", "dev"]);
    let env: HashMap<String, String> = s.env_for("dev", None);
    let bearer = format!("Authorization: Bearer {}", env["ENV_SECRET"]);
    let api_key = format!("X-Api-Key: {}", env["FILE_SECRET"]);
    let query = format!("/echo?key={}", env["CMD_SECRET"]);
    // Allowed (development) requests carrying each placeholder; the upstream echoes them.
    let (code, body) = curl(
        &env,
        &["-H", &bearer, "-H", &api_key, &upstream.url(&query)],
    )
    .await;
    assert_eq!(code, 200, "{body}");
    let seen = upstream.last().unwrap();
    assert_eq!(seen.headers["authorization"], format!("Bearer {FROM_ENV}"));
    assert_eq!(seen.headers["x-api-key"], FROM_FILE);
    let echoed = body;
    // A held (production) request carrying them: an approval, webhooks, then released.
    let prod = format!("/prod/deploy?key={}", env["CMD_SECRET"]);
    let held = {
        let (env, url, bearer, api_key) = (
            env.clone(),
            upstream.url(&prod),
            bearer.clone(),
            api_key.clone(),
        );
        tokio::spawn(async move {
            curl(
                &env,
                &[
                    "-X",
                    "POST",
                    "-d",
                    "{\"x\":1}",
                    "-H",
                    &bearer,
                    "-H",
                    &api_key,
                    &url,
                ],
            )
            .await
        })
    };
    let bob = approver_token(&s, "bob");
    let id = pending(&s, &bob, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (got, _) = admin(
        &s,
        "POST",
        &format!("/v1/approvals/{id}/approve"),
        &bob,
        Some(serde_json::json!({"reason": "ok"})),
    )
    .await;
    assert_eq!(got, 200);
    let (code, held_body) = held.await.unwrap();
    assert_eq!(code, 200, "{held_body}");
    tokio::time::sleep(Duration::from_millis(500)).await;

    let token = s.admin_token();
    let mut seen: Vec<(String, String)> = vec![
        ("ledger export".into(), s.cli_ok(&["ledger", "export"])),
        ("log".into(), s.log_text()),
        ("env output".into(), env_out),
        ("agent's responses".into(), echoed + &held_body),
        ("events".into(), events.await.unwrap()),
        (
            "webhooks".into(),
            serde_json::to_string(&*delivered.lock().unwrap()).unwrap(),
        ),
        (
            "approvals".into(),
            s.cli_ok(&["approvals", "list", "--state", "all", "--json"]),
        ),
    ];
    for path in [
        "/",
        "/inbox.js",
        "/grants.js",
        "/v1/grants?state=all",
        "/v1/secrets",
        "/v1/approvals?state=all",
        &format!("/v1/approvals/{id}"),
        "/v1/ledger",
        "/v1/ledger/export",
        "/metrics",
    ] {
        let url = format!("http://{}{path}", s.admin);
        let (_, text) = curl(
            &HashMap::new(),
            &["-H", &format!("Authorization: Bearer {token}"), &url],
        )
        .await;
        seen.push((format!("admin API {path}"), text));
    }
    assert!(
        seen[4].1.contains("request.decided"),
        "the event stream was read"
    );
    assert!(
        seen[5].1.contains("approval.created"),
        "webhooks were delivered"
    );
    // As is, and percent-encoded (how a query secret goes upstream).
    let pct = |v: &str| v.replace('_', "%5F");
    for (what, text) in &seen {
        for value in [FROM_ENV, FROM_FILE, FROM_COMMAND] {
            assert!(!text.contains(value), "{value} leaked into the {what}");
            assert!(
                !text.contains(&pct(value)),
                "{value} (encoded) leaked into the {what}"
            );
        }
    }
}
