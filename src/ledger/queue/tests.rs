//! Tests of the hand-off queue and the read barrier.

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
    let started = Instant::now();
    assert!(q.push(req(Reply::None), 8, usize::MAX).is_ok());
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

#[test]
fn a_leader_takes_everything_queued_and_the_read_barrier_counts_its_append() {
    let q = Queue::new(0);
    assert!(q.push(req(Reply::None), 8, usize::MAX).is_ok());
    let (tx, _rx) = std::sync::mpsc::sync_channel(1);
    match q.push_or_lead(req(Reply::Sync(tx)), 8, usize::MAX, true) {
        Ok(Pushed::Lead(group)) => assert_eq!(group.len(), 2),
        _ => panic!("the caller should lead"),
    }
    {
        let s = q.lock();
        assert_eq!(s.pushed, 2, "a reader waits for the leader's entries too");
        assert!(s.reqs.is_empty() && s.oldest.is_none() && !s.waited);
    }
    // The writer finds nothing to take: its wait ends on the timer, idle.
    let t = q.take(8, Duration::from_millis(20));
    assert!(t.idle && t.reqs.is_empty());
    // With a full batch queued, the caller queues instead of leading.
    for _ in 0..2 {
        assert!(q.push(req(Reply::None), 2, usize::MAX).is_ok());
    }
    assert!(matches!(
        q.push_or_lead(req(Reply::None), 2, usize::MAX, true),
        Ok(Pushed::Queued)
    ));
}

/// Under steady one-connection load the appenders commit every group themselves and the
/// writer finds its queue empty on each timer: that is not idle (it would apply to sled,
/// rewriting the current block, every few milliseconds).
#[test]
fn appenders_that_commit_their_own_groups_keep_the_writer_from_idling() {
    let q = std::sync::Arc::new(Queue::new(0));
    // Long enough that the append below lands within the writer's first period even on a
    // loaded machine; two periods stay under BUSY_RETURN.
    let timer = Duration::from_millis(400);
    assert!(timer * 2 < BUSY_RETURN);
    let started = Instant::now();
    let writer = {
        let q = q.clone();
        std::thread::spawn(move || {
            let t0 = Instant::now();
            let idle = q.wait(8, timer);
            (idle, t0.elapsed())
        })
    };
    while !q.lock().sleeping_long {
        assert!(started.elapsed() < timer, "the writer never went to sleep");
        std::thread::yield_now();
    }
    let (tx, _rx) = std::sync::mpsc::sync_channel(1);
    let led = matches!(
        q.push_or_lead(req(Reply::Sync(tx)), 8, usize::MAX, true),
        Ok(Pushed::Lead(_))
    );
    let pushed_after = started.elapsed();
    let (idle, waited) = writer.join().unwrap();
    assert!(idle, "idle once the appends stopped");
    // (Only if this thread was not held up past the writer's first period.)
    if led && pushed_after < timer {
        assert!(
            waited >= timer * 2,
            "the timer that followed an append did not end the wait ({waited:?})"
        );
    }
}

/// ...but while they go on, the writer still returns now and then (a checkpoint may be due
/// by time), without calling it idle.
#[test]
fn a_writer_kept_busy_by_appenders_returns_within_busy_return() {
    let q = std::sync::Arc::new(Queue::new(0));
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let appender = {
        let (q, done) = (q.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                let (tx, _rx) = std::sync::mpsc::sync_channel(1);
                if let Ok(Pushed::Lead(group)) =
                    q.push_or_lead(req(Reply::Sync(tx)), 8, usize::MAX, true)
                {
                    drop(group);
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        })
    };
    let timer = Duration::from_millis(200);
    let t0 = Instant::now();
    let idle = q.wait(8, timer);
    let waited = t0.elapsed();
    done.store(true, Ordering::Relaxed);
    appender.join().unwrap();
    assert!(!idle, "busy, not idle");
    assert!(waited >= BUSY_RETURN, "{waited:?}");
    assert!(waited < BUSY_RETURN + timer * 10, "returned ({waited:?})");
}

#[test]
fn a_poke_ends_the_writers_long_wait() {
    let q = std::sync::Arc::new(Queue::new(0));
    let writer = {
        let q = q.clone();
        std::thread::spawn(move || q.take(8, Duration::from_secs(3600)).idle)
    };
    while !q.lock().sleeping_long {
        std::thread::yield_now();
    }
    q.poke();
    assert!(!writer.join().unwrap(), "woken by the poke, not the timer");
    assert!(!q.lock().poked, "the poke was taken");
}

#[test]
fn once_appends_overlap_the_writer_commits_until_a_group_has_one_waiter() {
    let q = Queue::new(0);
    let waited = || {
        let (tx, _) = std::sync::mpsc::sync_channel(1);
        req(Reply::Sync(tx))
    };
    // One append queued behind a commit (its caller could not take the committer).
    assert!(matches!(
        q.push_or_lead(waited(), 8, usize::MAX, false),
        Ok(Pushed::Queued)
    ));
    // The next caller could lead, but appends overlap: it queues.
    assert!(matches!(
        q.push_or_lead(waited(), 8, usize::MAX, true),
        Ok(Pushed::Queued)
    ));
    assert_eq!(q.take(8, Duration::ZERO).reqs.len(), 2);
    // That group had two waiters: still overlapping.
    assert!(matches!(
        q.push_or_lead(waited(), 8, usize::MAX, true),
        Ok(Pushed::Queued)
    ));
    assert_eq!(q.take(8, Duration::ZERO).reqs.len(), 1);
    // A group of one: appenders commit their own again.
    assert!(matches!(
        q.push_or_lead(waited(), 8, usize::MAX, true),
        Ok(Pushed::Lead(_))
    ));
}
