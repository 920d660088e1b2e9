//! The request target in one canonical form (RFC 3986 section 6.2.2): unreserved characters
//! percent-decoded, the remaining escapes upper-cased, dot-segments removed. That form is
//! what the policy sees *and* what is forwarded, so both read the same bytes. A target that
//! stays ambiguous after that (servers disagree on what it names) is refused
//! (`ambiguous_path`): an encoded dot-segment, an empty segment (`//`), a path parameter on
//! an empty or dot segment (`/..;/`, which Tomcat-style servers read as `..`), a
//! double-encoded escape (`%252e`), a backslash (raw or encoded), an encoded slash when
//! `proxy.allow_encoded_slash` is false, a control byte, or a malformed escape.
//!
//! An encoded slash is kept by default (npm asks for `/@scope%2fname`, GitLab for
//! `/projects/group%2Fname`); environment rules read it as a separator (see
//! `policy::target`), so `/repos/acme%2Fapi` classifies like `/repos/acme/api`.

/// Options of the canonicalization.
#[derive(Debug, Clone, Copy)]
pub struct PathRules {
    /// Keep `%2F` inside a segment (npm scoped packages, GitLab `projects/group%2Fname`).
    pub allow_encoded_slash: bool,
}

impl Default for PathRules {
    fn default() -> Self {
        PathRules {
            allow_encoded_slash: true,
        }
    }
}

/// Canonical `path[?query]`, or why it is ambiguous.
pub fn canonical_target(
    path: &str,
    query: Option<&str>,
    rules: PathRules,
) -> Result<String, String> {
    if !path.starts_with('/') {
        return Err(format!("the path {path:?} does not start with '/'"));
    }
    let mut segments: Vec<String> = Vec::new();
    let raw_segments: Vec<&str> = path[1..].split('/').collect();
    let last = raw_segments.len().saturating_sub(1);
    let mut trailing_slash = false;
    for (i, raw) in raw_segments.iter().enumerate() {
        let (seg, had_escape) = normalize(raw, Part::Path(rules))?;
        trailing_slash = false;
        if let Some((before, _)) = seg.split_once(';') {
            if matches!(before, "" | "." | "..") {
                return Err(format!(
                    "a path parameter on an empty or dot segment ({before};...)"
                ));
            }
        }
        match seg.as_str() {
            "." | ".." if had_escape => {
                return Err("an encoded dot-segment (%2E) in the path".to_string())
            }
            "." => trailing_slash = true,
            ".." => {
                segments.pop();
                trailing_slash = true;
            }
            "" if i != last => return Err("an empty path segment (//)".to_string()),
            _ => segments.push(seg),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    for s in &segments {
        out.push('/');
        out.push_str(s);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    if let Some(q) = query {
        out.push('?');
        out.push_str(&normalize(q, Part::Query)?.0);
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum Part {
    Path(PathRules),
    Query,
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes unreserved escapes and upper-cases the rest; returns whether any escape was
/// decoded (to spot encoded dot-segments).
fn normalize(s: &str, part: Part) -> Result<(String, bool), String> {
    let b = s.as_bytes();
    let mut out = String::with_capacity(s.len());
    let mut decoded_any = false;
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c == b'%' {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .filter(|_| b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit());
            let Some(v) = hex else {
                return Err("a malformed percent-escape".to_string());
            };
            if let Part::Path(rules) = part {
                if v < 0x20 || v == 0x7f {
                    return Err(format!("an encoded control byte (%{v:02X}) in the path"));
                }
                if v == b'\\' {
                    return Err("an encoded backslash (%5C) in the path".to_string());
                }
                if v == b'%'
                    && b.get(i + 3..i + 5)
                        .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit))
                {
                    return Err("a double-encoded escape (%25XX) in the path".to_string());
                }
                if v == b'/' && !rules.allow_encoded_slash {
                    return Err(
                        "an encoded slash (%2F) in the path (see proxy.allow_encoded_slash)"
                            .to_string(),
                    );
                }
            }
            if unreserved(v) {
                out.push(char::from(v));
                decoded_any = true;
            } else {
                out.push('%');
                out.push_str(&format!("{v:02X}"));
            }
            i += 3;
            continue;
        }
        if c < 0x20 || c == 0x7f {
            return Err("a control byte in the request target".to_string());
        }
        if c == b'\\' && matches!(part, Part::Path(_)) {
            return Err("a backslash in the path".to_string());
        }
        // `s` is a &str, so multi-byte UTF-8 passes through whole.
        let ch_len = s[i..].chars().next().map_or(1, char::len_utf8);
        out.push_str(&s[i..i + ch_len]);
        i += ch_len;
    }
    Ok((out, decoded_any))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canon(target: &str) -> Result<String, String> {
        let (p, q) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target, None),
        };
        canonical_target(p, q, PathRules::default())
    }

    #[test]
    fn canonical_forms() {
        for (raw, want) in [
            ("/", "/"),
            (
                "/repos/acme/api/pulls/7/merge",
                "/repos/acme/api/pulls/7/merge",
            ),
            ("/repos/%61cme/api", "/repos/acme/api"),
            (
                "/repos/x/../acme/api/pulls/7/merge",
                "/repos/acme/api/pulls/7/merge",
            ),
            ("/repos/acme/api/./pulls", "/repos/acme/api/pulls"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/../a", "/a"),
            ("/a/", "/a/"),
            ("/a%2d%7E%5f", "/a-~_"),
            ("/a%3a%c3%A9", "/a%3A%C3%A9"),
            ("/q?x=%61&y=%2f&z=a+b", "/q?x=a&y=%2F&z=a+b"),
            ("/q?", "/q?"),
            ("/caf\u{e9}", "/caf\u{e9}"),
        ] {
            assert_eq!(canon(raw), Ok(want.to_string()), "{raw}");
        }
    }

    #[test]
    fn ambiguous_targets_are_refused() {
        for raw in [
            "/repos/%2e%2e/acme",
            "/repos/%2E/acme",
            "/repos/.%2e/acme",
            "//repos/acme/api",
            "/repos//acme",
            "/a\\b",
            "/public/..;/admin",
            "/public/.;/admin",
            "/;x/admin",
            "/%2e%2e;x/admin",
            "/a/%252e%252e/b",
            "/a%5cb",
            "/a%00b",
            "/a%0ab",
            "/a%zz",
            "/a%4",
            "relative",
            "/q?x=%g1",
        ] {
            assert!(canon(raw).is_err(), "{raw} should be ambiguous");
        }
    }

    #[test]
    fn encoded_slash_is_kept_unless_refused() {
        assert_eq!(
            canon("/@types%2fnode"),
            Ok("/@types%2Fnode".to_string()),
            "npm scoped packages"
        );
        assert_eq!(
            canon("/admin;jsessionid=1/x"),
            Ok("/admin;jsessionid=1/x".to_string())
        );
        let strict = PathRules {
            allow_encoded_slash: false,
        };
        for raw in ["/repos/acme%2Fapi", "/repos/acme%2fapi"] {
            assert!(canonical_target(raw, None, strict).is_err(), "{raw}");
        }
    }
}
