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
    find_placeholders, holder_of, host_allowed, slot_taken, Found, Grant, GrantView, Spot, Touches,
    Unfit,
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
    /// SHA-256 of the whole body, when it was read whole (re-signing SigV4 needs it).
    pub body_sha256: Option<String>,
    /// What the request touches (host, repository, env), to judge grants again later.
    pub host: String,
    pub repo: Option<String>,
    pub env: String,
}

impl Authority {
    /// The request's scope, as grants see it.
    pub fn touches(&self) -> Touches<'_> {
        Touches {
            host: &self.host,
            repo: self.repo.as_deref(),
            env: &self.env,
        }
    }

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
    body: &crate::model::BodySummary,
) -> Result<Authority, Refusal> {
    let now = state.clock.now();
    let host = target.host.as_string().to_ascii_lowercase();
    // Nothing to judge: no grant was ever issued and no secret is configured.
    if state.grants.is_empty() && state.secrets.decls().is_empty() {
        return Ok(Authority {
            now,
            applicable: Vec::new(),
            found: Vec::new(),
            body_sha256: None,
            host,
            repo: None,
            env: env.env.clone(),
        });
    }
    let repo = repo_of(&lenient_view(&target.path));
    let touches = Touches {
        host: &host,
        repo: repo.as_deref(),
        env: &env.env,
    };
    let holder = holder_of(principal);
    let applicable = state.grants.applicable(&holder, &touches, now);
    let found = match find_placeholders(
        headers,
        &target.path_and_query,
        &state.placeholder_key,
        &principal.credential_id,
        &state.secrets,
    ) {
        Ok(f) => f,
        Err(Unfit::Foreign) => {
            return Err(misuse(
                "this request carries a Clawser placeholder that was not issued to your credential; get yours from `clawser env`".to_string(),
            ))
        }
        Err(Unfit::Misplaced(m)) => return Err(misuse(m)),
        Err(Unfit::Unsupported(m)) => {
            return Err(Refusal::new(StatusCode::BAD_REQUEST, "placeholder_unsupported", m))
        }
    };
    let mut found = found;
    // Secrets with `add: true`: added to a request to their hosts that carries no credential
    // of its own, when the caller holds a grant for them (over HTTPS only).
    for d in state.secrets.decls().iter().filter(|d| d.add) {
        let wanted = target.scheme == "https"
            && !found.iter().any(|f| f.secret == d.name)
            && host_allowed(&d.hosts, &host)
            && !slot_taken(&d.inject, headers, &target.path_and_query)
            && applicable
                .iter()
                .any(|g| g.secret.as_deref() == Some(d.name.as_str()));
        if wanted {
            found.push(Found {
                secret: d.name.clone(),
                placeholder: String::new(),
                spot: Spot::Added,
            });
        }
    }
    if !found.is_empty() && target.scheme != "https" {
        return Err(misuse(
            "secrets are only sent over HTTPS: this request is plain HTTP".to_string(),
        ));
    }
    let body_sha256 = (!body.truncated).then(|| body.sha256.clone());
    let needs_body = found.iter().any(|f| matches!(f.spot, Spot::SigV4(_)))
        && !headers.contains_key("x-amz-content-sha256")
        && body_sha256.is_none();
    if needs_body {
        return Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            "placeholder_unsupported",
            "the body is larger than proxy.max_inspect_bytes, so it cannot be hashed to re-sign it: send x-amz-content-sha256".to_string(),
        ));
    }
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
        body_sha256,
        repo,
        host,
        env: env.env.clone(),
    })
}
