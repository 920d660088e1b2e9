//! Background upkeep of authority: recording grants that expired or ran out, re-reading
//! `command` secrets after their TTL, and counting grant uses recorded in the ledger.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::{GrantContext, Secrets};
use crate::config::SecretSource;

/// Records `grant.expired` / `grant.exhausted` for grants that ended, every `every`.
pub async fn sweep(ctx: GrantContext, every: Duration, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        let (store, now) = (ctx.store.clone(), ctx.clock.now());
        match tokio::task::spawn_blocking(move || store.sweep(now)).await {
            Ok(Ok(ended)) => {
                for g in ended {
                    tracing::info!(grant = %g.id, ended = g.ended.as_deref().unwrap_or(""), "grant ended");
                }
            }
            Ok(Err(e)) => tracing::error!(error = %e, "recording ended grants failed"),
            Err(e) => tracing::error!(error = %e, "recording ended grants failed"),
        }
    }
}

/// Re-reads each `command` secret after its TTL. A failure keeps the old value and logs
/// the secret's name (never a value).
pub async fn refresh_secrets(secrets: Arc<Secrets>, mut shutdown: watch::Receiver<bool>) {
    let mut due: Vec<(String, Duration, tokio::time::Instant)> = secrets
        .decls()
        .iter()
        .filter_map(|d| match &d.from {
            SecretSource::Command { ttl, .. } => {
                Some((d.name.clone(), *ttl, tokio::time::Instant::now() + *ttl))
            }
            _ => None,
        })
        .collect();
    if due.is_empty() {
        return;
    }
    loop {
        let Some(next) = due.iter().map(|d| d.2).min() else {
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = shutdown.changed() => return,
        }
        let now = tokio::time::Instant::now();
        for (name, ttl, at) in due.iter_mut() {
            if *at > now {
                continue;
            }
            *at = now + *ttl;
            let (s, n) = (secrets.clone(), name.clone());
            match tokio::task::spawn_blocking(move || s.refresh(&n)).await {
                Ok(Ok(())) => tracing::info!(secret = %name, "secret refreshed from its command"),
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "secret refresh failed; the previous value stays")
                }
                Err(e) => tracing::error!(error = %e, "secret refresh failed"),
            }
        }
    }
}

/// Opens the sled grant store as a node (or the offline CLI) starts: grants declared in the
/// config are upserted (keeping their count and history), declared grants no longer in the
/// config are revoked (`revoked_by: config`), and use counts are raised to what the ledger
/// `recorded` (its entries' canonical bytes) says.
pub fn open_sled(
    db: sled::Db,
    declared: &[crate::config::GrantDecl],
    recorded: impl Iterator<Item = Vec<u8>>,
    sink: Option<Arc<dyn crate::model::EventSink>>,
) -> crate::error::Result<super::SledGrants> {
    use super::GrantStore as _;
    let store = super::SledGrants::open(db, sink)?;
    for d in declared {
        store.insert(super::declared(d))?;
    }
    for g in store.list() {
        let gone = g.source == "config"
            && g.revoked_at.is_none()
            && !declared.iter().any(|d| format!("grt_{}", d.name) == g.id);
        if gone {
            tracing::info!(grant = %g.id, "declared grant removed from the config: revoked");
            store.revoke(&g.id, "config")?;
        }
    }
    store.reconcile(&uses_in(recorded))?;
    Ok(store)
}

/// Uses per grant recorded in ledger entries (canonical JSON bytes): each allowed
/// `request.decided` and each `grant.used` counts one use of every grant it names.
pub fn uses_in(entries: impl Iterator<Item = Vec<u8>>) -> HashMap<String, u64> {
    const NEEDLE: &[u8] = b"\"grants_used\":[\"";
    let mut counts = HashMap::new();
    for bytes in entries {
        if !bytes.windows(NEEDLE.len()).any(|w| w == NEEDLE) {
            continue;
        }
        let Ok(e) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let kind = e["kind"].as_str().unwrap_or("");
        let data = &e["data"];
        let counts_use = match kind {
            "request.decided" => data["outcome"] == "allow",
            "grant.used" => true,
            _ => false,
        };
        if !counts_use {
            continue;
        }
        for id in data["grants_used"].as_array().into_iter().flatten() {
            if let Some(id) = id.as_str() {
                *counts.entry(id.to_string()).or_insert(0) += 1;
            }
        }
    }
    counts
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_uses_of_forwarded_requests_only() {
        let e = |kind: &str, data: serde_json::Value| {
            serde_json::to_vec(&serde_json::json!({"kind": kind, "data": data, "seq": 1})).unwrap()
        };
        let entries = vec![
            e(
                "request.decided",
                serde_json::json!({"outcome": "allow", "grants_used": ["grt_a", "grt_b"]}),
            ),
            e(
                "request.decided",
                serde_json::json!({"outcome": "hold", "grants_used": ["grt_a"]}),
            ),
            e(
                "request.decided",
                serde_json::json!({"outcome": "deny", "grants_used": ["grt_a"]}),
            ),
            e("grant.used", serde_json::json!({"grants_used": ["grt_a"]})),
            e(
                "request.decided",
                serde_json::json!({"outcome": "allow", "grants_used": []}),
            ),
        ];
        let c = super::uses_in(entries.into_iter());
        assert_eq!(c.get("grt_a"), Some(&2));
        assert_eq!(c.get("grt_b"), Some(&1));
    }
}
