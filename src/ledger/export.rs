//! Exports. JSON Lines: a header line, every entry's canonical bytes as one line, then the
//! signed checkpoints, the last one signed at export time over every exported entry; `clawser ledger verify --export FILE` checks it offline. OCSF: one
//! OCSF 1.1 event per entry (HTTP Activity 4002 for requests, API Activity 6003 for identity
//! and policy changes) with disposition and policy fields, then the latest checkpoint.

use std::io::Write;

use serde_json::{json, Value};

use super::entry::Entry;
use super::Ledger;
use crate::error::{Error, Result};

/// The header of a JSON Lines export.
pub const EXPORT_FORMAT: &str = "clawser-ledger-export";

/// Writes the JSON Lines export.
pub fn write_jsonl(ledger: &Ledger, out: &mut dyn Write) -> Result<()> {
    let io = |e: std::io::Error| Error::Io {
        action: "writing",
        path: "export".into(),
        source: e,
    };
    let header = json!({"format": EXPORT_FORMAT, "version": 1, "verifier_key": ledger.verifier_key(), "entries": ledger.size()});
    writeln!(out, "{header}").map_err(io)?;
    let mut tree = super::merkle::Frontier::default();
    for item in ledger.raw_entries() {
        let (_, bytes, _) = item?;
        tree.push(super::merkle::leaf_hash(&bytes));
        out.write_all(&bytes).map_err(io)?;
        out.write_all(b"\n").map_err(io)?;
    }
    for note in ledger.checkpoints()? {
        writeln!(out, "{}", json!({"checkpoint": note})).map_err(io)?;
    }
    // Signed now, over exactly the entries above: an export proves what it holds.
    if tree.size() > 0 {
        let note = ledger.sign_checkpoint(tree.size(), tree.root());
        writeln!(out, "{}", json!({"checkpoint": note})).map_err(io)?;
    }
    Ok(())
}

/// A parsed JSON Lines export.
#[derive(Debug, Clone, Default)]
pub struct ParsedExport {
    pub verifier_key: String,
    pub entries: Vec<super::RawEntry>,
    pub checkpoints: Vec<String>,
}

/// Parses a JSON Lines export. Entry lines keep their exact bytes; their position gives the
/// sequence number a verifier expects, and the `seq` inside must agree.
pub fn parse_jsonl(text: &str) -> std::result::Result<ParsedExport, String> {
    let mut lines = text.lines();
    let header: Value = lines
        .next()
        .and_then(|l| serde_json::from_str(l).ok())
        .ok_or("not a Clawser ledger export (no header line)")?;
    if header["format"] != EXPORT_FORMAT {
        return Err("not a Clawser ledger export (wrong format in the header)".into());
    }
    let mut p = ParsedExport {
        verifier_key: header["verifier_key"].as_str().unwrap_or("").to_string(),
        ..Default::default()
    };
    for (i, line) in lines.enumerate() {
        if line.starts_with("{\"checkpoint\":") {
            let v: Value =
                serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 2))?;
            p.checkpoints
                .push(v["checkpoint"].as_str().unwrap_or("").to_string());
        } else {
            let seq = serde_json::from_str::<Value>(line)
                .ok()
                .and_then(|v| v["seq"].as_u64())
                .unwrap_or(u64::MAX);
            p.entries.push((seq, line.as_bytes().to_vec(), None));
        }
    }
    Ok(p)
}

fn epoch_ms(t: &str) -> i64 {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .unwrap_or(0)
}

fn http_activity(method: &str) -> u64 {
    match method {
        "CONNECT" => 1,
        "DELETE" => 2,
        "GET" => 3,
        "HEAD" => 4,
        "OPTIONS" => 5,
        "POST" => 6,
        "PUT" => 7,
        "TRACE" => 8,
        _ => 99,
    }
}

/// One entry as an OCSF 1.1 event.
pub fn to_ocsf(e: &Entry) -> Value {
    let d = &e.data;
    let metadata = json!({
        "version": "1.1.0",
        "uid": e.seq.to_string(),
        "correlation_uid": d.get("job").cloned().unwrap_or(Value::Null),
        "product": {"name": "Clawser", "vendor_name": "Clawser"},
        "log_name": "work_ledger",
    });
    let actor = json!({
        "user": {"name": d.get("on_behalf_of").cloned().unwrap_or(Value::Null)},
        "app_name": d.get("runtime").cloned().unwrap_or(Value::Null),
        "app_uid": d.get("agent").cloned().unwrap_or(Value::Null),
    });
    if e.kind.starts_with("request.") {
        let req = d.get("request").cloned().unwrap_or(Value::Null);
        let method = req["method"].as_str().unwrap_or("");
        let activity = http_activity(method);
        let (disp, disp_id) = match d["outcome"].as_str() {
            Some("allow") => ("Allowed", 1),
            Some("hold") => ("Delayed", 14),
            Some("deny") => ("Blocked", 2),
            _ => ("Unknown", 0),
        };
        return json!({
            "class_uid": 4002, "class_name": "HTTP Activity", "category_uid": 4, "category_name": "Network Activity",
            "activity_id": activity, "type_uid": 400200 + activity,
            "time": epoch_ms(&e.time), "severity_id": if disp_id == 2 { 3 } else { 1 },
            "disposition": disp, "disposition_id": disp_id,
            "status_code": d.get("status").cloned().unwrap_or(Value::Null),
            "http_request": {"http_method": method, "url": {"scheme": req["scheme"], "hostname": req["host"], "port": req["port"], "path": req["path"]}},
            "dst_endpoint": {"hostname": req["host"], "port": req["port"]},
            "actor": actor,
            "policy": {"name": "clawser", "uid": d.get("policy_rev").cloned().unwrap_or(Value::Null), "desc": d.get("reasons").cloned().unwrap_or(Value::Null)},
            "metadata": metadata,
            "unmapped": {"clawser_kind": e.kind, "clawser": d},
        });
    }
    let activity =
        if e.kind.ends_with("added") || e.kind.ends_with("started") || e.kind.ends_with("issued") {
            1
        } else if e.kind.ends_with("revoked") {
            4
        } else {
            3
        };
    json!({
        "class_uid": 6003, "class_name": "API Activity", "category_uid": 6, "category_name": "Application Activity",
        "activity_id": activity, "type_uid": 600300 + activity, "time": epoch_ms(&e.time), "severity_id": 1,
        "api": {"operation": e.kind, "service": {"name": "clawser"}},
        "actor": actor, "metadata": metadata,
        "unmapped": {"clawser_kind": e.kind, "clawser": d},
    })
}

/// Writes the OCSF export (one event per line, then the latest checkpoint).
pub fn write_ocsf(ledger: &Ledger, out: &mut dyn Write) -> Result<()> {
    let io = |e: std::io::Error| Error::Io {
        action: "writing",
        path: "export".into(),
        source: e,
    };
    for e in ledger.entries(&Default::default())? {
        writeln!(out, "{}", to_ocsf(&e)).map_err(io)?;
    }
    if let Some(cp) = ledger.latest_checkpoint() {
        writeln!(
            out,
            "{}",
            json!({"checkpoint": cp, "verifier_key": ledger.verifier_key()})
        )
        .map_err(io)?;
    }
    Ok(())
}
