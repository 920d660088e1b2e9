//! `clawser ledger ...`: reads through the running server's admin API, or the data dir
//! directly when no server holds it; verification itself is always done here, by the pure
//! verifier.

use std::io::Write;
use std::time::Duration;

use super::backend::Backend;
use super::{ExportFormat, LedgerCmd};
use crate::app::open_db;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::ledger::export::{parse_jsonl, write_jsonl, write_ocsf};
use crate::ledger::{read_stored, verify::verify, Entry, Filter, InclusionProof};

/// Runs one ledger subcommand; returns the exit code.
pub async fn run(config: &Config, cmd: LedgerCmd) -> Result<i32> {
    match cmd {
        LedgerCmd::Verify {
            data,
            export,
            trusted_checkpoint,
            key,
        } => verify_cmd(config, data, export, trusted_checkpoint, key).await,
        cmd => {
            let b = Backend::connect(config).await?;
            match cmd {
                LedgerCmd::Tail { n, follow } => tail(&b, n, follow).await,
                LedgerCmd::Show {
                    job,
                    agent,
                    approval,
                    json,
                } => {
                    let f = Filter {
                        job,
                        agent,
                        approval,
                        after: None,
                        limit: None,
                    };
                    let entries = list(&b, &f).await?;
                    if json {
                        println!(
                            "{}",
                            serde_json::to_string_pretty(&entries).unwrap_or_default()
                        );
                    } else {
                        for e in &entries {
                            println!("{}", describe(e));
                        }
                        eprintln!("{} entries ({})", entries.len(), b.describe());
                    }
                    Ok(0)
                }
                LedgerCmd::Export { format, out } => {
                    let bytes = export(&b, format).await?;
                    match out {
                        Some(p) => std::fs::write(&p, bytes).map_err(Error::io("writing", &p))?,
                        None => std::io::stdout()
                            .write_all(&bytes)
                            .map_err(Error::io("writing", "stdout"))?,
                    }
                    Ok(0)
                }
                LedgerCmd::Proof { seq } => {
                    let p: InclusionProof = match &b {
                        Backend::Remote(c) => c.get(&format!("/v1/ledger/proof/{seq}")).await?,
                        Backend::Local(_, l, _, _) => l.proof(seq)?,
                    };
                    println!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
                    Ok(0)
                }
                LedgerCmd::Verify { .. } => Ok(2),
            }
        }
    }
}

async fn list(b: &Backend, f: &Filter) -> Result<Vec<Entry>> {
    match b {
        Backend::Remote(c) => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            if let Some(j) = &f.job {
                q.append_pair("job", j);
            }
            if let Some(a) = &f.agent {
                q.append_pair("agent", a);
            }
            if let Some(a) = &f.approval {
                q.append_pair("approval", a);
            }
            if let Some(a) = f.after {
                q.append_pair("after", &a.to_string());
            }
            q.append_pair("limit", &f.limit.unwrap_or(10_000).to_string());
            c.get(&format!("/v1/ledger?{}", q.finish())).await
        }
        Backend::Local(_, l, _, _) => l.entries(f),
    }
}

async fn export(b: &Backend, format: ExportFormat) -> Result<Vec<u8>> {
    let ocsf = format == ExportFormat::Ocsf;
    match b {
        Backend::Remote(c) => {
            let path = if ocsf {
                "/v1/ledger/export?format=ocsf"
            } else {
                "/v1/ledger/export"
            };
            Ok(c.get_text(path).await?.into_bytes())
        }
        Backend::Local(_, l, _, _) => {
            let mut out = Vec::new();
            if ocsf {
                write_ocsf(l, &mut out)?;
            } else {
                write_jsonl(l, &mut out)?;
            }
            Ok(out)
        }
    }
}

async fn tail(b: &Backend, n: usize, follow: bool) -> Result<i32> {
    let all = list(b, &Filter::default()).await?;
    let skip = all.len().saturating_sub(n);
    let mut last = None;
    for e in &all[skip..] {
        println!("{}", describe(e));
        last = Some(e.seq);
    }
    if !follow {
        return Ok(0);
    }
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let f = Filter {
            after: last,
            ..Default::default()
        };
        for e in list(b, &f).await? {
            println!("{}", describe(&e));
            last = Some(e.seq);
        }
    }
}

/// One readable line: who, what, under which credential/grant, decided how, result.
pub fn describe(e: &Entry) -> String {
    let d = &e.data;
    let s = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_string();
    let head = format!(
        "#{:<6} {} {:<18}",
        e.seq,
        e.time.get(..19).unwrap_or(&e.time),
        e.kind
    );
    match e.kind.as_str() {
        "request.decided" => {
            let r = &d["request"];
            let reasons: Vec<String> = d["reasons"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|r| r["code"].as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let grants: Vec<&str> = d["grants_used"]
                .as_array()
                .map(|a| a.iter().filter_map(|g| g.as_str()).collect())
                .unwrap_or_default();
            format!(
                "{head} {} ({}, for {}) {} {}{} -> {}{}{} [job {}, {}, policy {}]",
                s("agent"),
                s("runtime"),
                s("on_behalf_of"),
                r["method"].as_str().unwrap_or("?"),
                r["host"].as_str().unwrap_or("?"),
                r["path"].as_str().unwrap_or(""),
                s("outcome").to_uppercase(),
                if reasons.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", reasons.join(", "))
                },
                if grants.is_empty() {
                    String::new()
                } else {
                    format!(" under {}", grants.join(", "))
                },
                s("job"),
                s("credential"),
                s("policy_rev").get(..12).unwrap_or("-"),
            )
        }
        "request.completed" => format!(
            "{head} {} status {} {} bytes in {:.1} ms{}",
            s("request_id"),
            d["status"],
            d["response_bytes"],
            d["duration_us"].as_f64().unwrap_or(0.0) / 1000.0,
            d["upstream_error"]
                .as_str()
                .map(|e| format!(" (error: {e})"))
                .unwrap_or_default()
        ),
        "job.started" => format!(
            "{head} {} {:?} started by {}",
            s("job"),
            s("title"),
            s("agent")
        ),
        "job.handed_off" => format!(
            "{head} {} handed off {} -> {}",
            s("job"),
            s("from"),
            s("to")
        ),
        "approval.created" => format!(
            "{head} {} {} {} held for {} x {}: agent {} ({}, for {}) [job {}, {}]",
            s("approval"),
            s("method"),
            s("url"),
            d["required"]["count"],
            d["required"]["role"].as_str().unwrap_or("?"),
            s("agent"),
            s("runtime"),
            s("on_behalf_of"),
            s("job"),
            s("request_id"),
        ),
        "approval.decided" => format!(
            "{head} {} {} by {}{} -> {}",
            s("approval"),
            if s("verdict") == "approve" {
                "APPROVED"
            } else {
                "DENIED"
            },
            s("approver"),
            match d["reason"].as_str() {
                Some(r) if !r.is_empty() => format!(" ({r:?})"),
                _ => String::new(),
            },
            s("state"),
        ),
        "approval.consumed" => format!(
            "{head} {} released {} {} as {}",
            s("approval"),
            s("method"),
            s("url"),
            s("request_id"),
        ),
        "approval.expired" => format!("{head} {} expired undecided", s("approval")),
        "grant.issued" | "grant.revoked" | "grant.expired" | "grant.exhausted" => format!(
            "{head} {} to {} {} by {}{}",
            s("grant"),
            d["subject"]["kind"].as_str().unwrap_or("?"),
            d["subject"]["id"].as_str().unwrap_or("?"),
            d.get("revoked_by")
                .and_then(|v| v.as_str())
                .unwrap_or(&s("issued_by")),
            d["secret"]
                .as_str()
                .map(|x| format!(" (secret {x})"))
                .unwrap_or_default(),
        ),
        "grant.used" => format!(
            "{head} {} released by {} under {}",
            s("request_id"),
            s("approval"),
            d["grants_used"]
        ),
        "policy.loaded" => format!(
            "{head} revision {} ({})",
            s("revision").get(..12).unwrap_or("-"),
            s("engine")
        ),
        _ => format!("{head} {}", d),
    }
}

async fn verify_cmd(
    config: &Config,
    data: Option<std::path::PathBuf>,
    export_file: Option<std::path::PathBuf>,
    trusted: Option<std::path::PathBuf>,
    key: Option<String>,
) -> Result<i32> {
    let trusted = trusted
        .map(|p| std::fs::read_to_string(&p).map_err(Error::io("reading", &p)))
        .transpose()?;
    let is_export = export_file.is_some();
    let (entries, checkpoints, vkey, source) = if let Some(path) = export_file {
        let text = std::fs::read_to_string(&path).map_err(Error::io("reading", &path))?;
        let p = parse_jsonl(&text).map_err(Error::Invalid)?;
        let source = format!("export {}", path.display());
        (p.entries, p.checkpoints, p.verifier_key, source)
    } else {
        let dir = data.clone().unwrap_or_else(|| config.data_dir.clone());
        match open_db(&dir, config.db_cache_bytes) {
            Ok(db) => {
                let (e, c, k) = read_stored(&db, &dir, &config.ledger.origin)?;
                (e, c, k, format!("data dir {}", dir.display()))
            }
            Err(_) => {
                // A running server holds the data dir: verify its export here instead.
                let b = Backend::connect(config).await?;
                let bytes = export(&b, ExportFormat::Jsonl).await?;
                let p = parse_jsonl(&String::from_utf8_lossy(&bytes)).map_err(Error::Invalid)?;
                let source = format!("data dir {} (export of the running server)", dir.display());
                (p.entries, p.checkpoints, p.verifier_key, source)
            }
        }
    };
    // Which key is trusted: --key, else this node's own ledger key, else (for an export
    // read elsewhere) the key the export names, which proves only internal consistency.
    let (vkey, trust) = match key {
        Some(k) => (k, "from --key".to_string()),
        None => {
            let dir = data.unwrap_or_else(|| config.data_dir.clone());
            let origin = checkpoints
                .last()
                .and_then(|n| crate::ledger::note::Checkpoint::parse(n).ok())
                .map_or_else(|| config.ledger.origin.clone(), |c| c.origin);
            match crate::ledger::LedgerKey::load(&dir) {
                Ok(k) => (
                    crate::ledger::note::verifier_key(&origin, &k.public()),
                    format!("this node's ledger key ({})", dir.display()),
                ),
                Err(_) if is_export => {
                    eprintln!("WARNING: no --key and no readable ledger key in {}: trusting the key the export names, which proves only that the export is internally consistent, not who signed it", dir.display());
                    (
                        vkey,
                        "named by the export itself (internal consistency only)".to_string(),
                    )
                }
                Err(_) => (vkey, "named by the ledger".to_string()),
            }
        }
    };
    match verify(entries, &checkpoints, &vkey, trusted.as_deref()) {
        // An export must be covered whole by a signed checkpoint: uncovered entries prove
        // nothing and could have been changed freely.
        Ok(r) if is_export && r.latest_checkpoint_size < r.entries => {
            println!(
                "FAIL: {source}: entries {}..{} are not covered by a signed checkpoint (first bad sequence number {})",
                r.latest_checkpoint_size,
                r.entries - 1,
                r.latest_checkpoint_size
            );
            println!("key: {vkey} ({trust})");
            Ok(1)
        }
        Ok(r) => {
            println!(
                "OK: {source}: {} entries, {} checkpoints (latest covers {}), root {}{}",
                r.entries,
                r.checkpoints,
                r.latest_checkpoint_size,
                r.root,
                r.trusted_checkpoint_size
                    .map(|s| format!(", extends the trusted checkpoint of size {s}"))
                    .unwrap_or_default()
            );
            println!("key: {vkey} ({trust})");
            Ok(0)
        }
        Err(e) => {
            println!("FAIL: {source}: {e}");
            println!("key: {vkey} ({trust})");
            Ok(1)
        }
    }
}
