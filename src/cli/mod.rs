//! The `clawser` command line. Every subcommand takes `-c/--config` (also `CLAWSER_CONFIG`;
//! default `./clawser.yaml` when present, else embedded defaults) so the CLI and the server
//! agree on the data dir, the admin address and the admin token.
//!
//! Identity commands (`agents`, `jobs`, `credentials`, `env`, `run`) go through the running
//! server's admin API when one answers, and open the data dir directly when none runs
//! (sled locks its directory, so only one process may hold it).

mod approvals;
mod backend;
mod commands;
mod grants;
mod ledger;
mod run;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use commands::run_cli;

/// Clawser: agents execute, Clawser authorizes and records.
#[derive(Debug, Parser)]
#[command(name = "clawser", version, about, long_about = None)]
pub struct Cli {
    /// Config file (default: ./clawser.yaml when present, else embedded defaults).
    #[arg(short, long, global = true, env = "CLAWSER_CONFIG")]
    pub config: Option<PathBuf>,
    /// Log format (overrides log.format).
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

/// Output format of `clawser env`.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum EnvFormat {
    Shell,
    Json,
}

/// Which agent (and job) a runtime acts as.
#[derive(Debug, Args)]
pub struct AgentSel {
    /// Agent id.
    #[arg(long)]
    pub agent: String,
    /// Job id: the credential is bound to this job.
    #[arg(long)]
    pub job: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy and the admin API.
    Serve,
    /// Print the exports that point a runtime at Clawser (issues a fresh credential).
    Env {
        #[command(flatten)]
        sel: AgentSel,
        /// shell (export lines) or json.
        #[arg(long, value_enum, default_value = "shell")]
        format: EnvFormat,
    },
    /// Run a command (an agent runtime) with those exports.
    Run {
        #[command(flatten)]
        sel: AgentSel,
        /// Make Clawser's proxy the command's only way out (bubblewrap sandbox: own network
        /// namespace, Clawser's data dir, keys and config hidden). Needs a running server.
        #[arg(long)]
        isolate: bool,
        /// With --isolate: also hide this path from the command (repeatable), e.g.
        /// ~/.config/gh or ~/.aws, where real credentials live.
        #[arg(long, requires = "isolate")]
        hide: Vec<std::path::PathBuf>,
        /// With --isolate: also let the command write this path (repeatable); the working
        /// directory and the runtimes' state folders in the home directory are writable.
        #[arg(long, requires = "isolate")]
        writable: Vec<std::path::PathBuf>,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Inside an isolated run: relay the loopback proxy port to the proxy's Unix socket
    /// and run the command (started by `clawser run --isolate`).
    #[command(name = "sandbox-relay", hide = true)]
    SandboxRelay {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        socket: std::path::PathBuf,
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// Inside an isolated run: install the seccomp filter, then become the command.
    #[command(name = "sandbox-exec", hide = true)]
    SandboxExec {
        #[arg(last = true, required = true)]
        cmd: Vec<String>,
    },
    /// The local CA.
    Ca {
        #[command(subcommand)]
        cmd: CaCmd,
    },
    /// Agent principals and their credentials.
    Agents {
        #[command(subcommand)]
        cmd: AgentsCmd,
    },
    /// Jobs: units of work that keep their authority and history across runtimes.
    Jobs {
        #[command(subcommand)]
        cmd: JobsCmd,
    },
    /// Credentials.
    Credentials {
        #[command(subcommand)]
        cmd: CredentialsCmd,
    },
    /// The work ledger: who did what, under which authority, decided how.
    /// While a server runs these read through its admin API; otherwise the data dir directly.
    Ledger {
        #[command(subcommand)]
        cmd: LedgerCmd,
    },
    /// Held requests: list, show, approve, deny, watch (through the running server).
    Approvals {
        #[command(subcommand)]
        cmd: ApprovalsCmd,
        /// Your approver token (default: CLAWSER_ADMIN_TOKEN, else the data dir's admin
        /// token, which can read but not decide).
        #[arg(
            long,
            global = true,
            env = "CLAWSER_ADMIN_TOKEN",
            hide_env_values = true
        )]
        token: Option<String>,
    },
    /// Approvers: the humans who decide held requests (admin API or data dir).
    Approvers {
        #[command(subcommand)]
        cmd: ApproversCmd,
    },
    /// Permission grants: scoped, expiring, counted authority (admin API or data dir).
    Grants {
        #[command(subcommand)]
        cmd: GrantsCmd,
        /// An admin or approver token (default: CLAWSER_ADMIN_TOKEN, else the data dir's
        /// admin token).
        #[arg(
            long,
            global = true,
            env = "CLAWSER_ADMIN_TOKEN",
            hide_env_values = true
        )]
        token: Option<String>,
    },
    /// Configured secrets.
    Secrets {
        #[command(subcommand)]
        cmd: SecretsCmd,
    },
    /// Policies in the policy directory.
    Policy {
        #[command(subcommand)]
        cmd: PolicyCmd,
    },
}

#[derive(Debug, Subcommand)]
pub enum CaCmd {
    /// Generate the CA if it does not exist yet.
    Init,
    /// Print the CA path and SHA-256 fingerprint.
    Show,
}

#[derive(Debug, Subcommand)]
pub enum AgentsCmd {
    /// Add an agent.
    Add {
        id: String,
        /// claude-code | openclaw | hermes | codex | other
        #[arg(long, default_value = "other")]
        runtime: String,
        /// The human the agent acts for (default: the agent id).
        #[arg(long)]
        on_behalf_of: Option<String>,
        /// A role (repeatable).
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// List agents.
    List,
    /// Revoke an agent: all its credentials are refused at once.
    Revoke { id: String },
    /// Issue a new credential (token shown once).
    Token {
        id: String,
        #[arg(long)]
        job: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobsCmd {
    /// Start a job; the agent gets a credential bound to it.
    Start {
        #[arg(long)]
        agent: String,
        #[arg(long)]
        title: String,
    },
    /// Hand a job off to another agent, which gets a credential bound to the job.
    Handoff {
        job: String,
        #[arg(long)]
        to: String,
    },
    /// List jobs.
    List,
    /// Show one job.
    Show { job: String },
}

#[derive(Debug, Subcommand)]
pub enum CredentialsCmd {
    /// Revoke one credential (refused at once, on open connections too).
    Revoke { id: String },
}

/// Export formats.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum ExportFormat {
    Jsonl,
    Ocsf,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCmd {
    /// The last entries (admin API or data dir).
    Tail {
        /// How many.
        #[arg(short = 'n', default_value = "20")]
        n: usize,
        /// Keep printing new entries.
        #[arg(short, long)]
        follow: bool,
    },
    /// A readable timeline for one job, agent or approval (admin API or data dir).
    Show {
        #[arg(long)]
        job: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        approval: Option<String>,
        /// Print the entries as JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Export entries and checkpoints (admin API or data dir).
    Export {
        #[arg(long, value_enum, default_value = "jsonl")]
        format: ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Inclusion proof of one entry against the latest checkpoint (admin API or data dir).
    Proof { seq: u64 },
    /// Verify the ledger: the data dir (default; through the running server's export when
    /// one holds the data dir) or an exported file. Exits 1 naming the first bad entry.
    Verify {
        /// A data dir (default: the config's).
        #[arg(long, conflicts_with = "export")]
        data: Option<PathBuf>,
        /// An export written by `clawser ledger export`.
        #[arg(long)]
        export: Option<PathBuf>,
        /// A checkpoint saved earlier (signed note); the ledger must extend it.
        #[arg(long)]
        trusted_checkpoint: Option<PathBuf>,
        /// The verifier key (name+id+key) to trust instead of the one in the export/data dir.
        #[arg(long)]
        key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCmd {
    /// List approvals (default: pending).
    List {
        /// pending | approved | denied | expired | consumed | all
        #[arg(long, default_value = "pending")]
        state: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one approval: the request, the agent, the policy's reasons, intent, evidence,
    /// and who decided.
    Show {
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve (needs an approver token with the required role).
    Approve {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
        /// Also issue a grant for this long (e.g. 1h) to the agent (or its job), scoped to
        /// the request's host, repo and env, whose actions are the hold's reason codes.
        #[arg(long)]
        grant_for: Option<String>,
        /// With --grant-for: how many requests the grant covers.
        #[arg(long, requires = "grant_for")]
        max_uses: Option<u64>,
    },
    /// Deny: the held request gets 403 with your reason.
    Deny {
        id: String,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Print approval events as they happen (until interrupted).
    Watch,
}

#[derive(Debug, Subcommand)]
pub enum ApproversCmd {
    /// Add an approver and print its token (shown once).
    Add {
        id: String,
        /// A role (repeatable), e.g. release-approver.
        #[arg(long = "role", required = true)]
        roles: Vec<String>,
    },
    /// Issue a fresh token (shown once; the previous one stops working).
    Token { id: String },
    /// List approvers.
    List,
    /// Revoke an approver: its token stops working at once.
    Revoke { id: String },
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum GrantsCmd {
    /// Issue a grant to one agent, every agent with a role, or whoever holds a job.
    Add {
        #[arg(long, group = "subject")]
        agent: Option<String>,
        #[arg(long, group = "subject")]
        role: Option<String>,
        #[arg(long, group = "subject")]
        job: Option<String>,
        /// Host globs (repeatable or comma-separated; default: the secret's hosts, else any).
        #[arg(long, value_delimiter = ',')]
        hosts: Vec<String>,
        /// Repositories, owner/name globs.
        #[arg(long, value_delimiter = ',')]
        repos: Vec<String>,
        /// Environments (target.env).
        #[arg(long, value_delimiter = ',')]
        envs: Vec<String>,
        /// Actions the policy may treat as granted (`granted("deploy")`).
        #[arg(long, value_delimiter = ',')]
        actions: Vec<String>,
        /// A configured secret the holder may use through its placeholder.
        #[arg(long)]
        secret: Option<String>,
        /// Lifetime, e.g. 2h, 30m, 7d (default: none).
        #[arg(long)]
        expires: Option<String>,
        #[arg(long)]
        max_uses: Option<u64>,
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List grants (active ones unless --all).
    List {
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
    },
    /// Show one grant.
    Show { id: String },
    /// Revoke a grant: refused from the next request on.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum SecretsCmd {
    /// Read every configured secret's source (values are never shown); exit 1 naming the
    /// first that fails.
    Check,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCmd {
    /// Parse, compile and test the policy directory; print the revision or the errors.
    Check,
    /// Evaluate data.clawser.decision for an input document.
    Eval {
        /// JSON input file (`-` for stdin).
        #[arg(long)]
        input: PathBuf,
    },
    /// Run the test_ rules and *_test.yaml decision tables.
    Test,
}
