//! Every response Clawser makes itself: JSON with `error`, `outcome`, `reasons`,
//! `request_id` (and `approval_id` for held requests), plus `X-Clawser-Outcome`.
//! A deny is a `Decision`, not an error; this is the one place it becomes HTTP.

use http::{header, HeaderValue, Response, StatusCode};
use serde::Serialize;

use super::body::{full, ProxyBody};
use crate::identity::AuthFailure;
use crate::model::{one_line, Decision, Reason};

/// The header naming what happened: allow (never on our own responses), hold, deny, error.
pub const OUTCOME_HEADER: &str = "x-clawser-outcome";

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    /// The same text, where GitHub-style clients (gh, Octokit) look for it.
    message: &'a str,
    outcome: &'a str,
    reasons: &'a [Reason],
    request_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    approval: Option<ApprovalRef<'a>>,
}

#[derive(Serialize)]
struct ApprovalRef<'a> {
    id: &'a str,
    state: &'a str,
    required: &'a crate::approval::Required,
    approved_by: Vec<&'a str>,
    expires_at: &'a str,
}

/// The header naming the approval of a held request.
pub const APPROVAL_HEADER: &str = "x-clawser-approval";

fn json(
    status: StatusCode,
    outcome: &str,
    error: &str,
    reasons: &[Reason],
    request_id: &str,
) -> Response<ProxyBody> {
    let body = serde_json::to_vec(&Body {
        error,
        message: error,
        outcome,
        reasons,
        request_id,
        approval_id: None,
        approval: None,
    })
    .unwrap_or_default();
    with_body(status, outcome, body, request_id)
}

fn with_body(
    status: StatusCode,
    outcome: &str,
    body: Vec<u8>,
    request_id: &str,
) -> Response<ProxyBody> {
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(outcome) {
        h.insert(OUTCOME_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-clawser-request-id", v);
    }
    resp
}

/// 403 for a deny.
pub fn refused(decision: &Decision, request_id: &str) -> Response<ProxyBody> {
    let msg = decision
        .reasons
        .first()
        .map(|r| {
            format!(
                "refused by policy: {}",
                if r.message.is_empty() {
                    &r.code
                } else {
                    &r.message
                }
            )
        })
        .unwrap_or_else(|| "refused by policy".to_string());
    json(
        StatusCode::FORBIDDEN,
        "deny",
        &msg,
        &decision.reasons,
        request_id,
    )
}

/// 403 for a held request that was not released: denied, timed out (the approval stays
/// pending; an identical retry after approval goes through once) or expired. The body and
/// `X-Clawser-Approval` name the approval.
pub fn held(
    approval: &crate::approval::Approval,
    decision: &Decision,
    message: &str,
    request_id: &str,
) -> Response<ProxyBody> {
    let body = serde_json::to_vec(&Body {
        error: message,
        message,
        outcome: "hold",
        reasons: &decision.reasons,
        request_id,
        approval_id: Some(&approval.id),
        approval: Some(ApprovalRef {
            id: &approval.id,
            state: approval.state.as_str(),
            required: &approval.required,
            approved_by: approval
                .decisions
                .iter()
                .filter(|d| d.verdict == crate::approval::Verdict::Approve)
                .map(|d| d.approver.as_str())
                .collect(),
            expires_at: &approval.expires_at,
        }),
    })
    .unwrap_or_default();
    let mut resp = with_body(StatusCode::FORBIDDEN, "hold", body, request_id);
    if let Ok(v) = HeaderValue::from_str(&approval.id) {
        resp.headers_mut().insert(APPROVAL_HEADER, v);
    }
    resp
}

/// 407 with the Basic challenge (git sends credentials only after it).
pub fn auth_required(failure: &AuthFailure, request_id: &str) -> Response<ProxyBody> {
    let reasons = [Reason::new(failure.code(), failure.message())];
    let mut resp = json(
        StatusCode::PROXY_AUTHENTICATION_REQUIRED,
        "deny",
        &failure.message(),
        &reasons,
        request_id,
    );
    resp.headers_mut().insert(
        header::PROXY_AUTHENTICATE,
        HeaderValue::from_static("Basic realm=\"clawser\""),
    );
    resp
}

/// Any other refusal or failure: 400, 431, 502, 503, 504...
pub fn error(
    status: StatusCode,
    code: &str,
    message: &str,
    request_id: &str,
) -> Response<ProxyBody> {
    let outcome = if status.is_server_error() {
        "error"
    } else {
        "deny"
    };
    json(
        status,
        outcome,
        message,
        &[Reason::new(code, message)],
        request_id,
    )
}

/// A denied git request, answered so git prints the reason (`None` when not git).
pub fn git_refused(
    git: Option<&crate::inspect::git::GitView>,
    decision: &Decision,
    redactor: &crate::redact::Redactor,
    request_id: &str,
) -> Option<Response<ProxyBody>> {
    let g = git?;
    let why = decision.reasons.first().map_or(decision.codes(), |r| {
        format!("{}: {}", r.code, redactor.text(&r.message))
    });
    Some(git_answer(g, "deny", &why, request_id))
}

/// A held git request, answered so git prints which approval to ask for (`None` when not
/// git).
pub fn git_held(
    git: Option<&crate::inspect::git::GitView>,
    decision: &Decision,
    approval: &str,
    codes: &str,
    request_id: &str,
) -> Option<Response<ProxyBody>> {
    let g = git?;
    let role = decision
        .approvers
        .as_ref()
        .map_or("approver", |a| a.role.as_str());
    let again = if g.ref_updates.is_empty() {
        "try again"
    } else {
        "push again"
    };
    let why = format!("held for approval {approval} ({codes}): ask a {role}, then {again}");
    Some(git_answer(g, "hold", &why, request_id))
}

fn git_answer(
    g: &crate::inspect::git::GitView,
    outcome: &str,
    why: &str,
    request_id: &str,
) -> Response<ProxyBody> {
    if g.ref_updates.is_empty() {
        git_error(g, outcome, why, request_id)
    } else {
        git_rejected(g, outcome, why, request_id)
    }
}

fn pkt(data: &[u8]) -> Vec<u8> {
    let mut v = format!("{:04x}", data.len() + 4).into_bytes();
    v.extend_from_slice(data);
    v
}

/// A refused or held clone, fetch or ref discovery, answered so git prints the reason: ref
/// discovery (`GET …/info/refs`) as a `403` with a text/plain body, which git prints as
/// `remote: …`; an upload-pack (or receive-pack) POST as git's `ERR` packet, which git
/// prints as `fatal: remote error: …`.
pub fn git_error(
    g: &crate::inspect::git::GitView,
    outcome: &str,
    why: &str,
    request_id: &str,
) -> Response<ProxyBody> {
    let why = format!("Clawser: {}", one_line(why, 400));
    let (status, ctype, body) = if g.discovery {
        (
            StatusCode::FORBIDDEN,
            "text/plain; charset=utf-8".to_string(),
            format!("{why}\n").into_bytes(),
        )
    } else {
        (
            StatusCode::OK,
            format!("application/x-git-{}-result", g.service),
            pkt(format!("ERR {why}\n").as_bytes()),
        )
    };
    let mut r = Response::new(full(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&ctype) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(outcome) {
        h.insert(OUTCOME_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-clawser-request-id", v);
    }
    r
}

/// A refused or held `git push`, answered in git's receive-pack protocol (report-status,
/// over side-band when the client asked for it), so `git push` prints
/// `! [remote rejected] main -> main (<why>)` for each ref and exits non-zero.
pub fn git_rejected(
    git: &crate::inspect::git::GitView,
    outcome: &str,
    why: &str,
    request_id: &str,
) -> Response<ProxyBody> {
    let why = one_line(why, 400);
    let mut report = pkt(b"unpack ok\n");
    for u in &git.ref_updates {
        report.extend(pkt(format!("ng {} {why}\n", u.name).as_bytes()));
    }
    report.extend_from_slice(b"0000");
    let body = if git.sideband {
        let mut b = pkt(format!("\x02Clawser: {why}\n").as_bytes());
        for chunk in report.chunks(65_000) {
            let mut band = vec![1u8];
            band.extend_from_slice(chunk);
            b.extend(pkt(&band));
        }
        b.extend_from_slice(b"0000");
        b
    } else {
        report
    };
    let mut r = Response::new(full(body));
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-git-receive-pack-result"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(outcome) {
        h.insert(OUTCOME_HEADER, v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-clawser-request-id", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[tokio::test]
    async fn deny_is_json_with_header() {
        let d = Decision::deny("repo_delete", "agents may not delete repositories");
        let r = refused(&d, "req_1");
        assert_eq!(r.status(), 403);
        assert_eq!(r.headers()[OUTCOME_HEADER], "deny");
        let body = r.into_body().collect().await.unwrap().to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["reasons"][0]["code"], "repo_delete");
        assert_eq!(v["request_id"], "req_1");
        assert_eq!(v["outcome"], "deny");
    }

    #[test]
    fn auth_has_challenge() {
        let r = auth_required(&AuthFailure::Missing, "req_2");
        assert_eq!(r.status(), 407);
        assert_eq!(
            r.headers()[header::PROXY_AUTHENTICATE],
            "Basic realm=\"clawser\""
        );
    }
}
