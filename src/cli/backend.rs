//! Where identity commands go: the running server's admin API, or the data dir directly
//! when no server runs.

use serde_json::json;

use crate::admin::client::AdminClient;
use crate::app::{open_db, read_server_info};
use crate::config::Config;
use crate::error::{Error, Result};
use std::sync::Arc;

use crate::grant::{GrantContext, NewGrant, PlaceholderKey, Secrets, SystemClock};
use crate::identity::{
    Agent, Approver, ApproverStore, IdentityStore, IssuedApproverToken, IssuedCredential, Job,
    JobWithCredential, NewAgent, NewApprover, NewJob, SledApprovers, SledIdentity,
};
use crate::ledger::Ledger;
use crate::model::EventSink;

/// The environment variable holding an admin token for the CLI.
pub const ADMIN_TOKEN_ENV: &str = "CLAWSER_ADMIN_TOKEN";

/// Remote (admin API) or local (sled) identity operations.
pub enum Backend {
    Remote(Box<AdminClient>),
    Local(
        Arc<dyn IdentityStore>,
        Ledger,
        Arc<dyn ApproverStore>,
        Box<GrantContext>,
    ),
}

impl Backend {
    /// Connects to the running server if one answers, else opens the data dir.
    pub async fn connect(config: &Config) -> Result<Backend> {
        if let Some(c) = Backend::remote(config, None).await? {
            return Ok(Backend::Remote(Box::new(c)));
        }
        let db = open_db(&config.data_dir, config.db_cache_bytes)?;
        let ledger = Ledger::open(db.clone(), &config.data_dir, config.ledger.clone())?;
        let sink: Arc<dyn EventSink> = Arc::new(ledger.clone());
        let approvers = Arc::new(SledApprovers::open(
            &db,
            &config.approvers,
            Some(sink.clone()),
        )?);
        let identity = Arc::new(SledIdentity::open_recorded(
            db.clone(),
            &config.agents,
            Some(sink.clone()),
        )?);
        let recorded: Vec<Vec<u8>> = ledger
            .raw_entries()
            .filter_map(|e| e.ok().map(|(_, b, _)| b))
            .collect();
        let store =
            crate::grant::upkeep::open_sled(db, &config.grants, recorded.into_iter(), Some(sink))?;
        let grants = GrantContext {
            store: Arc::new(store),
            secrets: Arc::new(Secrets::none()),
            key: Arc::new(PlaceholderKey::load_or_create(&config.data_dir)?),
            clock: Arc::new(SystemClock),
        };
        Ok(Backend::Local(
            identity,
            ledger,
            approvers,
            Box::new(grants),
        ))
    }

    /// A client of the running server's admin API, if one answers. The token is `token`
    /// (`--token`), else `CLAWSER_ADMIN_TOKEN`, else the data dir's bootstrap token.
    pub async fn remote(config: &Config, token: Option<String>) -> Result<Option<AdminClient>> {
        let addr = read_server_info(&config.data_dir)
            .map(|i| i.admin)
            .unwrap_or(config.admin.listen);
        if !AdminClient::is_up(addr).await {
            return Ok(None);
        }
        let from_env = std::env::var(ADMIN_TOKEN_ENV)
            .ok()
            .filter(|t| !t.trim().is_empty());
        let token = match token.filter(|t| !t.trim().is_empty()).or(from_env) {
            Some(t) => t.trim().to_string(),
            None => crate::identity::token_file(&config.data_dir).map_err(|e| {
                Error::Invalid(format!("{e}; set {ADMIN_TOKEN_ENV} to an admin token"))
            })?,
        };
        Ok(Some(AdminClient::new(addr, token)))
    }

    /// The running server's admin API, or an error saying none answers.
    pub async fn require_remote(config: &Config, token: Option<String>) -> Result<AdminClient> {
        Backend::remote(config, token).await?.ok_or_else(|| {
            Error::Invalid(format!(
                "no clawser server answers at {} (approvals are decided through the running server: start `clawser serve`)",
                read_server_info(&config.data_dir)
                    .map(|i| i.admin)
                    .unwrap_or(config.admin.listen)
            ))
        })
    }

    pub async fn approvers(&self) -> Result<Vec<Approver>> {
        match self {
            Backend::Remote(c) => c.get("/v1/approvers").await,
            Backend::Local(_, _, a, _) => Ok(a.list()),
        }
    }

    pub async fn add_approver(&self, new: NewApprover) -> Result<Approver> {
        match self {
            Backend::Remote(c) => c.post("/v1/approvers", &new).await,
            Backend::Local(_, _, a, _) => a.add(new, "cli"),
        }
    }

    pub async fn approver_token(&self, id: &str) -> Result<IssuedApproverToken> {
        match self {
            Backend::Remote(c) => {
                c.post(&format!("/v1/approvers/{id}/token"), &json!({}))
                    .await
            }
            Backend::Local(_, _, a, _) => a.issue_token(id, "cli"),
        }
    }

    pub async fn revoke_approver(&self, id: &str) -> Result<Approver> {
        match self {
            Backend::Remote(c) => {
                c.post(&format!("/v1/approvers/{id}/revoke"), &json!({}))
                    .await
            }
            Backend::Local(_, _, a, _) => a.revoke(id, "cli"),
        }
    }

    /// Issues a grant (the issuer is the admin token's principal, or `cli` offline).
    pub async fn add_grant(
        &self,
        new: NewGrant,
        secrets: &[crate::config::SecretDecl],
    ) -> Result<serde_json::Value> {
        match self {
            Backend::Remote(c) => c.post("/v1/grants", &new).await,
            Backend::Local(s, _, _, g) => {
                let now = g.clock.now();
                let by = format!(
                    "cli:{}",
                    std::env::var("USER").unwrap_or_else(|_| "local".into())
                );
                let grant = crate::grant::build(new, &by, "api", s.as_ref(), secrets, now)?;
                let grant = g.store.insert(grant)?;
                Ok(crate::admin::grant_json(&grant, now))
            }
        }
    }

    /// Grants (active only unless `all`).
    pub async fn grants(&self, all: bool) -> Result<Vec<serde_json::Value>> {
        match self {
            Backend::Remote(c) => {
                c.get(if all {
                    "/v1/grants?state=all"
                } else {
                    "/v1/grants"
                })
                .await
            }
            Backend::Local(_, _, _, g) => {
                let now = g.clock.now();
                Ok(g.store
                    .list()
                    .iter()
                    .filter(|x| all || x.state(now, 0) == crate::grant::GrantState::Active)
                    .map(|x| crate::admin::grant_json(x, now))
                    .collect())
            }
        }
    }

    /// One grant.
    pub async fn grant(&self, id: &str) -> Result<serde_json::Value> {
        match self {
            Backend::Remote(c) => c.get(&format!("/v1/grants/{id}")).await,
            Backend::Local(_, _, _, g) => g
                .store
                .get(id)
                .map(|x| crate::admin::grant_json(&x, g.clock.now()))
                .ok_or_else(|| Error::NotFound {
                    kind: "grant",
                    id: id.to_string(),
                }),
        }
    }

    /// Revokes a grant.
    pub async fn revoke_grant(&self, id: &str) -> Result<serde_json::Value> {
        match self {
            Backend::Remote(c) => c.post(&format!("/v1/grants/{id}/revoke"), &json!({})).await,
            Backend::Local(_, _, _, g) => {
                let by = format!(
                    "cli:{}",
                    std::env::var("USER").unwrap_or_else(|_| "local".into())
                );
                let x = g.store.revoke(id, &by)?;
                Ok(crate::admin::grant_json(&x, g.clock.now()))
            }
        }
    }

    /// Where commands go, for messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Backend::Remote(_) => "admin API",
            Backend::Local(..) => "data dir (no server running)",
        }
    }

    pub async fn add_agent(&self, new: NewAgent) -> Result<Agent> {
        match self {
            Backend::Remote(c) => c.post("/v1/agents", &new).await,
            Backend::Local(s, _, _, _) => Ok((*s.add_agent(new)?).clone()),
        }
    }

    pub async fn agents(&self) -> Result<Vec<Agent>> {
        match self {
            Backend::Remote(c) => c.get("/v1/agents").await,
            Backend::Local(s, _, _, _) => Ok(s.agents().iter().map(|a| (**a).clone()).collect()),
        }
    }

    pub async fn revoke_agent(&self, id: &str) -> Result<Agent> {
        match self {
            Backend::Remote(c) => c.post(&format!("/v1/agents/{id}/revoke"), &json!({})).await,
            Backend::Local(s, _, _, _) => Ok((*s.revoke_agent(id)?).clone()),
        }
    }

    /// Issues a credential; `secrets` (the config's) name the placeholders it may carry.
    pub async fn issue_credential(
        &self,
        agent: &str,
        job: Option<&str>,
        secrets: &[crate::config::SecretDecl],
    ) -> Result<IssuedCredential> {
        match self {
            Backend::Remote(c) => {
                c.post(
                    &format!("/v1/agents/{agent}/credentials"),
                    &json!({"job": job}),
                )
                .await
            }
            Backend::Local(s, _, _, g) => {
                let mut issued = s.issue_credential(agent, job)?;
                issued.env = crate::grant::env_for(
                    g,
                    s.as_ref(),
                    secrets,
                    agent,
                    job,
                    &issued.credential_id,
                );
                Ok(issued)
            }
        }
    }

    pub async fn revoke_credential(&self, id: &str) -> Result<serde_json::Value> {
        match self {
            Backend::Remote(c) => {
                c.post(&format!("/v1/credentials/{id}/revoke"), &json!({}))
                    .await
            }
            Backend::Local(s, _, _, _) => {
                let c = s.revoke_credential(id)?;
                Ok(json!({"id": c.id, "agent": c.agent, "job": c.job, "revoked_at": c.revoked_at}))
            }
        }
    }

    pub async fn start_job(&self, new: NewJob) -> Result<JobWithCredential> {
        match self {
            Backend::Remote(c) => c.post("/v1/jobs", &new).await,
            Backend::Local(s, _, _, _) => s.start_job(new),
        }
    }

    pub async fn handoff_job(&self, job: &str, to: &str) -> Result<JobWithCredential> {
        match self {
            Backend::Remote(c) => {
                c.post(&format!("/v1/jobs/{job}/handoff"), &json!({"to": to}))
                    .await
            }
            Backend::Local(s, _, _, _) => s.handoff_job(job, to),
        }
    }

    pub async fn jobs(&self) -> Result<Vec<Job>> {
        match self {
            Backend::Remote(c) => c.get("/v1/jobs").await,
            Backend::Local(s, _, _, _) => Ok(s.jobs().iter().map(|j| (**j).clone()).collect()),
        }
    }

    pub async fn job(&self, id: &str) -> Result<Job> {
        match self {
            Backend::Remote(c) => c.get(&format!("/v1/jobs/{id}")).await,
            Backend::Local(s, _, _, _) => {
                s.job(id)
                    .map(|j| (*j).clone())
                    .ok_or_else(|| Error::NotFound {
                        kind: "job",
                        id: id.to_string(),
                    })
            }
        }
    }
}
