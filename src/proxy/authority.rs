//! The authority a request carries: the grants that apply to its caller and target, and the
//! placeholders of secrets it presents. A placeholder that is not this credential's, that
//! goes to a host its secret does not allow, or that no active grant covers is refused
//! here, before the policy, and is never forwarded (neither as placeholder nor as secret).

use http::StatusCode;
use time::OffsetDateTime;

use super::outcome::Refusal;
use super::target::RequestTarget;
use super::ProxyState;
use crate::grant::{
    find_placeholders, holder_of, host_allowed, Foreign, Found, Grant, GrantView, Touches,
};
use crate::identity::Principal;
use crate::policy::{lenient_view, repo_of, Target};

/// What a request carries of authority.
pub struct Authority {
    /// When the grants were judged.
    pub now: OffsetDateTime,
    /// Active grants whose subject is the caller and whose scope covers the request.
    pub applicable: Vec<Grant>,
    /// Placeholders found, each with the grant that lets it be injected.
    pub found: Vec<(Found, String)>,
}

impl Authority {
    /// `input.grants`.
    pub fn views(&self) -> Vec<GrantView> {
        self.applicable.iter().map(GrantView::of).collect()
    }

    /// The grants a forwarded request spends: those the policy named (among the ones that
    /// apply; a name the policy made up counts nothing) and those that carry an injected
    /// secret, each once.
    pub fn spent(&self, named_by_policy: &[String]) -> Vec<String> {
        let mut ids: Vec<String> = named_by_policy
            .iter()
            .filter(|id| self.applicable.iter().any(|g| &g.id == *id))
            .cloned()
            .collect();
        for (_, gid) in &self.found {
            ids.push(gid.clone());
        }
        ids.sort();
        ids.dedup();
        ids
    }
}

fn misuse(message: String) -> Refusal {
    Refusal::new(StatusCode::FORBIDDEN, "placeholder_misuse", message)
}

/// Gathers the grants and placeholders of a request, refusing misused placeholders.
pub fn gather(
    state: &ProxyState,
    principal: &Principal,
    target: &RequestTarget,
    env: &Target,
    headers: &http::HeaderMap,
) -> Result<Authority, Refusal> {
    let now = state.clock.now();
    let host = target.host.as_string().to_ascii_lowercase();
    let repo = repo_of(&lenient_view(&target.path));
    let touches = Touches {
        host: &host,
        repo: repo.as_deref(),
        env: &env.env,
    };
    let holder = holder_of(principal);
    let applicable = state.grants.applicable(&holder, &touches, now);
    let query = target.path_and_query.split_once('?').map(|(_, q)| q);
    let found = match find_placeholders(
        headers,
        query,
        &state.placeholder_key,
        &principal.credential_id,
        &state.secrets,
    ) {
        Ok(f) => f,
        Err(Foreign) => {
            return Err(misuse(
                "this request carries a Clawser placeholder that was not issued to your credential; get yours from `clawser env`".to_string(),
            ))
        }
    };
    let mut bound = Vec::with_capacity(found.len());
    for f in found {
        let Some(decl) = state.secrets.decl(&f.secret) else {
            return Err(misuse(format!("secret {:?} is not configured", f.secret)));
        };
        if !host_allowed(&decl.hosts, &host) {
            return Err(misuse(format!(
                "the placeholder of secret {:?} may only be sent to {}, not to {host}",
                f.secret,
                decl.hosts.join(", ")
            )));
        }
        let Some(grant) = applicable
            .iter()
            .find(|g| g.secret.as_deref() == Some(f.secret.as_str()))
        else {
            return Err(Refusal::new(
                StatusCode::FORBIDDEN,
                "no_grant",
                format!(
                    "no active grant lets {} use secret {:?} for {host}{}: ask for one (`clawser grants add --agent {} --secret {}`)",
                    principal.agent.id,
                    f.secret,
                    repo.as_deref().map(|r| format!(" ({r})")).unwrap_or_default(),
                    principal.agent.id,
                    f.secret
                ),
            ));
        };
        bound.push((f, grant.id.clone()));
    }
    Ok(Authority {
        now,
        applicable,
        found: bound,
    })
}
