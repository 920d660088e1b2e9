//! Permission grants and secrets: authority held by Clawser, not by the agent
//! (DESIGN.md section 3).
//!
//! - `types.rs`: `Grant`, `Subject`, `Scope`, `NewGrant`, the policy's `GrantView`, clocks.
//! - `scope.rs`: which grants apply to a caller and a request (pure).
//! - `store.rs`: the `GrantStore` trait and its sled implementation; reserve / settle.
//! - `secrets.rs`: secret values read from their sources, never printed.
//! - `placeholder.rs`: placeholders bound to a credential; what `clawser env` exports.
//! - `inject.rs`: finding placeholders (only in their secret's place) and swapping them.
//! - `sigv4.rs`: AWS SigV4 requests signed with a placeholder key, re-signed with the real one.

mod inject;
mod placeholder;
mod scope;
mod secrets;
pub mod sigv4;
mod store;
mod types;
pub mod upkeep;

use std::sync::Arc;

pub use inject::{
    find as find_placeholders, inject, slot_taken, variants, Found, Injected, PlaceholderSeen,
    Spot, Unfit,
};
pub use placeholder::{
    exports as placeholder_exports, PlaceholderKey, KEY_FILE as PLACEHOLDER_KEY_FILE,
    PLACEHOLDER_PREFIX,
};
pub use scope::{covers, host_allowed, subject_matches, Holder, Touches};
pub use secrets::{read_source, SecretValue, Secrets};
pub use store::{grant_event, GrantStore, SledGrants, Unusable};
pub use types::{
    Clock, Grant, GrantState, GrantView, NewGrant, Scope, Subject, SubjectKind, SystemClock,
    TokioClock,
};

use crate::config::{GrantDecl, SecretDecl};
use crate::error::{Error, Result};
use crate::identity::{IdentityStore, Principal};
use crate::time::{format_rfc3339, now_rfc3339};

/// Everything the proxy needs to judge and spend authority.
#[derive(Clone)]
pub struct GrantContext {
    pub store: Arc<dyn GrantStore>,
    pub secrets: Arc<Secrets>,
    pub key: Arc<PlaceholderKey>,
    pub clock: Arc<dyn Clock>,
}

/// The most uses a grant may allow (a bound, not a policy).
pub const MAX_USES_LIMIT: u64 = 1_000_000;
/// The longest a grant may be issued for.
pub const MAX_EXPIRY: std::time::Duration = std::time::Duration::from_secs(366 * 86_400);

/// The caller as grant subjects see it.
pub fn holder_of(p: &Principal) -> Holder<'_> {
    Holder {
        agent: &p.agent.id,
        roles: &p.agent.roles,
        job: p
            .job
            .as_deref()
            .map(|j| (j.id.as_str(), j.current_holder())),
    }
}

/// Checks a new grant and builds its record: one subject that exists (agents and jobs), a
/// configured secret (its hosts become the scope's hosts when none are given, and the
/// scope's hosts must stay within them), a bounded expiry and use count.
pub fn build(
    new: NewGrant,
    issued_by: &str,
    source: &str,
    identity: &dyn IdentityStore,
    secrets: &[SecretDecl],
    now: time::OffsetDateTime,
) -> Result<Grant> {
    let subject = new.subject().map_err(Error::Invalid)?;
    match subject.kind {
        SubjectKind::Agent if identity.agent(&subject.id).is_none() => {
            return Err(Error::Invalid(format!("no agent {:?}", subject.id)))
        }
        SubjectKind::Job if identity.job(&subject.id).is_none() => {
            return Err(Error::Invalid(format!("no job {:?}", subject.id)))
        }
        _ => {}
    }
    let lower = |v: Vec<String>| -> Vec<String> {
        v.into_iter()
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect()
    };
    let mut scope = Scope {
        hosts: lower(new.hosts),
        repos: lower(new.repos)
            .into_iter()
            .map(|r| r.trim_end_matches(".git").to_string())
            .collect(),
        envs: new.envs.into_iter().map(|e| e.trim().to_string()).collect(),
        actions: new
            .actions
            .into_iter()
            .map(|a| a.trim().to_string())
            .collect(),
    };
    for h in &scope.hosts {
        check_host_glob(h).map_err(Error::Invalid)?;
    }
    if let Some(name) = &new.secret {
        let decl = secrets
            .iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| Error::Invalid(format!("no secret {name:?} is configured")))?;
        if scope.hosts.is_empty() {
            scope.hosts = decl.hosts.clone();
        } else if let Some(h) = scope.hosts.iter().find(|h| !decl.hosts.contains(h)) {
            return Err(Error::Invalid(format!(
                "host {h:?} is not one of secret {name:?}'s hosts ({})",
                decl.hosts.join(", ")
            )));
        }
    }
    let expires_at = match new.expires.as_deref() {
        None => None,
        Some(d) => {
            let d = crate::config::parse_duration(d)
                .map_err(|m| Error::Invalid(format!("expires: {m}")))?;
            if d > MAX_EXPIRY {
                return Err(Error::Invalid(format!(
                    "expires: at most {} days",
                    MAX_EXPIRY.as_secs() / 86_400
                )));
            }
            let d = time::Duration::try_from(d)
                .map_err(|_| Error::Invalid("expires: too long".into()))?;
            let at = now
                .checked_add(d)
                .ok_or_else(|| Error::Invalid("expires: too far in the future".into()))?;
            Some(format_rfc3339(at))
        }
    };
    if let Some(m) = new.max_uses {
        if m == 0 || m > MAX_USES_LIMIT {
            return Err(Error::Invalid(format!(
                "max_uses must be between 1 and {MAX_USES_LIMIT}"
            )));
        }
    }
    Ok(Grant {
        id: crate::identity::token::new_id("grt")?,
        subject,
        scope,
        secret: new.secret,
        expires_at,
        max_uses: new.max_uses,
        uses: 0,
        issued_by: issued_by.to_string(),
        reason: new.reason,
        created_at: now_rfc3339(),
        source: source.to_string(),
        approval: None,
        revoked_at: None,
        revoked_by: None,
        ended: None,
    })
}

/// The placeholder variables `clawser env` exports for a fresh credential: one placeholder
/// per secret carried by an active grant of the credential's holder, and git's credential
/// helper (numbered after the CA setting, `GIT_CONFIG_KEY_0`).
pub fn env_for(
    ctx: &GrantContext,
    identity: &dyn IdentityStore,
    secrets: &[SecretDecl],
    agent: &str,
    job: Option<&str>,
    credential_id: &str,
) -> Vec<(String, String)> {
    let Some(a) = identity.agent(agent) else {
        return Vec::new();
    };
    let job = job.and_then(|j| identity.job(j));
    let who = Holder {
        agent,
        roles: &a.roles,
        job: job.as_deref().map(|j| (j.id.as_str(), j.current_holder())),
    };
    let held = ctx.store.held_by(&who, ctx.clock.now());
    let usable: Vec<&SecretDecl> = secrets
        .iter()
        .filter(|d| {
            held.iter()
                .any(|g| g.secret.as_deref() == Some(d.name.as_str()))
        })
        .collect();
    placeholder::exports(&ctx.key, credential_id, &usable, 1)
}

/// The grant an approver issues with `approve --grant-for`: to the held request's job (else
/// its agent), scoped to its host, repository and environment, with the hold's reason codes
/// as actions.
pub fn for_approval(
    a: &crate::approval::Approval,
    window: &str,
    max_uses: Option<u64>,
) -> std::result::Result<NewGrant, String> {
    let uri: http::Uri = a
        .request
        .url
        .parse()
        .map_err(|_| "the held request's URL cannot be read".to_string())?;
    let host = uri
        .host()
        .ok_or("the held request has no host")?
        .to_ascii_lowercase();
    let repo = crate::policy::repo_of(&crate::policy::lenient_view(uri.path()));
    let (agent, job) = match &a.job {
        Some(j) => (None, Some(j.clone())),
        None => (Some(a.agent.clone()), None),
    };
    Ok(NewGrant {
        agent,
        job,
        role: None,
        hosts: vec![host.trim_matches(|c| c == '[' || c == ']').to_string()],
        repos: repo.into_iter().collect(),
        envs: a.env.clone().into_iter().collect(),
        actions: a.reasons.iter().map(|r| r.code.clone()).collect(),
        secret: None,
        expires: Some(window.to_string()),
        max_uses,
        reason: format!("approved for a window with {}", a.id),
    })
}

/// A host glob: `a-z 0-9 . - _` and `*`.
pub fn check_host_glob(h: &str) -> std::result::Result<(), String> {
    if h.is_empty()
        || !h
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b".-_*:".contains(&b))
    {
        return Err(format!("{h:?} is not a host name or glob"));
    }
    Ok(())
}

/// A grant declared in the config, as stored (`grt_<name>`, issued by `config`).
pub fn declared(d: &GrantDecl) -> Grant {
    Grant {
        id: format!("grt_{}", d.name),
        subject: d.subject.clone(),
        scope: d.scope.clone(),
        secret: d.secret.clone(),
        expires_at: d.expires_at.clone(),
        max_uses: d.max_uses,
        uses: 0,
        issued_by: "config".to_string(),
        reason: d.reason.clone(),
        created_at: now_rfc3339(),
        source: "config".to_string(),
        approval: None,
        revoked_at: None,
        revoked_by: None,
        ended: None,
    }
}

/// Uses reserved on a store; refunded when dropped unless committed.
pub struct Reservation {
    store: Arc<dyn GrantStore>,
    ids: Vec<String>,
    settled: bool,
}

impl Reservation {
    /// Reserves one use of each grant in `ids`, all or none.
    pub fn take(
        store: Arc<dyn GrantStore>,
        ids: Vec<String>,
        now: time::OffsetDateTime,
    ) -> std::result::Result<Reservation, Unusable> {
        store.reserve(&ids, now)?;
        Ok(Reservation {
            store,
            ids,
            settled: false,
        })
    }

    /// The grants reserved.
    pub fn ids(&self) -> &[String] {
        &self.ids
    }

    /// Counts the uses (after the ledger recorded them); returns the grants exhausted now.
    pub fn commit(mut self) -> Vec<Grant> {
        self.settled = true;
        self.store.settle(&self.ids, true)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled && !self.ids.is_empty() {
            self.store.settle(&self.ids, false);
        }
    }
}

#[cfg(test)]
mod tests;
