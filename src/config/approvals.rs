//! The approval parts of the config: `approvers:` (human principals), `approvals:` (how long
//! an approval lives) and `notify:` (webhooks told about approvals).

use std::time::Duration;

use super::raw::{RawApprovals, RawApprover, RawNotify};
use super::Validator;
use crate::error::Result;

/// An approver declared in the config file (tokens are issued with `clawser approvers token`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverDecl {
    pub id: String,
    pub roles: Vec<String>,
}

/// How long approvals live.
#[derive(Debug, Clone)]
pub struct ApprovalsConfig {
    /// From creation; a pending or approved (unused) approval expires after it.
    pub ttl: Duration,
    /// How often expired approvals are marked and recorded.
    pub expire_interval: Duration,
    /// Pending approvals one agent may have open; beyond, its held requests get 429.
    pub max_pending_per_agent: usize,
    /// Decided, consumed and expired approvals are pruned this long after they ended (their
    /// history stays in the ledger).
    pub retention: Duration,
    /// The longest window an approver may grant (`approve --grant-for`), and the longest
    /// expiry of any grant an approver issues.
    pub max_grant_window: Duration,
    /// Uses of a window grant when the approver gives no `--max-uses`.
    pub window_uses: u64,
}

/// Events a webhook can receive.
pub const WEBHOOK_EVENTS: &[&str] = &["approval.created", "approval.decided"];

/// One webhook receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub url: http::Uri,
    /// Event kinds sent to it (default: all of [`WEBHOOK_EVENTS`]).
    pub events: Vec<String>,
}

/// Webhook delivery.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    pub webhooks: Vec<Webhook>,
    /// Per attempt.
    pub timeout: Duration,
    /// Attempts per event and receiver (the first included).
    pub max_attempts: u32,
    /// Delay before the first retry; doubled each time.
    pub retry_base: Duration,
    /// Events waiting for delivery; beyond, new events are dropped (and logged).
    pub queue: usize,
}

impl Validator<'_> {
    pub(super) fn approvers(&self, raw: Vec<RawApprover>) -> Result<Vec<ApproverDecl>> {
        let mut seen = std::collections::BTreeSet::new();
        raw.into_iter()
            .enumerate()
            .map(|(i, a)| {
                let key = format!("approvers[{i}]");
                crate::identity::validate_slug(&a.id)
                    .map_err(|m| self.err(&format!("{key}.id"), m))?;
                if !seen.insert(a.id.clone()) {
                    return Err(self.err(
                        &format!("{key}.id"),
                        format!("{:?} is declared twice", a.id),
                    ));
                }
                for r in &a.roles {
                    crate::identity::validate_slug(r)
                        .map_err(|m| self.err(&format!("{key}.roles"), m))?;
                }
                if a.roles.is_empty() {
                    return Err(self.err(
                        &format!("{key}.roles"),
                        "an approver needs at least one role",
                    ));
                }
                Ok(ApproverDecl {
                    id: a.id,
                    roles: a.roles,
                })
            })
            .collect()
    }

    pub(super) fn approvals(&self, raw: RawApprovals) -> Result<ApprovalsConfig> {
        Ok(ApprovalsConfig {
            ttl: self.duration("approvals.ttl", raw.ttl, "24h")?,
            expire_interval: self.duration(
                "approvals.expire_interval",
                raw.expire_interval,
                "10s",
            )?,
            max_pending_per_agent: self.positive(
                "approvals.max_pending_per_agent",
                raw.max_pending_per_agent,
                100,
            )?,
            retention: self.duration("approvals.retention", raw.retention, "7d")?,
            max_grant_window: self.duration(
                "approvals.max_grant_window",
                raw.max_grant_window,
                "8h",
            )?,
            window_uses: self.positive("approvals.window_uses", raw.window_uses, 10)? as u64,
        })
    }

    pub(super) fn notify(&self, raw: RawNotify) -> Result<NotifyConfig> {
        let webhooks = raw
            .webhooks
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                let key = format!("notify.webhooks[{i}]");
                let url: http::Uri = w.url.parse().map_err(|_| {
                    self.err(&format!("{key}.url"), format!("{:?} is not a URL", w.url))
                })?;
                if !matches!(url.scheme_str(), Some("http" | "https")) || url.host().is_none() {
                    return Err(
                        self.err(&format!("{key}.url"), "must be an http:// or https:// URL")
                    );
                }
                let events = w
                    .events
                    .unwrap_or_else(|| WEBHOOK_EVENTS.iter().map(|s| s.to_string()).collect());
                if let Some(bad) = events
                    .iter()
                    .find(|e| !WEBHOOK_EVENTS.contains(&e.as_str()))
                {
                    return Err(self.err(
                        &format!("{key}.events"),
                        format!("{bad:?} is not one of {}", WEBHOOK_EVENTS.join(", ")),
                    ));
                }
                Ok(Webhook { url, events })
            })
            .collect::<Result<Vec<_>>>()?;
        let max_attempts = raw.max_attempts.unwrap_or(5);
        if max_attempts == 0 {
            return Err(self.err("notify.max_attempts", "must be greater than 0"));
        }
        Ok(NotifyConfig {
            webhooks,
            timeout: self.duration("notify.timeout", raw.timeout, "5s")?,
            max_attempts,
            retry_base: self.duration("notify.retry_base", raw.retry_base, "1s")?,
            queue: self.positive("notify.queue", raw.queue, 1024)?,
        })
    }
}
