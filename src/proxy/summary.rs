//! Building the redacted `RequestSummary` and the forwarded header set.
//! Secrets (Authorization, Cookie, Proxy-Authorization, configured headers and query keys)
//! are replaced by `<redacted>` before anything reaches a policy, a log or the ledger.

use std::collections::BTreeMap;

use http::header::{HeaderMap, HeaderName, CONNECTION};

use crate::model::REDACTED;
use crate::redact::Redactor;

/// Hop-by-hop headers, never forwarded (RFC 9110 section 7.6.1) plus proxy headers.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
];

/// Lower-case header names to (redacted) values.
pub fn redacted_headers(headers: &HeaderMap, r: &Redactor) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let n = name.as_str();
        // Authorization, Cookie, X-Api-Key, Private-Token and the like all match by name.
        let v = if r.secret_header(n) {
            REDACTED.to_string()
        } else {
            r.text(&String::from_utf8_lossy(value.as_bytes()))
                .into_owned()
        };
        out.entry(r.text(n).into_owned()).or_default().push(v);
    }
    out
}

/// Parsed query parameters: values of secret-looking keys, and credential-shaped values,
/// redacted (keys too, when they look like a credential).
pub fn redacted_query(query: Option<&str>, r: &Redactor) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        let v = if r.secret_query_key(&k) {
            REDACTED.to_string()
        } else {
            r.text(&v).into_owned()
        };
        out.entry(r.text(&k).into_owned()).or_default().push(v);
    }
    out
}

/// Removes the headers that `Connection` names (they are hop-by-hop by declaration).
fn remove_connection_named(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
}

/// Removes hop-by-hop headers (and those named in `Connection`), `Host` (the upstream URI
/// carries the authority) and every `X-Clawser-*` header.
pub fn strip_for_upstream(headers: &mut HeaderMap) {
    remove_connection_named(headers);
    for n in HOP_BY_HOP {
        headers.remove(*n);
    }
    let clawser: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-clawser-"))
        .cloned()
        .collect();
    for n in clawser {
        headers.remove(n);
    }
}

/// Removes hop-by-hop headers from an upstream response before it goes to the client.
pub fn strip_response(headers: &mut HeaderMap) {
    remove_connection_named(headers);
    for n in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "trailer",
    ] {
        headers.remove(n);
    }
}

/// Total size of the header block as received (names + values + separators).
pub fn header_bytes(headers: &HeaderMap) -> usize {
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum()
}

/// What Clawser understood of a request's protocol: `input.github` (for `github.hosts`)
/// and `input.git` (git smart HTTP, any host).
pub struct Inspected {
    pub github: Option<crate::inspect::GithubView>,
    pub git: Option<crate::inspect::git::GitView>,
}

/// Reads the request's protocol; a push whose command list is malformed is refused
/// (`400 bad_pktline`), never guessed at.
pub fn inspect_protocols(
    github_hosts: &[String],
    target: &super::target::RequestTarget,
    summary: &crate::model::RequestSummary,
    body: &[u8],
) -> Result<Inspected, super::outcome::Refusal> {
    let host = target.host.as_string().to_ascii_lowercase();
    let github = crate::grant::host_allowed(github_hosts, &host).then(|| {
        crate::inspect::github(
            &host,
            &summary.method,
            &target.path,
            summary.body.json.as_ref(),
        )
    });
    let query = target.path_and_query.split_once('?').map_or("", |(_, q)| q);
    let git = crate::inspect::git::view(
        &summary.method,
        &target.path,
        query,
        body,
        !summary.body.truncated,
    )
    .map_err(|e| super::outcome::Refusal::new(http::StatusCode::BAD_REQUEST, "bad_pktline", e.0))?;
    Ok(Inspected { github, git })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn secrets_are_redacted() {
        let mut h = HeaderMap::new();
        h.insert("authorization", HeaderValue::from_static("Bearer s3cret"));
        h.insert("cookie", HeaderValue::from_static("sid=s3cret"));
        h.insert("x-custom-key", HeaderValue::from_static("s3cret"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        h.insert(
            "x-other",
            HeaderValue::from_static("ghp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        );
        let red = Redactor::new(&[], &[], &["x-custom-key".to_string()]).unwrap();
        let r = redacted_headers(&h, &red);
        assert!(!format!("{r:?}").contains("s3cret"));
        assert!(!format!("{r:?}").contains("ghp_"));
        assert_eq!(r["accept"], vec!["*/*"]);
        let q = redacted_query(
            Some("a=1&access_token=s3cret&client_secret=s3cret&code=s3cret&b=2&b=3&x=xoxb-1234567890-abcdef"),
            &red,
        );
        assert!(!format!("{q:?}").contains("s3cret"), "{q:?}");
        assert!(!format!("{q:?}").contains("xoxb"), "{q:?}");
        assert_eq!(q["access_token"], vec![REDACTED]);
        assert_eq!(q["b"], vec!["2", "3"]);
    }

    #[test]
    fn hop_by_hop_and_clawser_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-foo"));
        h.insert("x-foo", HeaderValue::from_static("1"));
        h.insert("proxy-authorization", HeaderValue::from_static("Basic x"));
        h.insert("x-clawser-intent", HeaderValue::from_static("ship it"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("accept", HeaderValue::from_static("*/*"));
        strip_for_upstream(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("accept"));
    }
}
