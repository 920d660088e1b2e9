//! The ledger store: entries in sled, in blocks of consecutive entries keyed by the
//! big-endian sequence number of their first (`block.rs`), appended by one writer thread with
//! group commit. Each entry is stored with its 32-byte leaf hash, and a change on disk is
//! reported with a sequence number (`block.rs` says how, for compressed blocks too).
//!
//! Callers queue an entry (`queue.rs`) and wait. The writer takes every append queued at
//! that moment (up to `max_batch`), assigns sequence numbers, writes them to the write-ahead
//! log in one durable write (`wal.rs`: direct I/O, or a write plus fdatasync), and then
//! answers every caller of the group: throughput grows with concurrency while an
//! acknowledged entry is always on disk.
//! Acknowledged entries are applied to sled in batches of up to `apply_batch` (sled's cost
//! per insert shrinks with the batch), when the writer goes idle, before a checkpoint, or at
//! once when a reader asks (the read barrier in `queue.rs`). sled itself is made durable only
//! when the log passes `WAL_FLUSH_BYTES` or the writer stops (flush, then fdatasync of its
//! data file: sled's flush alone is `sync_file_range` on Linux, no durability barrier), after
//! which the log starts over; after a crash, the log replays what sled lacks. Checkpoints are
//! signed only over durable state, once sled holds every entry they cover. After a write
//! error the ledger refuses every further append (fail closed) until restarted.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::block::Trees;
use super::entry::{assemble, CanonicalData};
use super::key::LedgerKey;
use super::merkle::{leaf_hash, Frontier, Hash};
use super::note::{sign_note, verifier_key, Checkpoint};
use super::queue::{Queue, Refused, Reply, Req, DETACHED_DELAY};
use super::wal::{read_frames, Wal};
use crate::error::{Error, Result};

/// Log size beyond which sled is made durable and the log starts over.
const WAL_FLUSH_BYTES: u64 = 8 * 1024 * 1024;
pub(super) const CHECKPOINTS: &str = "ledger.checkpoints";

/// Ledger settings (`ledger:` in the config).
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// Publish a checkpoint after this many new entries...
    pub checkpoint_every: u64,
    /// ...or after this long with new entries.
    pub checkpoint_interval: Duration,
    /// Most appends committed in one group.
    pub max_batch: usize,
    /// Most acknowledged entries held (in the write-ahead log and memory) before they are
    /// applied to sled.
    pub apply_batch: usize,
    /// Most appends waiting for the writer, of each kind: beyond it an append someone waits
    /// for is refused (`Error::LedgerBusy`, the proxy answers 503 `ledger_busy`), and one
    /// nobody waits for is dropped with an error line.
    pub max_queue: usize,
    /// The checkpoint origin line and key name.
    pub origin: String,
}

/// State readers share with the writer.
pub(super) struct Shared {
    pub trees: Trees,
    pub checkpoints: sled::Tree,
    /// Entries applied to `trees` (readable there). Leaf hashes are not kept in memory:
    /// each entry is stored with its leaf hash, and proofs read them from there, so the
    /// process does not grow by 32 bytes per entry.
    pub applied: AtomicU64,
    pub latest_checkpoint: RwLock<Option<String>>,
    pub failed: AtomicBool,
    pub verifier: String,
    pub queue: Queue,
    /// The signing key and checkpoint origin, for checkpoints signed outside the writer
    /// (an export's closing checkpoint).
    pub signer: Arc<LedgerKey>,
    pub origin: String,
}

/// The append side of the ledger.
pub struct Writer {
    max_batch: usize,
    max_queue: usize,
    pub(super) shared: Arc<Shared>,
}

fn store_err(e: impl std::fmt::Display) -> Error {
    Error::Store(format!("ledger: {e}"))
}

impl Writer {
    /// Opens the ledger in `db`, rebuilds the tree from the stored entries (checking their
    /// sequence), and starts the writer thread.
    pub fn open(
        db: sled::Db,
        data_dir: &Path,
        key: LedgerKey,
        cfg: LedgerConfig,
    ) -> Result<Writer> {
        let key = Arc::new(key);
        let trees = Trees::open(&db)?;
        trees.guard_against_downgrade()?;
        let checkpoints = db.open_tree(CHECKPOINTS)?;
        let mut frontier = Frontier::default();
        for (i, item) in trees.from(0).enumerate() {
            let (seq, stored, bytes) = item?;
            if seq != i as u64 {
                return Err(store_err(format!(
                    "entry {i} is missing (found {seq} next); run `clawser ledger verify`"
                )));
            }
            let h = leaf_hash(&bytes);
            if h != stored {
                return Err(store_err(format!(
                    "entry {seq} does not match its stored hash (altered on disk); run `clawser ledger verify`"
                )));
            }
            frontier.push(h);
        }
        // Replay acknowledged entries that reached the log but not sled's disk.
        let first = frontier.size();
        let mut replay = Vec::new();
        for frame in read_frames(data_dir)? {
            let n = first + replay.len() as u64;
            if frame.seq < n {
                continue;
            }
            if frame.seq > n {
                return Err(store_err(format!(
                    "the write-ahead log skips from entry {n} to {}",
                    frame.seq
                )));
            }
            frontier.push(frame.hash);
            replay.push(frame);
        }
        let replayed = replay.len();
        if replayed > 0 {
            trees.insert(first, replay.iter().map(|f| (&f.hash, f.bytes.as_slice())))?;
        }
        let mut wal = Wal::open(data_dir)?;
        db.flush()?;
        let db_dir = data_dir.join("db");
        crate::fsutil::sync_dir_contents(&db_dir).map_err(Error::io("syncing", &db_dir))?;
        wal.truncate()?;
        if replayed > 0 {
            tracing::info!(
                replayed,
                "ledger: replayed entries from the write-ahead log"
            );
        }
        let latest = checkpoints
            .last()?
            .map(|(_, v)| String::from_utf8_lossy(&v).into_owned());
        let shared = Arc::new(Shared {
            trees,
            checkpoints,
            applied: AtomicU64::new(frontier.size()),
            latest_checkpoint: RwLock::new(latest),
            failed: AtomicBool::new(false),
            verifier: verifier_key(&cfg.origin, &key.public()),
            queue: Queue::new(frontier.size()),
            signer: key.clone(),
            origin: cfg.origin.clone(),
        });
        let max_batch = cfg.max_batch;
        let max_queue = cfg.max_queue;
        let mut w = WriterThread {
            db,
            db_dir,
            wal,
            key,
            cfg,
            frontier,
            shared: shared.clone(),
            last_checkpoint: (0, Instant::now()),
            pending: Vec::new(),
        };
        w.last_checkpoint.0 = w.shared.latest_checkpoint.read().map_or(0, |c| {
            c.as_deref()
                .and_then(|n| Checkpoint::parse(n).ok())
                .map_or(0, |c| c.size)
        });
        std::thread::Builder::new()
            .name("clawser-ledger".into())
            .spawn(move || {
                // Declared first, dropped last: the queue is stopped (and `close` answered)
                // only after the writer has released sled and the log, however it ends.
                let _guard = StopOnExit(w.shared.clone());
                let mut w = w;
                w.run();
            })
            .map_err(|e| store_err(format!("starting the writer: {e}")))?;
        Ok(Writer {
            max_batch,
            max_queue,
            shared,
        })
    }

    fn submit(&self, kind: &str, data: CanonicalData, reply: Reply) -> Result<()> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(store_err(
                "a previous write failed; the ledger refuses appends until restarted",
            ));
        }
        let req = Req {
            kind: kind.to_string(),
            data: data.into_bytes(),
            reply,
        };
        super::wal::check_fits(kind, req.data.len())?;
        match self.shared.queue.push(req, self.max_batch, self.max_queue) {
            Ok(()) => Ok(()),
            Err(Refused::Full) => Err(Error::LedgerBusy(self.max_queue)),
            Err(Refused::Stopped) => Err(store_err("the writer has stopped")),
        }
    }

    /// Appends and waits until the entry is durable; returns its sequence number.
    pub async fn append(&self, kind: &str, data: CanonicalData) -> Result<u64> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(kind, data, Reply::Async(tx))?;
        rx.await
            .map_err(|_| store_err("the writer stopped before answering"))?
    }

    /// Appends from synchronous code and waits until durable.
    pub fn append_blocking(&self, kind: &str, data: CanonicalData) -> Result<u64> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(kind, data, Reply::Sync(tx))?;
        rx.recv()
            .map_err(|_| store_err("the writer stopped before answering"))?
    }

    /// Publishes a final checkpoint over everything appended, makes the store durable and
    /// stops the writer (waits up to 10 s). Later appends fail.
    pub fn close(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.shared.queue.close(tx) {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Appends without waiting: the entry rides with the next group (or is written within
    /// `DETACHED_DELAY`) and is durable with the next sync (the next waited-for group, or
    /// when the writer goes idle). Until then it is only in memory: a crash in that window
    /// (milliseconds) loses it. Use it only where nothing depends on the entry being durable
    /// (`request.completed`, refusals); readers and checkpoints never see it before it is.
    pub fn append_detached(&self, kind: &str, data: CanonicalData) {
        if let Err(e) = self.submit(kind, data, Reply::None) {
            tracing::error!(error = %e, kind, "ledger append failed");
        }
    }
}

impl Drop for Writer {
    /// A writer dropped without `close()` (e.g. an offline CLI command) still publishes its
    /// final checkpoint and makes sled durable.
    fn drop(&mut self) {
        self.close();
    }
}

/// Stops the queue when the writer thread ends, however it ends.
struct StopOnExit(Arc<Shared>);

impl Drop for StopOnExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.failed.store(true, Ordering::SeqCst);
            tracing::error!("the ledger writer stopped unexpectedly; refusing further appends");
        }
        self.0.queue.stop();
    }
}

struct WriterThread {
    db: sled::Db,
    /// sled's directory (`data_dir/db`).
    db_dir: std::path::PathBuf,
    wal: Wal,
    key: Arc<LedgerKey>,
    cfg: LedgerConfig,
    frontier: Frontier,
    shared: Arc<Shared>,
    last_checkpoint: (u64, Instant),
    /// Acknowledged entries not yet in sled: (seq, leaf hash, canonical bytes).
    pending: Vec<(u64, Hash, Vec<u8>)>,
}

impl WriterThread {
    fn run(&mut self) {
        loop {
            let idle_timeout = if self.pending.is_empty() {
                self.cfg.checkpoint_interval
            } else {
                DETACHED_DELAY
            };
            let taken = self.shared.queue.take(self.cfg.max_batch, idle_timeout);
            if !taken.reqs.is_empty() {
                self.commit(taken.reqs);
            }
            if taken.apply_now || taken.idle || self.pending.len() >= self.cfg.apply_batch {
                let _ = self.apply();
            }
            self.maybe_checkpoint();
            if self.wal.len() > WAL_FLUSH_BYTES {
                self.make_sled_durable();
            }
            // On return, the thread's guard stops the queue and answers a pending `close`.
            if self.shared.failed.load(Ordering::SeqCst) {
                return;
            }
            if taken.closing {
                self.close();
                return;
            }
        }
    }

    fn commit(&mut self, batch: Vec<Req>) {
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

    fn close(&mut self) {
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
