//! Helpers for unit tests.

use std::path::Path;
use std::time::{Duration, Instant};

/// Reopens a sled database a test has just dropped. sled releases its file lock only when
/// its last internal handle goes, which can be an I/O thread finishing a write a moment
/// after the drop, so a lock error is retried for a few seconds.
pub fn reopen_sled(path: &Path) -> sled::Db {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match sled::open(path) {
            Ok(db) => return db,
            Err(e) if Instant::now() < deadline && e.to_string().contains("lock") => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("reopening {}: {e}", path.display()),
        }
    }
}
