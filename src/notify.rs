//! Webhooks (`notify.webhooks`): every `approval.created` and `approval.decided` event is
//! POSTed as JSON to each receiver that asked for it, with a Slack-compatible `text` field.
//! Deliveries run in their own tasks with retries and exponential backoff, bounded by
//! `notify.queue`, so a slow or dead receiver never blocks the proxy or the approvers.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{json, Value};
use tokio::sync::{broadcast, watch, Semaphore};

use crate::config::{NotifyConfig, UpstreamConfig, Webhook};
use crate::error::Result;
use crate::events::Event;

/// How a receiver is named in logs: scheme and host only (webhook URLs often carry a secret
/// in their path, as Slack's do).
fn receiver(url: &http::Uri) -> String {
    format!(
        "{}://{}{}",
        url.scheme_str().unwrap_or("?"),
        url.host().unwrap_or("?"),
        url.port_u16().map(|p| format!(":{p}")).unwrap_or_default()
    )
}

type HookClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Delivers events to the configured webhooks.
pub struct Notifier {
    hooks: Vec<Webhook>,
    client: HookClient,
    timeout: Duration,
    max_attempts: u32,
    retry_base: Duration,
    queue: Arc<Semaphore>,
}

/// The one-line summary chat tools show (`text`).
pub fn text_of(event: &Event) -> String {
    let d = &event.data;
    let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("-").to_string();
    let reasons = d
        .get("reasons")
        .and_then(Value::as_array)
        .map(|rs| {
            rs.iter()
                .filter_map(|r| r.get("message").and_then(Value::as_str))
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default();
    match event.kind.as_str() {
        "approval.created" => format!(
            "Approval {} needed: agent {} (for {}, {}) wants {} {}. {}",
            s("approval"),
            s("agent"),
            s("on_behalf_of"),
            s("runtime"),
            s("method"),
            s("url"),
            reasons
        )
        .trim_end()
        .to_string(),
        "approval.decided" => format!(
            "Approval {} {} by {} ({}): {} {}{}",
            s("approval"),
            match s("verdict").as_str() {
                "approve" => "approved",
                _ => "denied",
            },
            s("approver"),
            s("state"),
            s("method"),
            s("url"),
            match d.get("reason").and_then(Value::as_str) {
                Some(r) if !r.is_empty() => format!(" - {r}"),
                _ => String::new(),
            }
        ),
        other => format!("{other} {}", s("approval")),
    }
}

/// The JSON body a webhook receives.
pub fn payload(event: &Event) -> Value {
    json!({
        "text": text_of(event),
        "event": event.kind,
        "seq": event.seq,
        "at": event.at,
        "data": event.data,
    })
}

impl Notifier {
    /// Builds the client (trust: webpki roots + `upstream.extra_ca_files`).
    pub fn new(cfg: &NotifyConfig, upstream: &UpstreamConfig) -> Result<Notifier> {
        let tls = crate::tls::upstream_config(&upstream.extra_ca_files)?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(cfg.timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(https);
        Ok(Notifier {
            hooks: cfg.webhooks.clone(),
            client,
            timeout: cfg.timeout,
            max_attempts: cfg.max_attempts,
            retry_base: cfg.retry_base,
            queue: Arc::new(Semaphore::new(cfg.queue)),
        })
    }

    /// Delivers events from `rx` until shutdown.
    pub async fn run(
        self,
        mut rx: broadcast::Receiver<Arc<Event>>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if self.hooks.is_empty() {
            return;
        }
        let me = Arc::new(self);
        loop {
            let event = tokio::select! {
                r = rx.recv() => match r {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "webhooks fell behind; events skipped (the ledger has them)");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = shutdown.changed() => return,
            };
            for hook in me.hooks.iter().filter(|h| h.events.contains(&event.kind)) {
                let Ok(permit) = me.queue.clone().try_acquire_owned() else {
                    tracing::warn!(receiver = %receiver(&hook.url), event = %event.kind, "webhook queue full (notify.queue); event dropped for this receiver");
                    continue;
                };
                let (me, hook, event) = (me.clone(), hook.clone(), event.clone());
                tokio::spawn(async move {
                    me.deliver(&hook, &event).await;
                    drop(permit);
                });
            }
        }
    }

    async fn deliver(&self, hook: &Webhook, event: &Event) {
        let body = Bytes::from(serde_json::to_vec(&payload(event)).unwrap_or_default());
        let mut delay = self.retry_base;
        for attempt in 1..=self.max_attempts {
            let req = Request::builder()
                .method(Method::POST)
                .uri(hook.url.clone())
                .header(header::CONTENT_TYPE, "application/json")
                .header(header::USER_AGENT, "clawser-webhook")
                .header("x-clawser-event", event.kind.as_str())
                .body(Full::new(body.clone()));
            let Ok(req) = req else {
                tracing::error!(receiver = %receiver(&hook.url), "webhook request could not be built");
                return;
            };
            let outcome = tokio::time::timeout(self.timeout, self.client.request(req)).await;
            let why = match outcome {
                Ok(Ok(resp)) if resp.status().is_success() => {
                    tracing::debug!(receiver = %receiver(&hook.url), event = %event.kind, attempt, "webhook delivered");
                    return;
                }
                Ok(Ok(resp)) => format!("status {}", resp.status()),
                Ok(Err(e)) => e.to_string(),
                Err(_) => "timed out".to_string(),
            };
            if attempt == self.max_attempts {
                tracing::warn!(receiver = %receiver(&hook.url), event = %event.kind, attempts = attempt, error = %why, "webhook delivery failed; giving up");
                return;
            }
            tracing::info!(receiver = %receiver(&hook.url), event = %event.kind, attempt, error = %why, retry_in_ms = delay.as_millis() as u64, "webhook delivery failed; retrying");
            tokio::time::sleep(delay).await;
            delay = delay.saturating_mul(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slack_text_names_the_approval_and_the_request() {
        let e = Event {
            kind: "approval.created".into(),
            seq: Some(7),
            at: "2026-11-25T00:00:00Z".into(),
            data: json!({"approval": "apr_1", "agent": "oc-1", "on_behalf_of": "alice", "runtime": "openclaw",
                "method": "PUT", "url": "https://api.github.com:443/repos/a/b/pulls/7/merge",
                "reasons": [{"code": "production_write", "message": "a release approver must approve it"}]}),
        };
        let p = payload(&e);
        let text = p["text"].as_str().unwrap();
        assert!(text.contains("apr_1") && text.contains("oc-1") && text.contains("alice"));
        assert!(text.contains("PUT https://api.github.com:443/repos/a/b/pulls/7/merge"));
        assert!(text.contains("release approver"));
        assert_eq!(p["event"], "approval.created");
        let secret: http::Uri = "https://user:pw@hooks.example.com:8443/services/T0/B0/XyZsecret"
            .parse()
            .unwrap();
        assert_eq!(receiver(&secret), "https://hooks.example.com:8443");
        let d = Event {
            kind: "approval.decided".into(),
            seq: None,
            at: "x".into(),
            data: json!({"approval": "apr_1", "verdict": "deny", "approver": "bob", "state": "denied", "reason": "not today", "method": "PUT", "url": "u"}),
        };
        assert_eq!(
            text_of(&d),
            "Approval apr_1 denied by bob (denied): PUT u - not today"
        );
    }
}
