//! Ledger entries and their canonical bytes: compact JSON with object keys sorted at every
//! level. Those exact bytes are stored and hashed; a verifier re-serializes each entry and
//! must get the same bytes back.

use serde_json::Value;

/// One entry as a verifier and the CLI read it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    pub seq: u64,
    pub time: String,
    pub kind: String,
    pub data: Value,
}

/// Canonical bytes of an entry.
pub fn canonical_entry(seq: u64, time: &str, kind: &str, data: &Value) -> Vec<u8> {
    assemble(seq, time, kind, &canonical(data))
}

/// Canonical bytes of an entry from its already-canonical `data` bytes. The wrapper's keys
/// in sorted order are data, kind, seq, time, so the writer only splices in the sequence
/// number and time (callers serialize `data` in parallel, off the writer thread).
pub fn assemble(seq: u64, time: &str, kind: &str, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + kind.len() + time.len() + 48);
    out.extend_from_slice(b"{\"data\":");
    out.extend_from_slice(data);
    out.extend_from_slice(b",\"kind\":");
    let _ = serde_json::to_writer(&mut out, kind);
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(seq.to_string().as_bytes());
    out.extend_from_slice(b",\"time\":");
    let _ = serde_json::to_writer(&mut out, time);
    out.push(b'}');
    out
}

/// The data of an entry in canonical form, ready for the ledger.
#[derive(Debug, Clone)]
pub struct CanonicalData(Vec<u8>);

/// Marks a type whose `Serialize` writes the keys of every object, at every level, in byte
/// order (struct fields declared sorted, maps with ordered `String` keys) and nothing but
/// JSON: its compact serialization is then already canonical, without building a
/// `serde_json::Value` tree first (what a request's entries cost on the request path).
pub trait Sorted: serde::Serialize {}

impl CanonicalData {
    /// The canonical form of a JSON value.
    pub fn of_value(v: &Value) -> CanonicalData {
        CanonicalData(canonical(v))
    }

    /// The compact serialization of a [`Sorted`] type (an error only if its `Serialize`
    /// fails: the caller refuses what it could not record). Debug builds (every test) check
    /// that it is canonical, and repair it with an error line if a type broke its promise.
    pub fn of_sorted<T: Sorted>(t: &T) -> Result<CanonicalData, serde_json::Error> {
        let mut out = Vec::with_capacity(512);
        serde_json::to_writer(&mut out, t)?;
        #[cfg(debug_assertions)]
        if let Ok(v) = serde_json::from_slice::<Value>(&out) {
            let fixed = canonical(&v);
            if fixed != out {
                tracing::error!(json = %String::from_utf8_lossy(&out), "a `Sorted` type wrote keys out of order");
                return Ok(CanonicalData(fixed));
            }
        }
        Ok(CanonicalData(out))
    }

    /// The canonical bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl From<Value> for CanonicalData {
    fn from(v: Value) -> CanonicalData {
        CanonicalData::of_value(&v)
    }
}

/// Canonical JSON: no whitespace, object keys sorted (byte order) recursively.
pub fn canonical(v: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    write(v, &mut out);
    out
}

fn write(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                // serde_json's string escaping is deterministic; writing to a Vec cannot fail.
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                if let Some(val) = map.get(k) {
                    write(val, out);
                }
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write(item, out);
            }
            out.push(b']');
        }
        scalar => write_scalar(scalar, out),
    }
}

fn write_scalar(v: &Value, out: &mut Vec<u8>) {
    // serde_json's compact form of a scalar is deterministic; writing to a Vec cannot fail.
    let _ = serde_json::to_writer(out, v);
}

/// Parses stored bytes and checks they are the canonical form of themselves.
pub fn parse_canonical(bytes: &[u8]) -> Result<Entry, String> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    if canonical(&v) != bytes {
        return Err("not in canonical form (bytes were altered)".to_string());
    }
    serde_json::from_value(v).map_err(|e| format!("not a ledger entry: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sorted_and_compact() {
        let v = serde_json::json!({"b": 1, "a": {"d": [true, null], "c": "x\"y"}});
        assert_eq!(
            canonical(&v),
            br#"{"a":{"c":"x\"y","d":[true,null]},"b":1}"#.to_vec()
        );
    }

    #[test]
    fn assembled_entry_is_the_canonical_form() {
        let data = serde_json::json!({"z": 1, "a": [1, {"y": 2, "b": null}]});
        let want =
            canonical(&serde_json::json!({"seq": 42, "time": "t", "kind": "k\"x", "data": data}));
        assert_eq!(canonical_entry(42, "t", "k\"x", &data), want);
    }

    #[test]
    fn round_trip_and_tamper_detection() {
        let bytes = canonical_entry(
            7,
            "2026-11-24T12:00:00Z",
            "request.decided",
            &serde_json::json!({"outcome": "allow"}),
        );
        let e = parse_canonical(&bytes).unwrap();
        assert_eq!(e.seq, 7);
        let spaced = String::from_utf8(bytes.clone()).unwrap().replace(':', ": ");
        assert!(parse_canonical(spaced.as_bytes()).is_err());
        let mut flipped = bytes.clone();
        flipped[3] ^= 0x20;
        assert!(parse_canonical(&flipped).is_err());
    }
}
