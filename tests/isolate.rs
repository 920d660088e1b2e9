//! Enforced egress: `clawser run --isolate` runs a command in a bubblewrap sandbox whose only
//! way out is Clawser's proxy. Inside, a script tries everything an agent going around
//! Clawser would; each check fails without the isolation (proxy-less curl, raw TCP to the
//! upstream, the admin port or the metadata address, reading Clawser's keys).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashMap;
use std::process::Command;

use common::git::seed;
use common::{World, BIN};
use serde_json::Value;

/// `name=value` lines the script printed.
fn results(stdout: &str) -> HashMap<String, String> {
    stdout
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// `clawser -c CONFIG run --isolate --agent dev -- CMD…` from `cwd`.
fn isolated(config: &std::path::Path, cwd: &std::path::Path, cmd: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("-c")
        .arg(config)
        .args(["run", "--isolate", "--agent", "dev", "--"])
        .args(cmd)
        .current_dir(cwd)
        .env_remove("CLAWSER_ADMIN_TOKEN")
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_proxy_is_the_only_way_out() {
    let w = World::new().await;
    let dir = w.tmp.path();
    let bare = w.upstream.bare_repo("acme/api.git");
    seed(&bare, &dir.join("seed")).await;
    let work = dir.join("work");
    std::fs::create_dir_all(&work).unwrap();
    // The working directory is a git checkout (its .git/hooks must stay read-only).
    let init = Command::new("git")
        .arg("init")
        .arg("-q")
        .arg(&work)
        .status()
        .unwrap();
    assert!(init.success());
    let up = w.upstream.url("/hello");
    let repo = w.upstream.url("/git/acme/api.git");
    let script = format!(
        r#"
r() {{ "$@" >/dev/null 2>&1; echo "$?"; }}
connect() {{ r python3 -c "import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3)" "$1" "$2"; }}
echo "proxied=$(curl -sS -m 10 -o /dev/null -w '%{{http_code}}' {up})"
echo "noproxy=$(r curl -sS -m 5 --noproxy '*' {up})"
echo "unset=$(r env -u HTTPS_PROXY -u https_proxy -u HTTP_PROXY -u http_proxy curl -sS -m 5 {up})"
echo "tcp_upstream=$(connect 127.0.0.1 {up_port})"
echo "tcp_admin=$(connect 127.0.0.1 {admin_port})"
echo "tcp_metadata=$(connect 169.254.169.254 80)"
echo "raw_socket=$(r python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, 1)')"
echo "admin_token=$(r cat {data}/admin.token)"
echo "ledger_key=$(r cat {data}/ledger.key)"
echo "ca_key=$(r cat {certs}/ca.key)"
echo "config=$(r grep -q data_dir {config})"
echo "ca_bundle=$(r grep -q CERTIFICATE "$SSL_CERT_FILE")"
echo "ca_cert=$(r grep -q CERTIFICATE "$NODE_EXTRA_CA_CERTS")"
echo "policy_write=$(r touch {policies}/agent.rego)"
echo "home_write=$(r touch "$HOME/.clawser-isolate-probe")"
echo "etc_write=$(r touch /etc/clawser-isolate-probe)"
echo "host_unix_socket=$(r python3 -c "import socket,sys; socket.socket(socket.AF_UNIX).connect(sys.argv[1])" {host_sock})"
echo "tiocsti=$(python3 -c "
import errno, fcntl, termios
try:
    fcntl.ioctl(0, termios.TIOCSTI, b'x'); print('allowed')
except OSError as e:
    print(errno.errorcode[e.errno])
")"
echo "relay_memory=$(r python3 -c "open('/proc/1/mem', 'rb')")"
echo "socket_swap=$(r mv /run/clawser /run/clawser-moved)"
echo "hook_write=$(r touch .git/hooks/post-checkout)"
echo "git_dir_swap=$(r mv .git .git-moved)"
git -c user.name=a -c user.email=a@x clone -q {repo} clone >/dev/null 2>&1
cd clone && echo change > change.txt && git add . && \
  git -c user.name=a -c user.email=a@x commit -qm change >/dev/null 2>&1
echo "git_push=$(r git push -q origin HEAD:agent-branch)"
cd ..
echo "cwd_write=$(r touch written-inside)"
exit 3
"#,
        up_port = w.upstream.port(),
        admin_port = w.server.admin.port(),
        data = dir.join("data").display(),
        certs = dir.join("certs").display(),
        config = w.server.config.display(),
        policies = dir.join("policies").display(),
        host_sock = dir.join("work/host.sock").display(),
    );
    // A host service on a Unix socket in the (writable, shared) working directory: the
    // network namespace does not cover it, the seccomp filter does.
    let host_sock = std::os::unix::net::UnixListener::bind(dir.join("work/host.sock")).unwrap();
    host_sock.set_nonblocking(true).unwrap();
    let server = &w.server;
    let config = server.config.clone();
    let out = tokio::task::spawn_blocking(move || isolated(&config, &work, &["sh", "-c", &script]))
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let r = results(&stdout);
    let ctx = format!("stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        out.status.code(),
        Some(3),
        "the command's exit status: {ctx}"
    );
    let want = [
        ("proxied", "200"),
        ("ca_bundle", "0"),
        ("ca_cert", "0"),
        ("git_push", "0"),
        ("cwd_write", "0"),
    ];
    for (k, v) in want {
        assert_eq!(r.get(k).map(String::as_str), Some(v), "{k}: {ctx}");
    }
    for k in [
        "noproxy",
        "unset",
        "tcp_upstream",
        "tcp_admin",
        "tcp_metadata",
        "raw_socket",
        "admin_token",
        "ledger_key",
        "ca_key",
        "config",
        "policy_write",
        "home_write",
        "etc_write",
        "host_unix_socket",
        "relay_memory",
        "socket_swap",
        "hook_write",
        "git_dir_swap",
    ] {
        let v = r.get(k).unwrap_or_else(|| panic!("{k} missing: {ctx}"));
        assert_ne!(v, "0", "{k} succeeded inside the sandbox: {ctx}");
    }
    assert_eq!(r.get("tiocsti").map(String::as_str), Some("EPERM"), "{ctx}");
    assert!(host_sock.accept().is_err(), "the host socket was reached");
    assert!(w.tmp.path().join("work/written-inside").exists());
    assert!(!w.tmp.path().join("policies/agent.rego").exists());
    let pushed = Command::new("git")
        .arg("-C")
        .arg(&bare)
        .args(["rev-parse", "--verify", "agent-branch"])
        .output()
        .unwrap();
    assert!(pushed.status.success(), "the push landed: {ctx}");

    // The run is in the ledger, and its credential ended with it.
    let entries: Vec<Value> =
        serde_json::from_str(&server.cli_ok(&["ledger", "show", "--json"])).unwrap();
    let started = entries
        .iter()
        .find(|e| e["kind"] == "sandbox.started")
        .unwrap_or_else(|| panic!("{entries:?}"));
    assert_eq!(started["data"]["agent"], "dev");
    assert_eq!(started["data"]["command"], "sh");
    let ended = entries
        .iter()
        .find(|e| e["kind"] == "sandbox.ended")
        .unwrap_or_else(|| panic!("{entries:?}"));
    assert_eq!(ended["data"]["exit_status"], 3);
    assert_eq!(ended["data"]["sandbox"], started["data"]["sandbox"]);
    // Requests made inside are attributed to the agent like any other.
    assert!(entries.iter().any(|e| e["kind"] == "request.decided"
        && e["data"]["agent"] == "dev"
        && e["data"]["request"]["path"] == "/hello"));
    let cred = started["data"]["credential"].as_str().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["kind"] == "credential.revoked" && e["data"].to_string().contains(cred)),
        "{entries:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_server_or_with_a_hidden_working_directory_it_refuses() {
    let w = World::new().await;
    // The working directory inside the data dir would expose it: refused before starting.
    let work = w.tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = isolated(&w.server.config, &work, &["true"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let inside = w.tmp.path().join("data");
    let out = isolated(&w.server.config, &inside, &["true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hides"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every credential issued for a run ended with it, the refused run's too.
    let entries: Vec<Value> =
        serde_json::from_str(&w.server.cli_ok(&["ledger", "show", "--json"])).unwrap();
    let count = |kind: &str| entries.iter().filter(|e| e["kind"] == kind).count();
    assert_eq!(count("credential.issued"), 2, "{entries:?}");
    assert_eq!(count("credential.revoked"), 2, "{entries:?}");
    // No server: no way out, so no run (and the command never starts).
    let mut w = w;
    w.server.kill();
    let marker = w.tmp.path().join("ran");
    let out = isolated(
        &w.server.config,
        w.tmp.path(),
        &["touch", marker.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs a running `clawser serve`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!marker.exists());
}

/// Kills the server started as another user (by the PID in its server.json).
struct StopServer(std::path::PathBuf);

impl Drop for StopServer {
    fn drop(&mut self) {
        let pid = std::fs::read_to_string(&self.0)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["pid"].as_u64());
        if let Some(pid) = pid {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
        }
    }
}

/// The same sandbox for a developer without root: `clawser serve` and `clawser run
/// --isolate` both as an unprivileged user (bubblewrap through user namespaces). Needs root
/// to make that user (CI runs as root); elsewhere it says so and returns.
#[tokio::test(flavor = "multi_thread")]
async fn an_unprivileged_user_gets_the_same_sandbox() {
    use std::os::unix::fs::PermissionsExt as _;
    const USER: &str = "clawser-dev";
    let root = Command::new("id").arg("-u").output().unwrap();
    if String::from_utf8_lossy(&root.stdout).trim() != "0" {
        eprintln!("skipped: needs root to create the unprivileged user (CI runs as root)");
        return;
    }
    let exists = Command::new("id")
        .arg(USER)
        .output()
        .unwrap()
        .status
        .success();
    if !exists {
        let ok = Command::new("useradd")
            .args(["--no-create-home", "--shell", "/bin/sh", USER])
            .status()
            .unwrap();
        assert!(ok.success());
    }
    let tmp = tempfile::Builder::new()
        .prefix("clawser-isolate-user")
        .tempdir_in("/tmp")
        .unwrap();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let upstream = common::Upstream::start(dir).await;
    std::fs::set_permissions(&upstream.ca_path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = dir.join("clawser.yaml");
    std::fs::write(&cfg, common::base_config(dir, &upstream, "")).unwrap();
    for d in ["data", "certs", "policies", "work"] {
        std::fs::create_dir_all(dir.join(d)).unwrap();
    }
    let ok = Command::new("chown")
        .args(["-R", USER])
        .arg(dir.join("data"))
        .arg(dir.join("certs"))
        .arg(dir.join("policies"))
        .arg(dir.join("work"))
        .arg(&cfg)
        .status()
        .unwrap();
    assert!(ok.success());
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let mut serve = Command::new("runuser")
        .args(["-u", USER, "--", BIN, "-c"])
        .arg(&cfg)
        .arg("serve")
        .stdout(std::process::Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let info = dir.join("data/server.json");
    let _stop = StopServer(info.clone());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !info.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{}",
            std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let script = format!(
        r#"id -u
echo "proxied=$(curl -sS -m 10 -o /dev/null -w '%{{http_code}}' {up})"
echo "direct=$(env -u HTTPS_PROXY -u https_proxy curl -sS -m 5 -o /dev/null {up} >/dev/null 2>&1; echo $?)"
echo "token=$(cat {data}/admin.token >/dev/null 2>&1; echo $?)""#,
        up = upstream.url("/hello"),
        data = dir.join("data").display(),
    );
    let out = Command::new("runuser")
        .args(["-u", USER, "--", BIN, "-c"])
        .arg(&cfg)
        .args([
            "run",
            "--isolate",
            "--agent",
            "dev",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .current_dir(dir.join("work"))
        .env_remove("CLAWSER_ADMIN_TOKEN")
        .env("HOME", dir.join("work"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let ctx = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{ctx}");
    let r = results(&stdout);
    assert_eq!(r.get("proxied").map(String::as_str), Some("200"), "{ctx}");
    assert_ne!(r.get("direct").map(String::as_str), Some("0"), "{ctx}");
    assert_ne!(r.get("token").map(String::as_str), Some("0"), "{ctx}");
    assert_ne!(stdout.lines().next(), Some("0"), "ran as root: {ctx}");
    drop(_stop);
    let _ = serve.wait();
}

/// A socket path the kernel refuses (over 107 bytes) does not stop the server: it serves
/// TCP, and `--isolate` says why it cannot run.
#[tokio::test(flavor = "multi_thread")]
async fn a_server_without_its_unix_socket_still_serves_and_isolate_says_why() {
    let long = format!("  unix_socket: /tmp/{}/proxy.sock", "s".repeat(120));
    let w = World::with_proxy_extra(&long).await;
    let env = w.server.env_for("dev", None);
    let (code, _) = common::curl(&env, &[w.upstream.url("/hello").as_str()]).await;
    assert_eq!(code, 200);
    let work = w.tmp.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = isolated(&w.server.config, &work, &["true"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("does not listen on a Unix socket"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
