//! How entries are laid out in sled: several consecutive entries per sled value.
//!
//! sled keeps about 110–130 bytes of bookkeeping for every page it has written (page table,
//! cache shard, segment page sets) and never returns it, and it splits a leaf every ~9 keys:
//! with one key per entry that is ~25 bytes of memory per request for the life of the
//! process, plus a copy-on-write of the leaf for every insert. So entries are stored in
//! **blocks**: one sled value holds up to [`BLOCK_BYTES`] of consecutive entries (at least
//! one), keyed by the big-endian sequence number of its first entry. The entry holding
//! sequence number `s` is in the block with the greatest key `<= s`.
//!
//! A block's **records** are, per entry, its 32-byte leaf hash, its length (u32, big-endian)
//! and its canonical bytes. The stored value is a format byte and then either the records
//! as they are ([`PLAIN`]) or, where that is shorter, their length (u32, big-endian) and
//! the records compressed as one LZ4 block ([`LZ4`]). Canonical JSON entries compress about
//! 2.9× in under 1 µs per KiB: the ledger takes that much less disk, and sled's page
//! cache, whose leaves hold these values, holds that many more entries in the same memory
//! (it also writes less, which the A/B showed as less CPU per request, not more).
//! A change is still found with a sequence number: the verifier recomputes every leaf from
//! the stored bytes and reports the first that differs (one byte changed in a compressed
//! stream may alter several later entries of its block), and a block that no longer
//! decompresses or parses is reported by its first entry. A Clawser from before compressed
//! blocks refuses such a ledger ("unknown format 2") instead of misreading it.
//!
//! Ledgers written before blocks keep one entry per key in [`LEGACY`] (value: leaf hash then
//! canonical bytes). They are read as they are, followed by the blocks; new entries always go
//! to blocks.

use std::borrow::Cow;
use std::collections::VecDeque;

use super::merkle::Hash;
use crate::error::{Error, Result};

/// The tree of single-entry values (ledgers written before blocks): read, and marked with
/// [`DOWNGRADE_GUARD`], never appended to.
pub(super) const LEGACY: &str = "ledger.entries";
/// The tree of blocks.
pub(super) const BLOCKS: &str = "ledger.blocks";
/// A key in [`LEGACY`] past every sequence number, written once a ledger has blocks: a
/// Clawser that predates blocks reads it as a gap ("entry N is missing") and refuses to
/// start, instead of appending to the legacy tree beside the blocks it cannot see.
const DOWNGRADE_GUARD: [u8; 8] = u64::MAX.to_be_bytes();
/// Format byte of a block stored as its records.
const PLAIN: u8 = 1;
/// Format byte of a block stored as the records' length and the records LZ4-compressed.
const LZ4: u8 = 2;
/// A block is closed once its records hold this many bytes. sled keeps ~110–130 bytes for
/// every page (leaf) it has ever written, so fewer, larger blocks mean slower growth: 16 KiB
/// against 4 KiB gave a soak without the steady climb (+0.6 MiB of live heap a minute at
/// 1,500 req/s) and 0.251 against 0.269 ms CPU per request. A leaf holds up to 17 values and
/// sled moves a message over a quarter segment (128 KiB by default) to a file of its own:
/// compressed blocks (~5–6 KiB) stay under it; leaves of incompressible entries would go to
/// such files, which is slower, not wrong.
pub(super) const BLOCK_BYTES: usize = 16 * 1024;
/// Bytes of a record before the entry's canonical bytes.
const RECORD_HEAD: usize = 32 + 4;
/// Largest records a block may hold: many small entries, or one entry as large as the
/// write-ahead log allows. A stored length beyond it is refused before anything is allocated.
const MAX_RECORDS: usize = BLOCK_BYTES + RECORD_HEAD + super::wal::MAX_FRAME;

/// One stored entry: sequence number, stored leaf hash, canonical bytes.
pub(super) type Stored<'a> = (u64, Hash, &'a [u8]);
/// The same, owning its bytes.
pub(super) type Owned = (u64, Hash, Vec<u8>);

/// Groups consecutive entries (`first`, `first + 1`, ...) into blocks whose records hold at
/// most [`BLOCK_BYTES`] (an entry larger than that is a block on its own): (key, value)
/// pairs.
pub(super) fn encode<'a>(
    first: u64,
    entries: impl IntoIterator<Item = (&'a Hash, &'a [u8])>,
) -> Vec<([u8; 8], Vec<u8>)> {
    let mut out: Vec<([u8; 8], Vec<u8>)> = Vec::new();
    let mut open: Option<(u64, Vec<u8>)> = None;
    for (i, (hash, bytes)) in entries.into_iter().enumerate() {
        let seq = first + i as u64;
        let full = open
            .as_ref()
            .is_some_and(|(_, v)| v.len() + RECORD_HEAD + bytes.len() > BLOCK_BYTES);
        if full {
            if let Some((k, v)) = open.take() {
                out.push((k.to_be_bytes(), seal(&v)));
            }
        }
        let (_, v) = open.get_or_insert_with(|| {
            (
                seq,
                Vec::with_capacity(BLOCK_BYTES.max(RECORD_HEAD + bytes.len())),
            )
        });
        v.extend_from_slice(hash);
        // `wal::check_fits` bounds an entry far below 4 GiB.
        v.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
        v.extend_from_slice(bytes);
    }
    if let Some((k, v)) = open {
        out.push((k.to_be_bytes(), seal(&v)));
    }
    out
}

/// The stored value of a block's records: compressed where that is shorter.
fn seal(records: &[u8]) -> Vec<u8> {
    let packed = lz4_flex::block::compress(records);
    // What `unseal` would refuse to decompress is stored plain.
    let len = u32::try_from(records.len())
        .ok()
        .filter(|_| records.len() <= MAX_RECORDS);
    match len {
        Some(len) if 4 + packed.len() < records.len() => {
            let mut v = Vec::with_capacity(1 + 4 + packed.len());
            v.push(LZ4);
            v.extend_from_slice(&len.to_be_bytes());
            v.extend_from_slice(&packed);
            v
        }
        _ => {
            let mut v = Vec::with_capacity(1 + records.len());
            v.push(PLAIN);
            v.extend_from_slice(records);
            v
        }
    }
}

/// The records of a stored block value (decompressed if need be).
fn unseal(first: u64, value: &[u8]) -> Result<Cow<'_, [u8]>, String> {
    let (&format, rest) = value
        .split_first()
        .ok_or_else(|| format!("block {first} is empty"))?;
    match format {
        PLAIN => Ok(Cow::Borrowed(rest)),
        LZ4 => {
            let bad = || format!("block {first} does not decompress");
            let (len, packed) = rest.split_at_checked(4).ok_or_else(bad)?;
            let len = u32::from_be_bytes(len.try_into().map_err(|_| bad())?) as usize;
            if len > MAX_RECORDS || packed.len() > lz4_flex::block::get_maximum_output_size(len) {
                return Err(bad());
            }
            let mut records = vec![0; len];
            match lz4_flex::block::decompress_into(packed, &mut records) {
                Ok(n) if n == len => Ok(Cow::Owned(records)),
                _ => Err(bad()),
            }
        }
        _ => Err(format!(
            "block {first} has unknown format {format} (written by a newer Clawser?)"
        )),
    }
}

/// The entries of the block stored under `key`, in order; an error names what is malformed.
pub(super) fn decode(key: &[u8], value: &[u8]) -> Result<Vec<Owned>, String> {
    let first = seq_of(key).ok_or("malformed block key")?;
    let records = unseal(first, value)?;
    let mut rest: &[u8] = &records;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let seq = first + out.len() as u64;
        let truncated = || format!("entry {seq} is truncated");
        let (hash, tail) = rest.split_at_checked(32).ok_or_else(truncated)?;
        let (len, tail) = tail.split_at_checked(4).ok_or_else(truncated)?;
        let len = u32::from_be_bytes(len.try_into().map_err(|_| truncated())?) as usize;
        let (bytes, tail) = tail.split_at_checked(len).ok_or_else(truncated)?;
        out.push((
            seq,
            hash.try_into().map_err(|_| truncated())?,
            bytes.to_vec(),
        ));
        rest = tail;
    }
    if out.is_empty() {
        return Err(format!("block {first} holds no entry"));
    }
    Ok(out)
}

/// The entry of a legacy single-entry value.
pub(super) fn decode_legacy<'a>(key: &[u8], value: &'a [u8]) -> Result<Stored<'a>, String> {
    let seq = seq_of(key).ok_or("malformed entry key")?;
    let (h, bytes) = value
        .split_at_checked(32)
        .ok_or_else(|| format!("entry {seq} is truncated"))?;
    let h: Hash = h
        .try_into()
        .map_err(|_| format!("entry {seq} is truncated"))?;
    Ok((seq, h, bytes))
}

/// Sequence number of a stored key.
pub(super) fn seq_of(k: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(k.try_into().ok()?))
}

/// The ledger's two sled trees: legacy single-entry values, then blocks.
#[derive(Clone)]
pub(super) struct Trees {
    legacy: sled::Tree,
    blocks: sled::Tree,
}

impl Trees {
    pub fn open(db: &sled::Db) -> Result<Trees> {
        Ok(Trees {
            legacy: db.open_tree(LEGACY)?,
            blocks: db.open_tree(BLOCKS)?,
        })
    }

    /// Writes the downgrade guard (see [`DOWNGRADE_GUARD`]) if it is not there yet.
    pub fn guard_against_downgrade(&self) -> std::result::Result<(), sled::Error> {
        if self.legacy.get(DOWNGRADE_GUARD)?.is_none() {
            self.legacy.insert(
                DOWNGRADE_GUARD,
                &b"this ledger stores entries in ledger.blocks: run a Clawser at least as new as the one that wrote it"[..],
            )?;
        }
        Ok(())
    }

    /// Stores consecutive entries from `first` as blocks, in one atomic sled batch.
    pub fn insert<'a>(
        &self,
        first: u64,
        entries: impl IntoIterator<Item = (&'a Hash, &'a [u8])>,
    ) -> std::result::Result<(), sled::Error> {
        let mut batch = sled::Batch::default();
        for (k, v) in encode(first, entries) {
            batch.insert(&k, v);
        }
        self.blocks.apply_batch(batch)
    }

    /// Every stored entry with a sequence number `>= start`, in order, owned. A malformed
    /// value ends the iteration with an error naming its sequence number.
    pub fn from(&self, start: u64) -> Iter {
        // The block holding `start` begins at or before it.
        let block_start = match self.blocks.range(..=start.to_be_bytes()).next_back() {
            Some(Ok((k, _))) => seq_of(&k).unwrap_or(0),
            _ => 0,
        };
        Iter {
            start,
            legacy: Some(self.legacy.range(start.to_be_bytes()..DOWNGRADE_GUARD)),
            blocks: self.blocks.range(block_start.to_be_bytes()..),
            buf: VecDeque::new(),
            failed: false,
        }
    }
}

/// Stored entries in order: (sequence number, stored leaf hash, canonical bytes).
pub(super) struct Iter {
    start: u64,
    legacy: Option<sled::Iter>,
    blocks: sled::Iter,
    buf: VecDeque<Owned>,
    failed: bool,
}

impl Iter {
    fn fill(&mut self) -> Result<bool> {
        if let Some(legacy) = &mut self.legacy {
            match legacy.next() {
                Some(item) => {
                    let (k, v) = item?;
                    let (seq, h, bytes) = decode_legacy(&k, &v).map_err(corrupt)?;
                    self.buf.push_back((seq, h, bytes.to_vec()));
                    return Ok(true);
                }
                None => self.legacy = None,
            }
        }
        let Some(item) = self.blocks.next() else {
            return Ok(false);
        };
        let (k, v) = item?;
        let entries = decode(&k, &v).map_err(corrupt)?;
        self.buf
            .extend(entries.into_iter().filter(|(seq, ..)| *seq >= self.start));
        Ok(true)
    }
}

impl Iterator for Iter {
    type Item = Result<Owned>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.buf.is_empty() && !self.failed {
            match self.fill() {
                Ok(true) => {}
                Ok(false) => return None,
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
        self.buf.pop_front().map(Ok)
    }
}

fn corrupt(what: String) -> Error {
    Error::Store(format!(
        "ledger: {what} (altered on disk?); run `clawser ledger verify`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(sizes: &[usize]) -> Vec<(Hash, Vec<u8>)> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| ([i as u8; 32], vec![b'a' + i as u8; n]))
            .collect()
    }

    #[test]
    fn blocks_round_trip_and_close_at_the_size_limit() {
        // Eight records of an eighth of a block fill one exactly; a ninth opens the next; an
        // entry larger than a block is a block on its own.
        let eighth = BLOCK_BYTES / 8 - RECORD_HEAD;
        let mut sizes = vec![eighth; 9];
        sizes.extend([2 * BLOCK_BYTES, 5]);
        let es = entries(&sizes);
        let blocks = encode(100, es.iter().map(|(h, b)| (h, b.as_slice())));
        let firsts: Vec<u64> = blocks.iter().map(|(k, _)| u64::from_be_bytes(*k)).collect();
        assert_eq!(firsts, [100, 108, 109, 110]);
        let mut seen = Vec::new();
        for (k, v) in &blocks {
            for (seq, h, bytes) in decode(k, v).unwrap() {
                seen.push((seq, h, bytes.to_vec()));
            }
        }
        assert_eq!(seen.len(), es.len());
        for (i, (seq, h, bytes)) in seen.into_iter().enumerate() {
            assert_eq!(seq, 100 + i as u64);
            assert_eq!((h, bytes), es[i]);
        }
    }

    /// Bytes that do not compress (a xorshift stream).
    fn noise(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn compressible_blocks_are_stored_compressed_and_others_plain() {
        let json = br#"{"data":{"agent":"bench","outcome":"allow","request":{"method":"GET","path":"/small"}},"kind":"request.decided"}"#;
        let es: Vec<(Hash, Vec<u8>)> = (0..20).map(|i| ([i as u8; 32], json.to_vec())).collect();
        let blocks = encode(0, es.iter().map(|(h, b)| (h, b.as_slice())));
        assert_eq!(blocks.len(), 1);
        let (k, v) = &blocks[0];
        assert_eq!(v[0], LZ4);
        let raw = es.iter().map(|(_, b)| RECORD_HEAD + b.len()).sum::<usize>();
        assert!(v.len() * 2 < raw, "{} of {raw} bytes", v.len());
        let back: Vec<Owned> = decode(k, v).unwrap();
        assert_eq!(back.len(), 20);
        assert!(back.iter().all(|(_, _, b)| b == json));

        let hash = |seed| -> Hash { noise(32, seed).try_into().unwrap() };
        let es = [(hash(9), noise(500, 3))];
        let (k, v) = encode(5, es.iter().map(|(h, b)| (h, b.as_slice())))
            .pop()
            .unwrap();
        assert_eq!(v[0], PLAIN);
        assert_eq!(decode(&k, &v).unwrap(), vec![(5, es[0].0, es[0].1.clone())]);
    }

    #[test]
    fn malformed_blocks_are_errors_not_panics() {
        // A plain block: every cut but the one after a whole record is an error.
        let hash = |seed| -> Hash { noise(32, seed).try_into().unwrap() };
        let es = [(hash(5), noise(40, 1)), (hash(6), noise(40, 2))];
        let (k, v) = encode(7, es.iter().map(|(h, b)| (h, b.as_slice())))
            .pop()
            .unwrap();
        assert_eq!(v[0], PLAIN);
        for cut in 0..v.len() {
            let r = decode(&k, &v[..cut]);
            let ok_cut = cut == 1 + 36 + 40; // exactly the first record
            assert_eq!(r.is_ok(), ok_cut, "cut at {cut}: {r:?}");
        }
        let mut other = v.clone();
        other[0] = 9;
        assert!(decode(&k, &other).unwrap_err().contains("unknown format"));
        assert!(decode(b"short", &v).is_err());
        assert!(decode_legacy(&7u64.to_be_bytes(), &[0; 31]).is_err());

        // A compressed block: every cut is an error, and every flipped bit is an error or
        // decodes to entries (which the verifier then checks), never a panic.
        let es: Vec<(Hash, Vec<u8>)> = (0..6).map(|i| ([i; 32], vec![b'x'; 300])).collect();
        let (k, v) = encode(7, es.iter().map(|(h, b)| (h, b.as_slice())))
            .pop()
            .unwrap();
        assert_eq!(v[0], LZ4);
        for cut in 0..v.len() {
            assert!(decode(&k, &v[..cut]).is_err(), "cut at {cut}");
        }
        for at in 1..v.len() {
            for bit in 0..8 {
                let mut flipped = v.clone();
                flipped[at] ^= 1 << bit;
                let _ = decode(&k, &flipped);
            }
        }
        // A stored length beyond any block is refused before it is allocated.
        let mut huge = v.clone();
        huge[1..5].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode(&k, &huge)
            .unwrap_err()
            .contains("block 7 does not decompress"));
        // So is a compressed stream longer than any compression of that length.
        let mut long = v.clone();
        long.extend(vec![0; 10_000]);
        assert!(decode(&k, &long).is_err());
    }
}
