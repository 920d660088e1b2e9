//! The work ledger as an auditor uses it: every decision and change recorded, a readable
//! timeline per job across runtimes, verification of the data dir and of exports, tamper
//! detection with the sequence number, inclusion proofs, no secrets, and crash safety.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::client::TunnelClient;
use common::{curl, Server, World};

fn admin_get(server: &Server, path: &str) -> String {
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "-H",
            &format!("Authorization: Bearer {}", server.admin_token()),
            &format!("http://{}{path}", server.admin),
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

fn entries(server: &Server, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["ledger", "show", "--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&server.cli_ok(&all)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn decisions_and_changes_form_one_verifiable_timeline_per_job() {
    // The production write is held; nobody approves it within the short hold timeout. The
    // upstream stands in for GitHub, so deleting the repository is denied (release.rego).
    let mut w = World::with_config("  hold_timeout: 1s\n", "github:\n  hosts: [localhost]\n").await;
    let started = w
        .server
        .cli_ok(&["jobs", "start", "--agent", "oc-1", "--title", "release 1.4"]);
    let job = started.split_whitespace().nth(2).unwrap().to_string();
    let env = w.server.env_for("oc-1", Some(&job));
    assert_eq!(
        curl(&env, &[w.upstream.url("/repos/acme/api").as_str()])
            .await
            .0,
        200
    );
    assert_eq!(
        curl(
            &env,
            &["-X", "DELETE", w.upstream.url("/repos/acme/api").as_str()]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        curl(
            &env,
            &[
                "-X",
                "POST",
                "-d",
                "{}",
                w.upstream.url("/prod/deploy").as_str()
            ]
        )
        .await
        .0,
        403
    );
    w.server.cli_ok(&["jobs", "handoff", &job, "--to", "dev"]);
    let env_dev = w.server.env_for("dev", Some(&job));
    assert_eq!(
        curl(&env_dev, &[w.upstream.url("/staging/check").as_str()])
            .await
            .0,
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await; // request.completed is recorded as the body ends

    let es = entries(&w.server, &["--job", &job]);
    let kinds: Vec<&str> = es.iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for k in [
        "job.started",
        "credential.issued",
        "request.decided",
        "request.completed",
        "job.handed_off",
    ] {
        assert!(kinds.contains(&k), "{k} missing from {kinds:?}");
    }
    let decided: Vec<&serde_json::Value> = es
        .iter()
        .filter(|e| e["kind"] == "request.decided")
        .collect();
    let outcomes: Vec<&str> = decided
        .iter()
        .map(|e| e["data"]["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["allow", "deny", "hold", "allow"]);
    assert_eq!(decided[0]["data"]["runtime"], "openclaw");
    assert_eq!(decided[3]["data"]["agent"], "dev");
    assert_eq!(decided[3]["data"]["runtime"], "claude-code");
    assert_eq!(decided[1]["data"]["reasons"][0]["code"], "repo_delete");
    assert!(decided[0]["data"]["policy_rev"].as_str().unwrap().len() == 64);
    // Write-ahead: each allowed request's decision precedes its completion.
    let first_req = decided[0]["data"]["request_id"].as_str().unwrap();
    let done = es
        .iter()
        .find(|e| e["kind"] == "request.completed" && e["data"]["request_id"] == first_req)
        .unwrap();
    assert!(done["seq"].as_u64() > decided[0]["seq"].as_u64());
    assert_eq!(done["data"]["status"], 200);

    let text = w.server.cli_ok(&["ledger", "show", "--job", &job]);
    assert!(
        text.contains("oc-1 (openclaw, for alice) GET localhost/repos/acme/api -> ALLOW"),
        "{text}"
    );
    assert!(text.contains("DENY (repo_delete)"), "{text}");
    assert!(text.contains("handed off oc-1 -> dev"), "{text}");

    // Verify while running (through the server's export), after export, and offline.
    let out = w.server.cli_ok(&["ledger", "verify"]);
    assert!(out.starts_with("OK:"), "{out}");
    // An auditor keeps a checkpoint; later the ledger must still extend it.
    let cp: serde_json::Value =
        serde_json::from_str(&admin_get(&w.server, "/v1/ledger/checkpoint")).unwrap();
    let trusted = w.tmp.path().join("trusted.note");
    std::fs::write(&trusted, cp["checkpoint"].as_str().unwrap()).unwrap();
    assert_eq!(
        curl(&env_dev, &[w.upstream.url("/staging/later").as_str()])
            .await
            .0,
        200
    );
    let out = w.server.cli_ok(&[
        "ledger",
        "verify",
        "--trusted-checkpoint",
        trusted.to_str().unwrap(),
    ]);
    assert!(
        out.contains("extends the trusted checkpoint of size"),
        "{out}"
    );
    let export = w.tmp.path().join("export.jsonl");
    w.server
        .cli_ok(&["ledger", "export", "--out", export.to_str().unwrap()]);
    let out = w
        .server
        .cli_ok(&["ledger", "verify", "--export", export.to_str().unwrap()]);
    assert!(out.starts_with("OK:"), "{out}");
    let ocsf = w.server.cli_ok(&["ledger", "export", "--format", "ocsf"]);
    let first: serde_json::Value =
        serde_json::from_str(ocsf.lines().find(|l| l.contains("4002")).unwrap()).unwrap();
    assert_eq!(first["class_uid"], 4002);
    assert!(first["disposition"].is_string() && first["policy"]["uid"].is_string());

    // A flipped byte in the export is found with its sequence number.
    let text = std::fs::read_to_string(&export).unwrap();
    let target = decided[1]["seq"].as_u64().unwrap();
    let tampered: String = text
        .lines()
        .map(|l| {
            if l.starts_with("{\"data\"") && l.contains(&format!("\"seq\":{target},")) {
                l.replacen("\"deny\"", "\"allw\"", 1)
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(tampered, text.trim_end());
    std::fs::write(&export, tampered).unwrap();
    let out = w
        .server
        .cli(&["ledger", "verify", "--export", export.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(
        msg.contains(&format!("first bad sequence number {target}")),
        "{msg}"
    );

    // Offline: the data dir verifies; a flipped byte on disk is found and the server refuses to start.
    w.server.kill();
    let out = w.server.cli_ok(&["ledger", "verify"]);
    assert!(out.contains("OK: data dir"), "{out}");
    {
        // Entries are stored in blocks keyed by their first sequence number: a format byte,
        // then the records (per entry: 32-byte leaf hash, u32 length, canonical bytes), as
        // they are (1) or as their u32 length and one LZ4 block (2). Someone with the disk
        // rewrites a block consistently: decompress, flip a byte of one entry, recompress.
        let db = sled::open(w.tmp.path().join("data/db")).unwrap();
        let tree = db.open_tree("ledger.blocks").unwrap();
        let (key, v) = tree
            .range(..=target.to_be_bytes())
            .next_back()
            .unwrap()
            .unwrap();
        assert_eq!(v[0], 2, "request entries compress");
        let raw_len = u32::from_be_bytes(v[1..5].try_into().unwrap()) as usize;
        let mut records = lz4_flex::block::decompress(&v[5..], raw_len).unwrap();
        let (mut seq, mut pos) = (u64::from_be_bytes(key.as_ref().try_into().unwrap()), 0);
        loop {
            let len = u32::from_be_bytes(records[pos + 32..pos + 36].try_into().unwrap()) as usize;
            if seq == target {
                records[pos + 36 + len - 3] ^= 0x01;
                break;
            }
            (seq, pos) = (seq + 1, pos + 36 + len);
        }
        let mut v = vec![2];
        v.extend_from_slice(&u32::try_from(records.len()).unwrap().to_be_bytes());
        v.extend_from_slice(&lz4_flex::block::compress(&records));
        tree.insert(key, v).unwrap();
        db.flush().unwrap();
    }
    let out = w.server.cli(&["ledger", "verify"]);
    assert_eq!(out.status.code(), Some(1));
    let msg = String::from_utf8_lossy(&out.stdout);
    assert!(
        msg.contains(&format!("first bad sequence number {target}")),
        "{msg}"
    );
    let cfg = std::fs::read_to_string(&w.server.config).unwrap();
    let err = Server::try_start(w.tmp.path(), &cfg)
        .err()
        .expect("a tampered ledger must stop the server");
    assert!(err.contains(&format!("entry {target}")), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_graceful_stop_signs_a_checkpoint_covering_every_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = common::Upstream::start(tmp.path()).await;
    // Checkpoints only every 1000 entries or 10 minutes: only the shutdown can produce one here.
    let cfg = common::base_config(tmp.path(), &upstream, "").replace(
        "checkpoint_every: 1\n  checkpoint_interval: 1s",
        "checkpoint_every: 1000\n  checkpoint_interval: 10m",
    );
    let mut server = Server::start(tmp.path(), &cfg);
    let env = server.env_for("dev", None);
    assert_eq!(curl(&env, &[upstream.url("/a").as_str()]).await.0, 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = server.terminate();
    assert!(status.success(), "{status}: {}", server.log_text());
    let out = server.cli_ok(&["ledger", "verify"]);
    let entries: u64 = out
        .split(": ")
        .nth(2)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(entries >= 4, "{out}");
    assert!(out.contains(&format!("latest covers {entries})")), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn inclusion_proofs_verify_against_the_signed_checkpoint() {
    use clawser::ledger::merkle::verify_inclusion;
    use clawser::ledger::note::{Checkpoint, Verifier};
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    for i in 0..5 {
        curl(&env, &[w.upstream.url(&format!("/p{i}")).as_str()]).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let proof: serde_json::Value =
        serde_json::from_str(&w.server.cli_ok(&["ledger", "proof", "3"])).unwrap();
    let v = Verifier::parse(proof["verifier_key"].as_str().unwrap()).unwrap();
    let cp = Checkpoint::parse(v.open(proof["checkpoint"].as_str().unwrap()).unwrap()).unwrap();
    let leaf: [u8; 32] = hex::decode(proof["leaf_hash"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let path: Vec<[u8; 32]> = proof["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            hex::decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    assert!(verify_inclusion(3, cp.size, &leaf, &path, &cp.root));
    assert!(!verify_inclusion(4, cp.size, &leaf, &path, &cp.root));
}

#[tokio::test(flavor = "multi_thread")]
async fn canary_secrets_never_reach_the_ledger() {
    let w = World::new().await;
    let env = w.server.env_for("dev", None);
    let token = Server::token_of(&env);
    let canary = "CANARY-9b2e";
    let url = w.upstream.url(&format!("/x?access_token={canary}-q"));
    let auth = format!("Authorization: token {canary}-auth");
    let cookie = format!("Cookie: s={canary}-cookie");
    let body = format!("{{\"secret\":\"{canary}-body\"}}");
    let (code, _) = curl(
        &env,
        &[
            "-H",
            auth.as_str(),
            "-H",
            cookie.as_str(),
            "-H",
            "Content-Type: application/json",
            "-d",
            body.as_str(),
            url.as_str(),
        ],
    )
    .await;
    assert_eq!(code, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let export = w.server.cli_ok(&["ledger", "export"]);
    assert!(export.contains("request.decided"));
    assert!(!export.contains(canary), "a canary reached the ledger");
    assert!(
        !export.contains(&token),
        "the agent token reached the ledger"
    );
    let ocsf = w.server.cli_ok(&["ledger", "export", "--format", "ocsf"]);
    assert!(!ocsf.contains(canary));
}

/// kill -9 under concurrent load, several rounds: the ledger always verifies, and every
/// request the upstream received has a durable `request.decided` allow entry.
#[tokio::test(flavor = "multi_thread")]
async fn sigkill_under_load_loses_no_forwarded_request_and_never_corrupts() {
    let mut w = World::new().await;
    let env = w.server.env_for("dev", None);
    let token = Server::token_of(&env);
    let ca = w.tmp.path().join("certs/ca.pem");
    let cfg = std::fs::read_to_string(&w.server.config).unwrap();
    let port = w.upstream.port();
    for round in 0..4u64 {
        let stop = Arc::new(AtomicBool::new(false));
        let proxy = w.server.proxy;
        let mut tasks = Vec::new();
        for t in 0..8 {
            let (stop, token, ca) = (stop.clone(), token.clone(), ca.clone());
            tasks.push(tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let Ok(mut c) =
                        TunnelClient::try_connect(proxy, "localhost", port, "dev", &token, &ca)
                            .await
                    else {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    };
                    while !stop.load(Ordering::SeqCst) {
                        i += 1;
                        if c.try_get(&format!("/crash/{round}/{t}/{i}")).await.is_err() {
                            break;
                        }
                    }
                }
            }));
        }
        // Kill at a different moment each round.
        tokio::time::sleep(Duration::from_millis(300 + 170 * round)).await;
        w.server.kill();
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            let _ = t.await;
        }
        let out = w.server.cli(&["ledger", "verify"]);
        assert!(
            out.status.success(),
            "round {round}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        w.server = Server::start(w.tmp.path(), &cfg);
    }
    assert!(
        w.upstream.hits() > 50,
        "the load generated too few requests: {}",
        w.upstream.hits()
    );
    let recorded: std::collections::HashSet<String> = entries(&w.server, &[])
        .into_iter()
        .filter(|e| e["kind"] == "request.decided" && e["data"]["outcome"] == "allow")
        .map(|e| e["data"]["request"]["path"].as_str().unwrap().to_string())
        .collect();
    let received: Vec<String> = w
        .upstream
        .seen
        .lock()
        .unwrap()
        .iter()
        .map(|s| s.path.clone())
        .collect();
    let missing: Vec<&String> = received.iter().filter(|p| !recorded.contains(*p)).collect();
    assert!(
        missing.is_empty(),
        "{} forwarded requests have no ledger entry, e.g. {:?}",
        missing.len(),
        missing.first()
    );
    let out = w.server.cli_ok(&["ledger", "verify"]);
    assert!(out.starts_with("OK:"), "{out}");
}

/// An export taken before any checkpoint still proves what it holds: it ends with a
/// checkpoint signed at export time. Changing one byte, or stripping the checkpoints, fails
/// verification, and the verifier says which key it trusted.
#[tokio::test(flavor = "multi_thread")]
async fn an_export_is_signed_whole_at_export_time() {
    let tmp = tempfile::tempdir().unwrap();
    let upstream = common::Upstream::start(tmp.path()).await;
    let cfg = common::base_config(tmp.path(), &upstream, "").replace(
        "  checkpoint_every: 1\n  checkpoint_interval: 1s\n",
        "  checkpoint_every: 1000000\n  checkpoint_interval: 1h\n",
    );
    assert!(cfg.contains("checkpoint_interval: 1h"));
    let server = Server::start(tmp.path(), &cfg);
    let env = server.env_for("dev", None);
    let (code, _) = curl(&env, &[upstream.url("/small").as_str()]).await;
    assert_eq!(code, 200);
    let export = tmp.path().join("export.jsonl");
    server.cli_ok(&["ledger", "export", "--out", export.to_str().unwrap()]);
    let text = std::fs::read_to_string(&export).unwrap();
    assert!(text.contains("\"/small\""), "{text}");
    let last = text.lines().last().unwrap();
    assert!(last.starts_with("{\"checkpoint\":"), "{last}");
    let out = server.cli_ok(&["ledger", "verify", "--export", export.to_str().unwrap()]);
    assert!(out.starts_with("OK:"), "{out}");
    assert!(out.contains("this node's ledger key"), "{out}");

    // One byte changed in an entry: refused, naming its sequence number.
    let tampered = text.replacen("\"/small\"", "\"/smalL\"", 1);
    let bad = tmp.path().join("tampered.jsonl");
    std::fs::write(&bad, &tampered).unwrap();
    let out = server.cli(&["ledger", "verify", "--export", bad.to_str().unwrap()]);
    let msg = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("first bad sequence number"), "{msg}");

    // Checkpoints stripped: nothing is covered, so nothing is proven.
    let stripped: String = text
        .lines()
        .filter(|l| !l.starts_with("{\"checkpoint\":"))
        .map(|l| format!("{l}\n"))
        .collect();
    let bare = tmp.path().join("bare.jsonl");
    std::fs::write(&bare, stripped).unwrap();
    let out = server.cli(&["ledger", "verify", "--export", bare.to_str().unwrap()]);
    let msg = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(msg.contains("not covered by a signed checkpoint"), "{msg}");
    assert!(msg.contains("first bad sequence number 0"), "{msg}");

    // Verified where the ledger key is not readable: the export's own key, with a warning.
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let other_cfg = elsewhere.join("clawser.yaml");
    std::fs::write(
        &other_cfg,
        format!("data_dir: {}/data\n", elsewhere.display()),
    )
    .unwrap();
    let out = std::process::Command::new(common::BIN)
        .arg("-c")
        .arg(&other_cfg)
        .args(["ledger", "verify", "--export", export.to_str().unwrap()])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stderr.contains("WARNING"), "{stderr}");
    assert!(stdout.contains("internal consistency only"), "{stdout}");

    // A key that did not sign it: refused.
    let wrong =
        "clawser.local/x+00000000+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    let out = server.cli(&[
        "ledger",
        "verify",
        "--export",
        export.to_str().unwrap(),
        "--key",
        wrong,
    ]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
