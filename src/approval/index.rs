//! The in-memory approvals and their indexes (by fingerprint, pending count per agent), kept
//! in step on every change, so the hold path never scans every approval ever made.

use std::collections::HashMap;

use tokio::sync::watch;

use super::types::{Approval, ApprovalState};

/// The approvals in memory, with their indexes and the watchers of pending ones.
pub(super) struct Inner {
    pub approvals: HashMap<String, Approval>,
    /// Approval ids by fingerprint: the hold path looks up only these.
    by_fingerprint: HashMap<String, Vec<String>>,
    /// Pending approvals per agent.
    pending_by_agent: HashMap<String, usize>,
    pub watchers: HashMap<String, watch::Sender<ApprovalState>>,
}

impl Inner {
    pub fn new() -> Inner {
        Inner {
            approvals: HashMap::new(),
            by_fingerprint: HashMap::new(),
            pending_by_agent: HashMap::new(),
            watchers: HashMap::new(),
        }
    }

    /// Inserts or replaces an approval, keeping the indexes in step.
    pub fn put(&mut self, a: Approval) {
        match self.approvals.get(&a.id) {
            Some(old) if old.state == ApprovalState::Pending => {
                if let Some(n) = self.pending_by_agent.get_mut(&old.agent) {
                    *n = n.saturating_sub(1);
                }
            }
            Some(_) => {}
            None => self
                .by_fingerprint
                .entry(a.fingerprint.clone())
                .or_default()
                .push(a.id.clone()),
        }
        if a.state == ApprovalState::Pending {
            *self.pending_by_agent.entry(a.agent.clone()).or_default() += 1;
        }
        self.approvals.insert(a.id.clone(), a);
    }

    /// Removes an approval and its index entries.
    pub fn remove(&mut self, id: &str) {
        let Some(a) = self.approvals.remove(id) else {
            return;
        };
        if a.state == ApprovalState::Pending {
            if let Some(n) = self.pending_by_agent.get_mut(&a.agent) {
                *n = n.saturating_sub(1);
            }
        }
        if let Some(ids) = self.by_fingerprint.get_mut(&a.fingerprint) {
            ids.retain(|i| i != id);
            if ids.is_empty() {
                self.by_fingerprint.remove(&a.fingerprint);
            }
        }
        self.watchers.remove(id);
    }

    /// How many approvals `agent` has pending.
    pub fn pending_of(&self, agent: &str) -> usize {
        self.pending_by_agent.get(agent).copied().unwrap_or(0)
    }

    /// The approvals of one fingerprint.
    pub fn with_fingerprint<'a>(&'a self, fp: &str) -> impl Iterator<Item = &'a Approval> + 'a {
        self.by_fingerprint
            .get(fp)
            .into_iter()
            .flatten()
            .filter_map(|id| self.approvals.get(id))
    }
}
