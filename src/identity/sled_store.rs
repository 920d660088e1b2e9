//! [`SledIdentity`]: the embedded [`IdentityStore`], agents, credentials and jobs in sled,
//! mirrored in memory so the per-request authentication never touches the disk. Only the
//! server process opens the store while it runs (sled locks its directory); changes are
//! flushed before they are acknowledged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::revocation::Unfinished;
use super::store::IdentityStore;
use super::token::{hash_token, new_id, new_token, AGENT_TOKEN_PREFIX};
use super::types::{
    Agent, Credential, Handoff, IssuedCredential, Job, JobWithCredential, NewAgent, NewJob,
};
use super::validate_slug;
use crate::config::{AgentDecl, RUNTIMES};
use crate::error::{Error, Result};
use crate::model::EventSink;
use crate::time::now_rfc3339;
use serde_json::json;

const AGENTS: &str = "identity.agents";
const CREDENTIALS: &str = "identity.credentials";
const JOBS: &str = "identity.jobs";

#[derive(Default)]
struct State {
    agents: HashMap<String, Arc<Agent>>,
    credentials: HashMap<String, Arc<Credential>>,
    by_hash: HashMap<String, String>,
    jobs: HashMap<String, Arc<Job>>,
}

/// Agents, credentials and jobs in sled; cheap to clone and share.
#[derive(Clone)]
pub struct SledIdentity {
    db: sled::Db,
    state: Arc<RwLock<State>>,
    /// Serializes changes (check, record, save, publish) so none undoes another.
    writes: Arc<Mutex<()>>,
    /// Revocations in force whose save or record failed.
    unfinished: Arc<Unfinished>,
    sink: Option<Arc<dyn EventSink>>,
}

fn decode<T: serde::de::DeserializeOwned>(tree: &str, v: &[u8]) -> Result<T> {
    serde_json::from_slice(v).map_err(|e| Error::Store(format!("corrupt record in {tree}: {e}")))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::Store(e.to_string()))
}

impl SledIdentity {
    /// Loads the store from `db` and upserts the agents declared in the config.
    pub fn open(db: sled::Db, declared: &[AgentDecl]) -> Result<SledIdentity> {
        SledIdentity::open_recorded(db, declared, None)
    }

    /// Like `open`, recording every change (`agent.*`, `credential.*`, `job.*`) in `sink`.
    pub fn open_recorded(
        db: sled::Db,
        declared: &[AgentDecl],
        sink: Option<Arc<dyn EventSink>>,
    ) -> Result<SledIdentity> {
        let mut state = State::default();
        for item in db.open_tree(AGENTS)?.iter() {
            let (_, v) = item?;
            let a: Agent = decode(AGENTS, &v)?;
            state.agents.insert(a.id.clone(), Arc::new(a));
        }
        for item in db.open_tree(CREDENTIALS)?.iter() {
            let (_, v) = item?;
            let c: Credential = decode(CREDENTIALS, &v)?;
            state.by_hash.insert(c.token_sha256.clone(), c.id.clone());
            state.credentials.insert(c.id.clone(), Arc::new(c));
        }
        for item in db.open_tree(JOBS)?.iter() {
            let (_, v) = item?;
            let j: Job = decode(JOBS, &v)?;
            state.jobs.insert(j.id.clone(), Arc::new(j));
        }
        let store = SledIdentity {
            db,
            state: Arc::new(RwLock::new(state)),
            writes: Arc::new(Mutex::new(())),
            unfinished: Arc::default(),
            sink,
        };
        for d in declared {
            store.upsert_declared(d)?;
        }
        Ok(store)
    }

    fn read(&self) -> RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn persist<T: serde::Serialize>(&self, tree: &str, key: &str, value: &T) -> Result<()> {
        self.db
            .open_tree(tree)?
            .insert(key.as_bytes(), encode(value)?)?;
        self.db.flush()?;
        Ok(())
    }

    /// Records an event; the caller decides what a failure means (a grant of authority is
    /// refused, a revocation stays in force and unfinished).
    fn emit(&self, kind: &str, data: serde_json::Value) -> Result<()> {
        crate::model::record_in(self.sink.as_ref(), kind, data)
    }

    fn upsert_declared(&self, d: &AgentDecl) -> Result<()> {
        let _w = self.write_lock();
        let existing = self.agent(&d.id);
        let agent = Agent {
            id: d.id.clone(),
            runtime: d.runtime.clone(),
            on_behalf_of: d.on_behalf_of.clone(),
            roles: d.roles.clone(),
            labels: d.labels.clone(),
            created_at: existing
                .as_ref()
                .map(|a| a.created_at.clone())
                .unwrap_or_else(now_rfc3339),
            revoked_at: existing.as_ref().and_then(|a| a.revoked_at.clone()),
            source: "config".to_string(),
        };
        if existing.as_deref() != Some(&agent) {
            self.emit("agent.declared", json!({"agent": agent.id, "runtime": agent.runtime, "on_behalf_of": agent.on_behalf_of, "roles": agent.roles, "source": "config"}))?;
            self.persist(AGENTS, &agent.id, &agent)?;
            self.write()
                .agents
                .insert(agent.id.clone(), Arc::new(agent));
        }
        Ok(())
    }

    fn issue_locked(&self, agent: &str, job: Option<&str>) -> Result<IssuedCredential> {
        self.require_active_agent(agent)?;
        if let Some(job_id) = job {
            let j = self.require_job(job_id)?;
            if !j.agents.iter().any(|a| a == agent) {
                return Err(Error::Invalid(format!(
                    "agent {agent:?} is not on job {job_id}; hand the job off to it first"
                )));
            }
            if j.state != "open" {
                return Err(Error::Invalid(format!("job {job_id} is {}", j.state)));
            }
        }
        let token = new_token(AGENT_TOKEN_PREFIX)?;
        let cred = Credential {
            id: new_id("cred")?,
            agent: agent.to_string(),
            job: job.map(str::to_string),
            token_sha256: hash_token(&token),
            created_at: now_rfc3339(),
            revoked_at: None,
        };
        self.emit(
            "credential.issued",
            json!({"credential": cred.id, "agent": cred.agent, "job": cred.job}),
        )?;
        self.persist(CREDENTIALS, &cred.id, &cred)?;
        let issued = IssuedCredential {
            credential_id: cred.id.clone(),
            agent: cred.agent.clone(),
            job: cred.job.clone(),
            token,
            env: Vec::new(),
        };
        let mut s = self.write();
        s.by_hash.insert(cred.token_sha256.clone(), cred.id.clone());
        s.credentials.insert(cred.id.clone(), Arc::new(cred));
        Ok(issued)
    }

    /// Issues the credential of a job just started or handed off; a failure names the job,
    /// which exists (recorded and saved) without it.
    fn issue_for_job(&self, agent: &str, job: &str) -> Result<IssuedCredential> {
        self.issue_locked(agent, Some(job)).map_err(|e| {
            Error::Store(format!(
                "job {job} is recorded, but the credential for {agent} could not be issued ({e}); \
                 issue one with `clawser agents token {agent} --job {job}`"
            ))
        })
    }

    fn require_agent(&self, id: &str) -> Result<Arc<Agent>> {
        self.agent(id).ok_or_else(|| Error::NotFound {
            kind: "agent",
            id: id.to_string(),
        })
    }

    fn require_active_agent(&self, id: &str) -> Result<Arc<Agent>> {
        let a = self.require_agent(id)?;
        if a.revoked_at.is_some() {
            return Err(Error::Invalid(format!("agent {id:?} is revoked")));
        }
        Ok(a)
    }

    fn require_job(&self, id: &str) -> Result<Arc<Job>> {
        self.job(id).ok_or_else(|| Error::NotFound {
            kind: "job",
            id: id.to_string(),
        })
    }

    fn put_job(&self, job: Job) -> Result<Arc<Job>> {
        self.persist(JOBS, &job.id, &job)?;
        let job = Arc::new(job);
        self.write().jobs.insert(job.id.clone(), job.clone());
        Ok(job)
    }
}

impl IdentityStore for SledIdentity {
    fn agent(&self, id: &str) -> Option<Arc<Agent>> {
        self.read().agents.get(id).cloned()
    }

    fn agents(&self) -> Vec<Arc<Agent>> {
        let mut v: Vec<_> = self.read().agents.values().cloned().collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        v
    }

    fn add_agent(&self, new: NewAgent) -> Result<Arc<Agent>> {
        let _w = self.write_lock();
        validate_slug(&new.id).map_err(|m| Error::Invalid(format!("agent id: {m}")))?;
        if !RUNTIMES.contains(&new.runtime.as_str()) {
            return Err(Error::Invalid(format!(
                "runtime {:?} is not one of {}",
                new.runtime,
                RUNTIMES.join(", ")
            )));
        }
        if self.agent(&new.id).is_some() {
            return Err(Error::Invalid(format!("agent {:?} already exists", new.id)));
        }
        let on_behalf_of = new.on_behalf_of.unwrap_or_else(|| new.id.clone());
        // The same namespace as approver ids: self-approval is refused by comparing them.
        validate_slug(&on_behalf_of).map_err(|m| Error::Invalid(format!("on_behalf_of: {m}")))?;
        let agent = Agent {
            on_behalf_of,
            id: new.id,
            runtime: new.runtime,
            roles: new.roles,
            labels: new.labels,
            created_at: now_rfc3339(),
            revoked_at: None,
            source: "api".to_string(),
        };
        self.emit("agent.added", json!({"agent": agent.id, "runtime": agent.runtime, "on_behalf_of": agent.on_behalf_of, "roles": agent.roles, "source": "api"}))?;
        self.persist(AGENTS, &agent.id, &agent)?;
        let agent = Arc::new(agent);
        self.write().agents.insert(agent.id.clone(), agent.clone());
        Ok(agent)
    }

    fn revoke_agent(&self, id: &str) -> Result<Arc<Agent>> {
        let _w = self.write_lock();
        let mut agent = (*self.require_agent(id)?).clone();
        if agent.revoked_at.is_some() && !self.unfinished.contains("agent", id) {
            return Ok(Arc::new(agent));
        }
        agent.revoked_at.get_or_insert_with(now_rfc3339);
        let agent = Arc::new(agent);
        // Taking authority away never waits for the record: in force first (memory), then
        // saved and recorded; a failure is reported and a retry finishes it.
        self.write().agents.insert(id.to_string(), agent.clone());
        self.unfinished.finish("agent", id, || {
            self.persist(AGENTS, id, &*agent)?;
            self.emit("agent.revoked", json!({"agent": id, "on_behalf_of": agent.on_behalf_of, "runtime": agent.runtime, "revoked_at": agent.revoked_at}))
        })?;
        Ok(agent)
    }

    fn issue_credential(&self, agent: &str, job: Option<&str>) -> Result<IssuedCredential> {
        let _w = self.write_lock();
        self.issue_locked(agent, job)
    }

    fn revoke_credential(&self, id: &str) -> Result<Arc<Credential>> {
        let _w = self.write_lock();
        let mut cred = (*self.credential(id).ok_or_else(|| Error::NotFound {
            kind: "credential",
            id: id.to_string(),
        })?)
        .clone();
        if cred.revoked_at.is_some() && !self.unfinished.contains("credential", id) {
            return Ok(Arc::new(cred));
        }
        cred.revoked_at.get_or_insert_with(now_rfc3339);
        let cred = Arc::new(cred);
        // As for agents: in force first, then saved and recorded.
        self.write()
            .credentials
            .insert(id.to_string(), cred.clone());
        self.unfinished.finish("credential", id, || {
            self.persist(CREDENTIALS, id, &*cred)?;
            self.emit("credential.revoked", json!({"credential": cred.id, "agent": cred.agent, "job": cred.job, "revoked_at": cred.revoked_at}))
        })?;
        Ok(cred)
    }

    fn credential(&self, id: &str) -> Option<Arc<Credential>> {
        self.read().credentials.get(id).cloned()
    }

    fn credential_by_hash(&self, token_sha256: &str) -> Option<Arc<Credential>> {
        let s = self.read();
        s.by_hash
            .get(token_sha256)
            .and_then(|id| s.credentials.get(id))
            .cloned()
    }

    fn credentials(&self, agent: Option<&str>) -> Vec<Arc<Credential>> {
        let mut v: Vec<_> = self
            .read()
            .credentials
            .values()
            .filter(|c| agent.is_none_or(|a| c.agent == a))
            .cloned()
            .collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        v
    }

    fn job(&self, id: &str) -> Option<Arc<Job>> {
        self.read().jobs.get(id).cloned()
    }

    fn jobs(&self) -> Vec<Arc<Job>> {
        let mut v: Vec<_> = self.read().jobs.values().cloned().collect();
        v.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        v
    }

    fn start_job(&self, new: NewJob) -> Result<JobWithCredential> {
        let _w = self.write_lock();
        self.require_active_agent(&new.agent)?;
        if new.title.trim().is_empty() {
            return Err(Error::Invalid("job title must not be empty".to_string()));
        }
        let job = Job {
            id: new_id("job")?,
            title: new.title,
            started_by: new.agent.clone(),
            agents: vec![new.agent.clone()],
            state: "open".to_string(),
            created_at: now_rfc3339(),
            handoffs: Vec::new(),
        };
        self.emit(
            "job.started",
            json!({"job": job.id, "title": job.title, "agent": new.agent}),
        )?;
        let job = self.put_job(job)?;
        let credential = self.issue_for_job(&new.agent, &job.id)?;
        Ok(JobWithCredential {
            job: (*job).clone(),
            credential,
        })
    }

    fn handoff_job(&self, job: &str, to: &str) -> Result<JobWithCredential> {
        let _w = self.write_lock();
        self.require_active_agent(to)?;
        let mut j = (*self.require_job(job)?).clone();
        if j.state != "open" {
            return Err(Error::Invalid(format!("job {job} is {}", j.state)));
        }
        // The agent holding the job now: the last handoff's receiver, else its starter.
        let from = j
            .handoffs
            .last()
            .map_or_else(|| j.started_by.clone(), |h| h.to.clone());
        if !j.agents.iter().any(|a| a == to) {
            j.agents.push(to.to_string());
        }
        self.emit(
            "job.handed_off",
            json!({"job": j.id, "from": from, "to": to, "agents": j.agents}),
        )?;
        j.handoffs.push(Handoff {
            from,
            to: to.to_string(),
            at: now_rfc3339(),
        });
        let job = self.put_job(j)?;
        let credential = self.issue_for_job(to, &job.id)?;
        Ok(JobWithCredential {
            job: (*job).clone(),
            credential,
        })
    }
}
