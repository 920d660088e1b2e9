//! [`SledLedger`]: the embedded [`LedgerStore`]. Appends are group-committed to the
//! write-ahead log by the appender or the writer thread (`store.rs`, `commit.rs`,
//! `queue.rs`, `wal.rs`) and reach sled in batches; entries are read from sled after the
//! read barrier (`Queue::visible`), so a read sees every acknowledged entry. Also
//! [`read_stored`], the offline reader of a data dir (sled and the write-ahead log).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::entry::CanonicalData;
use super::handle::{Appending, Ledger, LedgerStore};
use super::key::LedgerKey;
use super::merkle::Hash;
use super::store::{LedgerConfig, Writer, CHECKPOINTS};
use super::{block, note, wal, RawEntry};
use crate::error::Result;

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
        .open_tree(CHECKPOINTS)?
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

/// The ledger in sled, written by one writer.
pub struct SledLedger {
    writer: Writer,
}

impl SledLedger {
    /// Opens (or creates) the ledger in `db`; the signing key lives in `data_dir`.
    pub fn open(db: sled::Db, data_dir: &Path, cfg: LedgerConfig) -> Result<SledLedger> {
        let key = LedgerKey::load_or_create(data_dir)?;
        let writer = Writer::open(db, data_dir, key, cfg)?;
        Ok(SledLedger { writer })
    }
}

impl Ledger {
    /// Opens (or creates) the embedded ledger in `db` ([`SledLedger`]); the signing key
    /// lives in `data_dir`.
    pub fn open(db: sled::Db, data_dir: &Path, cfg: LedgerConfig) -> Result<Ledger> {
        Ok(Ledger::new(Arc::new(SledLedger::open(db, data_dir, cfg)?)))
    }
}

impl LedgerStore for SledLedger {
    fn append<'a>(&'a self, kind: &'a str, data: CanonicalData) -> Appending<'a> {
        Box::pin(self.writer.append(kind, data))
    }

    fn append_blocking(&self, kind: &str, data: CanonicalData) -> Result<u64> {
        self.writer.append_blocking(kind, data)
    }

    fn append_detached(&self, kind: &str, data: CanonicalData) {
        self.writer.append_detached(kind, data)
    }

    fn request_started(&self) {
        self.writer.shared.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    fn request_ended(&self) {
        self.writer.shared.in_flight.fetch_sub(1, Ordering::Relaxed);
    }

    fn close(&self) {
        self.writer.close()
    }

    fn group_counts(&self) -> (u64, u64) {
        let sh = &self.writer.shared;
        (
            sh.groups_by_appender.load(Ordering::Relaxed),
            sh.groups_by_writer.load(Ordering::Relaxed),
        )
    }

    fn size(&self) -> u64 {
        self.writer.shared.queue.visible();
        self.writer.shared.applied.load(Ordering::Acquire)
    }

    fn verifier_key(&self) -> String {
        self.writer.shared.verifier.clone()
    }

    fn sign_checkpoint(&self, size: u64, root: Hash) -> String {
        let sh = &self.writer.shared;
        let cp = note::Checkpoint {
            origin: sh.origin.clone(),
            size,
            root,
        };
        note::sign_note(&cp.body(), &cp.origin, &sh.signer)
    }

    fn latest_checkpoint(&self) -> Option<String> {
        self.writer
            .shared
            .latest_checkpoint
            .read()
            .ok()
            .and_then(|c| c.clone())
    }

    fn range(&self, start: u64) -> Box<dyn Iterator<Item = Result<RawEntry>> + '_> {
        self.writer.shared.queue.visible();
        Box::new(
            self.writer
                .shared
                .trees
                .from(start)
                .map(|item| item.map(|(seq, h, bytes)| (seq, bytes, Some(h)))),
        )
    }

    fn checkpoints(&self) -> Result<Vec<String>> {
        self.writer
            .shared
            .checkpoints
            .iter()
            .map(|item| Ok(String::from_utf8_lossy(&item?.1).into_owned()))
            .collect()
    }
}
