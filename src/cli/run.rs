//! `clawser run [--isolate] --agent A [--job J] -- CMD…`: runs an agent runtime with the
//! exports that point it at Clawser. With `--isolate`, in a bubblewrap sandbox whose only way
//! out is the proxy (`crate::sandbox`); the server records the run (`sandbox.started`,
//! `sandbox.ended`) and the run's credential is revoked when it ends.

use std::ffi::OsString;
use std::io::IsTerminal as _;
use std::path::PathBuf;

use serde_json::{json, Value};

use super::backend::Backend;
use super::commands::runtime_vars;
use super::AgentSel;
use crate::app::read_server_info;
use crate::config::{Config, SecretSource};
use crate::error::{Error, Result};
use crate::sandbox::{find_bwrap, Plan, PlanInput, SOCKET_INSIDE};

/// Runs `cmd` for the agent; returns its exit code.
pub async fn run(
    config: &Config,
    sel: &AgentSel,
    isolate: bool,
    extra: (Vec<PathBuf>, Vec<PathBuf>),
    cmd: Vec<String>,
) -> Result<i32> {
    let (prog, args) = cmd
        .split_first()
        .ok_or_else(|| Error::Invalid("no command given".into()))?;
    if isolate {
        return isolated(config, sel, extra, &cmd).await;
    }
    let vars = runtime_vars(config, &sel.agent, sel.job.as_deref(), None)
        .await?
        .vars;
    let mut child = tokio::process::Command::new(prog);
    for name in withheld(config) {
        child.env_remove(name);
    }
    let status = child
        .args(args)
        .envs(vars)
        .status()
        .await
        .map_err(Error::io("running", prog))?;
    Ok(crate::sandbox::relay::exit_code(status))
}

/// What the command must not inherit from the caller: every `CLAWSER_*` variable (an admin
/// or approver token, the config path) and the variables secrets are read from.
fn withheld(config: &Config) -> Vec<OsString> {
    let mut names = crate::runtime_env::withheld(std::env::vars_os().map(|(k, _)| k));
    for s in &config.secrets {
        if let SecretSource::Env(name) = &s.from {
            names.push(name.into());
        }
    }
    names
}

async fn isolated(
    config: &Config,
    sel: &AgentSel,
    extra: (Vec<PathBuf>, Vec<PathBuf>),
    cmd: &[String],
) -> Result<i32> {
    let bwrap = find_bwrap()?;
    probe(&bwrap).await?;
    let admin = Backend::remote(config, None).await?.ok_or_else(|| {
        Error::Sandbox(
            "clawser run --isolate needs a running `clawser serve` (the sandbox's only way out is its proxy)"
                .into(),
        )
    })?;
    let socket = read_server_info(&config.data_dir)
        .and_then(|i| i.proxy_socket)
        .ok_or_else(|| {
            Error::Sandbox(
                "the running server does not listen on a Unix socket (proxy.unix_socket is off), which --isolate needs"
                    .into(),
            )
        })?;
    let rv = runtime_vars(config, &sel.agent, sel.job.as_deref(), Some("127.0.0.1")).await?;
    let cwd = std::env::current_dir().map_err(Error::io("reading", "the working directory"))?;
    let plan = plan_or_revoke(&admin, &rv.credential_id, || {
        Plan::new(
            config,
            PlanInput {
                socket,
                ca_cert: &rv.ca_cert,
                bundle: &rv.bundle,
                cwd,
                home: std::env::var_os("HOME").map(PathBuf::from),
                exe: std::env::current_exe().ok(),
                extra_hide: extra.0,
                extra_writable: extra.1,
                interactive: std::io::stdin().is_terminal(),
            },
        )
    })
    .await?;
    let exe = std::env::current_exe().map_err(Error::io("locating", "the clawser binary"))?;
    let mut inner: Vec<OsString> = vec![
        exe.into(),
        "sandbox-relay".into(),
        "--port".into(),
        rv.port.to_string().into(),
        "--socket".into(),
        SOCKET_INSIDE.into(),
        "--".into(),
    ];
    inner.extend(cmd.iter().map(OsString::from));
    let command = command_name(cmd);
    let started: Result<Value> = admin
        .post(
            "/v1/sandboxes",
            &json!({"agent": sel.agent, "job": sel.job, "command": command,
                    "credential": rv.credential_id, "isolation": "bubblewrap"}),
        )
        .await;
    let started = match started {
        Ok(v) => v,
        Err(e) => {
            revoke(&admin, &rv.credential_id).await;
            return Err(e);
        }
    };
    let id = started["id"].as_str().unwrap_or("-").to_string();
    let mut child = tokio::process::Command::new(&bwrap);
    for name in withheld(config) {
        child.env_remove(name);
    }
    let status = match child.args(plan.args(&inner)).envs(rv.vars).spawn() {
        Ok(c) => wait_through_signals(c).await,
        Err(e) => Err(Error::io("running", &bwrap)(e)),
    };
    let code = status.map(crate::sandbox::relay::exit_code);
    let ended = json!({"agent": sel.agent, "job": sel.job, "command": command,
                       "exit_status": code.as_ref().ok()});
    if let Err(e) = admin
        .post::<_, Value>(&format!("/v1/sandboxes/{id}/ended"), &ended)
        .await
    {
        eprintln!("clawser: recording the end of sandbox {id}: {e}");
    }
    // The run's credential ends with it.
    revoke(&admin, &rv.credential_id).await;
    code
}

/// Waits for the sandbox. Ctrl-C reaches the command by itself (same process group); a
/// SIGTERM or SIGHUP sent to this process ends the sandbox. Either way this process stays to
/// record the end of the run and revoke its credential.
async fn wait_through_signals(
    mut child: tokio::process::Child,
) -> Result<std::process::ExitStatus> {
    use tokio::signal::unix::{signal, SignalKind};
    let handle = |k: SignalKind| signal(k).map_err(Error::io("handling", "signals"));
    let (mut int, mut term, mut hup) = (
        handle(SignalKind::interrupt())?,
        handle(SignalKind::terminate())?,
        handle(SignalKind::hangup())?,
    );
    loop {
        tokio::select! {
            s = child.wait() => return s.map_err(Error::io("waiting for", "bwrap")),
            _ = int.recv() => {}
            _ = term.recv() => { let _ = child.start_kill(); }
            _ = hup.recv() => { let _ = child.start_kill(); }
        }
    }
}

async fn revoke(admin: &crate::admin::client::AdminClient, credential: &str) {
    if let Err(e) = admin
        .post::<_, Value>(&format!("/v1/credentials/{credential}/revoke"), &json!({}))
        .await
    {
        eprintln!("clawser: revoking the run's credential {credential}: {e}");
    }
}

/// Builds the plan; when it is refused, the credential issued for the run is revoked (it
/// was never handed to anything).
async fn plan_or_revoke(
    admin: &crate::admin::client::AdminClient,
    credential: &str,
    build: impl FnOnce() -> Result<Plan>,
) -> Result<Plan> {
    let plan = build();
    if plan.is_err() {
        revoke(admin, credential).await;
    }
    plan
}

/// The program's name, without its directory or arguments (which may hold secrets).
fn command_name(cmd: &[String]) -> String {
    cmd.first()
        .map(|p| {
            std::path::Path::new(p)
                .file_name()
                .map_or(p.clone(), |n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_default()
}

/// Starts an empty sandbox once: where user namespaces are not available, bubblewrap fails,
/// and the run is refused instead of going ahead unconfined.
async fn probe(bwrap: &std::path::Path) -> Result<()> {
    let out = tokio::process::Command::new(bwrap)
        .args([
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--cap-drop",
            "ALL",
            "--ro-bind",
            "/",
            "/",
            "--",
            "true",
        ])
        .output()
        .await
        .map_err(Error::io("running", bwrap))?;
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Sandbox(format!(
        "this system cannot make the sandbox --isolate needs (user and network namespaces); refusing to run the command unconfined. bubblewrap said: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    )))
}
