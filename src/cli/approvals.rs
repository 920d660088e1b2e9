//! `clawser approvals ...` (always through the running server: held requests wait there)
//! and `clawser approvers ...` (admin API, or the data dir when no server runs).

use http_body_util::BodyExt;

use super::backend::Backend;
use super::{ApprovalsCmd, ApproversCmd};
use crate::approval::{Approval, Verdict};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::identity::{IssuedApproverToken, NewApprover};

use super::commands::print_json;

/// One line per approval.
fn line(a: &Approval) -> String {
    let approved = a
        .decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Approve)
        .count();
    format!(
        "{}  {:<8}  {} {}  agent={} for={} job={}  {}/{} {}",
        a.id,
        a.state.as_str(),
        a.request.method,
        a.request.url,
        a.agent,
        a.on_behalf_of,
        a.job.as_deref().unwrap_or("-"),
        approved,
        a.required.count,
        a.required.role
    )
}

/// The readable form of one approval.
fn show(a: &Approval) {
    println!("approval:     {} ({})", a.id, a.state.as_str());
    println!("request:      {} {}", a.request.method, a.request.url);
    match a.request.body_size {
        Some(n) => println!("body:         {n} bytes, sha256 {}", a.request.body_sha256),
        None => println!(
            "body:         unknown size, sha256 of the inspected part {}",
            a.request.body_sha256
        ),
    }
    for (name, value) in &a.request.headers {
        println!("header:       {name}: {value}");
    }
    if let Some(p) = &a.request.body_preview {
        println!("body preview (redacted):");
        for line in p.lines() {
            println!("  | {line}");
        }
    }
    println!(
        "agent:        {} (runtime {}, on behalf of {})",
        a.agent, a.runtime, a.on_behalf_of
    );
    println!("job:          {}", a.job.as_deref().unwrap_or("-"));
    println!("needs:        {} x {}", a.required.count, a.required.role);
    for r in &a.reasons {
        println!("reason:       {}: {}", r.code, r.message);
    }
    if let Some(i) = &a.intent {
        println!("intent:       {i}");
    }
    if let Some(e) = &a.evidence {
        println!("evidence:     {e}");
    }
    for d in &a.decisions {
        let verdict = match d.verdict {
            Verdict::Approve => "approved",
            Verdict::Deny => "denied",
        };
        println!(
            "decision:     {} {verdict} at {}{}",
            d.approver,
            d.at,
            if d.reason.is_empty() {
                String::new()
            } else {
                format!(": {}", d.reason)
            }
        );
    }
    println!("created:      {}  (request {})", a.created_at, a.request_id);
    println!("expires:      {}", a.expires_at);
}

/// `clawser approvals ...`
pub async fn approvals(config: &Config, cmd: ApprovalsCmd, token: Option<String>) -> Result<i32> {
    let c = Backend::require_remote(config, token).await?;
    match cmd {
        ApprovalsCmd::List { state, json } => {
            let list: Vec<Approval> = c
                .get(&format!(
                    "/v1/approvals?state={}",
                    form_urlencoded::byte_serialize(state.as_bytes()).collect::<String>()
                ))
                .await?;
            if json {
                print_json(&list);
            } else if list.is_empty() {
                println!("no {state} approvals");
            } else {
                for a in &list {
                    println!("{}", line(a));
                }
            }
        }
        ApprovalsCmd::Show { id, json } => {
            let a: Approval = c.get(&format!("/v1/approvals/{id}")).await?;
            if json {
                print_json(&a);
            } else {
                show(&a);
            }
        }
        ApprovalsCmd::Approve {
            id,
            reason,
            grant_for,
            max_uses,
        } => {
            let mut body = serde_json::json!({ "reason": reason });
            if let Some(w) = grant_for {
                body["grant_for"] = serde_json::json!(w);
                body["max_uses"] = serde_json::json!(max_uses);
            }
            decide(&c, &id, "approve", body).await?
        }
        ApprovalsCmd::Deny { id, reason } => {
            decide(&c, &id, "deny", serde_json::json!({ "reason": reason })).await?
        }
        ApprovalsCmd::Watch => {
            let mut body = c.stream("/v1/events").await?;
            let mut buf = String::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Error::Admin {
                    status: 0,
                    message: format!("event stream ended: {e}"),
                })?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.push_str(&String::from_utf8_lossy(&data));
                while let Some(i) = buf.find("\n\n") {
                    let block: String = buf.drain(..i + 2).collect();
                    if let Some(text) = watch_line(&block) {
                        println!("{text}");
                    }
                }
            }
        }
    }
    Ok(0)
}

async fn decide(
    c: &crate::admin::client::AdminClient,
    id: &str,
    verb: &str,
    body: serde_json::Value,
) -> Result<()> {
    let v: serde_json::Value = c.post(&format!("/v1/approvals/{id}/{verb}"), &body).await?;
    let a: Approval = serde_json::from_value(v.clone())
        .map_err(|e| Error::Store(format!("unexpected answer: {e}")))?;
    let approvals = a
        .decisions
        .iter()
        .filter(|d| d.verdict == Verdict::Approve)
        .count();
    match a.state.as_str() {
        "pending" => println!(
            "{}: your approval is recorded ({approvals} of {} {}); still pending",
            a.id, a.required.count, a.required.role
        ),
        s => println!("{}: {s}", a.id),
    }
    match v.get("grant") {
        Some(g) if g.get("id").is_some() => println!(
            "issued grant {} (actions {}, expires {}, uses left {})",
            g["id"].as_str().unwrap_or("?"),
            g["scope"]["actions"],
            g["expires_at"].as_str().unwrap_or("never"),
            g["uses_left"]
        ),
        Some(g) => println!("no grant issued: {}", g["why"].as_str().unwrap_or("")),
        None => {}
    }
    Ok(())
}

/// The printed line for one SSE block (`event:` + `data:`), or none for comments.
fn watch_line(block: &str) -> Option<String> {
    let kind = block.lines().find_map(|l| l.strip_prefix("event: "))?;
    let data = block.lines().find_map(|l| l.strip_prefix("data: "))?;
    let v: serde_json::Value = serde_json::from_str(data).ok()?;
    let d = &v["data"];
    let s = |k: &str| d[k].as_str().unwrap_or("-").to_string();
    Some(match kind {
        "approval.created" => format!(
            "{} {kind} {} {} {} agent={} for={}",
            v["at"].as_str().unwrap_or(""),
            s("approval"),
            s("method"),
            s("url"),
            s("agent"),
            s("on_behalf_of")
        ),
        k if k.starts_with("approval.") => format!(
            "{} {kind} {} state={}{}",
            v["at"].as_str().unwrap_or(""),
            s("approval"),
            s("state"),
            match d["approver"].as_str() {
                Some(a) => format!(" by={a} verdict={}", s("verdict")),
                None => String::new(),
            }
        ),
        _ => return None,
    })
}

fn show_token(t: &IssuedApproverToken) {
    println!(
        "approver: {} (roles: {})",
        t.approver.id,
        t.approver.roles.join(", ")
    );
    println!(
        "token:    {}   (shown once; stored only as a hash; use it with --token or CLAWSER_ADMIN_TOKEN)",
        t.token
    );
}

/// `clawser approvers ...`
pub async fn approvers(config: &Config, cmd: ApproversCmd) -> Result<i32> {
    let b = Backend::connect(config).await?;
    match cmd {
        ApproversCmd::Add { id, roles } => {
            b.add_approver(NewApprover {
                id: id.clone(),
                roles,
            })
            .await?;
            show_token(&b.approver_token(&id).await?);
        }
        ApproversCmd::Token { id } => show_token(&b.approver_token(&id).await?),
        ApproversCmd::List => {
            for a in b.approvers().await? {
                println!(
                    "{:<20} roles={:<30} source={:<6} {}{}",
                    a.id,
                    a.roles.join(","),
                    a.source,
                    if a.token_issued_at.is_some() {
                        "token issued"
                    } else {
                        "no token"
                    },
                    a.revoked_at
                        .map(|r| format!("  REVOKED {r}"))
                        .unwrap_or_default()
                );
            }
        }
        ApproversCmd::Revoke { id } => print_json(&b.revoke_approver(&id).await?),
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watch_lines() {
        let block = "event: approval.decided\ndata: {\"kind\":\"approval.decided\",\"at\":\"T\",\"data\":{\"approval\":\"apr_1\",\"state\":\"approved\",\"approver\":\"bob\",\"verdict\":\"approve\"}}\n\n";
        assert_eq!(
            watch_line(block).unwrap(),
            "T approval.decided apr_1 state=approved by=bob verdict=approve"
        );
        assert_eq!(watch_line(": keepalive\n\n"), None);
    }
}
