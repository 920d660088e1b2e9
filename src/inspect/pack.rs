//! Just enough of a git packfile to tell a fast-forward: the commits a push carries and
//! their parents. Objects are inflated (flate2, pure Rust) within a byte budget, deltas
//! applied, and commit ids computed (SHA-1, or SHA-256 for sha256 repositories). Anything
//! unreadable stops the walk; what was read still counts, and "unknown" is an answer.

use std::collections::{HashMap, HashSet, VecDeque};

use flate2::{Decompress, FlushDecompress, Status};

/// Commit id -> parent ids, for the commits found in a pack.
pub type Parents = HashMap<String, Vec<String>>;

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Option<u8> {
        let v = *self.b.get(self.at)?;
        self.at += 1;
        Some(v)
    }
}

fn inflate(data: &[u8], expected: usize) -> Option<(Vec<u8>, usize)> {
    let mut d = Decompress::new(true);
    let mut out = Vec::with_capacity(expected.min(1 << 20));
    loop {
        let before_out = d.total_out();
        let status = d
            .decompress_vec(
                &data[d.total_in() as usize..],
                &mut out,
                FlushDecompress::None,
            )
            .ok()?;
        if status == Status::StreamEnd {
            break;
        }
        if out.len() == out.capacity() {
            if out.len() >= expected.max(1) {
                return None; // bigger than it said
            }
            out.reserve((expected - out.len()).max(64));
        } else if d.total_out() == before_out {
            return None; // no progress: truncated input
        }
    }
    (out.len() == expected).then_some((out, d.total_in() as usize))
}

fn varint(r: &mut Reader<'_>) -> Option<usize> {
    let mut v = 0usize;
    let mut shift = 0;
    loop {
        let c = r.byte()?;
        v |= ((c & 0x7f) as usize).checked_shl(shift)?;
        shift += 7;
        if c & 0x80 == 0 || shift > 56 {
            return Some(v);
        }
    }
}

fn apply_delta(base: &[u8], delta: &[u8]) -> Option<Vec<u8>> {
    let mut r = Reader { b: delta, at: 0 };
    let (src, dst) = (varint(&mut r)?, varint(&mut r)?);
    if src != base.len() {
        return None;
    }
    let mut out = Vec::with_capacity(dst);
    while r.at < delta.len() {
        let op = r.byte()?;
        if op & 0x80 != 0 {
            let mut off = 0usize;
            let mut size = 0usize;
            for i in 0..4 {
                if op & (1 << i) != 0 {
                    off |= (r.byte()? as usize) << (8 * i);
                }
            }
            for i in 0..3 {
                if op & (0x10 << i) != 0 {
                    size |= (r.byte()? as usize) << (8 * i);
                }
            }
            if size == 0 {
                size = 0x10000;
            }
            out.extend_from_slice(base.get(off..off.checked_add(size)?)?);
        } else if op != 0 {
            let n = op as usize;
            out.extend_from_slice(delta.get(r.at..r.at + n)?);
            r.at += n;
        } else {
            return None;
        }
        if out.len() > dst {
            return None;
        }
    }
    (out.len() == dst).then_some(out)
}

fn object_id(kind: &str, data: &[u8], sha256: bool) -> String {
    let mut v = format!("{kind} {}\0", data.len()).into_bytes();
    v.extend_from_slice(data);
    let alg = if sha256 {
        &ring::digest::SHA256
    } else {
        &ring::digest::SHA1_FOR_LEGACY_USE_ONLY
    };
    hex::encode(ring::digest::digest(alg, &v).as_ref())
}

/// A commit's parents, read as git reads them: the `parent` lines right after the `tree`
/// line, each a full object id. `None` for a header git would read differently from a
/// careless reader (a `parent` line anywhere else is no parent to git): it shows nothing.
fn parents_of(commit: &[u8]) -> Option<Vec<String>> {
    let end = commit
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or(commit.len());
    let header = std::str::from_utf8(commit.get(..end)?).ok()?;
    let mut lines = header.split('\n').peekable();
    let tree = lines.next()?.strip_prefix("tree ")?;
    if !is_oid(tree) {
        return None;
    }
    let mut parents = Vec::new();
    while let Some(p) = lines.peek().and_then(|l| l.strip_prefix("parent ")) {
        if !is_oid(p) {
            return None;
        }
        parents.push(p.to_string());
        lines.next();
    }
    if lines.any(|l| l.starts_with("parent ")) {
        return None;
    }
    Some(parents)
}

fn is_oid(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The commits of a pack (as far as it can be read within `budget` inflated bytes).
pub fn commits(pack: &[u8], sha256: bool, budget: usize) -> Parents {
    let mut found = Parents::new();
    if pack.get(..4) != Some(b"PACK") || pack.len() < 12 {
        return found;
    }
    let count = u32::from_be_bytes([pack[8], pack[9], pack[10], pack[11]]) as usize;
    let oid_len = if sha256 { 32 } else { 20 };
    let mut by_offset: HashMap<usize, (u8, Vec<u8>)> = HashMap::new();
    let mut by_id: HashMap<Vec<u8>, usize> = HashMap::new();
    let mut spent = 0usize;
    let mut r = Reader { b: pack, at: 12 };
    for _ in 0..count {
        let start = r.at;
        let Some(c) = r.byte() else { break };
        let kind = (c >> 4) & 7;
        let mut size = (c & 15) as usize;
        let mut shift = 4;
        let mut c = c;
        while c & 0x80 != 0 && shift < 60 {
            let Some(n) = r.byte() else { return found };
            c = n;
            size |= ((c & 0x7f) as usize) << shift;
            shift += 7;
        }
        let base = match kind {
            6 => {
                let Some(mut ch) = r.byte() else { return found };
                let mut off = (ch & 0x7f) as usize;
                while ch & 0x80 != 0 {
                    let Some(n) = r.byte() else { return found };
                    ch = n;
                    off = match off.checked_add(1).and_then(|o| o.checked_shl(7)) {
                        Some(o) => o + (ch & 0x7f) as usize,
                        None => return found,
                    };
                }
                start.checked_sub(off)
            }
            7 => {
                let Some(id) = pack.get(r.at..r.at + oid_len) else {
                    return found;
                };
                r.at += oid_len;
                by_id.get(id).copied()
            }
            _ => None,
        };
        spent = spent.saturating_add(size);
        if spent > budget {
            return found;
        }
        let Some((data, used)) = pack.get(r.at..).and_then(|rest| inflate(rest, size)) else {
            return found;
        };
        r.at += used;
        let resolved = match kind {
            1..=4 => Some((kind, data)),
            6 | 7 => base
                .and_then(|b| by_offset.get(&b))
                .and_then(|(t, b)| apply_delta(b, &data).map(|d| (*t, d))),
            _ => None,
        };
        let Some((t, data)) = resolved else { continue };
        let name = match t {
            1 => "commit",
            2 => "tree",
            3 => "blob",
            _ => "tag",
        };
        let id = object_id(name, &data, sha256);
        if t == 1 {
            if let Some(parents) = parents_of(&data) {
                found.insert(id.clone(), parents);
            }
        }
        if let Ok(raw) = hex::decode(&id) {
            by_id.insert(raw, start);
        }
        by_offset.insert(start, (t, data));
    }
    found
}

/// `Some(true)` when `new` leads back to `old` through the pack's commits; `Some(false)`
/// when every path from `new` ends at a root commit inside the pack without meeting `old`;
/// `None` when the pack does not show either (its history continues in commits the server
/// already has). Never a guess.
pub fn fast_forward(parents: &Parents, old: &str, new: &str) -> Option<bool> {
    let mut queue = VecDeque::from([new.to_string()]);
    let mut seen = HashSet::new();
    let mut left_the_pack = false;
    while let Some(c) = queue.pop_front() {
        if c == old {
            return Some(true);
        }
        if !seen.insert(c.clone()) {
            continue;
        }
        if seen.len() > 100_000 {
            return None;
        }
        match parents.get(&c) {
            Some(ps) => queue.extend(ps.iter().cloned()),
            None => left_the_pack = true,
        }
    }
    (!left_the_pack).then_some(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_apply() {
        let base = b"hello world";
        // src 11, dst 11: copy 0..6 ("hello "), insert "earth"
        let delta = [11u8, 11, 0x90, 6, 5, b'e', b'a', b'r', b't', b'h'];
        assert_eq!(apply_delta(base, &delta).unwrap(), b"hello earth");
        assert!(apply_delta(base, &[11, 3, 0]).is_none());
        assert!(apply_delta(b"short", &[11, 1, 1, b'x']).is_none());
    }

    #[test]
    fn parents_are_read_as_git_reads_them() {
        let (t, p, q) = ("a".repeat(40), "b".repeat(40), "c".repeat(40));
        let ok =
            format!("tree {t}\nparent {p}\nparent {q}\nauthor x\ncommitter x\n\nmsg\nparent {t}\n");
        assert_eq!(parents_of(ok.as_bytes()), Some(vec![p.clone(), q.clone()]));
        let root = format!("tree {t}\nauthor x\ncommitter x\n\nmsg");
        assert_eq!(parents_of(root.as_bytes()), Some(vec![]));
        // A `parent` line after `committer` is no parent to git: the commit shows nothing.
        let forged = format!("tree {t}\nauthor x\ncommitter x\nparent {p}\n\nmsg");
        assert_eq!(parents_of(forged.as_bytes()), None);
        let late = format!("tree {t}\nparent {p}\nauthor x\nparent {q}\ncommitter x\n\n");
        assert_eq!(parents_of(late.as_bytes()), None);
        let short = format!("tree {t}\nparent abc\n\n");
        assert_eq!(parents_of(short.as_bytes()), None);
        assert_eq!(parents_of(b"author x\n\n"), None);
    }

    #[test]
    fn garbage_never_panics() {
        for pack in [
            &b""[..],
            b"PACK",
            b"PACK\0\0\0\x02\0\0\0\x05garbage",
            b"PACK\0\0\0\x02\xff\xff\xff\xff\xff",
        ] {
            assert!(commits(pack, false, 1 << 20).is_empty());
        }
    }
}
