//! What an approver sees of a held request's body: a bounded, redacted preview (JSON
//! pretty-printed with secret-looking keys and credential-shaped values redacted, form
//! fields by key, other text by pattern). It lives on the approval object only: the ledger
//! keeps the body's size and hash, never its content.

use serde_json::Value;

use crate::model::REDACTED;
use crate::redact::Redactor;

/// The longest preview kept (bytes), unless configured otherwise.
pub const DEFAULT_PREVIEW_BYTES: usize = 16 * 1024;

/// The preview of `body` (sent with `content_type`), at most `max` bytes; `None` when the
/// body is empty.
pub fn preview(
    body: &[u8],
    content_type: Option<&str>,
    r: &Redactor,
    max: usize,
) -> Option<String> {
    if body.is_empty() {
        return None;
    }
    let text = if let Ok(mut v) = serde_json::from_slice::<Value>(body) {
        let mut hidden = 0;
        redact_json(&mut v, r, &mut hidden);
        let mut out = String::new();
        // The field names first: padding cannot push a field out of the approver's sight.
        if let Value::Object(map) = &v {
            let names: Vec<&str> = map.keys().map(String::as_str).collect();
            out.push_str(&format!("fields: {}\n", names.join(", ")));
        }
        if hidden > 0 {
            out.push_str(&format!("{hidden} value(s) redacted\n"));
        }
        out.push_str(&serde_json::to_string_pretty(&v).unwrap_or_default());
        out
    } else if let Ok(s) = std::str::from_utf8(body) {
        let form = content_type.is_some_and(|c| {
            c.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
        if form {
            form_urlencoded::parse(s.as_bytes())
                .map(|(k, v)| {
                    let v = if secret_key(&k) || r.secret_query_key(&k) {
                        REDACTED.to_string()
                    } else {
                        r.text(&v).into_owned()
                    };
                    format!("{} = {v}", r.text(&k))
                })
                .collect::<Vec<_>>()
                .join("\n")
        } else {
            r.text(s).into_owned()
        }
    } else {
        return Some(format!("(binary body of {} bytes, not shown)", body.len()));
    };
    Some(bounded(text, max))
}

/// Words of a JSON key that mark its value as a secret.
const SECRET_WORDS: &[&str] = &[
    "token",
    "secret",
    "password",
    "passwd",
    "pass",
    "pwd",
    "key",
    "apikey",
    "signature",
    "sig",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "session",
    "cookie",
    "code",
    "otp",
    "pin",
    "private",
];

/// True when a key's words (split at non-alphanumerics and camelCase) include a secret
/// word: `client_secret`, `apiKey`, `X-Auth-Token` are secret; `author`, `keywords` are not.
pub fn secret_key(key: &str) -> bool {
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in key.chars() {
        if !c.is_ascii_alphanumeric() {
            words.push(std::mem::take(&mut cur));
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    words.push(cur);
    words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
}

fn redact_json(v: &mut Value, r: &Redactor, hidden: &mut usize) {
    match v {
        Value::Object(map) => {
            for (k, val) in map.iter_mut() {
                if secret_key(k) && !matches!(val, Value::Object(_) | Value::Array(_)) {
                    *val = Value::String(REDACTED.to_string());
                    *hidden += 1;
                } else {
                    redact_json(val, r, hidden);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|i| redact_json(i, r, hidden)),
        Value::String(s) => {
            if let std::borrow::Cow::Owned(red) = r.text(s) {
                *s = red;
                *hidden += 1;
            }
        }
        _ => {}
    }
}

fn bounded(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!("\n... (preview cut at {max} of {total} bytes)"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_pretty_and_redacted() {
        let r = Redactor::shipped();
        let body = br#"{"title":"ship","client_secret":"s3cret","nested":{"password":"p","note":"token ghp_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},"list":[{"api_key":"k"}]}"#;
        let p = preview(body, Some("application/json"), &r, DEFAULT_PREVIEW_BYTES).unwrap();
        assert!(p.contains("\"title\": \"ship\""), "{p}");
        for secret in ["s3cret", "\"p\"", "ghp_", "\"k\""] {
            assert!(!p.contains(secret), "{secret} in {p}");
        }
        assert!(p.contains('\n'), "pretty-printed");
        assert!(
            p.starts_with("fields: client_secret, list, nested, title\n"),
            "{p}"
        );
        assert!(p.contains("4 value(s) redacted"), "{p}");
    }

    #[test]
    fn secret_keys_are_words_not_substrings() {
        for k in [
            "client_secret",
            "apiKey",
            "X-Auth-Token",
            "password",
            "sessionId",
            "PRIVATE_KEY",
        ] {
            assert!(secret_key(k), "{k}");
        }
        for k in [
            "author", "keywords", "design", "encoding", "title", "monkey",
        ] {
            assert!(!secret_key(k), "{k}");
        }
    }

    #[test]
    fn forms_text_binary_and_bounds() {
        let r = Redactor::shipped();
        let f = preview(
            b"user=bob&password=hunter2",
            Some("application/x-www-form-urlencoded"),
            &r,
            100,
        )
        .unwrap();
        assert!(f.contains("user = bob") && !f.contains("hunter2"), "{f}");
        let t = preview(b"deploy with AKIAIOSFODNN7EXAMPLE", None, &r, 100).unwrap();
        assert!(!t.contains("AKIA"), "{t}");
        let b = preview(&[0xff, 0xfe, 0x00, 0x01], None, &r, 100).unwrap();
        assert!(b.starts_with("(binary"), "{b}");
        assert_eq!(preview(b"", None, &r, 100), None);
        let long = preview("é".repeat(100).as_bytes(), None, &r, 11).unwrap();
        assert!(
            long.starts_with("ééééé\n... (preview cut at 11 of 200 bytes)"),
            "{long}"
        );
    }
}
