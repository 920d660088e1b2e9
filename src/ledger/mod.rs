//! The work ledger (`work_ledger`): append-only, durable, tamper-evident (DESIGN.md section 6).
//!
//! - `entry.rs`: entries and their canonical JSON bytes (the bytes that are hashed).
//! - `merkle.rs`: RFC 6962 tree hashing and proofs, with known-answer tests.
//! - `note.rs`, `key.rs`: C2SP signed notes / tlog checkpoints with the node's Ed25519 key.
//! - `store.rs`, `commit.rs`, `wal.rs`, `queue.rs`: sled storage and group commit
//!   (write-ahead durability) by the appender or the writer thread, the hand-off between
//!   them and the read barrier.
//! - `verify.rs`: the pure verifier, for the data dir and for exports.
//! - `export.rs`: JSON Lines and OCSF exports.

mod block;
mod commit;
pub mod entry;
pub mod export;
pub mod key;
pub mod merkle;
pub mod note;
mod queue;
mod store;
pub mod verify;
pub mod wal;

pub use entry::{CanonicalData, Entry, Sorted};
pub use key::LedgerKey;
pub use store::LedgerConfig;
pub use verify::{VerifyError, VerifyReport};

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, Result};

use merkle::{inclusion_proof, Hash};
use store::Writer;

/// One stored entry: sequence number, canonical bytes, and the leaf hash stored beside them
/// (`None` for exports, which carry the bytes only).
pub type RawEntry = (u64, Vec<u8>, Option<Hash>);

/// Reads a stored ledger without starting a writer (offline verification): the entries,
/// the checkpoints and the verifier key for `origin`.
pub fn read_stored(
    db: &sled::Db,
    data_dir: &Path,
    origin: &str,
) -> Result<(Vec<RawEntry>, Vec<String>, String)> {
    let key = LedgerKey::load(data_dir)?;
    let mut entries = Vec::new();
    for item in block::Trees::open(db)?.from(0) {
        let (seq, h, bytes) = item?;
        entries.push((seq, bytes, Some(h)));
    }
    // Acknowledged entries may still be only in the write-ahead log (after a crash).
    for frame in wal::read_frames(data_dir)? {
        if frame.seq == entries.len() as u64 {
            entries.push((frame.seq, frame.bytes, Some(frame.hash)));
        }
    }
    let checkpoints = db
        .open_tree(store::CHECKPOINTS)?
        .iter()
        .map(|item| Ok(String::from_utf8_lossy(&item?.1).into_owned()))
        .collect::<Result<Vec<_>>>()?;
    // The key name is the origin of the checkpoints already signed, else the configured one.
    let name = checkpoints
        .last()
        .and_then(|n| note::Checkpoint::parse(n).ok())
        .map_or_else(|| origin.to_string(), |c| c.origin);
    Ok((
        entries,
        checkpoints,
        note::verifier_key(&name, &key.public()),
    ))
}

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

/// One request in flight ([`Ledger::busy`]).
pub struct Busy(Arc<Writer>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The ledger: appends (durable before they return) and reads.
#[derive(Clone)]
pub struct Ledger {
    writer: Arc<Writer>,
}

impl crate::model::EventSink for Ledger {
    fn record(&self, kind: &str, data: Value) -> Result<u64> {
        self.writer.append_blocking(kind, data.into())
    }
}

impl Ledger {
    /// Opens (or creates) the ledger in `db`; the signing key lives in `data_dir`.
    pub fn open(db: sled::Db, data_dir: &Path, cfg: LedgerConfig) -> Result<Ledger> {
        let key = LedgerKey::load_or_create(data_dir)?;
        let writer = Writer::open(db, data_dir, key, cfg)?;
        Ok(Ledger {
            writer: Arc::new(writer),
        })
    }

    /// Appends and waits until durable.
    pub async fn append(&self, kind: &str, data: impl Into<CanonicalData>) -> Result<u64> {
        self.writer.append(kind, data.into()).await
    }

    /// Appends a [`Sorted`] entry (serialized straight to canonical bytes) and waits until
    /// durable. An entry that cannot be serialized is an error like a failed write, so the
    /// caller refuses what it could not record.
    pub async fn append_sorted<T: Sorted>(&self, kind: &str, data: &T) -> Result<u64> {
        let data = CanonicalData::of_sorted(data)
            .map_err(|e| Error::Store(format!("ledger entry {kind}: {e}")))?;
        self.writer.append(kind, data).await
    }

    /// Appends from synchronous code and waits until durable.
    pub fn append_blocking(&self, kind: &str, data: impl Into<CanonicalData>) -> Result<u64> {
        self.writer.append_blocking(kind, data.into())
    }

    /// Final checkpoint and a durable store; call once at shutdown.
    pub fn close(&self) {
        self.writer.close()
    }

    /// Appends without waiting for durability.
    pub fn append_detached(&self, kind: &str, data: impl Into<CanonicalData>) {
        self.writer.append_detached(kind, data.into())
    }

    /// Marks one request in flight for as long as the guard lives: while more than one is,
    /// appends are handed to the writer thread rather than committed on the caller's
    /// runtime worker (`store.rs`).
    pub fn busy(&self) -> Busy {
        self.writer.shared.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.writer.clone())
    }

    /// Groups committed so far: (by appenders on their own threads, by the writer thread).
    pub fn group_counts(&self) -> (u64, u64) {
        let sh = &self.writer.shared;
        (
            sh.groups_by_appender.load(Ordering::Relaxed),
            sh.groups_by_writer.load(Ordering::Relaxed),
        )
    }

    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        self.writer.shared.queue.visible();
        self.writer.shared.applied.load(Ordering::Acquire)
    }

    /// The verifier key (`name+id+key`) of this ledger.
    pub fn verifier_key(&self) -> String {
        self.writer.shared.verifier.clone()
    }

    /// Signs a checkpoint for a tree of `size` entries with `root`, without storing it (an
    /// export ends with one covering exactly what it exported).
    pub fn sign_checkpoint(&self, size: u64, root: merkle::Hash) -> String {
        let sh = &self.writer.shared;
        let cp = note::Checkpoint {
            origin: sh.origin.clone(),
            size,
            root,
        };
        note::sign_note(&cp.body(), &cp.origin, &sh.signer)
    }

    /// The latest signed checkpoint.
    pub fn latest_checkpoint(&self) -> Option<String> {
        self.writer
            .shared
            .latest_checkpoint
            .read()
            .ok()
            .and_then(|c| c.clone())
    }

    /// Entries matching `filter`, in order.
    pub fn entries(&self, filter: &Filter) -> Result<Vec<Entry>> {
        self.writer.shared.queue.visible();
        let start = filter.after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        for item in self.writer.shared.trees.from(start) {
            let (_, _, bytes) = item?;
            let e: Entry = serde_json::from_slice(&bytes)
                .map_err(|e| Error::Store(format!("ledger entry: {e}")))?;
            if filter.matches(&e) {
                out.push(e);
                if filter.limit.is_some_and(|l| out.len() >= l) {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Raw stored entries (seq, bytes), in order.
    pub fn raw_entries(&self) -> impl Iterator<Item = Result<RawEntry>> + '_ {
        self.writer.shared.queue.visible();
        self.writer
            .shared
            .trees
            .from(0)
            .map(|item| item.map(|(seq, h, bytes)| (seq, bytes, Some(h))))
    }

    /// Every stored checkpoint note, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<String>> {
        self.writer
            .shared
            .checkpoints
            .iter()
            .map(|item| Ok(String::from_utf8_lossy(&item?.1).into_owned()))
            .collect()
    }

    /// Inclusion proof of `seq` against the latest checkpoint.
    pub fn proof(&self, seq: u64) -> Result<InclusionProof> {
        let note = self
            .latest_checkpoint()
            .ok_or_else(|| Error::Invalid("no checkpoint has been published yet".into()))?;
        let cp = note::Checkpoint::parse(&note).map_err(Error::Store)?;
        if seq >= cp.size {
            return Err(Error::Invalid(format!(
                "entry {seq} is not covered by the latest checkpoint (size {}); retry after the next checkpoint",
                cp.size
            )));
        }
        let covered = self.leaf_hashes(cp.size)?;
        let path = inclusion_proof(seq as usize, &covered).ok_or_else(|| Error::NotFound {
            kind: "ledger entry",
            id: seq.to_string(),
        })?;
        Ok(InclusionProof {
            seq,
            tree_size: cp.size,
            leaf_hash: covered
                .get(seq as usize)
                .map(hex::encode)
                .unwrap_or_default(),
            proof: path.iter().map(hex::encode).collect(),
            checkpoint: note,
            verifier_key: self.verifier_key(),
        })
    }

    /// The leaf hashes of the first `size` entries, read from the store (each entry is
    /// stored with its leaf hash): O(size) reads, only for proofs.
    fn leaf_hashes(&self, size: u64) -> Result<Vec<Hash>> {
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for item in self.writer.shared.trees.from(0) {
            let (seq, h, _) = item?;
            if seq >= size {
                break;
            }
            if seq != out.len() as u64 {
                return Err(Error::Store(format!(
                    "ledger entry {} is missing; run `clawser ledger verify`",
                    out.len()
                )));
            }
            out.push(h);
        }
        Ok(out)
    }

    /// Verifies the stored ledger (optionally against a trusted checkpoint).
    pub fn verify(
        &self,
        trusted: Option<&str>,
    ) -> Result<std::result::Result<VerifyReport, VerifyError>> {
        // Checkpoints first: every entry a published checkpoint covers is already stored.
        let checkpoints = self.checkpoints()?;
        let entries = self.raw_entries().collect::<Result<Vec<_>>>()?;
        Ok(verify::verify(
            entries,
            &checkpoints,
            &self.verifier_key(),
            trusted,
        ))
    }
}

#[cfg(test)]
mod tests;
