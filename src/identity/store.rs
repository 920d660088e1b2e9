//! Where identities live: the [`IdentityStore`] trait, agents, their credentials and jobs,
//! as the proxy (authentication on every request), the admin API, the CLI and grants need
//! them. [`super::SledIdentity`] is the embedded implementation; a shared-database one for
//! several nodes is planned (DESIGN.md section 11).
//!
//! Recording (`agent.*`, `credential.*`, `job.*`): a change that gives authority (an agent,
//! a credential, a job, a handoff) is recorded before it is made, and refused if it cannot
//! be (fail closed: no credential exists that the ledger does not show; if saving fails
//! after the record, the entry stays as an attempt). A revocation is in force at once, then
//! saved and recorded: if that fails, the error says the revocation is in force, and
//! revoking again finishes it (until then it holds in memory: a restart before the retry
//! forgets one that was not saved).
//!
//! Reads answer at once (the sled store from memory): authentication never waits for a
//! disk. A shared store keeps such a mirror too and needs its changes announced to the
//! other nodes (a revocation must reach them at once).

use std::sync::Arc;

use super::types::{Agent, Credential, IssuedCredential, Job, JobWithCredential, NewAgent, NewJob};
use crate::error::Result;

/// Agents, credentials and jobs (sled now, PostgreSQL later).
pub trait IdentityStore: Send + Sync {
    /// One agent by id.
    fn agent(&self, id: &str) -> Option<Arc<Agent>>;

    /// All agents, sorted by id.
    fn agents(&self) -> Vec<Arc<Agent>>;

    /// Adds an agent at run time (`source: api`). Its id and `on_behalf_of` are slugs, its
    /// runtime one of `config::RUNTIMES`; an existing id is refused.
    fn add_agent(&self, new: NewAgent) -> Result<Arc<Agent>>;

    /// Revokes an agent: every credential it holds is refused from now on. An error after
    /// that says so (saving or recording failed); revoking again finishes it.
    fn revoke_agent(&self, id: &str) -> Result<Arc<Agent>>;

    /// Issues a new credential for `agent`, optionally bound to `job` (the agent must be
    /// one of the job's agents and the job open). The token is returned once and stored
    /// only as a hash.
    fn issue_credential(&self, agent: &str, job: Option<&str>) -> Result<IssuedCredential>;

    /// Revokes one credential (refused from now on; errors as for [`Self::revoke_agent`]).
    fn revoke_credential(&self, id: &str) -> Result<Arc<Credential>>;

    /// One credential by id.
    fn credential(&self, id: &str) -> Option<Arc<Credential>>;

    /// The credential whose token hashes to `token_sha256`.
    fn credential_by_hash(&self, token_sha256: &str) -> Option<Arc<Credential>>;

    /// Credentials of one agent (or all), newest last.
    fn credentials(&self, agent: Option<&str>) -> Vec<Arc<Credential>>;

    /// One job by id.
    fn job(&self, id: &str) -> Option<Arc<Job>>;

    /// All jobs, oldest first.
    fn jobs(&self) -> Vec<Arc<Job>>;

    /// Starts a job for `new.agent` and issues that agent a credential bound to it.
    fn start_job(&self, new: NewJob) -> Result<JobWithCredential>;

    /// Hands `job` off to agent `to`: the job keeps its id, history and authority, and
    /// `to` gets a credential bound to it.
    fn handoff_job(&self, job: &str, to: &str) -> Result<JobWithCredential>;
}
