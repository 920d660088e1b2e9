//! The README's "run Clawser as its own user" recipe (deploy/clawser.service), checked for
//! real where this machine allows it (root, useradd, runuser): Clawser runs as a service
//! user; an agent running as another user reaches the proxy with the exports `clawser env`
//! printed, and cannot read the admin token, the ledger key or the CA key.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{base_config, Upstream, BIN};

const SERVICE_USER: &str = "clawser-svc";
const AGENT_USER: &str = "nobody";

fn root_with_tools() -> bool {
    let uid = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout)
        .unwrap_or_default();
    String::from_utf8_lossy(&uid).trim() == "0"
        && Command::new("runuser")
            .arg("--help")
            .stdout(Stdio::null())
            .status()
            .is_ok()
        && Command::new("useradd")
            .arg("--help")
            .stdout(Stdio::null())
            .status()
            .is_ok()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_as_another_user_uses_the_proxy_but_reads_none_of_its_secrets() {
    if !root_with_tools() {
        eprintln!("skipped: needs root, useradd and runuser (CI runs as root)");
        return;
    }
    let exists = Command::new("id")
        .arg(SERVICE_USER)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    if !exists {
        let ok = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    // A world-traversable place (tempdir() is 0700 and root's).
    let tmp = tempfile::Builder::new()
        .prefix("clawser-own-user")
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let upstream = Upstream::start(tmp.path()).await;
    std::fs::set_permissions(&upstream.ca_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = base_config(tmp.path(), &upstream, "");
    let cfg_path = tmp.path().join("clawser.yaml");
    std::fs::write(&cfg_path, &cfg).unwrap();
    for d in ["data", "certs", "policies"] {
        std::fs::create_dir_all(tmp.path().join(d)).unwrap();
        let ok = Command::new("chown")
            .arg(SERVICE_USER)
            .arg(tmp.path().join(d))
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let log = std::fs::File::create(tmp.path().join("serve.log")).unwrap();
    let mut child = Command::new("runuser")
        .args(["-u", SERVICE_USER, "--", BIN, "-c"])
        .arg(&cfg_path)
        .args(["--log-format", "json", "serve"])
        .env_remove("CLAWSER_ADMIN_TOKEN")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let info = tmp.path().join("data/server.json");
    // runuser does not pass a kill on to the server: stop the server itself, whatever happens.
    let _stop = StopServer(info.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while !info.exists() {
        assert!(
            Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(tmp.path().join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // The operator (root here) prints the exports for the agent.
    let out = Command::new(BIN)
        .arg("-c")
        .arg(&cfg_path)
        .args(["env", "--agent", "dev", "--format", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env: std::collections::HashMap<String, String> =
        serde_json::from_slice(&out.stdout).unwrap();

    // The agent, as another user: the proxy works...
    let mut curl = Command::new("runuser");
    curl.args([
        "-u",
        AGENT_USER,
        "--",
        "curl",
        "-sS",
        "--max-time",
        "20",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
    ])
    .arg(upstream.url("/hello"));
    for k in common::INHERITED_NETWORK_VARS {
        curl.env_remove(k);
    }
    curl.envs(&env);
    let out = curl.output().unwrap();
    let code = String::from_utf8_lossy(&out.stdout).to_string();
    // ...and none of Clawser's secrets are readable.
    let secrets = ["data/admin.token", "data/ledger.key", "certs/ca.key"];
    let mut readable = Vec::new();
    for s in secrets {
        let p = tmp.path().join(s);
        assert!(p.exists(), "{s} was not created");
        let r = Command::new("runuser")
            .args(["-u", AGENT_USER, "--", "cat"])
            .arg(&p)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        if r.success() {
            readable.push(s);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(
        code,
        "200",
        "{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(tmp.path().join("serve.log")).unwrap_or_default()
    );
    assert!(
        readable.is_empty(),
        "readable by {AGENT_USER}: {readable:?}"
    );
}

#[test]
fn the_shipped_unit_runs_clawser_as_its_own_user() {
    let unit = include_str!("../deploy/clawser.service");
    for want in [
        "User=clawser",
        "ExecStart=/usr/local/bin/clawser -c /etc/clawser/clawser.yaml serve",
        "StateDirectory=clawser",
        "ProtectHome=yes",
        "NoNewPrivileges=yes",
    ] {
        assert!(unit.lines().any(|l| l.trim() == want), "{want} missing");
    }
    let cfg = include_str!("../deploy/clawser.yaml");
    let parsed = clawser::config::Config::from_yaml(
        cfg,
        "deploy/clawser.yaml",
        std::path::Path::new("/etc/clawser"),
    )
    .unwrap();
    assert_eq!(
        parsed.data_dir,
        std::path::Path::new("/var/lib/clawser/data")
    );
}

/// Kills the server whose `server.json` this is (running as another user, so the test's
/// child handle, `runuser`, cannot).
struct StopServer(std::path::PathBuf);

impl Drop for StopServer {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["pid"].as_u64());
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}
