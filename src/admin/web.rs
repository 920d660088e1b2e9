//! The approval inbox and grants web page at `/` of the admin endpoint: static HTML and JavaScript
//! compiled into the binary (no CDN), talking to the same API as the CLI with the token the
//! user logs in with (kept in the tab's session storage, sent as a Bearer header; never put
//! in a URL). A strict Content-Security-Policy and `frame-ancestors 'none'` keep the
//! approve button out of other pages' frames.

use http::{header, HeaderValue, Response, StatusCode};

use super::{full, AdminResponse};

const INDEX_HTML: &str = include_str!("web/index.html");
const INBOX_JS: &str = include_str!("web/inbox.js");
const GRANTS_JS: &str = include_str!("web/grants.js");

const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn asset(body: &'static str, content_type: &'static str) -> AdminResponse {
    let mut r = Response::new(full(body));
    *r.status_mut() = StatusCode::OK;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    r
}

/// The page or script for `path`, if it is one (served without a token: they hold no data).
pub fn page(path: &str) -> Option<AdminResponse> {
    match path {
        "/" | "/index.html" => Some(asset(INDEX_HTML, "text/html; charset=utf-8")),
        "/inbox.js" => Some(asset(INBOX_JS, "text/javascript; charset=utf-8")),
        "/grants.js" => Some(asset(GRANTS_JS, "text/javascript; charset=utf-8")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_from_the_binary_without_external_sources() {
        let r = page("/").unwrap();
        assert_eq!(r.headers()[header::X_FRAME_OPTIONS], "DENY");
        assert!(r.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("frame-ancestors 'none'"));
        for text in [INDEX_HTML, INBOX_JS, GRANTS_JS] {
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "no external URLs"
            );
        }
        assert!(INDEX_HTML.contains("/inbox.js"));
        assert!(page("/v1/approvals").is_none());
    }
}
