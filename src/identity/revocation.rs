//! Revocations that are in force but not yet saved and recorded. Taking authority away never
//! waits for the ledger: a store puts a revocation in force in memory first, then saves and
//! records it. If that fails, the revocation stays in force, is remembered here as
//! unfinished (so revoking again does the work instead of answering "already revoked"), and
//! the error says so. Shared by the identity store (agents, credentials), approvers and
//! grants.

use std::collections::HashSet;
use std::sync::Mutex;

use crate::error::{Error, Result};

/// The error of a revocation that is in force but could not be saved and recorded.
pub fn unfinished_error(what: &str, id: &str, cause: Error) -> Error {
    Error::Store(format!(
        "{what} {id} is revoked and refused from now on, but the revocation could not be \
         saved and recorded ({cause}); revoke it again to finish"
    ))
}

/// The unfinished revocations of one store, by kind and id.
#[derive(Debug, Default)]
pub struct Unfinished(Mutex<HashSet<(String, String)>>);

impl Unfinished {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True when the revocation of `what` `id` is in force but not yet saved and recorded.
    pub fn contains(&self, what: &str, id: &str) -> bool {
        self.lock().contains(&(what.to_string(), id.to_string()))
    }

    /// Runs `save_and_record` for the revocation of `what` `id`, already in force. On
    /// failure it stays unfinished and the error says the revocation is in force.
    pub fn finish(
        &self,
        what: &str,
        id: &str,
        save_and_record: impl FnOnce() -> Result<()>,
    ) -> Result<()> {
        let key = (what.to_string(), id.to_string());
        self.lock().insert(key.clone());
        match save_and_record() {
            Ok(()) => {
                self.lock().remove(&key);
                Ok(())
            }
            Err(e) => Err(unfinished_error(what, id, e)),
        }
    }
}
