//! Ledger benchmarks (`cargo bench --bench ledger`):
//! - durable appends per second at 1, 16 and 64 concurrent writers (group commit: flush +
//!   fdatasync before each acknowledgement), on the data dir's disk;
//! - disk bytes per entry;
//! - verification time: the data dir written above (sled read + verify), and 1M entries
//!   with a checkpoint every 1000 (the pure verifier, in memory).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clawser::ledger::entry::canonical_entry;
use clawser::ledger::key::LedgerKey;
use clawser::ledger::merkle::{leaf_hash, Frontier};
use clawser::ledger::note::{sign_note, verifier_key, Checkpoint};
use clawser::ledger::{read_stored, verify::verify, Ledger, LedgerConfig};

fn entry_data(i: u64) -> serde_json::Value {
    serde_json::json!({
        "request_id": format!("req_{i:016x}"), "agent": "oc-1", "on_behalf_of": "alice", "runtime": "openclaw",
        "job": "job_3f9a0c1d2e4b5a69", "credential": "cred_0123456789abcdef", "outcome": "allow", "reasons": [],
        "approvers": null, "grants_used": [], "policy_rev": "d97d19723c66d97d19723c66d97d19723c66d97d19723c66d97d19723c66abcd",
        "policy_error": false, "target": {"env": "staging", "service": "github"},
        "request": {"method": "POST", "scheme": "https", "host": "api.github.com", "port": 443,
                    "path": "/repos/acme/api/pulls/7/merge", "query": {}, "header_names": ["accept", "authorization", "content-type", "user-agent"],
                    "body": {"size": 123, "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "truncated": false},
                    "tls": {"sni": "api.github.com", "intercepted": true}}
    })
}

fn dir_size(p: &std::path::Path) -> u64 {
    std::fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| {
                    let m = e.metadata().unwrap();
                    if m.is_dir() {
                        dir_size(&e.path())
                    } else {
                        m.len()
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

fn main() {
    let secs: u64 = std::env::var("BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    let base = std::env::current_dir().unwrap().join("target/bench-ledger");
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    let cfg = LedgerConfig {
        checkpoint_every: 1000,
        checkpoint_interval: Duration::from_secs(10),
        max_batch: 1024,
        apply_batch: 256,
        max_queue: 65_536,
        origin: "clawser.bench/ledger".into(),
    };
    let db = sled::open(base.join("db")).unwrap();
    let ledger = Ledger::open(db.clone(), &base, cfg.clone()).unwrap();
    println!("durable appends (group commit: one write-ahead-log write + fdatasync before each ack), {secs}s per run:");
    for writers in [1usize, 16, 64] {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let start = Instant::now();
        let handles: Vec<_> = (0..writers)
            .map(|w| {
                let (l, stop, count) = (ledger.clone(), stop.clone(), count.clone());
                std::thread::spawn(move || {
                    let mut i = (w as u64) << 40;
                    while !stop.load(Ordering::Relaxed) {
                        l.append_blocking("request.decided", entry_data(i)).unwrap();
                        count.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs(secs));
        stop.store(true, Ordering::Relaxed);
        for h in handles {
            h.join().unwrap();
        }
        let n = count.load(Ordering::Relaxed);
        println!(
            "  {writers:>2} writers: {:>8.0} appends/s ({n} in {:.1}s)",
            n as f64 / start.elapsed().as_secs_f64(),
            start.elapsed().as_secs_f64()
        );
    }
    let size = ledger.size();
    drop(ledger);
    std::thread::sleep(Duration::from_millis(200));
    db.flush().unwrap();
    let bytes = dir_size(&base.join("db"));
    let one = serde_json::to_vec(&entry_data(1)).unwrap().len();
    println!("disk: {size} entries, {bytes} bytes in the sled dir = {:.0} bytes/entry (entry JSON ~{one} bytes + 32-byte hash)", bytes as f64 / size as f64);

    let t = Instant::now();
    let (entries, cps, vkey) = read_stored(&db, &base, &cfg.origin).unwrap();
    let read = t.elapsed();
    let r = verify(entries, &cps, &vkey, None).unwrap();
    println!(
        "verify data dir: {} entries, {} checkpoints in {:.2}s (read {:.2}s) = {:.2} us/entry",
        r.entries,
        r.checkpoints,
        t.elapsed().as_secs_f64(),
        read.as_secs_f64(),
        t.elapsed().as_secs_f64() * 1e6 / r.entries as f64
    );

    let n = 1_000_000u64;
    let key = LedgerKey::from_seed(&[5u8; 32]).unwrap();
    let origin = "clawser.bench/1m";
    let mut f = Frontier::default();
    let mut entries = Vec::with_capacity(n as usize);
    let mut cps = Vec::new();
    for s in 0..n {
        let b = canonical_entry(
            s,
            "2026-11-24T12:00:00.123456Z",
            "request.decided",
            &entry_data(s),
        );
        let h = leaf_hash(&b);
        f.push(h);
        entries.push((s, b, Some(h)));
        if (s + 1) % 1000 == 0 {
            let cp = Checkpoint {
                origin: origin.into(),
                size: s + 1,
                root: f.root(),
            };
            cps.push(sign_note(&cp.body(), origin, &key));
        }
    }
    let t = Instant::now();
    let r = verify(entries, &cps, &verifier_key(origin, &key.public()), None).unwrap();
    println!(
        "verify 1M entries (in memory, {} checkpoints): {:.2}s",
        r.checkpoints,
        t.elapsed().as_secs_f64()
    );
    let _ = std::fs::remove_dir_all(&base);
}
