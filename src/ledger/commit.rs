//! The committer: the state a group commit needs (the write-ahead log, the Merkle frontier,
//! acknowledged entries not yet in sled, checkpoint bookkeeping) and the work done on it.
//!
//! It sits behind one mutex, and whoever holds the mutex commits (`store.rs`): an appender
//! whose request is alone in flight and that finds it free commits its own group (with
//! whatever else is queued) on its own thread, saving the two thread wake-ups of a hand-off
//! to the writer thread and back; otherwise the writer thread commits what is queued. Sequence numbers are assigned under
//! the mutex, so either way the log, the frontier and sled see one order. Only the writer
//! thread applies to sled, checkpoints and closes: an appender's thread is a runtime worker,
//! so it does the one durable write its request waits for anyway and no more.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::entry::assemble;
use super::key::LedgerKey;
use super::merkle::{leaf_hash, Frontier, Hash};
use super::note::{sign_note, Checkpoint};
use super::queue::{Reply, Req, DETACHED_DELAY};
use super::store::{store_err, LedgerConfig, Shared};
use super::wal::Wal;
use crate::error::Error;

/// Log size beyond which sled is made durable and the log starts over.
const WAL_FLUSH_BYTES: u64 = 8 * 1024 * 1024;

/// What a commit needs; `store.rs` builds it at open and shares it behind a mutex.
pub(super) struct Committer {
    pub db: sled::Db,
    /// sled's directory (`data_dir/db`).
    pub db_dir: std::path::PathBuf,
    pub wal: Wal,
    pub key: Arc<LedgerKey>,
    pub cfg: LedgerConfig,
    pub frontier: Frontier,
    pub shared: Arc<Shared>,
    pub last_checkpoint: (u64, Instant),
    /// Acknowledged entries not yet in sled: (seq, leaf hash, canonical bytes).
    pub pending: Vec<(u64, Hash, Vec<u8>)>,
}

impl Committer {
    /// The writer thread's work after taking from the queue: commit what it took, apply to
    /// sled when a reader waits, the writer went idle or enough is pending, checkpoint when
    /// due, and make sled durable when the log is long.
    pub fn work(&mut self, reqs: Vec<Req>, apply_now: bool, idle: bool) {
        if !reqs.is_empty() {
            self.commit(reqs);
        }
        if apply_now || idle || self.pending.len() >= self.cfg.apply_batch {
            let _ = self.apply();
        }
        self.maybe_checkpoint();
        if self.wal.len() > WAL_FLUSH_BYTES {
            self.make_sled_durable();
        }
    }

    /// After an appender committed its own group: whether the writer thread has work now
    /// (a sled batch, a checkpoint or a log flush is due, or the ledger failed and must stop).
    pub fn wants_writer(&self) -> bool {
        self.shared.failed.load(Ordering::SeqCst)
            || self.pending.len() >= self.cfg.apply_batch
            || self.wal.len() > WAL_FLUSH_BYTES
            || self.frontier.size().saturating_sub(self.last_checkpoint.0)
                >= self.cfg.checkpoint_every
    }

    /// How long the writer may sleep with nothing queued: soon when entries wait to be applied
    /// to sled, else until the next checkpoint is due.
    pub fn idle_timeout(&self) -> Duration {
        if self.pending.is_empty() {
            self.cfg.checkpoint_interval
        } else {
            DETACHED_DELAY
        }
    }

    /// Commits one group: assigns sequence numbers, writes the group to the log (durably if
    /// anyone waits for it) and answers every append in it.
    pub fn commit(&mut self, batch: Vec<Req>) {
        if self.shared.failed.load(Ordering::SeqCst) {
            for r in batch {
                r.reply.send(Err(store_err("a previous write failed")));
            }
            return;
        }
        let first = self.frontier.size();
        let mut frames = Vec::new();
        let mut entries = Vec::with_capacity(batch.len());
        let time = crate::time::now_rfc3339();
        for (i, r) in batch.iter().enumerate() {
            let seq = first + i as u64;
            let bytes = assemble(seq, &time, &r.kind, &r.data);
            let h = leaf_hash(&bytes);
            Wal::frame(&mut frames, seq, &h, &bytes);
            entries.push((seq, h, bytes));
        }
        // A group nobody waits for (only detached appends) is written without its own sync;
        // the next waited-for group's sync, or the next checkpoint's, covers it.
        let someone_waits = batch.iter().any(|r| !matches!(r.reply, Reply::None));
        let logged = if someone_waits {
            self.wal.append_durable(&frames)
        } else {
            self.wal.append(&frames)
        };
        match logged {
            Ok(()) => {
                for (_, h, _) in &entries {
                    self.frontier.push(*h);
                }
                self.pending.extend(entries);
                for (i, r) in batch.into_iter().enumerate() {
                    r.reply.send(Ok(first + i as u64));
                }
            }
            Err(e) => {
                // After a failed fsync the on-disk state is unknown: stop accepting.
                tracing::error!(error = %e, "ledger write failed; refusing further appends (fail closed)");
                self.shared.failed.store(true, Ordering::SeqCst);
                for r in batch {
                    r.reply.send(Err(store_err(&e)));
                }
            }
        }
    }

    /// Applies logged entries to sled in one batch and makes them readable (syncing the log
    /// first if entries nobody waited for are not yet durable, so readers never see an entry
    /// a crash could lose). False when the ledger has failed.
    fn apply(&mut self) -> bool {
        if self.shared.failed.load(Ordering::SeqCst) {
            return false;
        }
        if self.pending.is_empty() {
            return true;
        }
        if let Err(e) = self.wal.sync() {
            self.fail("ledger sync failed", &e);
            return false;
        }
        let first = self.pending.first().map_or(0, |(seq, _, _)| *seq);
        let last = self.pending.last().map_or(0, |(seq, _, _)| seq + 1);
        let stored = self.shared.trees.insert(
            first,
            self.pending
                .iter()
                .map(|(_, h, bytes)| (h, bytes.as_slice())),
        );
        self.pending.clear();
        match stored {
            Ok(()) => {
                self.shared.applied.store(last, Ordering::Release);
                self.shared.queue.applied(last);
                true
            }
            Err(e) => {
                // The entries are durable in the log (replayed at the next start), but this
                // process can no longer show them.
                self.fail("ledger store failed", &store_err(e));
                false
            }
        }
    }

    /// Marks the ledger failed: every later append is refused (fail closed).
    fn fail(&self, what: &str, e: &Error) {
        tracing::error!(error = %e, "{what}; refusing further appends (fail closed)");
        self.shared.failed.store(true, Ordering::SeqCst);
    }

    /// The last checkpoint, and sled made durable (the writer thread, at shutdown).
    pub fn close(&mut self) {
        self.force_checkpoint();
        self.make_sled_durable();
    }

    /// Flushes sled and fsyncs its files; then every logged entry is in sled on disk and the
    /// log can start over.
    fn make_sled_durable(&mut self) {
        if !self.apply() {
            return;
        }
        // After a failed sync the kernel may report the next one as successful although data
        // was dropped, so any failure here stops the ledger rather than truncating the log.
        let r = self
            .wal
            .sync()
            .and_then(|_| self.db.flush().map_err(store_err))
            // Everything sled needs (its log, blobs, snapshots), not only `db/db`.
            .and_then(|_| crate::fsutil::sync_dir_contents(&self.db_dir).map_err(store_err))
            .and_then(|_| self.wal.truncate());
        if let Err(e) = r {
            self.fail("could not make the ledger store durable", &e);
        }
    }

    fn maybe_checkpoint(&mut self) {
        let new = self.frontier.size().saturating_sub(self.last_checkpoint.0);
        if new >= self.cfg.checkpoint_every
            || (new > 0 && self.last_checkpoint.1.elapsed() >= self.cfg.checkpoint_interval)
        {
            self.force_checkpoint();
        }
    }

    /// Signs a checkpoint over everything appended (if anything is new).
    fn force_checkpoint(&mut self) {
        let size = self.frontier.size();
        if size == self.last_checkpoint.0 || self.shared.failed.load(Ordering::SeqCst) {
            return;
        }
        // Readers of a checkpoint find every entry it covers in sled.
        if !self.apply() {
            return;
        }
        // Sign only durable state.
        if let Err(e) = self.wal.sync() {
            tracing::error!(error = %e, "ledger sync failed; refusing further appends (fail closed)");
            self.shared.failed.store(true, Ordering::SeqCst);
            return;
        }
        let cp = Checkpoint {
            origin: self.cfg.origin.clone(),
            size,
            root: self.frontier.root(),
        };
        let note = sign_note(&cp.body(), &cp.origin, &self.key);
        let stored = self
            .shared
            .checkpoints
            .insert(size.to_be_bytes(), note.as_bytes())
            .map(|_| ())
            .map_err(store_err);
        match stored {
            Ok(()) => {
                if let Ok(mut l) = self.shared.latest_checkpoint.write() {
                    *l = Some(note);
                }
                self.last_checkpoint = (size, Instant::now());
            }
            Err(e) => tracing::error!(error = %e, "could not store a ledger checkpoint"),
        }
    }
}
