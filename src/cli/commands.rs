//! What each subcommand does.

use std::io::Read;
use std::path::Path;

use super::backend::Backend;
use super::{AgentsCmd, CaCmd, Cli, Command, CredentialsCmd, EnvFormat, JobsCmd, PolicyCmd};
use crate::app::{read_server_info, App};
use crate::ca::LocalCa;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::identity::{IssuedCredential, NewAgent, NewJob};
use crate::policy::{compile_as_served, load_tested, LoadedPolicy, PolicySource};
use crate::runtime_env::{exports, to_json, to_shell, write_bundle, RuntimeEnv};

pub(super) fn print_json<T: serde::Serialize>(v: &T) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Runs a parsed command line; returns the process exit code.
pub async fn run_cli(cli: Cli, config: Config) -> Result<i32> {
    crate::policy::set_memory_limit(config.policy.max_memory_mib);
    match cli.command {
        Command::Serve => {
            let running = App::build(config)?.start().await?;
            running.until_signal().await;
            Ok(0)
        }
        Command::Env { sel, format } => {
            let vars = runtime_vars(&config, &sel.agent, sel.job.as_deref(), None)
                .await?
                .vars;
            match format {
                EnvFormat::Shell => print!("{}", to_shell(&vars)),
                EnvFormat::Json => println!("{}", to_json(&vars)),
            }
            Ok(0)
        }
        Command::Run {
            sel,
            isolate,
            hide,
            writable,
            cmd,
        } => super::run::run(&config, &sel, isolate, (hide, writable), cmd).await,
        Command::SandboxRelay { port, socket, cmd } => {
            crate::sandbox::relay::run(port, socket, cmd).await
        }
        Command::SandboxExec { cmd } => {
            crate::sandbox::confine::exec(&cmd)?;
            Ok(126)
        }
        Command::Ca { cmd } => {
            let (ca, created) = match cmd {
                CaCmd::Init => LocalCa::load_or_create(&config.ca.dir)?,
                CaCmd::Show => (LocalCa::load(&config.ca.dir)?, false),
            };
            if created {
                println!("generated a new CA");
            }
            println!("path:        {}", ca.cert_path.display());
            println!("fingerprint: SHA256 {}", ca.fingerprint());
            Ok(0)
        }
        Command::Agents { cmd } => agents(&config, cmd).await,
        Command::Jobs { cmd } => jobs(&config, cmd).await,
        Command::Credentials {
            cmd: CredentialsCmd::Revoke { id },
        } => {
            let b = Backend::connect(&config).await?;
            print_json(&b.revoke_credential(&id).await?);
            Ok(0)
        }
        Command::Policy { cmd } => policy(&config, cmd),
        Command::Ledger { cmd } => super::ledger::run(&config, cmd).await,
        Command::Approvals { cmd, token } => super::approvals::approvals(&config, cmd, token).await,
        Command::Approvers { cmd } => super::approvals::approvers(&config, cmd).await,
        Command::Grants { cmd, token } => super::grants::grants(&config, cmd, token).await,
        Command::Secrets { cmd } => super::grants::secrets(&config, cmd),
    }
}

/// Issues a credential and builds the exports for a runtime.
/// What `clawser env` prints and `clawser run` passes on, with where it came from.
pub(super) struct RuntimeVars {
    pub vars: Vec<(String, String)>,
    /// The credential issued for them.
    pub credential_id: String,
    pub ca_cert: std::path::PathBuf,
    pub bundle: std::path::PathBuf,
    pub port: u16,
}

/// Issues a credential for `agent` (and `job`) and builds the exports; `proxy_host`
/// overrides `runtime_env.proxy_host` (an isolated run's relay listens on 127.0.0.1).
pub(super) async fn runtime_vars(
    config: &Config,
    agent: &str,
    job: Option<&str>,
    proxy_host: Option<&str>,
) -> Result<RuntimeVars> {
    let backend = Backend::connect(config).await?;
    let issued = backend
        .issue_credential(agent, job, &config.secrets)
        .await?;
    let ca = LocalCa::load_or_create(&config.ca.dir)?.0;
    let bundle = write_bundle(&config.data_dir, &ca.cert_pem)?;
    let ca_cert =
        std::fs::canonicalize(&ca.cert_path).map_err(Error::io("resolving", &ca.cert_path))?;
    let port = read_server_info(&config.data_dir)
        .map(|i| i.proxy.port())
        .unwrap_or(config.proxy.listen.port());
    let mut vars = exports(&RuntimeEnv {
        proxy_host: proxy_host.unwrap_or(&config.runtime_env.proxy_host),
        proxy_port: port,
        agent,
        token: &issued.token,
        ca_cert: &ca_cert,
        bundle: &bundle,
        no_proxy: &config.runtime_env.no_proxy,
    });
    // Placeholders of the secrets this credential may use (and git's credential helper).
    for (k, v) in issued.env {
        match vars.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => vars.push((k, v)),
        }
    }
    Ok(RuntimeVars {
        vars,
        credential_id: issued.credential_id,
        ca_cert,
        bundle,
        port,
    })
}

fn show_credential(c: &IssuedCredential) {
    println!("credential: {}", c.credential_id);
    println!("agent:      {}", c.agent);
    if let Some(j) = &c.job {
        println!("job:        {j}");
    }
    println!(
        "token:      {}   (shown once; stored only as a hash)",
        c.token
    );
}

async fn agents(config: &Config, cmd: AgentsCmd) -> Result<i32> {
    let b = Backend::connect(config).await?;
    match cmd {
        AgentsCmd::Add {
            id,
            runtime,
            on_behalf_of,
            roles,
        } => {
            let a = b
                .add_agent(NewAgent {
                    id,
                    runtime,
                    on_behalf_of,
                    roles,
                    labels: Default::default(),
                })
                .await?;
            println!(
                "added agent {} ({}, on behalf of {}) via {}",
                a.id,
                a.runtime,
                a.on_behalf_of,
                b.describe()
            );
            println!("next: eval \"$(clawser env --agent {})\"", a.id);
        }
        AgentsCmd::List => {
            println!(
                "{:<24} {:<12} {:<16} {:<20} STATE",
                "ID", "RUNTIME", "ON BEHALF OF", "ROLES"
            );
            for a in b.agents().await? {
                let state = if a.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!(
                    "{:<24} {:<12} {:<16} {:<20} {state}",
                    a.id,
                    a.runtime,
                    a.on_behalf_of,
                    a.roles.join(",")
                );
            }
        }
        AgentsCmd::Revoke { id } => {
            let a = b.revoke_agent(&id).await?;
            println!(
                "revoked agent {} at {}",
                a.id,
                a.revoked_at.unwrap_or_default()
            );
        }
        AgentsCmd::Token { id, job } => show_credential(
            &b.issue_credential(&id, job.as_deref(), &config.secrets)
                .await?,
        ),
    }
    Ok(0)
}

async fn jobs(config: &Config, cmd: JobsCmd) -> Result<i32> {
    let b = Backend::connect(config).await?;
    match cmd {
        JobsCmd::Start { agent, title } => {
            let r = b.start_job(NewJob { agent, title }).await?;
            println!("started job {} ({:?})", r.job.id, r.job.title);
            show_credential(&r.credential);
            println!(
                "next: eval \"$(clawser env --agent {} --job {})\"",
                r.credential.agent, r.job.id
            );
        }
        JobsCmd::Handoff { job, to } => {
            let r = b.handoff_job(&job, &to).await?;
            println!(
                "handed job {} to {} (agents: {})",
                r.job.id,
                to,
                r.job.agents.join(" -> ")
            );
            show_credential(&r.credential);
        }
        JobsCmd::List => {
            println!("{:<22} {:<8} {:<24} TITLE", "ID", "STATE", "AGENTS");
            for j in b.jobs().await? {
                println!(
                    "{:<22} {:<8} {:<24} {}",
                    j.id,
                    j.state,
                    j.agents.join(","),
                    j.title
                );
            }
        }
        JobsCmd::Show { job } => print_json(&b.job(&job).await?),
    }
    Ok(0)
}

fn policy(config: &Config, cmd: PolicyCmd) -> Result<i32> {
    let src = PolicySource::read_dir(&config.policy.dir)?;
    crate::policy::set_eval_timeout(config.policy.eval_timeout);
    match cmd {
        PolicyCmd::Check => {
            let (p, report) = load_tested(&src, config.policy.eval)?;
            println!(
                "ok: revision {} ({} files, {} tests passed; engine {})",
                p.short_revision(),
                p.files.len(),
                report.passed.len(),
                p.engine_name()
            );
            if let Some(note) = &p.engine_note {
                println!("note: the interpreter decides: {note}");
            }
            Ok(0)
        }
        PolicyCmd::Test => {
            let policy = LoadedPolicy::compile_with(&src, config.policy.eval)?;
            let report = crate::policy::run_tests(&src, &policy)?;
            for name in &report.passed {
                println!("PASS {name}");
            }
            for f in &report.failed {
                println!("FAIL {} ({}): {}", f.name, f.location, f.message);
            }
            println!(
                "{} passed, {} failed",
                report.passed.len(),
                report.failed.len()
            );
            Ok(if report.ok() { 0 } else { 1 })
        }
        PolicyCmd::Eval { input } => {
            let text = read_input(&input)?;
            serde_json::from_str::<serde_json::Value>(&text)
                .map_err(|e| Error::Invalid(format!("{}: not JSON: {e}", input.display())))?;
            let policy = compile_as_served(&src, config.policy.eval)?;
            let eval = policy.decide_json(&text);
            print_json(&serde_json::json!({
                "decision": eval.decision,
                "revision": eval.revision,
                "eval_us": eval.elapsed.as_micros() as u64,
                "engine": policy.engine_name(),
                "engine_note": policy.engine_note,
                "error": eval.error,
            }));
            Ok(if eval.error.is_some() { 2 } else { 0 })
        }
    }
}

fn read_input(path: &Path) -> Result<String> {
    if path == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(Error::io("reading", "stdin"))?;
        Ok(s)
    } else {
        std::fs::read_to_string(path).map_err(Error::io("reading", path))
    }
}
