//! The ledger store: entries in sled, in blocks of consecutive entries keyed by the
//! big-endian sequence number of their first (`block.rs`), appended with group commit. Each
//! entry is stored with its 32-byte leaf hash, and a change on disk is reported with a
//! sequence number (`block.rs` says how, for compressed blocks too).
//!
//! A caller that waits for its entry and finds nobody committing commits at once, on its own
//! thread, with everything queued (`commit.rs`). Otherwise it queues the entry (`queue.rs`)
//! and waits, and the writer thread takes every append queued at that moment (up to
//! `max_batch`). Either way a group gets its sequence numbers, is written to the write-ahead
//! log in one durable write (`wal.rs`: direct I/O, or a write plus fdatasync), and then every
//! caller of the group is answered: throughput grows with concurrency while an
//! acknowledged entry is always on disk.
//! Acknowledged entries are applied to sled by the writer thread, in batches of up to
//! `apply_batch` (sled's cost per insert shrinks with the batch; an appender that fills one
//! wakes the writer), when appends stop (a writer's timer passes with no append at all;
//! appenders committing their own groups keep it busy), before a checkpoint,
//! or at once when a reader asks (the read barrier in `queue.rs`). Entries appenders
//! committed themselves may wait for one of these (memory and replay stay bounded by
//! `apply_batch`). sled itself is made durable only
//! when the log passes `WAL_FLUSH_BYTES` or the writer stops (flush, then fdatasync of its
//! data file: sled's flush alone is `sync_file_range` on Linux, no durability barrier), after
//! which the log starts over; after a crash, the log replays what sled lacks. Checkpoints are
//! signed only over durable state, once sled holds every entry they cover. After a write
//! error the ledger refuses every further append (fail closed) until restarted.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock, TryLockError};
use std::time::{Duration, Instant};

use super::block::Trees;
use super::commit::Committer;
use super::entry::CanonicalData;
use super::key::LedgerKey;
use super::merkle::{leaf_hash, Frontier};
use super::note::{verifier_key, Checkpoint};
use super::queue::{Pushed, Queue, Refused, Reply, Req, DETACHED_DELAY};
use super::wal::{read_frames, Wal};
use crate::error::{Error, Result};

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
    /// Groups committed by an appender on its own thread, and by the writer thread.
    pub groups_by_appender: AtomicU64,
    pub groups_by_writer: AtomicU64,
    /// Requests the process is handling now ([`super::Busy`]): an appender commits its own
    /// group only while it is alone, where the runtime worker it blocks on the log would
    /// otherwise idle. With other requests in flight, the writer thread writes the log while
    /// the workers go on computing.
    pub in_flight: AtomicUsize,
}

/// The append side of the ledger.
pub struct Writer {
    max_batch: usize,
    max_queue: usize,
    pub(super) shared: Arc<Shared>,
    /// Whoever holds it commits; `None` once the writer thread has ended.
    committer: Arc<Mutex<Option<Committer>>>,
}

pub(super) fn store_err(e: impl std::fmt::Display) -> Error {
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
            groups_by_appender: AtomicU64::new(0),
            groups_by_writer: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        });
        let max_batch = cfg.max_batch;
        let max_queue = cfg.max_queue;
        let mut c = Committer {
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
        c.last_checkpoint.0 = shared.latest_checkpoint.read().map_or(0, |cp| {
            cp.as_deref()
                .and_then(|n| Checkpoint::parse(n).ok())
                .map_or(0, |cp| cp.size)
        });
        let committer = Arc::new(Mutex::new(Some(c)));
        let w = WriterThread {
            shared: shared.clone(),
            committer: committer.clone(),
            max_batch,
        };
        std::thread::Builder::new()
            .name("clawser-ledger".into())
            .spawn(move || {
                // The guard releases sled and the log, then stops the queue (answering
                // `close`), however the thread ends.
                let _guard = StopOnExit {
                    shared: w.shared.clone(),
                    committer: w.committer.clone(),
                };
                w.run();
            })
            .map_err(|e| store_err(format!("starting the writer: {e}")))?;
        Ok(Writer {
            max_batch,
            max_queue,
            shared,
            committer,
        })
    }

    /// Queues an append, or commits it at once on this thread when someone waits for it
    /// and nobody else is committing (`commit.rs`): then the append has been answered when
    /// this returns. That is one durable write of the log on the caller's thread (a runtime
    /// worker, for `append`), which the caller waits for anyway.
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
        let alone = self.shared.in_flight.load(Ordering::Relaxed) <= 1;
        let mut held = if req.reply.waits() && alone && self.shared.queue.may_lead() {
            match self.committer.try_lock() {
                Ok(c) => Some(c),
                Err(TryLockError::WouldBlock) => None,
                Err(TryLockError::Poisoned(_)) => {
                    // A commit panicked midway: what the log and the frontier hold is unknown.
                    self.shared.failed.store(true, Ordering::SeqCst);
                    self.shared.queue.poke();
                    return Err(store_err(
                        "a commit failed midway; the ledger refuses appends until restarted",
                    ));
                }
            }
        } else {
            None
        };
        let pushed = self.shared.queue.push_or_lead(
            req,
            self.max_batch,
            self.max_queue,
            held.as_ref().is_some_and(|c| c.is_some()),
        );
        match pushed {
            Ok(Pushed::Queued) => Ok(()),
            Ok(Pushed::Lead(group)) => {
                let wants_writer = match held.as_mut().and_then(|c| c.as_mut()) {
                    Some(c) => {
                        let _failed_if_panicking = FailOnPanic(&self.shared);
                        c.commit(group);
                        self.shared
                            .groups_by_appender
                            .fetch_add(1, Ordering::Relaxed);
                        c.wants_writer()
                    }
                    None => {
                        // Not reached: the queue hands out a group only to a caller holding
                        // the committer. Answered as failed rather than lost.
                        for r in group {
                            r.reply.send(Err(store_err("the writer has stopped")));
                        }
                        false
                    }
                };
                drop(held);
                if wants_writer {
                    self.shared.queue.poke();
                }
                Ok(())
            }
            Err(Refused::Full) => Err(Error::LedgerBusy(self.max_queue)),
            Err(Refused::Stopped) => Err(store_err("the writer has stopped")),
        }
    }

    /// Appends and waits until the entry is durable; returns its sequence number. With
    /// nobody else committing, the durable write happens here, on the calling runtime worker
    /// (tens of microseconds, which the caller would wait for anyway), instead of a hand-off
    /// to the writer thread and back.
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

/// Fails the ledger (and wakes the writer thread, which then stops) if an appender's own
/// commit panics: what the log and the frontier hold is unknown from then on.
struct FailOnPanic<'a>(&'a Shared);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.0.failed.store(true, Ordering::SeqCst);
            self.0.queue.poke();
        }
    }
}

/// When the writer thread ends, however it ends: releases sled and the log, then stops the
/// queue (which answers a pending `close`).
struct StopOnExit {
    shared: Arc<Shared>,
    committer: Arc<Mutex<Option<Committer>>>,
}

impl Drop for StopOnExit {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.shared.failed.store(true, Ordering::SeqCst);
            tracing::error!("the ledger writer stopped unexpectedly; refusing further appends");
        }
        let released = self
            .committer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(released);
        self.shared.queue.stop();
    }
}

/// The writer thread: commits what appenders queued, applies to sled, checkpoints, closes.
struct WriterThread {
    shared: Arc<Shared>,
    committer: Arc<Mutex<Option<Committer>>>,
    max_batch: usize,
}

impl WriterThread {
    fn run(&self) {
        let mut idle_timeout = DETACHED_DELAY;
        loop {
            let idle = self.shared.queue.wait(self.max_batch, idle_timeout);
            let mut guard = match self.committer.lock() {
                Ok(g) => g,
                Err(_) => {
                    // An appender's commit panicked midway: fail closed.
                    self.shared.failed.store(true, Ordering::SeqCst);
                    tracing::error!("a ledger commit failed midway; refusing further appends");
                    return;
                }
            };
            let Some(c) = guard.as_mut() else { return };
            let taken = self.shared.queue.drain(self.max_batch, idle);
            if !taken.reqs.is_empty() {
                self.shared.groups_by_writer.fetch_add(1, Ordering::Relaxed);
            }
            c.work(taken.reqs, taken.apply_now, taken.idle);
            // On return, the thread's guard stops the queue and answers a pending `close`.
            if self.shared.failed.load(Ordering::SeqCst) {
                return;
            }
            if taken.closing {
                c.close();
                return;
            }
            idle_timeout = c.idle_timeout();
        }
    }
}
