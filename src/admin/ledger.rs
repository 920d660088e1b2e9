//! Ledger routes of the admin API:
//!
//! ```text
//! GET /v1/ledger?job=&agent=&approval=&after=&limit=   entries (JSON array)
//! GET /v1/ledger/checkpoint                            latest signed checkpoint + verifier key
//! GET /v1/ledger/proof/{seq}                           inclusion proof against the latest checkpoint
//! GET /v1/ledger/export?format=jsonl|ocsf              export (JSON Lines)
//! GET /v1/ledger/verify                                verify the stored ledger now
//! ```

use http::{header, HeaderValue, Response, StatusCode};

use super::{err, from_error, json, AdminResponse};
use crate::ledger::{export, Filter, Ledger};

/// Upper bound of entries returned by one `/v1/ledger` call.
pub const MAX_LIST: usize = 10_000;

/// Parses the query of `/v1/ledger`.
pub fn filter_from_query(query: Option<&str>) -> Result<Filter, String> {
    let mut f = Filter {
        limit: Some(1000),
        ..Default::default()
    };
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match k.as_ref() {
            "job" => f.job = Some(v.into_owned()),
            "agent" => f.agent = Some(v.into_owned()),
            "approval" => f.approval = Some(v.into_owned()),
            "after" => f.after = Some(v.parse().map_err(|_| "after must be a sequence number")?),
            "limit" => {
                f.limit = Some(
                    v.parse::<usize>()
                        .map_err(|_| "limit must be a number")?
                        .min(MAX_LIST),
                )
            }
            other => return Err(format!("unknown parameter {other:?}")),
        }
    }
    Ok(f)
}

fn text(body: Vec<u8>, content_type: &'static str) -> AdminResponse {
    let mut r = Response::new(super::full(body));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

/// Handles `GET /v1/ledger...`; `rest` is the path after `/v1/ledger`.
pub fn handle(ledger: Option<&Ledger>, rest: &[&str], query: Option<&str>) -> AdminResponse {
    let Some(ledger) = ledger else {
        return err(
            StatusCode::SERVICE_UNAVAILABLE,
            "ledger_off",
            "the ledger is off (bench-only switch)",
        );
    };
    match rest {
        [] => match filter_from_query(query) {
            Ok(f) => match ledger.entries(&f) {
                Ok(v) => json(StatusCode::OK, &v),
                Err(e) => from_error(&e),
            },
            Err(m) => err(StatusCode::BAD_REQUEST, "bad_query", &m),
        },
        ["checkpoint"] => json(
            StatusCode::OK,
            &serde_json::json!({"size": ledger.size(), "checkpoint": ledger.latest_checkpoint(), "verifier_key": ledger.verifier_key()}),
        ),
        ["proof", seq] => match seq.parse::<u64>() {
            Ok(s) => match ledger.proof(s) {
                Ok(p) => json(StatusCode::OK, &p),
                Err(e) => from_error(&e),
            },
            Err(_) => err(
                StatusCode::BAD_REQUEST,
                "bad_seq",
                "the sequence number must be a number",
            ),
        },
        ["export"] => {
            let ocsf = form_urlencoded::parse(query.unwrap_or("").as_bytes())
                .any(|(k, v)| k == "format" && v == "ocsf");
            let mut out = Vec::new();
            let r = if ocsf {
                export::write_ocsf(ledger, &mut out)
            } else {
                export::write_jsonl(ledger, &mut out)
            };
            match r {
                Ok(()) => text(out, "application/x-ndjson"),
                Err(e) => from_error(&e),
            }
        }
        ["verify"] => match ledger.verify(None) {
            Ok(Ok(report)) => json(
                StatusCode::OK,
                &serde_json::json!({"ok": true, "report": report}),
            ),
            Ok(Err(e)) => json(
                StatusCode::CONFLICT,
                &serde_json::json!({"ok": false, "seq": e.seq, "error": e.to_string()}),
            ),
            Err(e) => from_error(&e),
        },
        _ => err(StatusCode::NOT_FOUND, "no_route", "no such ledger route"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parsing() {
        let f = filter_from_query(Some("job=job_1&after=5&limit=999999")).unwrap();
        assert_eq!(f.job.as_deref(), Some("job_1"));
        assert_eq!(f.after, Some(5));
        assert_eq!(f.limit, Some(MAX_LIST));
        assert!(filter_from_query(Some("nope=1")).is_err());
        assert!(filter_from_query(Some("after=x")).is_err());
    }
}
