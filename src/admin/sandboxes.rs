//! Isolated runs (`clawser run --isolate`), recorded in the ledger. The CLI that starts the
//! sandbox reports its start and its end; only the admin token may.
//!
//! ```text
//! POST /v1/sandboxes             {agent, job?, command, credential, isolation} -> {"id": "sbx_..."}
//!                                (ledger: sandbox.started)
//! POST /v1/sandboxes/{id}/ended  {agent, job?, command, exit_status}  (ledger: sandbox.ended)
//! ```

use http::{Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::Deserialize;
use serde_json::json;

use super::{err, from_error, json, read_json, AdminResponse, AdminState, Caller};

/// What the CLI reports.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    agent: String,
    #[serde(default)]
    job: Option<String>,
    /// The program's name (never its arguments).
    command: String,
    #[serde(default)]
    credential: Option<String>,
    #[serde(default)]
    isolation: Option<String>,
    #[serde(default)]
    exit_status: Option<i32>,
}

/// Printable, one line, bounded: it lands in the ledger and on screens.
fn clean(s: &str) -> String {
    crate::model::one_line(s, 200)
}

/// Handles `/v1/sandboxes...`.
pub async fn handle(
    state: &AdminState,
    caller: &Caller,
    req: Request<Incoming>,
    segs: &[&str],
) -> Result<AdminResponse, AdminResponse> {
    if !matches!(caller, Caller::Admin) {
        return Err(err(
            StatusCode::FORBIDDEN,
            "admin_only",
            "isolated runs are reported with the admin token",
        ));
    }
    let method = req.method().clone();
    let (kind, id) = match (&method, segs) {
        (&Method::POST, ["v1", "sandboxes"]) => (
            "sandbox.started",
            crate::identity::token::new_id("sbx").map_err(|e| from_error(&e))?,
        ),
        (&Method::POST, ["v1", "sandboxes", id, "ended"]) if id.starts_with("sbx_") => {
            ("sandbox.ended", clean(id))
        }
        _ => return Err(err(StatusCode::NOT_FOUND, "not_found", "no such route")),
    };
    let r: Report = read_json(req).await?;
    if state.identity.agent(&r.agent).is_none() {
        return Err(err(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("agent {:?} not found", r.agent),
        ));
    }
    let mut entry = json!({
        "sandbox": id,
        "agent": clean(&r.agent),
        "job": r.job.as_deref().map(clean),
        "command": clean(&r.command),
        "by": caller.id(),
    });
    if kind == "sandbox.started" {
        entry["credential"] = json!(r.credential.as_deref().map(clean));
        entry["isolation"] = json!(r.isolation.as_deref().map(clean));
    } else {
        entry["exit_status"] = json!(r.exit_status);
    }
    if let Some(l) = &state.ledger {
        l.append(kind, entry).await.map_err(|e| from_error(&e))?;
    }
    tracing::info!(sandbox = %id, agent = %r.agent, command = %clean(&r.command), kind, "isolated run");
    Ok(json(StatusCode::OK, &json!({"id": id})))
}
