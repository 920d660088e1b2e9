//! What the proxy writes to the ledger: `request.decided` (durable before anything is
//! forwarded) and `request.completed` (when the response body ends). Only header *names*,
//! the redacted query and the body's size and hash are recorded; never values of secrets,
//! never bodies.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde::Serialize;
use serde_json::{json, Value};

use super::outcome::Seen;
use crate::identity::Principal;
use crate::ledger::{CanonicalData, Ledger, Sorted};
use crate::model::{Destination, Reason, RequestSummary};
use crate::policy::{Evaluated, Target};
use crate::redact::Redactor;

/// The `request.decided` entry, serialized straight to canonical bytes (its fields, and
/// those of every view below, are declared in byte order: see [`Sorted`]).
#[derive(Serialize)]
pub struct Decided<'a> {
    agent: &'a str,
    approvers: Option<ApproversView<'a>>,
    credential: &'a str,
    destination: Option<DestinationView<'a>>,
    /// Who changed what: the ref updates of a push, for auditors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub git: Option<Value>,
    /// The GitHub action and repository ([`github`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub github: Option<Value>,
    grants_used: &'a [String],
    job: Option<&'a str>,
    on_behalf_of: &'a str,
    outcome: &'static str,
    policy_error: bool,
    policy_rev: &'a str,
    reasons: Vec<Reason>,
    request: RequestView<'a>,
    request_id: &'a str,
    runtime: &'a str,
    target: TargetView<'a>,
}

impl Sorted for Decided<'_> {}

#[derive(Serialize)]
struct ApproversView<'a> {
    count: u32,
    role: &'a str,
    self_approval: bool,
}

#[derive(Serialize)]
struct DestinationView<'a> {
    class: &'a str,
    ips: &'a [std::net::IpAddr],
}

#[derive(Serialize)]
struct TargetView<'a> {
    env: &'a str,
    service: &'a str,
}

#[derive(Serialize)]
struct RequestView<'a> {
    body: BodyView<'a>,
    header_names: Vec<&'a str>,
    host: &'a str,
    method: &'a str,
    path: &'a str,
    placeholders: Vec<PlaceholderView<'a>>,
    port: u16,
    query: &'a std::collections::BTreeMap<String, Vec<String>>,
    scheme: &'a str,
    tls: TlsView<'a>,
}

#[derive(Serialize)]
struct BodyView<'a> {
    sha256: &'a str,
    size: Option<u64>,
    truncated: bool,
}

#[derive(Serialize)]
struct PlaceholderView<'a> {
    secret: &'a str,
    #[serde(rename = "where")]
    where_: &'a str,
}

#[derive(Serialize)]
struct TlsView<'a> {
    intercepted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    sni: Option<&'a str>,
}

/// The `request.decided` entry.
pub fn decided<'a>(
    p: &'a Principal,
    req: &'a RequestSummary,
    target: &'a Target,
    destination: Option<&'a Destination>,
    eval: &'a Evaluated,
    redactor: &Redactor,
) -> Decided<'a> {
    let d = &eval.decision;
    Decided {
        agent: &p.agent.id,
        approvers: d.approvers.as_ref().map(|a| ApproversView {
            count: a.count,
            role: &a.role,
            self_approval: a.self_approval,
        }),
        credential: &p.credential_id,
        destination: destination.map(|d| DestinationView {
            class: &d.class,
            ips: &d.ips,
        }),
        git: None,
        github: None,
        grants_used: &d.grants_used,
        job: p.job.as_ref().map(|j| j.id.as_str()),
        on_behalf_of: &p.agent.on_behalf_of,
        outcome: d.outcome.as_str(),
        policy_error: eval.error.is_some(),
        policy_rev: &eval.revision,
        // Policy messages may quote the input (the body's JSON is not redacted for policies).
        reasons: d
            .reasons
            .iter()
            .map(|r| Reason::new(r.code.clone(), redactor.text(&r.message).into_owned()))
            .collect(),
        request: RequestView {
            body: BodyView {
                sha256: &req.body.sha256,
                size: req.body.size,
                truncated: req.body.truncated,
            },
            header_names: req.headers.keys().map(String::as_str).collect(),
            host: &req.host,
            method: &req.method,
            path: &req.path,
            placeholders: req
                .placeholders
                .iter()
                .map(|p| PlaceholderView {
                    secret: &p.secret,
                    where_: &p.where_,
                })
                .collect(),
            port: req.port,
            query: &req.query,
            scheme: &req.scheme,
            tls: TlsView {
                intercepted: req.tls.intercepted,
                sni: req.tls.sni.as_deref(),
            },
        },
        request_id: &req.id,
        runtime: &p.agent.runtime,
        target: TargetView {
            env: &target.env,
            service: &target.service,
        },
    }
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

/// The `request.completed` entry (fields in byte order: see [`Sorted`]).
#[derive(Serialize)]
pub struct Completed<'a> {
    agent: &'a str,
    duration_us: u64,
    job: Option<&'a str>,
    request_id: &'a str,
    response_bytes: u64,
    status: u16,
    upstream_error: Option<&'a str>,
}

impl Sorted for Completed<'_> {}

/// The `request.completed` entry, in canonical form.
pub fn completed(
    request_id: &str,
    p: &Principal,
    status: u16,
    bytes: u64,
    start: Instant,
    error: Option<&str>,
) -> CanonicalData {
    let completed = Completed {
        agent: &p.agent.id,
        duration_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
        job: p.job.as_ref().map(|j| j.id.as_str()),
        request_id,
        response_bytes: bytes,
        status,
        upstream_error: error,
    };
    // Serializing plain strings and numbers does not fail; if it ever did, the entry still
    // says which request completed.
    CanonicalData::of_sorted(&completed).unwrap_or_else(|e| {
        CanonicalData::of_value(&json!({"request_id": request_id, "unserializable": e.to_string()}))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::{Agent, Job};
    use crate::model::Decision;
    use std::sync::Arc;

    /// What `request.decided` was before it was serialized directly (a `json!` tree made
    /// canonical by sorting): the direct form must give the same bytes.
    fn as_tree(
        p: &Principal,
        req: &RequestSummary,
        target: &Target,
        destination: Option<&Destination>,
        eval: &Evaluated,
    ) -> Value {
        let d = &eval.decision;
        json!({
            "request_id": req.id, "agent": p.agent.id, "on_behalf_of": p.agent.on_behalf_of,
            "runtime": p.agent.runtime, "job": p.job.as_ref().map(|j| j.id.clone()),
            "credential": p.credential_id, "outcome": d.outcome.as_str(), "reasons": d.reasons,
            "approvers": d.approvers, "grants_used": d.grants_used, "policy_rev": eval.revision,
            "policy_error": eval.error.is_some(), "target": target, "destination": destination,
            "request": {
                "method": req.method, "scheme": req.scheme, "host": req.host, "port": req.port,
                "path": req.path, "query": req.query,
                "header_names": req.headers.keys().collect::<Vec<_>>(),
                "body": {"size": req.body.size, "sha256": req.body.sha256, "truncated": req.body.truncated},
                "tls": req.tls, "placeholders": req.placeholders,
            },
        })
    }

    fn principal(job: bool) -> Principal {
        let agent: Agent = serde_json::from_value(json!({"id": "oc-1", "runtime": "openclaw",
            "on_behalf_of": "alice", "created_at": "t", "source": "config"}))
        .unwrap();
        let job: Option<Job> = job.then(|| {
            serde_json::from_value(json!({"id": "job_1", "title": "ünïcode \"release\"",
                "started_by": "oc-1", "agents": ["oc-1"], "state": "open", "created_at": "t"}))
            .unwrap()
        });
        Principal {
            agent: Arc::new(agent),
            job: job.map(Arc::new),
            credential_id: "cred_1".into(),
        }
    }

    #[test]
    fn decided_and_completed_are_canonical_and_equal_to_the_tree_form() {
        let full: RequestSummary = serde_json::from_value(json!({
            "id": "req_1", "scheme": "https", "method": "POST", "host": "api.github.com", "port": 443,
            "path": "/repos/acme/api/pulls/7/merge", "query": {"z": ["1"], "a": ["<redacted>", "ß"]},
            "headers": {"x-b": ["1"], "authorization": ["<redacted>"], "accept": ["*/*"]},
            "body": {"size": 12, "sha256": "ab", "truncated": true, "json": {"k": 1}},
            "tls": {"sni": "api.github.com", "intercepted": true},
            "placeholders": [{"secret": "github", "where": "authorization"}]})).unwrap();
        let bare: RequestSummary = serde_json::from_value(json!({
            "id": "req_2", "scheme": "http", "method": "GET", "host": "h", "port": 80, "path": "/",
            "query": {}, "headers": {}, "body": {"size": null, "sha256": "", "truncated": false},
            "tls": {"intercepted": false}}))
        .unwrap();
        let held: Decision = serde_json::from_value(json!({"outcome": "hold",
            "reasons": [{"code": "prod", "message": "to production \u{1F680}"}],
            "approvers": {"role": "release-approver", "count": 2, "self_approval": true},
            "grants_used": ["grt_1"]}))
        .unwrap();
        let target = Target {
            env: "production".into(),
            service: "github".into(),
        };
        let dest: Destination =
            serde_json::from_value(json!({"ips": ["140.82.112.6", "::1"], "class": "global"}))
                .unwrap();
        let redactor = Redactor::new(&[], &[], &[]).unwrap();
        for (req, decision, job, destination, error) in [
            (&full, held.clone(), true, Some(&dest), None),
            (
                &bare,
                Decision::deny("no_rule", "nothing matched"),
                false,
                None,
                Some("boom".to_string()),
            ),
        ] {
            let p = principal(job);
            let eval = Evaluated {
                decision,
                revision: "rev".into(),
                elapsed: std::time::Duration::ZERO,
                error,
            };
            let mut entry = decided(&p, req, &target, destination, &eval, &redactor);
            let direct = CanonicalData::of_sorted(&entry).unwrap();
            let tree = as_tree(&p, req, &target, destination, &eval);
            assert_eq!(
                String::from_utf8_lossy(direct.as_bytes()),
                String::from_utf8_lossy(&crate::ledger::entry::canonical(&tree))
            );
            // Written directly (release builds skip the debug check): already canonical.
            let raw = serde_json::to_vec(&entry).unwrap();
            assert_eq!(raw, direct.as_bytes());
            entry.git = Some(json!({"service": "receive-pack", "ref_updates": []}));
            entry.github = Some(json!({"repo": "acme/api", "action": "pulls.merge"}));
            let raw = serde_json::to_vec(&entry).unwrap();
            let v: Value = serde_json::from_slice(&raw).unwrap();
            assert_eq!(raw, crate::ledger::entry::canonical(&v));
        }
        let p = principal(true);
        let start = Instant::now();
        for error in [None, Some("upstream \"reset\"")] {
            let c = completed("req_1", &p, 200, 5, start, error);
            let v: Value = serde_json::from_slice(c.as_bytes()).unwrap();
            assert_eq!(c.as_bytes(), crate::ledger::entry::canonical(&v));
            assert_eq!(v["upstream_error"], json!(error));
            assert_eq!(v["job"], "job_1");
        }
    }
}
