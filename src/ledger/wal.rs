//! The ledger's write-ahead log: the durability point of every append.
//!
//! A group commit appends one frame per entry — `seq (u64 BE) | len (u32 BE) | leaf hash
//! (32) | canonical bytes` — in a single write, then fdatasyncs: one sequential write and
//! one sync per group, instead of sled's flush (its own writes plus `sync_file_range`) and a
//! sync. sled is then updated (in batches) without flushing; when the log passes its size
//! bound, and at shutdown, sled is flushed and synced and the log starts over. On open, frames beyond what sled holds are replayed; the
//! first torn or corrupt frame ends the log (it was never acknowledged).
//!
//! The file is preallocated with zeros and overwritten in place, so a sync moves data only
//! (appending would also commit the file size through the journal on every group). After
//! the log starts over, frames of the previous generation may follow the new ones; they all
//! have sequence numbers below what sled holds durably, and replay accepts only the next
//! sequence number, so they are skipped.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::merkle::{leaf_hash, Hash};
use crate::error::{Error, Result};

/// The log file name inside the data dir.
pub const WAL_FILE: &str = "ledger.wal";
/// Largest entry a frame may hold.
const MAX_FRAME: usize = 16 * 1024 * 1024;
/// Bytes preallocated for the log (it grows beyond if one generation needs more).
pub const PREALLOC: u64 = 16 * 1024 * 1024;

/// One replayable frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub seq: u64,
    pub hash: Hash,
    pub bytes: Vec<u8>,
}

/// Appends frames to the log.
pub struct Wal {
    path: PathBuf,
    file: File,
    pos: u64,
    /// Bytes written but not yet synced.
    unsynced: bool,
}

impl Wal {
    /// Opens (creating and preallocating) the log; writing starts at its beginning, so call
    /// this only after replaying it.
    pub fn open(data_dir: &Path) -> Result<Wal> {
        let path = data_dir.join(WAL_FILE);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(Error::io("opening", &path))?;
        let len = file.metadata().map_err(Error::io("reading", &path))?.len();
        if len < PREALLOC {
            let zeros = vec![0u8; 1024 * 1024];
            let mut at = len;
            while at < PREALLOC {
                file.write_all_at(&zeros, at)
                    .map_err(Error::io("preallocating", &path))?;
                at += zeros.len() as u64;
            }
            file.sync_all().map_err(Error::io("syncing", &path))?;
        }
        Ok(Wal {
            path,
            file,
            pos: 0,
            unsynced: false,
        })
    }

    /// Encodes one frame.
    pub fn frame(out: &mut Vec<u8>, seq: u64, hash: &Hash, bytes: &[u8]) {
        out.extend_from_slice(&seq.to_be_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(hash);
        out.extend_from_slice(bytes);
    }

    /// Writes encoded frames and makes them (and any earlier unsynced ones) durable.
    pub fn append_durable(&mut self, frames: &[u8]) -> Result<()> {
        self.append(frames)?;
        self.sync()
    }

    /// Writes encoded frames without syncing (entries nobody waits for); the next sync covers
    /// them.
    pub fn append(&mut self, frames: &[u8]) -> Result<()> {
        self.file
            .write_all_at(frames, self.pos)
            .map_err(Error::io("writing", &self.path))?;
        self.pos += frames.len() as u64;
        self.unsynced = true;
        Ok(())
    }

    /// Makes everything written so far durable (no-op when nothing is pending).
    pub fn sync(&mut self) -> Result<()> {
        if self.unsynced {
            self.file
                .sync_data()
                .map_err(Error::io("syncing", &self.path))?;
            self.unsynced = false;
        }
        Ok(())
    }

    /// Bytes written in this generation.
    pub fn len(&self) -> u64 {
        self.pos
    }

    /// True when nothing was written in this generation.
    pub fn is_empty(&self) -> bool {
        self.pos == 0
    }

    /// Starts the log over (after sled was made durable).
    pub fn truncate(&mut self) -> Result<()> {
        self.pos = 0;
        Ok(())
    }
}

/// Reads the valid frames of the log at `data_dir` (none if it does not exist). Stops at the
/// first torn or corrupt frame.
pub fn read_frames(data_dir: &Path) -> Result<Vec<Frame>> {
    let path = data_dir.join(WAL_FILE);
    let mut buf = Vec::new();
    match File::open(&path) {
        Ok(mut f) => {
            f.read_to_end(&mut buf)
                .map_err(Error::io("reading", &path))?;
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("reading", &path)(e)),
    }
    Ok(parse(&buf))
}

fn parse(mut buf: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    while buf.len() >= 44 {
        let seq = u64::from_be_bytes(buf[..8].try_into().unwrap_or([0; 8]));
        let len = u32::from_be_bytes(buf[8..12].try_into().unwrap_or([0; 4])) as usize;
        if len > MAX_FRAME || buf.len() < 44 + len {
            break;
        }
        let hash: Hash = buf[12..44].try_into().unwrap_or([0; 32]);
        let bytes = &buf[44..44 + len];
        if leaf_hash(bytes) != hash {
            break;
        }
        out.push(Frame {
            seq,
            hash,
            bytes: bytes.to_vec(),
        });
        buf = &buf[44 + len..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_a_torn_tail_is_dropped() {
        let d = tempfile::tempdir().unwrap();
        let mut w = Wal::open(d.path()).unwrap();
        let mut buf = Vec::new();
        for (i, b) in [&b"{\"a\":1}"[..], b"{\"b\":2}"].iter().enumerate() {
            Wal::frame(&mut buf, i as u64, &leaf_hash(b), b);
        }
        w.append_durable(&buf).unwrap();
        // A torn third frame.
        let mut torn = Vec::new();
        Wal::frame(&mut torn, 2, &leaf_hash(b"{\"c\":3}"), b"{\"c\":3}");
        w.append_durable(&torn[..torn.len() - 2]).unwrap();
        let frames = read_frames(d.path()).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[1].bytes, b"{\"b\":2}");
        // Starting over: a new generation overwrites from the start; stale frames may follow.
        w.truncate().unwrap();
        let mut next = Vec::new();
        Wal::frame(&mut next, 7, &leaf_hash(b"{\"n\":7}"), b"{\"n\":7}");
        w.append_durable(&next).unwrap();
        let frames = read_frames(d.path()).unwrap();
        assert_eq!(frames[0].seq, 7);
    }
}
