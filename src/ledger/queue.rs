//! The hand-off between appenders and the ledger's writer thread, and the read barrier.
//!
//! An appender that holds the committer (`commit.rs`) takes everything queued along with
//! its own append and commits the group itself ([`Queue::push_or_lead`]). Other appenders
//! push onto one queue under a mutex. Only an append someone waits for (or a full
//! queue, a reader, or shutdown) wakes the writer: an append nobody waits for (e.g.
//! `request.completed`) rides with the next group, or is written when the writer's short
//! idle timer fires, so it costs no thread wake-up of its own.
//!
//! Entries are acknowledged once they are durable in the write-ahead log; the writer applies
//! them to sled in larger batches afterwards. The read barrier ([`Queue::visible`]) makes a
//! reader wait until every append queued before the read began (waited for or not) is
//! durable and in sled, so a caller that saw its append return, or that made a request whose
//! `request.completed` was queued, also sees the entry in every later read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::Result;

/// How long an append nobody waits for may sit in the queue before the writer takes it.
pub const DETACHED_DELAY: Duration = Duration::from_millis(5);
/// How long the writer goes on waiting while appenders commit their own groups (not idle)
/// before it returns to check for a checkpoint that is due by time (it returns after at most
/// this plus one idle timeout).
const BUSY_RETURN: Duration = Duration::from_secs(1);
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
    /// When the oldest queued append was queued (None when nothing is queued): an append
    /// nobody waits for is taken `DETACHED_DELAY` after it was queued, unless an appender
    /// that commits its own group takes it first.
    oldest: Option<Instant>,
    /// An appender that committed its own group left work for the writer thread.
    poked: bool,
    /// The writer thread has work and is about to take the committer: appenders queue.
    writer_next: bool,
    /// Appends someone waits for overlap (one had to queue behind another's commit): the
    /// writer thread commits for everyone, in larger groups, until a group it takes has at
    /// most one waiter. Appenders commit their own groups only while appends do not overlap,
    /// where that saves two thread wake-ups; under load it would only block runtime workers
    /// on the log and split groups.
    contended: bool,
}

/// Why an append was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The writer has stopped (closed or failed).
    Stopped,
    /// The queue holds its limit.
    Full,
}

/// What became of an append.
pub enum Pushed {
    /// Queued: the writer thread commits it.
    Queued,
    /// The caller commits this group itself: everything that was queued, then its append.
    Lead(Vec<Req>),
}

/// What the writer takes from the queue in one go.
pub struct Taken {
    pub reqs: Vec<Req>,
    /// Shutdown was asked for and every queued append has been taken: finish, then `stop()`
    /// (which answers the caller of `close`).
    pub closing: bool,
    /// A reader is waiting: apply everything taken now.
    pub apply_now: bool,
    /// The wait ended on the timer with no append at all since it began.
    pub idle: bool,
}

/// The queue, shared by appenders, the writer and readers.
pub struct Queue {
    state: Mutex<State>,
    /// Neither `contended` nor `writer_next` (a hint read without the lock, so that under
    /// load an appender does not take the committer only to find it must queue).
    may_lead: AtomicBool,
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
            may_lead: AtomicBool::new(true),
            wake: Condvar::new(),
            applied_cv: Condvar::new(),
        }
    }

    /// Whether an appender may commit its own group now (a hint; [`Queue::push_or_lead`]
    /// decides).
    pub fn may_lead(&self) -> bool {
        self.may_lead.load(Ordering::Relaxed)
    }

    fn set_may_lead(&self, s: &State) {
        self.may_lead
            .store(!s.contended && !s.writer_next, Ordering::Relaxed);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under panics (only plain field updates), so a poisoned
        // lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues an append (refused beyond `limit` queued); wakes the writer if someone waits
    /// for it or a batch is full. With `lead` (the caller holds the committer and waits for
    /// its append), fewer than `max_batch` queued and the writer thread not about to commit,
    /// nothing is queued: the caller gets every queued append followed by its own, to commit
    /// now.
    pub fn push_or_lead(
        &self,
        req: Req,
        max_batch: usize,
        limit: usize,
        lead: bool,
    ) -> std::result::Result<Pushed, Refused> {
        let mut s = self.lock();
        if s.stopped || s.closed {
            return Err(Refused::Stopped);
        }
        let lead = lead && !s.writer_next && !s.contended && s.reqs.len() < max_batch;
        if !lead && s.reqs.len() >= limit {
            return Err(Refused::Full);
        }
        s.pushed += 1;
        if lead {
            let mut group = std::mem::take(&mut s.reqs);
            group.push(req);
            s.waited = false;
            s.detached = 0;
            s.oldest = None;
            return Ok(Pushed::Lead(group));
        }
        let waits = req.reply.waits();
        s.waited |= waits;
        if waits && !s.contended {
            s.contended = true;
            self.set_may_lead(&s);
        }
        if s.reqs.is_empty() {
            s.oldest = Some(Instant::now());
        }
        s.reqs.push(req);
        if waits || s.reqs.len() >= max_batch || (s.sleeping_long && s.reqs.len() == 1) {
            self.wake.notify_one();
        }
        Ok(Pushed::Queued)
    }

    /// Queues an append for the writer thread (see [`Queue::push_or_lead`]).
    #[cfg(test)]
    pub fn push(
        &self,
        req: Req,
        max_batch: usize,
        limit: usize,
    ) -> std::result::Result<(), Refused> {
        self.push_or_lead(req, max_batch, limit, false).map(|_| ())
    }

    /// Wakes the writer thread for work an appender's own commit left (a sled batch, a
    /// checkpoint, a log flush, a failure to act on).
    pub fn poke(&self) {
        let mut s = self.lock();
        s.poked = true;
        self.wake.notify_one();
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

    /// Writer side: waits until there is work (or `idle_timeout` passes); true when the
    /// wait ended on the timer with no append at all since it began (idle: appenders that
    /// commit their own groups keep it busy). From then until [`Queue::drain`],
    /// appenders queue rather than commit their own groups, so the writer gets the committer
    /// next and the queue keeps its order.
    pub fn wait(&self, max_batch: usize, idle_timeout: Duration) -> bool {
        let begun = Instant::now();
        let mut started = begun;
        let mut s = self.lock();
        let mut pushed = s.pushed;
        let mut idle = false;
        while !(s.waited || s.closed || s.apply_wanted || s.poked || s.reqs.len() >= max_batch) {
            // Appends nobody waits for are taken within DETACHED_DELAY of being queued.
            let mut deadline = started + idle_timeout;
            if let Some(t) = s.oldest {
                deadline = deadline.min(t + DETACHED_DELAY);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                if !s.reqs.is_empty() {
                    // A detached append's delay is up: take it (not idle).
                    break;
                }
                if s.pushed != pushed {
                    // Appenders committed their own groups meanwhile: busy, not idle. What
                    // they leave is applied when they fill a batch (they poke) or once
                    // appends stop. (Applying on every timer instead rewrote sled's current
                    // block every few milliseconds under steady one-connection load, and
                    // sled's writes queue on the disk in front of the durable writes
                    // requests wait for.) Wait another period, but return once BUSY_RETURN
                    // has passed so that a checkpoint due by time is signed.
                    if begun.elapsed() < BUSY_RETURN {
                        started = Instant::now();
                        pushed = s.pushed;
                        continue;
                    }
                    break;
                }
                // Idle: no append at all for the whole wait.
                idle = true;
                break;
            }
            s.sleeping_long = s.reqs.is_empty() && left > DETACHED_DELAY;
            s = match self.wake.wait_timeout(s, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
            s.sleeping_long = false;
        }
        s.poked = false;
        s.writer_next = true;
        self.set_may_lead(&s);
        idle
    }

    /// Writer side, holding the committer: takes up to `max_batch` appends (`idle` is what
    /// [`Queue::wait`] returned).
    pub fn drain(&self, max_batch: usize, idle: bool) -> Taken {
        let mut s = self.lock();
        s.writer_next = false;
        let reqs = if s.reqs.len() <= max_batch {
            std::mem::take(&mut s.reqs)
        } else {
            // Those left are younger than `oldest`: their deadline only comes earlier.
            s.reqs.drain(..max_batch).collect()
        };
        if s.reqs.is_empty() {
            s.oldest = None;
        }
        s.waited = s.reqs.iter().any(|r| r.reply.waits());
        s.detached = s.reqs.iter().filter(|r| !r.reply.waits()).count();
        s.contended = s.waited || reqs.iter().filter(|r| r.reply.waits()).count() > 1;
        self.set_may_lead(&s);
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

    /// [`Queue::wait`], then [`Queue::drain`].
    #[cfg(test)]
    pub fn take(&self, max_batch: usize, idle_timeout: Duration) -> Taken {
        let idle = self.wait(max_batch, idle_timeout);
        self.drain(max_batch, idle)
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
mod tests;
