//! The hand-off between appenders and the ledger's writer thread, and the read barrier.
//!
//! Appenders push onto one queue under a mutex. Only an append someone waits for (or a full
//! queue, a reader, or shutdown) wakes the writer: an append nobody waits for (e.g.
//! `request.completed`) rides with the next group, or is written when the writer's short
//! idle timer fires, so it costs no thread wake-up of its own.
//!
//! Entries are acknowledged once they are durable in the write-ahead log; the writer applies
//! them to sled in larger batches afterwards. The read barrier ([`Queue::visible`]) makes a
//! reader wait until every append queued before the read began (waited for or not) is
//! durable and in sled, so a caller that saw its append return, or that made a request whose
//! `request.completed` was queued, also sees the entry in every later read.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::Result;

/// How long an append nobody waits for may sit in the queue before the writer takes it.
pub const DETACHED_DELAY: Duration = Duration::from_millis(5);
/// How long a reader waits for queued entries to reach sled before it reads anyway.
const READ_BARRIER_WAIT: Duration = Duration::from_secs(10);

/// Who is told when an append is durable.
pub enum Reply {
    Sync(std::sync::mpsc::SyncSender<Result<u64>>),
    Async(tokio::sync::oneshot::Sender<Result<u64>>),
    None,
}

impl Reply {
    pub fn send(self, r: Result<u64>) {
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

    /// Whether someone waits for the answer.
    pub fn waits(&self) -> bool {
        !matches!(self, Reply::None)
    }
}

/// One append: its kind and the canonical bytes of its data, serialized by the caller.
pub struct Req {
    pub kind: String,
    pub data: Vec<u8>,
    pub reply: Reply,
}

#[derive(Default)]
struct State {
    reqs: Vec<Req>,
    /// Some queued append has a waiter.
    waited: bool,
    /// Queued appends nobody waits for (they have a budget of their own, so a flood of them
    /// cannot crowd out appends a request waits for).
    detached: usize,
    /// Shutdown was asked for; answered when the writer has finished.
    closing: Option<std::sync::mpsc::SyncSender<()>>,
    /// Shutdown was asked for: appends are refused from then on.
    closed: bool,
    /// A reader waits for queued entries to be applied to sled.
    apply_wanted: bool,
    /// Entries applied to sled (and visible to readers).
    applied: u64,
    /// Appends accepted so far (all time, counting the entries stored at start): once the
    /// writer has applied this many, every one of them is readable.
    pushed: u64,
    /// The writer has stopped (closed or failed): readers stop waiting.
    stopped: bool,
    /// The writer sleeps on a long timer: the first append nobody waits for wakes it.
    sleeping_long: bool,
}

/// Why an append was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The writer has stopped (closed or failed).
    Stopped,
    /// The queue holds its limit.
    Full,
}

/// What the writer takes from the queue in one go.
pub struct Taken {
    pub reqs: Vec<Req>,
    /// Shutdown was asked for and every queued append has been taken: finish, then `stop()`
    /// (which answers the caller of `close`).
    pub closing: bool,
    /// A reader is waiting: apply everything taken now.
    pub apply_now: bool,
    /// The wait ended on the timer with nothing queued.
    pub idle: bool,
}

/// The queue, shared by appenders, the writer and readers.
pub struct Queue {
    state: Mutex<State>,
    wake: Condvar,
    applied_cv: Condvar,
}

impl Queue {
    /// A queue whose first `applied` entries are already in sled.
    pub fn new(applied: u64) -> Queue {
        Queue {
            state: Mutex::new(State {
                applied,
                pushed: applied,
                ..State::default()
            }),
            wake: Condvar::new(),
            applied_cv: Condvar::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under panics (only plain field updates), so a poisoned
        // lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues an append (refused beyond `limit` queued); wakes the writer if someone waits
    /// for it or a batch is full.
    pub fn push(
        &self,
        req: Req,
        max_batch: usize,
        limit: usize,
    ) -> std::result::Result<(), Refused> {
        let mut s = self.lock();
        if s.stopped || s.closed {
            return Err(Refused::Stopped);
        }
        if s.reqs.len() >= limit {
            return Err(Refused::Full);
        }
        let waits = req.reply.waits();
        s.waited |= waits;
        s.pushed += 1;
        s.reqs.push(req);
        if waits || s.reqs.len() >= max_batch || (s.sleeping_long && s.reqs.len() == 1) {
            self.wake.notify_one();
        }
        Ok(())
    }

    /// Asks the writer to finish; `done` is answered when it has.
    pub fn close(&self, done: std::sync::mpsc::SyncSender<()>) -> bool {
        let mut s = self.lock();
        if s.stopped || s.closed {
            return false;
        }
        s.closed = true;
        s.closing = Some(done);
        self.wake.notify_one();
        true
    }

    /// Writer side: waits until there is work (or `idle_timeout` passes) and takes up to
    /// `max_batch` appends.
    pub fn take(&self, max_batch: usize, idle_timeout: Duration) -> Taken {
        let started = Instant::now();
        let mut s = self.lock();
        let mut idle = false;
        while !(s.waited || s.closed || s.apply_wanted || s.reqs.len() >= max_batch) {
            // Appends nobody waits for are taken within DETACHED_DELAY.
            let timeout = if s.reqs.is_empty() {
                idle_timeout
            } else {
                idle_timeout.min(DETACHED_DELAY)
            };
            let left = (started + timeout).saturating_duration_since(Instant::now());
            if left.is_zero() {
                // Idle: nothing came for the whole wait (a lone detached append is not).
                idle = s.reqs.is_empty();
                break;
            }
            s.sleeping_long = s.reqs.is_empty() && timeout > DETACHED_DELAY;
            s = match self.wake.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
            s.sleeping_long = false;
        }
        let reqs = if s.reqs.len() <= max_batch {
            std::mem::take(&mut s.reqs)
        } else {
            s.reqs.drain(..max_batch).collect()
        };
        s.waited = s.reqs.iter().any(|r| r.reply.waits());
        s.detached = s.reqs.iter().filter(|r| !r.reply.waits()).count();
        let apply_now = s.apply_wanted;
        // A reader keeps the writer going until it has taken (and applied) everything.
        s.apply_wanted &= !s.reqs.is_empty();
        let closing = s.closed && s.reqs.is_empty();
        Taken {
            reqs,
            closing,
            apply_now,
            idle,
        }
    }

    /// Writer side: `n` entries in total are in sled.
    pub fn applied(&self, n: u64) {
        let mut s = self.lock();
        s.applied = n;
        self.applied_cv.notify_all();
    }

    /// Writer side: no more entries will be written (stopped or failed). Queued appends are
    /// refused and a pending shutdown request is answered.
    pub fn stop(&self) {
        let mut s = self.lock();
        s.stopped = true;
        let mut dropped = 0;
        for r in s.reqs.drain(..) {
            if !r.reply.waits() {
                dropped += 1;
            }
            r.reply.send(Err(crate::error::Error::Store(
                "ledger: the writer has stopped".into(),
            )));
        }
        if dropped > 0 {
            tracing::error!(
                dropped,
                "ledger stopped with appends nobody waited for still queued; they are not recorded"
            );
        }
        if let Some(done) = s.closing.take() {
            let _ = done.send(());
        }
        self.applied_cv.notify_all();
    }

    /// Reader side: waits until every append queued so far is in sled (at most
    /// `READ_BARRIER_WAIT`; the writer takes, syncs and applies at once when asked).
    pub fn visible(&self) {
        let mut s = self.lock();
        let want = s.pushed;
        if s.applied >= want || s.stopped {
            return;
        }
        s.apply_wanted = true;
        self.wake.notify_one();
        let deadline = Instant::now() + READ_BARRIER_WAIT;
        while s.applied < want && !s.stopped {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!("ledger: queued entries not yet readable; reading anyway");
                return;
            }
            s = match self.applied_cv.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(reply: Reply) -> Req {
        Req {
            kind: "k".into(),
            data: b"{}".to_vec(),
            reply,
        }
    }

    #[test]
    fn a_full_queue_refuses_appends() {
        let q = Queue::new(0);
        assert!(q.push(req(Reply::None), 8, 2).is_ok());
        assert!(q.push(req(Reply::None), 8, 2).is_ok());
        assert_eq!(q.push(req(Reply::None), 8, 2).err(), Some(Refused::Full));
        let t = q.take(8, Duration::from_millis(1));
        assert_eq!(t.reqs.len(), 2);
        assert!(
            q.push(req(Reply::None), 8, 2).is_ok(),
            "room again once taken"
        );
    }

    #[test]
    fn an_append_nobody_waits_for_does_not_wake_the_writer() {
        let q = Queue::new(0);
        assert!(q.push(req(Reply::None), 8, usize::MAX).is_ok());
        let started = Instant::now();
        let t = q.take(8, Duration::from_secs(60));
        assert!(
            started.elapsed() >= DETACHED_DELAY,
            "only the timer ends the wait"
        );
        assert!(!t.idle, "an append was queued");
        assert_eq!(t.reqs.len(), 1);
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        assert!(q.push(req(Reply::Sync(tx)), 8, usize::MAX).is_ok());
        let t = q.take(8, Duration::from_secs(60));
        assert!(!t.idle);
        assert_eq!(t.reqs.len(), 1);
    }

    #[test]
    fn an_append_nobody_waits_for_ends_a_long_idle_sleep_within_the_delay() {
        let q = std::sync::Arc::new(Queue::new(0));
        let writer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let t = q.take(8, Duration::from_secs(3600));
                (t.reqs.len(), t.idle)
            })
        };
        while !q.lock().sleeping_long {
            std::thread::yield_now();
        }
        assert!(q.push(req(Reply::None), 8, usize::MAX).is_ok());
        assert_eq!(writer.join().unwrap(), (1, false));
    }

    #[test]
    fn a_full_queue_is_taken_in_batches_and_close_waits_for_the_last() {
        let q = Queue::new(0);
        for _ in 0..5 {
            assert!(q.push(req(Reply::None), 2, usize::MAX).is_ok());
        }
        let (tx, _rx) = std::sync::mpsc::sync_channel(1);
        assert!(q.close(tx));
        assert!(
            q.push(req(Reply::None), 2, usize::MAX).is_err(),
            "closing refuses appends"
        );
        let sizes: Vec<(usize, bool)> = (0..3)
            .map(|_| {
                let t = q.take(2, Duration::from_secs(60));
                (t.reqs.len(), t.closing)
            })
            .collect();
        assert_eq!(sizes, vec![(2, false), (2, false), (1, true)]);
    }

    #[test]
    fn a_reader_waits_for_queued_entries_to_be_applied() {
        let q = std::sync::Arc::new(Queue::new(0));
        // Nobody waits for these, so only the reader makes the writer take them at once.
        for _ in 0..3 {
            assert!(q.push(req(Reply::None), 2, usize::MAX).is_ok());
        }
        let reader = {
            let q = q.clone();
            std::thread::spawn(move || {
                q.visible();
                q.lock().applied
            })
        };
        while !q.lock().apply_wanted {
            std::thread::yield_now();
        }
        // The writer takes a full batch, then (the reader still waiting) the rest at once,
        // even though nobody waits for it and the idle delay has not passed.
        let t = q.take(2, Duration::from_secs(60));
        assert_eq!(t.reqs.len(), 2);
        assert!(t.apply_now, "the reader asked for the entries");
        let t = q.take(8, Duration::from_secs(60));
        assert!(
            t.apply_now,
            "still asked for: taken at once, not on the idle timer"
        );
        assert_eq!(t.reqs.len(), 1);
        assert!(!q.lock().apply_wanted, "nothing left to take");
        q.applied(3);
        assert_eq!(reader.join().unwrap(), 3);
    }
}
