//! The ledger store: entries in sled keyed by big-endian sequence number, appended by one
//! writer thread with group commit. A stored value is the entry's 32-byte leaf hash followed
//! by its canonical bytes, so a byte changed in either is pinned to its sequence number.
//!
//! Callers hand an entry to the writer and wait. The writer takes every append waiting at
//! that moment (up to `max_batch`), assigns sequence numbers, writes them to the write-ahead
//! log in one write and fdatasyncs it (`wal.rs`), applies them to sled as one batch, and only
//! then answers every caller of the batch. So throughput grows with concurrency while an
//! acknowledged entry is always on disk. sled itself is made durable only when the log passes
//! `WAL_FLUSH_BYTES` or the writer stops (flush, then fdatasync of its data file: sled's flush
//! alone is `sync_file_range` on Linux, no durability barrier), after which the log starts
//! over. Checkpoints are signed over logged (durable) entries and stored in sled.
//! Checkpoints are signed only over acknowledged (durable) state. After a write error the
//! ledger refuses every further append (fail closed) until restarted.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::entry::{assemble, canonical};
use super::key::LedgerKey;
use super::merkle::{leaf_hash, Frontier, Hash};
use super::note::{sign_note, verifier_key, Checkpoint};
use super::wal::{read_frames, Wal};
use crate::error::{Error, Result};

pub(super) const ENTRIES: &str = "ledger.entries";
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
    /// The checkpoint origin line and key name.
    pub origin: String,
}

enum Reply {
    Sync(mpsc::SyncSender<Result<u64>>),
    Async(tokio::sync::oneshot::Sender<Result<u64>>),
    None,
}

impl Reply {
    fn send(self, r: Result<u64>) {
        match self {
            Reply::Sync(tx) => {
                let _ = tx.send(r);
            }
            Reply::Async(tx) => {
                let _ = tx.send(r);
            }
            Reply::None => {}
        }
    }
}

enum Msg {
    Append(Req),
    /// Publish a final checkpoint, make sled durable, stop; answer when done.
    Close(mpsc::SyncSender<()>),
}

struct Req {
    kind: String,
    /// Canonical bytes of the entry's data, serialized by the caller.
    data: Vec<u8>,
    reply: Reply,
}

/// State readers share with the writer.
pub(super) struct Shared {
    pub entries: sled::Tree,
    pub checkpoints: sled::Tree,
    pub leaves: RwLock<Vec<Hash>>,
    pub latest_checkpoint: RwLock<Option<String>>,
    pub failed: AtomicBool,
    pub verifier: String,
}

/// The append side of the ledger.
pub struct Writer {
    tx: mpsc::Sender<Msg>,
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
        let data_file = data_dir.join("db").join("db");
        let entries = db.open_tree(ENTRIES)?;
        let checkpoints = db.open_tree(CHECKPOINTS)?;
        let mut frontier = Frontier::default();
        let mut leaves = Vec::with_capacity(entries.len());
        for (i, item) in entries.iter().enumerate() {
            let (k, v) = item?;
            let seq = key_seq(&k).ok_or_else(|| store_err("malformed entry key"))?;
            if seq != i as u64 {
                return Err(store_err(format!(
                    "entry {i} is missing (found {seq} next); run `clawser ledger verify`"
                )));
            }
            let (stored, bytes) =
                split_value(&v).ok_or_else(|| store_err(format!("entry {seq} is truncated")))?;
            let h = leaf_hash(bytes);
            if h != stored {
                return Err(store_err(format!(
                    "entry {seq} does not match its stored hash (altered on disk); run `clawser ledger verify`"
                )));
            }
            frontier.push(h);
            leaves.push(h);
        }
        // Replay acknowledged entries that reached the log but not sled's disk.
        let mut replayed = 0;
        for frame in read_frames(data_dir)? {
            let n = frontier.size();
            if frame.seq < n {
                continue;
            }
            if frame.seq > n {
                return Err(store_err(format!(
                    "the write-ahead log skips from entry {n} to {}",
                    frame.seq
                )));
            }
            let mut value = Vec::with_capacity(32 + frame.bytes.len());
            value.extend_from_slice(&frame.hash);
            value.extend_from_slice(&frame.bytes);
            entries.insert(frame.seq.to_be_bytes(), value)?;
            frontier.push(frame.hash);
            leaves.push(frame.hash);
            replayed += 1;
        }
        let mut wal = Wal::open(data_dir)?;
        let file = File::open(&data_file).map_err(Error::io("opening", &data_file))?;
        db.flush()?;
        file.sync_data().map_err(Error::io("syncing", &data_file))?;
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
            entries,
            checkpoints,
            leaves: RwLock::new(leaves),
            latest_checkpoint: RwLock::new(latest),
            failed: AtomicBool::new(false),
            verifier: verifier_key(&cfg.origin, &key.public()),
        });
        let (tx, rx) = mpsc::channel();
        let mut w = WriterThread {
            rx,
            db,
            file,
            wal,
            key,
            cfg,
            frontier,
            shared: shared.clone(),
            last_checkpoint: (0, Instant::now()),
        };
        w.last_checkpoint.0 = w.shared.latest_checkpoint.read().map_or(0, |c| {
            c.as_deref()
                .and_then(|n| Checkpoint::parse(n).ok())
                .map_or(0, |c| c.size)
        });
        std::thread::Builder::new()
            .name("clawser-ledger".into())
            .spawn(move || w.run())
            .map_err(|e| store_err(format!("starting the writer: {e}")))?;
        Ok(Writer { tx, shared })
    }

    fn submit(&self, kind: &str, data: Value, reply: Reply) -> Result<()> {
        if self.shared.failed.load(Ordering::SeqCst) {
            return Err(store_err(
                "a previous write failed; the ledger refuses appends until restarted",
            ));
        }
        self.tx
            .send(Msg::Append(Req {
                kind: kind.to_string(),
                data: canonical(&data),
                reply,
            }))
            .map_err(|_| store_err("the writer has stopped"))
    }

    /// Appends and waits until the entry is durable; returns its sequence number.
    pub async fn append(&self, kind: &str, data: Value) -> Result<u64> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.submit(kind, data, Reply::Async(tx))?;
        rx.await
            .map_err(|_| store_err("the writer stopped before answering"))?
    }

    /// Appends from synchronous code and waits until durable.
    pub fn append_blocking(&self, kind: &str, data: Value) -> Result<u64> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(kind, data, Reply::Sync(tx))?;
        rx.recv()
            .map_err(|_| store_err("the writer stopped before answering"))?
    }

    /// Publishes a final checkpoint over everything appended, makes the store durable and
    /// stops the writer (waits up to 10 s). Later appends fail.
    pub fn close(&self) {
        let (tx, rx) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Close(tx)).is_ok() {
            let _ = rx.recv_timeout(Duration::from_secs(10));
        }
    }

    /// Appends without waiting (the entry still goes through group commit).
    pub fn append_detached(&self, kind: &str, data: Value) {
        if let Err(e) = self.submit(kind, data, Reply::None) {
            tracing::error!(error = %e, kind, "ledger append failed");
        }
    }
}

/// Splits a stored value into (stored leaf hash, canonical bytes).
pub(super) fn split_value(v: &[u8]) -> Option<(Hash, &[u8])> {
    let (h, bytes) = v.split_at_checked(32)?;
    Some((h.try_into().ok()?, bytes))
}

/// Sequence number of a stored key.
pub(super) fn key_seq(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.try_into().ok()?))
}

struct WriterThread {
    rx: mpsc::Receiver<Msg>,
    db: sled::Db,
    file: File,
    wal: Wal,
    key: LedgerKey,
    cfg: LedgerConfig,
    frontier: Frontier,
    shared: Arc<Shared>,
    last_checkpoint: (u64, Instant),
}

impl WriterThread {
    fn run(&mut self) {
        loop {
            let first = match self.rx.recv_timeout(self.cfg.checkpoint_interval) {
                Ok(Msg::Append(r)) => r,
                Ok(Msg::Close(done)) => {
                    self.close();
                    let _ = done.send(());
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.maybe_checkpoint(true);
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => {
                    self.close();
                    return;
                }
            };
            let mut batch = vec![first];
            let mut closing = None;
            while batch.len() < self.cfg.max_batch {
                match self.rx.try_recv() {
                    Ok(Msg::Append(r)) => batch.push(r),
                    Ok(Msg::Close(done)) => {
                        closing = Some(done);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit(batch);
            self.maybe_checkpoint(false);
            if self.wal.len() > WAL_FLUSH_BYTES {
                self.make_sled_durable();
            }
            if let Some(done) = closing {
                self.close();
                let _ = done.send(());
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
        let mut sled_batch = sled::Batch::default();
        let mut frames = Vec::new();
        let mut hashes = Vec::with_capacity(batch.len());
        let time = crate::time::now_rfc3339();
        for (i, r) in batch.iter().enumerate() {
            let seq = first + i as u64;
            let bytes = assemble(seq, &time, &r.kind, &r.data);
            let h = leaf_hash(&bytes);
            hashes.push(h);
            Wal::frame(&mut frames, seq, &h, &bytes);
            let mut value = Vec::with_capacity(32 + bytes.len());
            value.extend_from_slice(&h);
            value.extend_from_slice(&bytes);
            sled_batch.insert(seq.to_be_bytes().to_vec(), value);
        }
        // A group nobody waits for (only detached appends) is written without its own sync;
        // the next waited-for group's sync, or the next checkpoint's, covers it.
        let someone_waits = batch.iter().any(|r| !matches!(r.reply, Reply::None));
        let logged = if someone_waits {
            self.wal.append_durable(&frames)
        } else {
            self.wal.append(&frames)
        };
        let durable = logged.and_then(|_| {
            self.shared
                .entries
                .apply_batch(sled_batch)
                .map_err(store_err)
        });
        match durable {
            Ok(()) => {
                for h in &hashes {
                    self.frontier.push(*h);
                }
                if let Ok(mut l) = self.shared.leaves.write() {
                    l.extend_from_slice(&hashes);
                }
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

    fn close(&mut self) {
        self.maybe_checkpoint(true);
        self.make_sled_durable();
    }

    /// Flushes sled and fdatasyncs its data file; then every logged entry is in sled on disk
    /// and the log can start over.
    fn make_sled_durable(&mut self) {
        let r = self
            .wal
            .sync()
            .and_then(|_| self.db.flush().map_err(store_err))
            .and_then(|_| self.file.sync_data().map_err(store_err))
            .and_then(|_| self.wal.truncate());
        if let Err(e) = r {
            tracing::error!(error = %e, "could not make the ledger store durable; the write-ahead log keeps growing");
        }
    }

    fn maybe_checkpoint(&mut self, timer: bool) {
        let size = self.frontier.size();
        let new = size.saturating_sub(self.last_checkpoint.0);
        let due = new >= self.cfg.checkpoint_every
            || (new > 0
                && (timer || self.last_checkpoint.1.elapsed() >= self.cfg.checkpoint_interval));
        if !due || self.shared.failed.load(Ordering::SeqCst) {
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
