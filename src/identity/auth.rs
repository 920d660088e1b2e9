//! The authenticator: turns `Proxy-Authorization` into a `Principal`, and re-checks the
//! credential on every request of an open connection so revocation takes effect at once.

use std::sync::Arc;

use super::store::IdentityStore;
use super::token::{hash_token, parse_basic};
use super::types::{Agent, Job};

/// An authenticated caller: the agent, the job its credential is bound to, and the
/// credential id (never the token).
#[derive(Debug, Clone)]
pub struct Principal {
    pub agent: Arc<Agent>,
    pub job: Option<Arc<Job>>,
    pub credential_id: String,
}

/// Why a caller was not authenticated. Each becomes a 407.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Proxy-Authorization` header.
    Missing,
    /// The header is not `Basic base64(agent:token)`.
    Malformed,
    /// No credential has this token, or the user name is not its agent.
    Unknown,
    /// The credential, its agent or its job was revoked or closed.
    Revoked(&'static str),
}

impl AuthFailure {
    /// Reason code for responses and logs.
    pub fn code(&self) -> &'static str {
        match self {
            AuthFailure::Missing => "auth_missing",
            AuthFailure::Malformed => "auth_malformed",
            AuthFailure::Unknown => "auth_unknown",
            AuthFailure::Revoked(_) => "auth_revoked",
        }
    }

    /// A sentence for the caller.
    pub fn message(&self) -> String {
        match self {
            AuthFailure::Missing => {
                "proxy credentials required: use HTTPS_PROXY from `clawser env --agent ID`".into()
            }
            AuthFailure::Malformed => "Proxy-Authorization must be Basic agent:token".into(),
            AuthFailure::Unknown => "unknown agent credential".into(),
            AuthFailure::Revoked(what) => format!("the {what} was revoked"),
        }
    }
}

/// Authenticates proxy callers against the identity store.
#[derive(Clone)]
pub struct Authenticator {
    store: Arc<dyn IdentityStore>,
}

impl Authenticator {
    /// Wraps the store.
    pub fn new(store: Arc<dyn IdentityStore>) -> Self {
        Authenticator { store }
    }

    /// Authenticates a `Proxy-Authorization` header value.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthFailure> {
        let value = header.ok_or(AuthFailure::Missing)?;
        let (user, token) = parse_basic(value).ok_or(AuthFailure::Malformed)?;
        let cred = self
            .store
            .credential_by_hash(&hash_token(&token))
            .ok_or(AuthFailure::Unknown)?;
        if cred.agent != user {
            return Err(AuthFailure::Unknown);
        }
        self.revalidate(&cred.id)
    }

    /// Re-checks a credential already authenticated (each request in a tunnel).
    pub fn revalidate(&self, credential_id: &str) -> Result<Principal, AuthFailure> {
        let cred = self
            .store
            .credential(credential_id)
            .ok_or(AuthFailure::Unknown)?;
        if cred.revoked_at.is_some() {
            return Err(AuthFailure::Revoked("credential"));
        }
        let agent = self.store.agent(&cred.agent).ok_or(AuthFailure::Unknown)?;
        if agent.revoked_at.is_some() {
            return Err(AuthFailure::Revoked("agent"));
        }
        let job = match &cred.job {
            Some(id) => {
                let job = self.store.job(id).ok_or(AuthFailure::Unknown)?;
                if job.state != "open" {
                    return Err(AuthFailure::Revoked("job"));
                }
                Some(job)
            }
            None => None,
        };
        Ok(Principal {
            agent,
            job,
            credential_id: cred.id.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::NewAgent;
    use base64::Engine as _;

    fn basic(user: &str, token: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{token}"))
        )
    }

    #[test]
    fn authenticates_and_revokes() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let store = Arc::new(crate::identity::SledIdentity::open(db, &[]).unwrap());
        store
            .add_agent(NewAgent {
                id: "a".into(),
                runtime: "codex".into(),
                on_behalf_of: Some("bob".into()),
                roles: vec![],
                labels: Default::default(),
            })
            .unwrap();
        let issued = store.issue_credential("a", None).unwrap();
        let auth = Authenticator::new(store.clone());
        let p = auth.authenticate(Some(&basic("a", &issued.token))).unwrap();
        assert_eq!(p.agent.on_behalf_of, "bob");
        assert_eq!(auth.authenticate(None).unwrap_err(), AuthFailure::Missing);
        assert_eq!(
            auth.authenticate(Some("Basic zzz")).unwrap_err(),
            AuthFailure::Malformed
        );
        assert_eq!(
            auth.authenticate(Some(&basic("b", &issued.token)))
                .unwrap_err(),
            AuthFailure::Unknown
        );
        assert_eq!(
            auth.authenticate(Some(&basic("a", "clw_wrong")))
                .unwrap_err(),
            AuthFailure::Unknown
        );
        store.revoke_credential(&p.credential_id).unwrap();
        assert_eq!(
            auth.revalidate(&p.credential_id).unwrap_err(),
            AuthFailure::Revoked("credential")
        );
    }
}
