//! Who is calling: agents, their credentials, jobs, approvers and (later) grants.
//!
//! - `types.rs`: the stored records.
//! - `token.rs`: random tokens (stored only as SHA-256), ids, Basic auth parsing.
//! - `store.rs`: the [`IdentityStore`] trait (agents, credentials, jobs).
//! - `sled_store.rs`: [`SledIdentity`], the embedded implementation, mirrored in memory.
//! - `auth.rs`: the `Authenticator` the proxy asks on every request.
//! - `admin_token.rs`: the bootstrap admin token of the admin API.
//! - `revocation.rs`: revocations in force but not yet saved and recorded (shared with grants).
//! - `approvers.rs`: the humans who decide held requests, with roles and admin tokens: the
//!   [`ApproverStore`] trait and [`SledApprovers`].

mod admin_token;
mod approvers;
mod auth;
pub mod revocation;
mod sled_store;
mod store;
pub mod token;
mod types;

pub use admin_token::{read_token_file, AdminToken, ADMIN_TOKEN_FILE};

/// Reads the bootstrap admin token of a data dir.
pub fn token_file(data_dir: &std::path::Path) -> crate::error::Result<String> {
    read_token_file(&data_dir.join(ADMIN_TOKEN_FILE))
}
pub use approvers::{Approver, ApproverStore, IssuedApproverToken, NewApprover, SledApprovers};
pub use auth::{AuthFailure, Authenticator, Principal};
pub use sled_store::SledIdentity;
pub use store::IdentityStore;
pub use types::{
    Agent, Credential, Handoff, IssuedCredential, Job, JobWithCredential, NewAgent, NewJob,
};

/// Checks an identifier slug: 1-64 characters of `a-z 0-9 . _ -`, starting with a letter
/// or digit.
pub fn validate_slug(id: &str) -> Result<(), String> {
    let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c);
    if id.is_empty() || id.len() > 64 {
        return Err(format!("{id:?} must be 1 to 64 characters"));
    }
    if !id.chars().all(ok_char) || !id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Err(format!(
            "{id:?} may only use a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod sled_tests;

#[cfg(test)]
mod tests {
    #[test]
    fn slugs() {
        for ok in ["oc-1", "claude.alice", "a", "hermes_2"] {
            assert!(super::validate_slug(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-x", "A", "a b", "a:b", "a@b", &"x".repeat(65)] {
            assert!(super::validate_slug(bad).is_err(), "{bad}");
        }
    }
}
