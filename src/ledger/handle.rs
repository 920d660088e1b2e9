//! The ledger as its users see it: the [`LedgerStore`] trait (what a backend provides:
//! durable appends, reads, checkpoints) and [`Ledger`], the cheap, cloneable handle the
//! proxy, the admin API, the CLI and the other stores hold. [`super::SledLedger`] is the
//! embedded backend (group commit to a write-ahead log, then sled); a shared-database one
//! for several nodes is planned (DESIGN.md section 11: a batch sequenced in one transaction,
//! acknowledged when it commits). What is the same for every backend lives here, on the
//! handle: typed appends, inclusion proofs and verification, built from the trait's reads.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use super::entry::{CanonicalData, Entry, Sorted};
use super::merkle::{inclusion_proof, Hash};
use super::verify::{self, VerifyError, VerifyReport};
use super::{note, Filter, InclusionProof, RawEntry};
use crate::error::{Error, Result};

/// An append in progress (a boxed future, so the trait can be used as `dyn LedgerStore`).
pub type Appending<'a> = Pin<Box<dyn Future<Output = Result<u64>> + Send + 'a>>;

/// A ledger backend: every append is durable before it is acknowledged (the write-ahead
/// rule), entries get consecutive sequence numbers from 0, and signed checkpoints cover them.
pub trait LedgerStore: Send + Sync {
    /// Appends and resolves once the entry is durable, with its sequence number.
    fn append<'a>(&'a self, kind: &'a str, data: CanonicalData) -> Appending<'a>;

    /// Appends from synchronous code and returns once durable.
    fn append_blocking(&self, kind: &str, data: CanonicalData) -> Result<u64>;

    /// Appends without waiting: the entry rides a later durable write.
    fn append_detached(&self, kind: &str, data: CanonicalData);

    /// A request started (see [`Ledger::busy`]); a backend may use the count to choose how
    /// it commits. The default ignores it.
    fn request_started(&self) {}

    /// A request [`LedgerStore::request_started`] counted has ended.
    fn request_ended(&self) {}

    /// Final checkpoint and a durable store; called once at shutdown.
    fn close(&self);

    /// Durable writes so far, for `/metrics`: (committed by an appender on its own thread,
    /// by a writer thread). A backend without that distinction reports all in the second.
    fn group_counts(&self) -> (u64, u64);

    /// Number of durable entries.
    fn size(&self) -> u64;

    /// The verifier key (`name+id+key`) of this ledger.
    fn verifier_key(&self) -> String;

    /// Signs a checkpoint for a tree of `size` entries with `root`, without storing it (an
    /// export ends with one covering exactly what it exported).
    fn sign_checkpoint(&self, size: u64, root: Hash) -> String;

    /// The latest signed checkpoint.
    fn latest_checkpoint(&self) -> Option<String>;

    /// Stored entries from sequence number `start` on, in order: (seq, canonical bytes,
    /// leaf hash). Entries acknowledged before the call are included (the sled backend
    /// waits for them up to its read barrier's limit, then reads what is there).
    fn range(&self, start: u64) -> Box<dyn Iterator<Item = Result<RawEntry>> + '_>;

    /// Every stored checkpoint note, oldest first.
    fn checkpoints(&self) -> Result<Vec<String>>;
}

/// One request in flight ([`Ledger::busy`]), for as long as it lives.
pub struct Busy(Arc<dyn LedgerStore>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// The ledger: appends (durable before they return) and reads. Cheap to clone and share.
#[derive(Clone)]
pub struct Ledger {
    store: Arc<dyn LedgerStore>,
}

impl crate::model::EventSink for Ledger {
    fn record(&self, kind: &str, data: Value) -> Result<u64> {
        self.store.append_blocking(kind, data.into())
    }
}

impl Ledger {
    /// A handle on `store`.
    pub fn new(store: Arc<dyn LedgerStore>) -> Ledger {
        Ledger { store }
    }

    /// Appends and waits until durable.
    pub async fn append(&self, kind: &str, data: impl Into<CanonicalData>) -> Result<u64> {
        self.store.append(kind, data.into()).await
    }

    /// Appends a [`Sorted`] entry (serialized straight to canonical bytes) and waits until
    /// durable. An entry that cannot be serialized is an error like a failed write, so the
    /// caller refuses what it could not record.
    pub async fn append_sorted<T: Sorted>(&self, kind: &str, data: &T) -> Result<u64> {
        let data = CanonicalData::of_sorted(data)
            .map_err(|e| Error::Store(format!("ledger entry {kind}: {e}")))?;
        self.store.append(kind, data).await
    }

    /// Appends from synchronous code and waits until durable.
    pub fn append_blocking(&self, kind: &str, data: impl Into<CanonicalData>) -> Result<u64> {
        self.store.append_blocking(kind, data.into())
    }

    /// Final checkpoint and a durable store; call once at shutdown.
    pub fn close(&self) {
        self.store.close()
    }

    /// Appends without waiting for durability.
    pub fn append_detached(&self, kind: &str, data: impl Into<CanonicalData>) {
        self.store.append_detached(kind, data.into())
    }

    /// Marks one request in flight for as long as the guard lives (the sled backend commits
    /// on the caller's thread only while one request is in flight: `store.rs`).
    pub fn busy(&self) -> Busy {
        self.store.request_started();
        Busy(self.store.clone())
    }

    /// Durable writes so far: (by appenders on their own threads, by a writer thread).
    pub fn group_counts(&self) -> (u64, u64) {
        self.store.group_counts()
    }

    /// Number of durable entries.
    pub fn size(&self) -> u64 {
        self.store.size()
    }

    /// The verifier key (`name+id+key`) of this ledger.
    pub fn verifier_key(&self) -> String {
        self.store.verifier_key()
    }

    /// Signs a checkpoint for a tree of `size` entries with `root`, without storing it.
    pub fn sign_checkpoint(&self, size: u64, root: Hash) -> String {
        self.store.sign_checkpoint(size, root)
    }

    /// The latest signed checkpoint.
    pub fn latest_checkpoint(&self) -> Option<String> {
        self.store.latest_checkpoint()
    }

    /// Entries matching `filter`, in order.
    pub fn entries(&self, filter: &Filter) -> Result<Vec<Entry>> {
        let start = filter.after.map_or(0, |a| a.saturating_add(1));
        let mut out = Vec::new();
        for item in self.store.range(start) {
            let (_, bytes, _) = item?;
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

    /// Raw stored entries (seq, bytes, leaf hash), in order.
    pub fn raw_entries(&self) -> impl Iterator<Item = Result<RawEntry>> + '_ {
        self.store.range(0)
    }

    /// Every stored checkpoint note, oldest first.
    pub fn checkpoints(&self) -> Result<Vec<String>> {
        self.store.checkpoints()
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

    /// The leaf hashes of the first `size` entries: O(size) reads, only for proofs (through
    /// [`LedgerStore::range`], so after the read barrier). An entry without its stored leaf
    /// hash is hashed from its bytes.
    fn leaf_hashes(&self, size: u64) -> Result<Vec<Hash>> {
        let mut out = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
        for item in self.store.range(0) {
            let (seq, bytes, h) = item?;
            if seq >= size {
                break;
            }
            if seq != out.len() as u64 {
                return Err(Error::Store(format!(
                    "ledger entry {} is missing; run `clawser ledger verify`",
                    out.len()
                )));
            }
            out.push(h.unwrap_or_else(|| super::merkle::leaf_hash(&bytes)));
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
