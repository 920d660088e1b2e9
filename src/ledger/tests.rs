//! Tests of the ledger as a whole (open, append, limits, reopen).

use super::*;

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
