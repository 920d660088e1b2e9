//! Where a request goes, as the policy and the upstream will both see it: scheme, canonical
//! host and port (SNI, CONNECT host and Host must agree), and the canonical target
//! (`destination::canonical_target`).

use http::header::HOST;
use http::{Request, StatusCode, Uri};

use super::destination::{canonical_target, parse_host, Host, PathRules};
use super::outcome::Refusal;

/// A request's target, canonical.
#[derive(Debug, Clone)]
pub struct RequestTarget {
    pub scheme: &'static str,
    pub host: Host,
    pub port: u16,
    /// The canonical path (no query).
    pub path: String,
    /// The canonical path and query, as forwarded.
    pub path_and_query: String,
}

impl RequestTarget {
    /// The absolute URI the upstream client is given.
    pub fn upstream_uri(&self) -> Result<Uri, Refusal> {
        let host = match &self.host {
            Host::Ip(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
            h => h.as_string(),
        };
        format!(
            "{}://{host}:{}{}",
            self.scheme, self.port, self.path_and_query
        )
        .parse()
        .map_err(|_| {
            Refusal::new(
                StatusCode::BAD_REQUEST,
                "bad_uri",
                "the request target is not a valid URI",
            )
        })
    }
}

fn bad_host(message: String) -> Refusal {
    Refusal::new(StatusCode::BAD_REQUEST, "bad_host", message)
}

/// Splits an authority (`host[:port]`) into its canonical host and port.
pub fn split_authority(authority: &str, default_port: u16) -> Result<(Host, u16), Refusal> {
    let uri: Uri = format!("http://{authority}/")
        .parse()
        .map_err(|_| bad_host(format!("{authority:?} is not a valid host[:port]")))?;
    let a = uri
        .authority()
        .ok_or_else(|| bad_host("no host".to_string()))?;
    if a.as_str().contains('@') {
        return Err(bad_host("user information in the authority".to_string()));
    }
    let host = parse_host(a.host()).map_err(bad_host)?;
    Ok((host, a.port_u16().unwrap_or(default_port)))
}

/// The target of a request that arrived on `connect` (host, port of its CONNECT, and the SNI
/// of its ClientHello) or, for absolute-form plain HTTP, on the proxy port directly.
pub fn of_request<B>(
    connect: Option<&(Host, u16)>,
    sni: Option<&str>,
    req: &Request<B>,
    rules: PathRules,
) -> Result<RequestTarget, Refusal> {
    let mismatch = |what: &str| {
        Refusal::new(
            StatusCode::FORBIDDEN,
            "host_mismatch",
            format!("{what} does not match the CONNECT host"),
        )
    };
    let host_header = req
        .headers()
        .get(HOST)
        .map(|h| h.to_str().unwrap_or("\u{0}"));
    let (scheme, host, port) = match connect {
        Some((host, port)) => {
            if let Some(sni) = sni {
                if parse_host(sni).ok().as_ref() != Some(host) {
                    return Err(mismatch("the TLS server name (SNI)"));
                }
            }
            // An absolute-form URI or :authority inside the tunnel must name the same host.
            for named in [req.uri().authority().map(|a| a.as_str()), host_header]
                .into_iter()
                .flatten()
            {
                match split_authority(named, *port) {
                    Ok((h, p)) if &h == host && p == *port => {}
                    _ => return Err(mismatch("the Host header")),
                }
            }
            ("https", host.clone(), *port)
        }
        None => {
            let scheme = match req.uri().scheme_str() {
                Some("http") => "http",
                Some("https") => "https",
                _ => {
                    return Err(Refusal::new(
                        StatusCode::BAD_REQUEST,
                        "not_a_proxy_request",
                        "send absolute-form requests (http://host/path) or use CONNECT",
                    ))
                }
            };
            let default_port = if scheme == "https" { 443 } else { 80 };
            let authority = req
                .uri()
                .authority()
                .ok_or_else(|| bad_host("the request URI has no host".to_string()))?;
            let (host, port) = split_authority(authority.as_str(), default_port)?;
            if let Some(h) = host_header {
                if split_authority(h, port).ok().map(|(hh, _)| hh) != Some(host.clone()) {
                    return Err(Refusal::new(
                        StatusCode::FORBIDDEN,
                        "host_mismatch",
                        "the Host header does not match the request URI",
                    ));
                }
            }
            (scheme, host, port)
        }
    };
    let ambiguous = |m: String| {
        Refusal::new(
            StatusCode::BAD_REQUEST,
            "ambiguous_path",
            format!("the request target is ambiguous: {m}"),
        )
    };
    let path_and_query =
        canonical_target(req.uri().path(), req.uri().query(), rules).map_err(ambiguous)?;
    // A canonical path holds no '?' (an encoded one stays %3F): the first one starts the query.
    let path = path_and_query
        .split_once('?')
        .map_or(path_and_query.as_str(), |(p, _)| p)
        .to_string();
    Ok(RequestTarget {
        scheme,
        host,
        port,
        path,
        path_and_query,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(uri: &str, host: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri(uri);
        if let Some(h) = host {
            b = b.header(HOST, h);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn absolute_form_targets() {
        let rules = PathRules::default();
        for (uri, host, want) in [
            (
                "http://API.example.com/a/./b?x=%61",
                None,
                Ok(("api.example.com", 80, "/a/b?x=a")),
            ),
            (
                "https://example.com:8443/",
                Some("example.com:8443"),
                Ok(("example.com", 8443, "/")),
            ),
            ("http://[::1]:9/x", None, Ok(("::1", 9, "/x"))),
            ("http://127.1/", None, Err("bad_host")),
            ("http://2130706433:8081/", None, Err("bad_host")),
            ("http://0x7f000001/", None, Err("bad_host")),
            (
                "http://example.com/",
                Some("other.com"),
                Err("host_mismatch"),
            ),
            (
                "http://example.com/%2e%2e/admin",
                None,
                Err("ambiguous_path"),
            ),
            ("http://example.com//x", None, Err("ambiguous_path")),
            ("http://user@example.com/", None, Err("bad_host")),
        ] {
            let got = of_request(None, None, &req(uri, host), rules)
                .map(|t| (t.host.as_string(), t.port, t.path_and_query));
            let got = got
                .as_ref()
                .map(|(h, p, pq)| (h.as_str(), *p, pq.as_str()))
                .map_err(|r| r.code);
            assert_eq!(got, want, "{uri}");
        }
    }

    #[test]
    fn tunnelled_targets_must_agree_with_connect() {
        let rules = PathRules::default();
        let c = (Host::Name("api.github.com".into()), 443);
        let ok = of_request(
            Some(&c),
            Some("API.github.com"),
            &req("/x", Some("api.github.com")),
            rules,
        );
        assert_eq!(ok.map(|t| t.path).ok().as_deref(), Some("/x"));
        for (sni, host) in [
            (Some("evil.com"), Some("api.github.com")),
            (Some("api.github.com"), Some("evil.com")),
            (None, Some("api.github.com:444")),
        ] {
            let r = of_request(Some(&c), sni, &req("/x", host), rules);
            assert_eq!(
                r.err().map(|r| r.code),
                Some("host_mismatch"),
                "{sni:?} {host:?}"
            );
        }
    }
}
