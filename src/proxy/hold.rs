//! Holding a request for approval (DESIGN.md section 5). A `hold` decision either finds an
//! approved approval for the exact same request (fingerprint) and consumes it, or opens a
//! new approval (persisted and recorded first) and waits up to `proxy.hold_timeout` for the
//! approvers. Held requests are bounded by `proxy.max_held`.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use tokio::sync::watch;

use super::body::ProxyBody;
use super::respond;
use super::ProxyState;
use crate::approval::{
    fingerprint, Approval, ApprovalState, NewApproval, OpenError, Required, Requirement,
    ReviewedRequest, Verdict, FINGERPRINT_HEADERS, SHOWN_HEADERS,
};
use crate::identity::Principal;
use crate::model::{Decision, RequestSummary};

/// Header with the agent's stated expected impact.
pub const INTENT_HEADER: &str = "x-clawser-intent";
/// Header with the agent's evidence (tests run, links).
pub const EVIDENCE_HEADER: &str = "x-clawser-evidence";
/// Longest intent or evidence kept (characters).
pub const MAX_STATEMENT_CHARS: usize = 4096;

/// What an agent said about its request, read before `X-Clawser-*` headers are stripped.
pub fn statement(headers: &HeaderMap, name: &str) -> Option<String> {
    let v = headers.get(name)?.to_str().ok()?.trim();
    (!v.is_empty()).then(|| v.chars().take(MAX_STATEMENT_CHARS).collect())
}

/// How waiting for a decision ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Waited {
    /// The approval left `pending` (approved, denied, expired...).
    Decided(ApprovalState),
    /// `hold_timeout` passed with the approval still pending.
    TimedOut,
}

/// Waits until the watched approval is no longer pending, at most `timeout`.
pub async fn wait_for_decision(
    mut rx: watch::Receiver<ApprovalState>,
    timeout: Duration,
) -> Waited {
    let waiting = async {
        loop {
            let s = *rx.borrow_and_update();
            if s != ApprovalState::Pending {
                return Waited::Decided(s);
            }
            if rx.changed().await.is_err() {
                // The store dropped the watcher: read the final state once more.
                let s = *rx.borrow();
                return if s == ApprovalState::Pending {
                    Waited::TimedOut
                } else {
                    Waited::Decided(s)
                };
            }
        }
    };
    tokio::time::timeout(timeout, waiting)
        .await
        .unwrap_or(Waited::TimedOut)
}

/// The request as an approver sees it: URL with the redacted query.
pub fn reviewed(summary: &RequestSummary) -> ReviewedRequest {
    let mut url = format!(
        "{}://{}:{}{}",
        summary.scheme,
        if summary.host.contains(':') {
            format!("[{}]", summary.host)
        } else {
            summary.host.clone()
        },
        summary.port,
        summary.path
    );
    let query: Vec<String> = summary
        .query
        .iter()
        .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{k}={v}")))
        .collect();
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query.join("&"));
    }
    ReviewedRequest {
        method: summary.method.clone(),
        url,
        body_size: summary.body.size,
        body_sha256: summary.body.sha256.clone(),
        body_preview: None,
        headers: Vec::new(),
    }
}

/// What a held request is bound to and what the agent said about it, captured before the
/// `X-Clawser-*` headers are stripped.
pub struct Captured {
    pub fingerprint: String,
    /// The bound headers the approver sees (content type, method overrides), redacted.
    pub shown: Vec<(String, String)>,
    pub intent: Option<String>,
    pub evidence: Option<String>,
    /// The redacted body preview the approver reads.
    pub preview: Option<String>,
    /// `target.env` of the request (the scope of a grant issued with `--grant-for`).
    pub env: Option<String>,
}

impl Captured {
    /// Fingerprint over agent, job, method, the full URL as received (unredacted: the
    /// approval binds what is sent, the approver sees the redacted form), body SHA-256 and
    /// [`FINGERPRINT_HEADERS`].
    pub fn of(
        principal: &Principal,
        summary: &RequestSummary,
        uri: &http::Uri,
        headers: &HeaderMap,
        body: &[u8],
        redactor: &crate::redact::Redactor,
    ) -> Captured {
        let said = |name| statement(headers, name).map(|s| redactor.text(&s).into_owned());
        // Every value of each bound header: a duplicate cannot carry something unreviewed.
        let mut values: Vec<(&str, &str)> = FINGERPRINT_HEADERS
            .iter()
            .flat_map(|n| {
                headers
                    .get_all(*n)
                    .iter()
                    .map(move |v| (*n, v.to_str().unwrap_or("<binary>")))
            })
            .collect();
        // The secrets it would carry, and where: an approval for a request without one
        // does not release the same request with a secret added.
        let carried: Vec<String> = summary
            .placeholders
            .iter()
            .map(|p| format!("{} in {}", p.secret, p.where_))
            .collect();
        values.extend(carried.iter().map(|c| ("x-clawser-secret", c.as_str())));
        // A request the agent signed for AWS with a placeholder: Clawser re-signs whatever
        // it carries, so every x-amz-* and signed header is bound (not the signature).
        let sigv4 = headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::grant::sigv4::parse_authorization);
        let signed_names: Vec<String> = sigv4.map(|s| s.headers).unwrap_or_default();
        if !signed_names.is_empty() {
            for (n, v) in headers.iter() {
                let name = n.as_str();
                let bound = name.starts_with("x-amz-") || signed_names.iter().any(|s| s == name);
                if bound && name != "authorization" {
                    values.push((name, v.to_str().unwrap_or("<binary>")));
                }
            }
        }
        Captured {
            fingerprint: fingerprint(
                &principal.agent.id,
                principal.job.as_ref().map(|j| j.id.as_str()),
                &summary.method,
                &uri.to_string(),
                &summary.body.sha256,
                &values,
            ),
            shown: carried
                .iter()
                .map(|c| ("secret".to_string(), c.clone()))
                .chain(SHOWN_HEADERS.iter().flat_map(|n| {
                    headers.get_all(*n).iter().map(move |v| {
                        (
                            n.to_string(),
                            redactor
                                .text(&String::from_utf8_lossy(v.as_bytes()))
                                .into_owned(),
                        )
                    })
                }))
                .collect(),
            intent: said(INTENT_HEADER),
            evidence: said(EVIDENCE_HEADER),
            preview: crate::approval::preview(
                body,
                headers
                    .get(http::header::CONTENT_TYPE)
                    .and_then(|v| v.to_str().ok()),
                redactor,
                crate::approval::DEFAULT_PREVIEW_BYTES,
            ),
            env: None,
        }
    }
}

fn now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

/// Runs a store operation off the async workers (it may wait for a durable write).
async fn blocking<T: Send + 'static>(
    rid: &str,
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, Box<Response>> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(unavailable(rid, &e)),
        Err(e) => Err(unavailable(rid, &e.to_string())),
    }
}

/// Returns the consumed approval that releases this request, or the response the agent
/// gets instead.
pub async fn hold(
    state: &Arc<ProxyState>,
    principal: &Principal,
    summary: &RequestSummary,
    decision: &Decision,
    held: Captured,
) -> Result<Approval, Box<Response>> {
    let rid = summary.id.as_str();
    let store = state.approvals.clone();
    let required = decision
        .approvers
        .clone()
        .unwrap_or(crate::model::Approvers {
            role: "approver".to_string(),
            count: 1,
            self_approval: false,
        });
    let need = Requirement {
        role: required.role.clone(),
        count: required.count.max(1),
        self_approval: required.self_approval,
    };
    // 1. An approval given for exactly this request (an earlier hold), meeting what the
    //    policy requires now, releases it once.
    let (s2, fp, n2, r2) = (
        store.clone(),
        held.fingerprint.clone(),
        need.clone(),
        rid.to_string(),
    );
    if let Some(a) = blocking(rid, move || {
        s2.consume(&fp, None, &n2, &r2, now())
            .map_err(|e| e.to_string())
    })
    .await?
    {
        return Ok(a);
    }
    // 2. An approval must bind the whole body.
    if summary.body.truncated {
        return Err(Box::new(respond::error(
            StatusCode::FORBIDDEN,
            "hold_body_too_large",
            &format!(
                "this request needs approval, but its body is larger than proxy.max_inspect_bytes ({} bytes), so an approval could not be bound to it; it was refused",
                state.config.max_inspect_bytes
            ),
            rid,
        )));
    }
    // 3. Bounded.
    let Ok(_permit) = state.held.clone().try_acquire_owned() else {
        return Err(Box::new(respond::error(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_held",
            &format!(
                "too many requests are waiting for approval (proxy.max_held = {}); try again later",
                state.config.max_held
            ),
            rid,
        )));
    };
    // 4. The approval exists (recorded, persisted) before the request waits; an identical
    //    request's pending approval is joined rather than duplicated.
    let new = NewApproval {
        fingerprint: held.fingerprint.clone(),
        request: ReviewedRequest {
            body_preview: held.preview,
            headers: held.shown,
            ..reviewed(summary)
        },
        agent: principal.agent.id.clone(),
        on_behalf_of: principal.agent.on_behalf_of.clone(),
        runtime: principal.agent.runtime.clone(),
        job: principal.job.as_ref().map(|j| j.id.clone()),
        reasons: decision.reasons.clone(),
        required: Required {
            role: required.role,
            count: required.count.max(1),
        },
        intent: held.intent,
        evidence: held.evidence,
        env: held.env,
        allow_self_approval: required.self_approval,
        request_id: rid.to_string(),
    };
    let s2 = store.clone();
    let opened = match tokio::task::spawn_blocking(move || s2.open_for(new, now())).await {
        Ok(Ok(o)) => o,
        Ok(Err(OpenError::TooManyPending { agent, max })) => {
            return Err(Box::new(respond::error(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_pending",
                &format!("agent {agent} already has {max} requests waiting for approval (approvals.max_pending_per_agent); wait for a human to decide them"),
                rid,
            )))
        }
        Ok(Err(OpenError::Store(e))) => return Err(unavailable(rid, &e.to_string())),
        Err(e) => return Err(unavailable(rid, &e.to_string())),
    };
    let approval = opened.approval().clone();
    let gauge = HeldGauge::new(state.metrics.clone());
    let waited = match store.subscribe(&approval.id) {
        Some(rx) => wait_for_decision(rx, state.config.hold_timeout).await,
        None => Waited::TimedOut,
    };
    drop(gauge);
    // 5. What the approvers said.
    let current = store.get(&approval.id).unwrap_or(approval);
    match waited {
        Waited::Decided(ApprovalState::Approved) => {
            // The credential may have been revoked while the request waited.
            if let Err(failure) = state.auth.revalidate(&principal.credential_id) {
                return Err(Box::new(respond::auth_required(&failure, rid)));
            }
            let (s2, fp, id, r2) = (
                store.clone(),
                held.fingerprint.clone(),
                current.id.clone(),
                rid.to_string(),
            );
            match blocking(rid, move || {
                s2.consume(&fp, Some(&id), &need, &r2, now())
                    .map_err(|e| e.to_string())
            })
            .await?
            {
                Some(a) => Ok(a),
                None => Err(Box::new(respond::held(
                    &current,
                    decision,
                    "this request was approved, but the approval was already used by an identical request or no longer meets the policy, so it was not sent",
                    rid,
                ))),
            }
        }
        Waited::Decided(ApprovalState::Denied) => {
            let why = current
                .decisions
                .iter()
                .rev()
                .find(|d| d.verdict == Verdict::Deny)
                .map(|d| {
                    if d.reason.is_empty() {
                        format!("refused by approver {}", d.approver)
                    } else {
                        format!("refused by approver {}: {}", d.approver, d.reason)
                    }
                })
                .unwrap_or_else(|| "refused by an approver".to_string());
            Err(Box::new(respond::held(
                &current,
                decision,
                &format!("{why}; do not retry this request unchanged"),
                rid,
            )))
        }
        Waited::Decided(other) => Err(Box::new(respond::held(
            &current,
            decision,
            &format!(
                "approval {} is {}; this request was not sent",
                current.id,
                other.as_str()
            ),
            rid,
        ))),
        Waited::TimedOut => Err(Box::new(respond::held(
            &current,
            decision,
            &format!(
                "a human must approve this request before it can proceed (approval {}); it was not sent. Ask your user to approve {} and then send exactly the same request again.",
                current.id, current.id
            ),
            rid,
        ))),
    }
}

type Response = http::Response<ProxyBody>;

/// Counts a held request for `/metrics` while it lives, also when the agent disconnects
/// (the future is dropped).
struct HeldGauge(Arc<crate::metrics::Metrics>);

impl HeldGauge {
    fn new(m: Arc<crate::metrics::Metrics>) -> HeldGauge {
        m.held(1);
        HeldGauge(m)
    }
}

impl Drop for HeldGauge {
    fn drop(&mut self) {
        self.0.held(-1);
    }
}

fn unavailable(rid: &str, e: &str) -> Box<Response> {
    tracing::error!(
        error = e,
        request_id = rid,
        "approval store failed; held request refused"
    );
    Box::new(respond::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "approval_unavailable",
        "the approval could not be recorded, so this request was not sent",
        rid,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_until_decided_or_timeout() {
        let (tx, rx) = watch::channel(ApprovalState::Pending);
        let waiter = tokio::spawn(wait_for_decision(rx, Duration::from_secs(110)));
        tokio::time::sleep(Duration::from_secs(100)).await;
        // A partial approval (1 of 2) notifies without leaving pending.
        tx.send(ApprovalState::Pending).unwrap();
        tokio::time::sleep(Duration::from_secs(5)).await;
        tx.send(ApprovalState::Approved).unwrap();
        assert_eq!(
            waiter.await.unwrap(),
            Waited::Decided(ApprovalState::Approved)
        );

        let (_tx, rx) = watch::channel(ApprovalState::Pending);
        let start = tokio::time::Instant::now();
        assert_eq!(
            wait_for_decision(rx, Duration::from_secs(110)).await,
            Waited::TimedOut
        );
        assert_eq!(start.elapsed(), Duration::from_secs(110));

        // Decided and the watcher dropped before the waiter looked.
        let (tx, rx) = watch::channel(ApprovalState::Pending);
        tx.send(ApprovalState::Denied).unwrap();
        drop(tx);
        assert_eq!(
            wait_for_decision(rx, Duration::from_secs(1)).await,
            Waited::Decided(ApprovalState::Denied)
        );
    }

    #[test]
    fn statements_are_trimmed_and_bounded() {
        let mut h = HeaderMap::new();
        h.insert(INTENT_HEADER, "  merge PR 7  ".parse().unwrap());
        h.insert(EVIDENCE_HEADER, "x".repeat(5000).parse().unwrap());
        assert_eq!(statement(&h, INTENT_HEADER).as_deref(), Some("merge PR 7"));
        assert_eq!(
            statement(&h, EVIDENCE_HEADER).unwrap().len(),
            MAX_STATEMENT_CHARS
        );
        assert_eq!(statement(&h, "x-missing"), None);
    }
}
