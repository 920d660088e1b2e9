//! Shared integration-test harness: a real upstream (`upstream.rs`) and the real `clawser`
//! binary started on port 0 with a config in a temp dir, driven through its CLI and by real
//! clients (curl, git, python, node) as a user would.
#![allow(dead_code)]

pub mod client;
pub mod gate;
pub mod git;
pub mod secrets;
pub mod upstream;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub use upstream::Upstream;

pub const BIN: &str = env!("CARGO_BIN_EXE_clawser");

/// Extra YAML appended to the test config (top-level keys must not repeat the base ones).
pub struct Server {
    child: Option<Child>,
    pub dir: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub proxy: SocketAddr,
    pub admin: SocketAddr,
}

/// The base config: everything on port 0 in `dir`, upstream CA trusted, `/prod/*` and
/// `/git/prod/*` on localhost are production, `/staging/*` staging.
pub fn base_config(dir: &Path, upstream: &Upstream, proxy_extra: &str) -> String {
    format!(
        r#"data_dir: {dir}/data
proxy:
  listen: 127.0.0.1:0
  # The test upstreams are on loopback.
  allow_private: [127.0.0.0/8, "::1"]
{proxy_extra}
admin:
  listen: 127.0.0.1:0
ca:
  dir: {dir}/certs
policy:
  dir: {dir}/policies
  reload_interval: 100ms
  # Debug builds on a loaded machine: a decision-table case run at start must not meet the
  # production limit (250ms) and keep the server from starting.
  eval_timeout: 10s
upstream:
  extra_ca_files: [{ca}]
environments:
  default: development
  rules:
    - env: production
      hosts: [localhost, 127.0.0.1]
      paths: ["/prod/*", "/git/prod/*"]
    - env: staging
      hosts: [localhost]
      paths: ["/staging/*"]
ledger:
  checkpoint_every: 1
  checkpoint_interval: 1s
agents:
  - id: dev
    runtime: claude-code
    on_behalf_of: alice
    roles: [dev]
  - id: oc-1
    runtime: openclaw
    on_behalf_of: alice
"#,
        dir = dir.display(),
        ca = upstream.ca_path.display(),
    )
}

impl Server {
    /// Writes `config_yaml` to `dir/clawser.yaml` and starts `clawser serve` with it.
    pub fn start(dir: &Path, config_yaml: &str) -> Server {
        Server::try_start(dir, config_yaml)
            .unwrap_or_else(|log| panic!("clawser did not start:\n{log}"))
    }

    /// Like `start`, but returns the log when the server exits or does not come up.
    pub fn try_start(dir: &Path, config_yaml: &str) -> Result<Server, String> {
        let config = dir.join("clawser.yaml");
        std::fs::write(&config, config_yaml).unwrap();
        let log = dir.join("serve.log");
        let data = dir.join("data");
        let _ = std::fs::remove_file(data.join("server.json"));
        let logf = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .args(["-c"])
            .arg(&config)
            .args(["--log-format", "json", "serve"])
            .env_remove("CLAWSER_CONFIG")
            .env_remove("CLAWSER_ADMIN_TOKEN")
            .env("CLAWSER_LOG", "info")
            .stdout(Stdio::null())
            .stderr(logf)
            .spawn()
            .unwrap();
        let mut server = Server {
            child: Some(child),
            dir: dir.to_path_buf(),
            config,
            log,
            proxy: "127.0.0.1:0".parse().unwrap(),
            admin: "127.0.0.1:0".parse().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(data.join("server.json")) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    server.proxy = v["proxy"].as_str().unwrap().parse().unwrap();
                    server.admin = v["admin"].as_str().unwrap().parse().unwrap();
                    return Ok(server);
                }
            }
            if let Some(child) = server.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    server.child = None;
                    return Err(format!("exited with {status}: {}", server.log_text()));
                }
            }
            if Instant::now() > deadline {
                return Err(server.log_text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the CLI against this server's config.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("-c")
            .arg(&self.config)
            .args(args)
            .env_remove("CLAWSER_ADMIN_TOKEN")
            .output()
            .unwrap()
    }

    /// Runs the CLI and requires success; returns stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "clawser {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// `clawser env --agent A --format json`, as a map.
    pub fn env_for(&self, agent: &str, job: Option<&str>) -> HashMap<String, String> {
        let mut args = vec!["env", "--agent", agent, "--format", "json"];
        if let Some(j) = job {
            args.extend(["--job", j]);
        }
        serde_json::from_str(&self.cli_ok(&args)).unwrap()
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.dir.join("data/admin.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The token inside HTTPS_PROXY of an env map.
    pub fn token_of(env: &HashMap<String, String>) -> String {
        let url = &env["HTTPS_PROXY"];
        let creds = url.trim_start_matches("http://").split('@').next().unwrap();
        creds.split_once(':').unwrap().1.to_string()
    }

    /// Stops the server (SIGKILL) and waits.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Opens a TCP connection to the proxy and sends CONNECT `target` with `env`'s
    /// credential for `agent`; returns the stream (10 s read timeout) and the response head
    /// ("" when the proxy closed the connection without an answer).
    pub fn tunnel(
        &self,
        env: &HashMap<String, String>,
        agent: &str,
        target: &str,
    ) -> (std::net::TcpStream, String) {
        use base64::Engine as _;
        use std::io::{Read as _, Write as _};
        let token = Server::token_of(env);
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{agent}:{token}"));
        let mut s = std::net::TcpStream::connect(self.proxy).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = write!(
            s,
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nProxy-Authorization: Basic {auth}\r\n\r\n"
        );
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            match s.read(&mut byte) {
                Ok(1) => head.push(byte[0]),
                _ => break,
            }
        }
        (s, String::from_utf8_lossy(&head).into_owned())
    }

    /// Stops the server with SIGTERM (graceful shutdown) and waits for it to exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("server not running");
        let ok = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
        // A shutdown that hangs fails the test instead of hanging the suite.
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                panic!(
                    "clawser did not stop within 30 s of SIGTERM:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Proxy and CA variables removed from every client process before `env` is applied.
pub const INHERITED_NETWORK_VARS: &[&str] = &[
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "https_proxy",
    "http_proxy",
    "NO_PROXY",
    "no_proxy",
    "ALL_PROXY",
    "all_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "GIT_SSL_CAPATH",
    "NODE_EXTRA_CA_CERTS",
    "CARGO_HTTP_CAINFO",
    "AWS_CA_BUNDLE",
    "PIP_CERT",
    "GIT_CONFIG_COUNT",
];

/// Runs a command with exactly `env` added (proxy variables of the parent removed first).
pub async fn run_with_env(prog: &str, args: &[&str], env: &HashMap<String, String>) -> Output {
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args);
    // Nothing of the parent's proxy or CA settings may leak in (this machine exports
    // GIT_SSL_CAINFO and friends globally): only what `clawser env` printed counts.
    for k in INHERITED_NETWORK_VARS {
        cmd.env_remove(k);
    }
    cmd.envs(env);
    cmd.output().await.unwrap()
}

/// curl with the given env; returns (status code, body). `-w` adds the status on the last line.
pub async fn curl(env: &HashMap<String, String>, args: &[&str]) -> (u16, String) {
    let mut all = vec![
        "-sS",
        "--max-time",
        "20",
        "-w",
        "\n%{http_code} %{http_connect}",
    ];
    all.extend_from_slice(args);
    let out = run_with_env("curl", &all, env).await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, codes) = text.rsplit_once('\n').unwrap_or(("", "0 0"));
    let (code, connect) = codes.trim().split_once(' ').unwrap_or(("0", "0"));
    let code: u16 = code.parse().unwrap_or(0);
    let connect: u16 = connect.parse().unwrap_or(0);
    // A refused CONNECT has no response inside the tunnel: report the CONNECT status.
    let code = if code == 0 && connect >= 300 {
        connect
    } else {
        code
    };
    (code, body.to_string())
}

/// Waits until `f` is true or the timeout passes (for hot reload, which polls).
pub async fn eventually<F: FnMut() -> bool>(timeout: Duration, mut f: F) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f()
}

/// A started upstream + server in a temp dir.
pub struct World {
    pub tmp: tempfile::TempDir,
    pub upstream: Upstream,
    pub server: Server,
}

impl World {
    pub async fn new() -> World {
        World::with_proxy_extra("").await
    }

    pub async fn with_proxy_extra(proxy_extra: &str) -> World {
        World::with_config(proxy_extra, "").await
    }

    /// The default config with `policy.engine` set.
    pub async fn with_policy_engine(engine: &str) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let upstream = Upstream::start(tmp.path()).await;
        let cfg = base_config(tmp.path(), &upstream, "").replace(
            "  reload_interval: 100ms\n",
            &format!("  reload_interval: 100ms\n  engine: {engine}\n"),
        );
        assert!(cfg.contains("engine:"));
        let server = Server::start(tmp.path(), &cfg);
        World {
            tmp,
            upstream,
            server,
        }
    }

    /// `proxy_extra` lines go under `proxy:`; `extra` is appended to the config.
    pub async fn with_config(proxy_extra: &str, extra: &str) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let upstream = Upstream::start(tmp.path()).await;
        let cfg = format!("{}{extra}", base_config(tmp.path(), &upstream, proxy_extra));
        let server = Server::start(tmp.path(), &cfg);
        World {
            tmp,
            upstream,
            server,
        }
    }
}
