//! Tests of the ledger as a whole (open, append, limits, reopen).

use super::*;
use crate::error::Error;

fn cfg() -> LedgerConfig {
    LedgerConfig {
        checkpoint_every: 1000,
        checkpoint_interval: std::time::Duration::from_secs(10),
        max_batch: 64,
        apply_batch: 16,
        max_queue: 1024,
        origin: "clawser.test/ledger".into(),
    }
}

#[tokio::test]
async fn an_entry_larger_than_a_log_frame_is_refused_before_it_is_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let ledger = Ledger::open(db, dir.path(), cfg()).unwrap();
    let big = "x".repeat(wal::MAX_FRAME);
    let r = ledger
        .append("request.decided", serde_json::json!({ "big": big }))
        .await;
    assert!(matches!(r, Err(Error::Invalid(_))), "{r:?}");
    // Large values (sled keeps them in blobs/) are fine below the limit and survive a reopen.
    let large = "y".repeat(1 << 20);
    let seq = ledger
        .append("request.decided", serde_json::json!({ "large": large }))
        .await
        .unwrap();
    assert_eq!(seq, 0);
    ledger.close();
    drop(ledger);
    let reopened = read_stored(
        &crate::testutil::reopen_sled(&dir.path().join("db")),
        dir.path(),
        "clawser.test/ledger",
    )
    .unwrap();
    assert_eq!(reopened.0.len(), 1);
}

/// Leaf hashes are read from the store for a proof (none are kept in memory), and a proof
/// still verifies after a reopen.
#[tokio::test]
async fn proofs_read_leaf_hashes_from_the_store_and_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.checkpoint_every = 4;
    let check = |ledger: &Ledger, seq: u64| {
        let p = ledger.proof(seq).unwrap();
        let cp = note::Checkpoint::parse(&p.checkpoint).unwrap();
        let leaf: Hash = hex::decode(&p.leaf_hash).unwrap().try_into().unwrap();
        let path: Vec<Hash> = p
            .proof
            .iter()
            .map(|h| hex::decode(h).unwrap().try_into().unwrap())
            .collect();
        assert!(merkle::verify_inclusion(
            seq, cp.size, &leaf, &path, &cp.root
        ));
        assert!(!merkle::verify_inclusion(
            seq + 1,
            cp.size,
            &leaf,
            &path,
            &cp.root
        ));
    };
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        let ledger = Ledger::open(db, dir.path(), c.clone()).unwrap();
        for i in 0..10 {
            ledger
                .append("request.decided", serde_json::json!({ "i": i }))
                .await
                .unwrap();
        }
        assert_eq!(ledger.size(), 10);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while ledger.proof(7).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "no checkpoint covers entry 7"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        check(&ledger, 3);
        check(&ledger, 7);
        ledger.close();
    }
    let db = crate::testutil::reopen_sled(&dir.path().join("db"));
    let ledger = Ledger::open(db, dir.path(), c).unwrap();
    assert_eq!(ledger.size(), 10);
    check(&ledger, 5);
}

/// A ledger written before blocks (one sled key per entry in `ledger.entries`) opens as it
/// is: its entries are read, verified and proven, and new entries follow them in blocks.
#[tokio::test]
async fn a_ledger_of_single_entry_values_is_read_and_continued_in_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("db");
    {
        let db = sled::open(&db_path).unwrap();
        let legacy = db.open_tree(block::LEGACY).unwrap();
        for seq in 0..5u64 {
            let data = serde_json::json!({ "old": seq });
            let bytes = entry::canonical_entry(seq, "2026-11-01T00:00:00Z", "agent.created", &data);
            let mut value = merkle::leaf_hash(&bytes).to_vec();
            value.extend_from_slice(&bytes);
            legacy.insert(seq.to_be_bytes(), value).unwrap();
        }
        db.flush().unwrap();
    }
    let mut c = cfg();
    c.checkpoint_every = 4;
    let db = crate::testutil::reopen_sled(&db_path);
    let ledger = Ledger::open(db.clone(), dir.path(), c).unwrap();
    assert_eq!(ledger.size(), 5);
    for i in 0..20 {
        let seq = ledger
            .append("request.decided", serde_json::json!({ "new": i }))
            .await
            .unwrap();
        assert_eq!(seq, 5 + i);
    }
    assert_eq!(ledger.size(), 25);
    let all = ledger.entries(&Filter::default()).unwrap();
    let seqs: Vec<u64> = all.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (0..25).collect::<Vec<_>>());
    assert_eq!(all[2].data["old"], 2);
    assert_eq!(all[7].data["new"], 2);
    // Reads that start inside the legacy part, at its end, and inside a block.
    for after in [1u64, 4, 9, 23] {
        let f = Filter {
            after: Some(after),
            ..Filter::default()
        };
        let got: Vec<u64> = ledger.entries(&f).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(got, (after + 1..25).collect::<Vec<_>>(), "after {after}");
    }
    assert!(
        db.open_tree(block::BLOCKS).unwrap().len() < 20,
        "entries are grouped"
    );
    // A Clawser from before blocks, reading the legacy tree in order, finds a gap after
    // entry 4 and refuses to start rather than append beside the blocks.
    let legacy: Vec<u64> = db
        .open_tree(block::LEGACY)
        .unwrap()
        .iter()
        .map(|kv| u64::from_be_bytes(kv.unwrap().0.as_ref().try_into().unwrap()))
        .collect();
    assert_eq!(legacy, [0, 1, 2, 3, 4, u64::MAX]);
    ledger.close();
    let report = ledger.verify(None).unwrap().unwrap();
    assert_eq!(report.entries, 25);
    let p = ledger.proof(3).unwrap();
    let cp = note::Checkpoint::parse(&p.checkpoint).unwrap();
    assert_eq!(cp.size, 25);
}

/// A byte changed inside a compressed block on disk (not rewritten consistently, as
/// tests/ledger.rs does) stops the ledger at open with a sequence number, never a panic.
#[tokio::test]
async fn a_corrupted_compressed_block_stops_the_ledger_with_a_sequence_number() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("db");
    {
        let ledger = Ledger::open(sled::open(&db_path).unwrap(), dir.path(), cfg()).unwrap();
        for i in 0..40 {
            let data = serde_json::json!({ "path": "/small", "outcome": "allow", "i": i });
            ledger.append("request.decided", data).await.unwrap();
        }
        ledger.close();
    }
    let db = crate::testutil::reopen_sled(&db_path);
    let blocks = db.open_tree(block::BLOCKS).unwrap();
    let (k, v) = blocks.iter().next().unwrap().unwrap();
    assert_eq!(v[0], 2, "entries like these are stored compressed");
    for at in [6, v.len() / 2, v.len() - 2] {
        let mut bad = v.to_vec();
        bad[at] ^= 0x5a;
        blocks.insert(&k, bad).unwrap();
        db.flush().unwrap();
        let err = match Ledger::open(db.clone(), dir.path(), cfg()) {
            Ok(_) => panic!("a changed byte at {at} went unnoticed"),
            Err(e) => e.to_string(),
        };
        assert!(
            (err.contains("block ") || err.contains("entry ")) && err.contains("ledger verify"),
            "{at}: {err}"
        );
    }
}

/// An append someone waits for, with nobody else committing, is committed on the caller's
/// thread; the writer thread still checkpoints when enough entries are new (the appender
/// wakes it), and a reader sees every entry at once (the read barrier makes the writer
/// apply what appenders committed).
#[tokio::test]
async fn an_appender_commits_its_own_group_and_the_writer_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = cfg();
    c.checkpoint_every = 3;
    c.checkpoint_interval = std::time::Duration::from_secs(3600);
    c.apply_batch = 1000;
    let db = sled::open(dir.path().join("db")).unwrap();
    let ledger = Ledger::open(db, dir.path(), c).unwrap();
    // The writer's first short wait ends; from then on it sleeps for the checkpoint interval.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    for i in 0..3u64 {
        let seq = ledger
            .append("k", serde_json::json!({ "i": i }))
            .await
            .unwrap();
        assert_eq!(seq, i);
    }
    assert_eq!(
        ledger.group_counts(),
        (3, 0),
        "each append led its own group"
    );
    // Without the appender's poke, the checkpoint would wait for the hour-long interval.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while ledger.latest_checkpoint().is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint after 3 entries"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let cp = note::Checkpoint::parse(&ledger.latest_checkpoint().unwrap()).unwrap();
    assert_eq!(cp.size, 3);
    // Two more: not applied to sled by anyone (below apply_batch, no checkpoint due), but a
    // reader waits for them.
    for i in 3..5u64 {
        ledger
            .append("k", serde_json::json!({ "i": i }))
            .await
            .unwrap();
    }
    let started = std::time::Instant::now();
    assert_eq!(ledger.size(), 5);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "the read barrier waited for its timeout"
    );
    assert_eq!(ledger.entries(&Filter::default()).unwrap().len(), 5);
}

/// Appenders on many threads, some committing their own groups and some handing off to
/// the writer thread, with detached appends in between: every entry gets its own sequence
/// number, none is lost, and the stored ledger verifies.
#[test]
fn concurrent_appenders_and_the_writer_share_one_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let ledger = Ledger::open(db, dir.path(), cfg()).unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                let mut seqs = Vec::new();
                for i in 0..50 {
                    let data = serde_json::json!({ "t": t, "i": i });
                    seqs.push(ledger.append_blocking("k", data).unwrap());
                    ledger.append_detached("d", serde_json::json!({ "t": t, "i": i }));
                }
                seqs
            })
        })
        .collect();
    let mut seqs: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 400, "a sequence number was given twice");
    let (by_appender, _) = ledger.group_counts();
    assert!(by_appender > 0, "no appender committed its own group");
    assert_eq!(ledger.size(), 800, "an append was lost");
    let report = ledger.verify(None).unwrap().unwrap();
    assert_eq!(report.entries, 800);
    ledger.close();
}

/// With other requests in flight, an append is handed to the writer thread (the runtime
/// worker goes on computing while the log is written); alone, it commits its own group.
#[tokio::test]
async fn appends_are_handed_to_the_writer_while_other_requests_are_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::open(dir.path().join("db")).unwrap();
    let ledger = Ledger::open(db, dir.path(), cfg()).unwrap();
    // Counted as differences: what the ledger commits by itself after opening (its first
    // entries, a checkpoint) may land in the writer's count at any time on a loaded machine.
    let mine = ledger.busy();
    let other = ledger.busy();
    let (appender0, writer0) = ledger.group_counts();
    ledger.append("k", serde_json::json!({})).await.unwrap();
    let (appender1, writer1) = ledger.group_counts();
    assert_eq!(
        appender1, appender0,
        "an append committed its own group while others were in flight"
    );
    assert!(writer1 > writer0, "the writer thread committed nothing");
    drop(other);
    // Alone, an append commits its own group unless the writer thread still holds the
    // committer (finishing the previous group: applying it, a checkpoint), which a loaded
    // machine can stretch; so a few tries, each a durable append.
    let mut tries = 0;
    while ledger.group_counts().0 == appender1 && tries < 50 {
        ledger.append("k", serde_json::json!({})).await.unwrap();
        tries += 1;
        if ledger.group_counts().0 == appender1 {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
    assert!(
        ledger.group_counts().0 > appender1,
        "alone, no append committed its own group in {tries} tries"
    );
    drop(mine);
}
