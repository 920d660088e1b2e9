//! The ledger verifier. Pure: it takes entries (sequence number, stored bytes), signed
//! checkpoints and the verifier key, so it runs the same on the data dir and on an export.
//!
//! It checks that sequence numbers are contiguous from 0, that every entry is canonical JSON
//! naming its own sequence number and matching the leaf hash stored with it (data dir), that every checkpoint is signed by the key, covers no more
//! entries than exist and matches the Merkle root of the entries it covers, that consecutive
//! checkpoints agree, and (optionally) that a checkpoint the user trusts from earlier
//! is a prefix of this ledger (detecting rewrites and forks). It reports the first bad
//! sequence number it can pin down.

use super::entry::parse_canonical;
use super::merkle::{leaf_hash, Frontier, Hash};
use super::note::{Checkpoint, Verifier};
use super::RawEntry;

/// What a successful verification covered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifyReport {
    pub entries: u64,
    pub checkpoints: usize,
    pub latest_checkpoint_size: u64,
    pub root: String,
    pub trusted_checkpoint_size: Option<u64>,
}

/// Why verification failed; `seq` is the first bad sequence number when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyError {
    pub seq: Option<u64>,
    pub message: String,
}

impl std::fmt::Display for VerifyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.seq {
            Some(s) => write!(f, "first bad sequence number {s}: {}", self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

fn fail(seq: Option<u64>, message: impl Into<String>) -> VerifyError {
    VerifyError {
        seq,
        message: message.into(),
    }
}

fn open_checkpoint(v: &Verifier, note: &str) -> Result<Checkpoint, VerifyError> {
    let text = v
        .open(note)
        .map_err(|e| fail(None, format!("checkpoint: {e}")))?;
    let cp = Checkpoint::parse(text).map_err(|e| fail(None, e))?;
    if cp.origin != v.name {
        return Err(fail(
            None,
            format!(
                "checkpoint origin {:?} is not the key's name {:?}",
                cp.origin, v.name
            ),
        ));
    }
    Ok(cp)
}

/// Checks each entry on its own (position, canonical form, self-named sequence number, stored
/// hash) and returns the leaf hashes. Entries are independent, so this runs on every core;
/// the first failure by sequence number wins.
fn check_entries(entries: &[RawEntry]) -> Result<Vec<Hash>, VerifyError> {
    let one = |i: usize, (seq, bytes, stored): &RawEntry| -> Result<Hash, VerifyError> {
        let want = i as u64;
        if *seq != want {
            return Err(fail(
                Some(want),
                format!("entry {want} is missing or out of order (found {seq} in its place)"),
            ));
        }
        let entry = parse_canonical(bytes).map_err(|e| fail(Some(*seq), e))?;
        if entry.seq != *seq {
            return Err(fail(
                Some(*seq),
                format!("entry stored at {seq} says it is {}", entry.seq),
            ));
        }
        let h = leaf_hash(bytes);
        if stored.is_some_and(|s| s != h) {
            return Err(fail(
                Some(*seq),
                "entry does not match the hash stored with it (altered on disk)",
            ));
        }
        Ok(h)
    };
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(16);
    let chunk = entries.len().div_ceil(threads).max(1024);
    let results: Vec<Result<Vec<Hash>, VerifyError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = entries
            .chunks(chunk)
            .enumerate()
            .map(|(c, part)| {
                scope.spawn(move || {
                    part.iter()
                        .enumerate()
                        .map(|(j, e)| one(c * chunk + j, e))
                        .collect()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(fail(None, "a verifier thread failed")))
            })
            .collect()
    });
    let mut out = Vec::with_capacity(entries.len());
    for r in results {
        out.extend(r?);
    }
    Ok(out)
}

/// Verifies a ledger. `entries` must be in stored order.
pub fn verify<I>(
    entries: I,
    checkpoint_notes: &[String],
    verifier_key: &str,
    trusted: Option<&str>,
) -> Result<VerifyReport, VerifyError>
where
    I: IntoIterator<Item = RawEntry>,
{
    let v = Verifier::parse(verifier_key).map_err(|e| fail(None, e))?;
    let mut cps = checkpoint_notes
        .iter()
        .map(|n| open_checkpoint(&v, n))
        .collect::<Result<Vec<_>, _>>()?;
    cps.sort_by_key(|c| c.size);
    let trusted = trusted.map(|t| open_checkpoint(&v, t)).transpose()?;

    // Targets: every checkpoint size, and the trusted checkpoint's, with the root to match.
    let mut targets: Vec<(u64, Hash, bool)> = cps.iter().map(|c| (c.size, c.root, false)).collect();
    if let Some(t) = &trusted {
        targets.push((t.size, t.root, true));
    }
    targets.sort_by_key(|t| t.0);
    let mut next = 0;
    let mut frontier = Frontier::default();
    let mut last_good = 0u64;
    let check = |frontier: &Frontier,
                 next: &mut usize,
                 last_good: &mut u64|
     -> Result<(), VerifyError> {
        while let Some(&(size, root, is_trusted)) = targets.get(*next) {
            if size != frontier.size() {
                break;
            }
            if frontier.root() != root {
                let msg = if is_trusted {
                    format!("fork: entries {}..{} differ from the trusted checkpoint of size {size} (the ledger was rewritten)", *last_good, size.saturating_sub(1))
                } else {
                    format!(
                        "entries {}..{} do not match the checkpoint signed at size {size}",
                        *last_good,
                        size.saturating_sub(1)
                    )
                };
                return Err(fail(Some(*last_good), msg));
            }
            *last_good = size;
            *next += 1;
        }
        Ok(())
    };
    check(&frontier, &mut next, &mut last_good)?;
    let entries: Vec<RawEntry> = entries.into_iter().collect();
    let hashes = check_entries(&entries)?;
    let count = hashes.len() as u64;
    for h in hashes {
        frontier.push(h);
        check(&frontier, &mut next, &mut last_good)?;
    }
    if let Some(&(size, _, is_trusted)) = targets.get(next) {
        let what = if is_trusted {
            "the trusted checkpoint"
        } else {
            "a signed checkpoint"
        };
        return Err(fail(Some(count), format!("{what} covers {size} entries but only {count} exist (entries were deleted or the ledger was rolled back)")));
    }
    // Every checkpoint matched the root of its prefix, so consecutive checkpoints are
    // consistent; two checkpoints of one size must also agree with each other.
    for pair in cps.windows(2) {
        if pair[0].size == pair[1].size && pair[0].root != pair[1].root {
            return Err(fail(
                Some(pair[0].size),
                "two checkpoints of the same size disagree",
            ));
        }
    }
    Ok(VerifyReport {
        entries: count,
        checkpoints: cps.len(),
        latest_checkpoint_size: cps.last().map_or(0, |c| c.size),
        root: hex::encode(frontier.root()),
        trusted_checkpoint_size: trusted.map(|t| t.size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::entry::canonical_entry;
    use crate::ledger::key::LedgerKey;
    use crate::ledger::merkle::root;
    use crate::ledger::note::{sign_note, verifier_key};

    struct Fixture {
        entries: Vec<RawEntry>,
        key: LedgerKey,
    }

    const ORIGIN: &str = "clawser.test/ledger";

    impl Fixture {
        fn new(n: u64) -> Fixture {
            let entries = (0..n)
                .map(|s| {
                    let b = canonical_entry(
                        s,
                        "2026-11-24T12:00:00Z",
                        "request.decided",
                        &serde_json::json!({"n": s, "outcome": "allow"}),
                    );
                    let h = leaf_hash(&b);
                    (s, b, Some(h))
                })
                .collect();
            Fixture {
                entries,
                key: LedgerKey::from_seed(&[3u8; 32]).unwrap(),
            }
        }
        fn checkpoint(&self, size: usize) -> String {
            let leaves: Vec<Hash> = self.entries[..size]
                .iter()
                .map(|(_, b, _)| leaf_hash(b))
                .collect();
            let cp = Checkpoint {
                origin: ORIGIN.into(),
                size: size as u64,
                root: root(&leaves),
            };
            sign_note(&cp.body(), ORIGIN, &self.key)
        }
        fn vkey(&self) -> String {
            verifier_key(ORIGIN, &self.key.public())
        }
        fn verify(
            &self,
            cps: &[String],
            trusted: Option<&str>,
        ) -> Result<VerifyReport, VerifyError> {
            verify(self.entries.clone(), cps, &self.vkey(), trusted)
        }
    }

    #[test]
    fn intact_ledger_verifies() {
        let f = Fixture::new(20);
        let cps = vec![f.checkpoint(5), f.checkpoint(12), f.checkpoint(20)];
        let r = f.verify(&cps, Some(&f.checkpoint(7))).unwrap();
        assert_eq!(
            (r.entries, r.checkpoints, r.latest_checkpoint_size),
            (20, 3, 20)
        );
    }

    #[test]
    fn a_flipped_byte_is_found_with_its_sequence_number() {
        let mut f = Fixture::new(10);
        let cps = vec![f.checkpoint(10)];
        let bytes = &mut f.entries[6].1;
        let pos = bytes.len() - 5;
        bytes[pos] ^= 0x01;
        let e = f.verify(&cps, None).unwrap_err();
        assert_eq!(e.seq, Some(6), "{e}");
        // In an export (no stored hashes) the same flip is still caught, by the checkpoint.
        let export: Vec<RawEntry> = f
            .entries
            .iter()
            .map(|(s, b, _)| (*s, b.clone(), None))
            .collect();
        assert!(verify(export, &cps, &f.vkey(), None).is_err());
    }

    #[test]
    fn a_canonical_rewrite_is_caught_by_the_checkpoint() {
        let mut f = Fixture::new(10);
        let cps = vec![f.checkpoint(4), f.checkpoint(10)];
        // A careful forger rewrites the entry and the hash stored with it; only the signed
        // checkpoint catches it, to within the entries it covers.
        let b = canonical_entry(
            7,
            "2026-11-24T12:00:00Z",
            "request.decided",
            &serde_json::json!({"n": 7, "outcome": "deny"}),
        );
        f.entries[7] = (7, b.clone(), Some(leaf_hash(&b)));
        let e = f.verify(&cps, None).unwrap_err();
        assert_eq!(e.seq, Some(4), "{e}");
        assert!(e.message.contains("4..9"), "{e}");
    }

    #[test]
    fn deleted_and_reordered_entries_are_found() {
        let f = Fixture::new(10);
        let cps = vec![f.checkpoint(10)];
        let mut deleted = f.entries.clone();
        deleted.remove(3);
        let e = verify(deleted, &cps, &f.vkey(), None).unwrap_err();
        assert_eq!(e.seq, Some(3), "{e}");
        let mut swapped = f.entries.clone();
        swapped.swap(2, 5);
        let e = verify(swapped, &cps, &f.vkey(), None).unwrap_err();
        assert_eq!(e.seq, Some(2), "{e}");
        // Truncating the tail is caught by the checkpoint.
        let truncated = f.entries[..8].to_vec();
        let e = verify(truncated, &cps, &f.vkey(), None).unwrap_err();
        assert_eq!(e.seq, Some(8), "{e}");
    }

    #[test]
    fn a_trusted_checkpoint_from_before_a_rewrite_proves_the_fork() {
        let f = Fixture::new(10);
        let trusted = f.checkpoint(6);
        // The operator (holding the key) rewrites history and re-signs fresh checkpoints.
        let mut forged = Fixture::new(10);
        let b = canonical_entry(
            2,
            "2026-11-24T12:00:00Z",
            "request.decided",
            &serde_json::json!({"n": 2, "outcome": "deny"}),
        );
        forged.entries[2] = (2, b.clone(), Some(leaf_hash(&b)));
        let cps = vec![forged.checkpoint(10)];
        assert!(
            forged.verify(&cps, None).is_ok(),
            "self-consistent without outside knowledge"
        );
        let e = forged.verify(&cps, Some(&trusted)).unwrap_err();
        assert!(e.message.contains("fork"), "{e}");
        assert_eq!(e.seq, Some(0));
    }

    #[test]
    fn forged_signatures_are_rejected() {
        let f = Fixture::new(3);
        let other = LedgerKey::from_seed(&[4u8; 32]).unwrap();
        let leaves: Vec<Hash> = f.entries.iter().map(|(_, b, _)| leaf_hash(b)).collect();
        let cp = Checkpoint {
            origin: ORIGIN.into(),
            size: 3,
            root: root(&leaves),
        };
        let note = sign_note(&cp.body(), ORIGIN, &other);
        assert!(f.verify(&[note], None).is_err());
    }
}
