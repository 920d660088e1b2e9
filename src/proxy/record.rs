//! What the proxy writes to the ledger: `request.decided` (durable before anything is
//! forwarded) and `request.completed` (when the response body ends). Only header *names*,
//! the redacted query and the body's size and hash are recorded; never values of secrets,
//! never bodies.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde_json::{json, Value};

use super::outcome::Seen;
use crate::identity::Principal;
use crate::ledger::Ledger;
use crate::model::{Destination, Reason, RequestSummary};
use crate::policy::{Evaluated, Target};
use crate::redact::Redactor;

/// The `request.decided` entry.
pub fn decided(
    p: &Principal,
    req: &RequestSummary,
    target: &Target,
    destination: Option<&Destination>,
    eval: &Evaluated,
    redactor: &Redactor,
) -> Value {
    let d = &eval.decision;
    // Policy messages may quote the input (the body's JSON is not redacted for policies).
    let reasons: Vec<Reason> = d
        .reasons
        .iter()
        .map(|r| Reason::new(r.code.clone(), redactor.text(&r.message).into_owned()))
        .collect();
    json!({
        "request_id": req.id,
        "agent": p.agent.id,
        "on_behalf_of": p.agent.on_behalf_of,
        "runtime": p.agent.runtime,
        "job": p.job.as_ref().map(|j| j.id.clone()),
        "credential": p.credential_id,
        "outcome": d.outcome.as_str(),
        "reasons": reasons,
        "approvers": d.approvers,
        "grants_used": d.grants_used,
        "policy_rev": eval.revision,
        "policy_error": eval.error.is_some(),
        "target": target,
        "destination": destination,
        "request": {
            "method": req.method,
            "scheme": req.scheme,
            "host": req.host,
            "port": req.port,
            "path": req.path,
            "query": req.query,
            "header_names": req.headers.keys().collect::<Vec<_>>(),
            "body": {"size": req.body.size, "sha256": req.body.sha256, "truncated": req.body.truncated},
            "tls": req.tls,
            "placeholders": req.placeholders,
        },
    })
}

/// The `request.decided` entry of a request refused before (or beside) the policy: a deny
/// with `code`, and what was known of the request (the path redacted).
pub fn refused(p: &Principal, seen: &Seen, code: &str, message: &str) -> Value {
    json!({
        "request_id": seen.request_id,
        "agent": p.agent.id,
        "on_behalf_of": p.agent.on_behalf_of,
        "runtime": p.agent.runtime,
        "job": p.job.as_ref().map(|j| j.id.clone()),
        "credential": p.credential_id,
        "outcome": "deny",
        "reasons": [{"code": code, "message": message}],
        "request": {"method": seen.method, "scheme": seen.scheme, "host": seen.host, "port": seen.port, "path": seen.path},
    })
}

/// The `request.decided` entry of a `407` for presented but unaccepted credentials: no
/// principal, only the agent the credentials claim (unverified).
pub fn auth_refused(seen: &Seen, code: &str, message: &str, claimed: Option<String>) -> Value {
    json!({
        "request_id": seen.request_id,
        "agent": null,
        "claimed_agent": claimed,
        "outcome": "deny",
        "reasons": [{"code": code, "message": message}],
        "request": {"method": seen.method},
    })
}

/// The `request.completed` entry.
pub fn completed(
    request_id: &str,
    p: &Principal,
    status: u16,
    bytes: u64,
    start: Instant,
    error: Option<&str>,
) -> Value {
    json!({
        "request_id": request_id,
        "agent": p.agent.id,
        "job": p.job.as_ref().map(|j| j.id.clone()),
        "status": status,
        "response_bytes": bytes,
        "duration_us": u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        "upstream_error": error,
    })
}

/// Called once with (response bytes, error) when a response body ends.
type OnDone = Box<dyn FnOnce(u64, Option<String>) + Send + Sync>;

/// A response body that counts bytes and records `request.completed` when it ends (or is
/// dropped early, e.g. the client went away).
pub struct Recorded<B> {
    inner: B,
    bytes: u64,
    done: Option<OnDone>,
}

impl<B> Recorded<B> {
    /// Wraps `inner`; `done(bytes, error)` runs once.
    pub fn new(inner: B, done: impl FnOnce(u64, Option<String>) + Send + Sync + 'static) -> Self {
        Recorded {
            inner,
            bytes: 0,
            done: Some(Box::new(done)),
        }
    }

    fn finish(&mut self, error: Option<String>) {
        if let Some(f) = self.done.take() {
            f(self.bytes, error);
        }
    }
}

impl<B> Body for Recorded<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    self.bytes += d.len() as u64;
                }
            }
            Poll::Ready(Some(Err(e))) => {
                let msg = e.to_string();
                self.finish(Some(msg));
            }
            Poll::Ready(None) => self.finish(None),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for Recorded<B> {
    fn drop(&mut self) {
        if self.done.is_some() {
            self.finish(Some(
                "response not fully delivered (client closed)".to_string(),
            ));
        }
    }
}

/// Records `request.completed` for an allowed request without delaying the response.
pub fn on_complete(
    ledger: Option<Ledger>,
    request_id: String,
    principal: Principal,
    status: u16,
    start: Instant,
) -> impl FnOnce(u64, Option<String>) + Send + Sync + 'static {
    move |bytes, error| {
        if let Some(l) = ledger {
            l.append_detached(
                "request.completed",
                completed(
                    &request_id,
                    &principal,
                    status,
                    bytes,
                    start,
                    error.as_deref(),
                ),
            );
        }
    }
}

/// The `github` object of a `request.decided` entry: what was done to which repository
/// (the GraphQL document itself is not recorded, only its operation, name and fields).
pub fn github(g: &crate::inspect::GithubView) -> serde_json::Value {
    serde_json::json!({
        "repo": g.repo,
        "repository_id": g.repository_id,
        "resource": g.resource,
        "action": g.action,
        "ref": g.r#ref,
        "environment": g.environment,
        "graphql": g.graphql.as_ref().map(|q| serde_json::json!({
            "operation": q.operation, "name": q.name, "fields": q.fields,
        })),
    })
}
