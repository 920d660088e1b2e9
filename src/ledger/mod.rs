//! The work ledger (`work_ledger`): append-only, durable, tamper-evident (DESIGN.md section 6).
//!
//! - `entry.rs`: entries and their canonical JSON bytes (the bytes that are hashed).
//! - `merkle.rs`: RFC 6962 tree hashing and proofs, with known-answer tests.
//! - `note.rs`, `key.rs`: C2SP signed notes / tlog checkpoints with the node's Ed25519 key.
//! - `handle.rs`: the [`LedgerStore`] trait (what a backend provides) and [`Ledger`], the
//!   handle everyone holds, with what every backend shares (typed appends, listing,
//!   proofs, verification).
//! - `sled_ledger.rs`: [`SledLedger`], the embedded backend, and [`read_stored`] (offline).
//!   It is built from:
//!   - `store.rs`, `commit.rs`, `wal.rs`, `queue.rs`: group commit (write-ahead
//!     durability) by the appender or the writer thread, the hand-off between them and the
//!     read barrier;
//!   - `block.rs`: how entries and their leaf hashes are laid out in sled (several per value).
//! - `verify.rs`: the pure verifier, for the data dir and for exports.
//! - `export.rs`: JSON Lines and OCSF exports.

mod block;
mod commit;
pub mod entry;
pub mod export;
mod handle;
pub mod key;
pub mod merkle;
pub mod note;
mod queue;
mod sled_ledger;
mod store;
pub mod verify;
pub mod wal;

pub use entry::{CanonicalData, Entry, Sorted};
pub use handle::{Appending, Busy, Ledger, LedgerStore};
pub use key::LedgerKey;
pub use sled_ledger::{read_stored, SledLedger};
pub use store::LedgerConfig;
pub use verify::{VerifyError, VerifyReport};

use serde::Serialize;
use serde_json::Value;

use merkle::Hash;

/// One stored entry: sequence number, canonical bytes, and the leaf hash stored beside them
/// (`None` for exports, which carry the bytes only).
pub type RawEntry = (u64, Vec<u8>, Option<Hash>);

/// Filters for listing entries.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub job: Option<String>,
    pub agent: Option<String>,
    pub approval: Option<String>,
    /// Only entries with `seq > after`.
    pub after: Option<u64>,
    pub limit: Option<usize>,
}

impl Filter {
    fn matches(&self, e: &Entry) -> bool {
        let field = |k: &str, want: &Option<String>| {
            want.as_ref().is_none_or(|w| {
                e.data.get(k).and_then(Value::as_str) == Some(w.as_str())
                    || e.data.get(format!("{k}_id")).and_then(Value::as_str) == Some(w.as_str())
                    || (k == "agent"
                        && e.data.get("to").and_then(Value::as_str) == Some(w.as_str()))
            })
        };
        field("job", &self.job) && field("agent", &self.agent) && field("approval", &self.approval)
    }
}

/// An inclusion proof for one entry against a signed checkpoint.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct InclusionProof {
    pub seq: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    pub proof: Vec<String>,
    pub checkpoint: String,
    pub verifier_key: String,
}

#[cfg(test)]
mod tests;
