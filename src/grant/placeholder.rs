//! Placeholders: what an agent holds instead of a secret. A placeholder is
//! `clwp_` + HMAC-SHA256(node key, credential id, secret name), so it is bound to one
//! credential and one secret, and worthless anywhere but in a request through Clawser from
//! that credential. This module finds placeholders in a request (Authorization: Bearer,
//! token, decoded Basic; a configured header; a configured query parameter) and swaps them
//! for the real value in a request that was permitted.

use std::path::Path;

pub use crate::model::PlaceholderSeen;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::secrets::Secrets;
use crate::config::Inject;
use crate::error::{Error, Result};
use crate::fsutil::{check_private, write_private};
use crate::identity::token::constant_time_eq;

/// Every placeholder starts with this.
pub const PLACEHOLDER_PREFIX: &str = "clwp_";
/// The key file in the data dir (0600).
pub const KEY_FILE: &str = "placeholder.key";

/// The node's placeholder key.
pub struct PlaceholderKey(ring::hmac::Key);

impl PlaceholderKey {
    /// Loads `<data_dir>/placeholder.key`, creating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<PlaceholderKey> {
        let path = data_dir.join(KEY_FILE);
        let hex_key = if path.exists() {
            check_private(&path)?;
            std::fs::read_to_string(&path).map_err(Error::io("reading", &path))?
        } else {
            let k = crate::identity::token::new_token("")?;
            let hex_key = hex::encode(k.as_bytes());
            write_private(&path, |f| std::io::Write::write_all(f, hex_key.as_bytes()))?;
            hex_key
        };
        let bytes = hex::decode(hex_key.trim())
            .map_err(|_| Error::Invalid(format!("{} is not hex", path.display())))?;
        if bytes.len() < 32 {
            return Err(Error::Invalid(format!("{} is too short", path.display())));
        }
        Ok(PlaceholderKey(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &bytes,
        )))
    }

    /// A key from bytes (tests).
    pub fn from_bytes(bytes: &[u8]) -> PlaceholderKey {
        PlaceholderKey(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes))
    }

    /// The placeholder of `secret` for the credential `credential_id`.
    pub fn placeholder(&self, credential_id: &str, secret: &str) -> String {
        let msg = format!("clawser-placeholder-v1\0{credential_id}\0{secret}");
        let tag = ring::hmac::sign(&self.0, msg.as_bytes());
        format!(
            "{PLACEHOLDER_PREFIX}{}",
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        )
    }
}

/// Where in the request a placeholder sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spot {
    /// `Authorization: <scheme> <placeholder>` (Bearer, token).
    AuthToken { scheme: String },
    /// `Authorization: Basic base64(user:pass)` with the placeholder as user or password.
    AuthBasic { user: String, pass: String },
    /// A configured header whose value contains the placeholder.
    Header(HeaderName),
    /// A configured query parameter.
    Query(String),
    /// `Authorization: AWS4-HMAC-SHA256 Credential=<placeholder>/…`: re-signed.
    SigV4(super::sigv4::Signed),
}

/// A placeholder found in a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub secret: String,
    pub placeholder: String,
    pub spot: Spot,
}

impl Found {
    /// The policy's view.
    pub fn seen(&self) -> PlaceholderSeen {
        let where_ = match &self.spot {
            Spot::AuthToken { .. } | Spot::AuthBasic { .. } | Spot::SigV4(_) => {
                "authorization".to_string()
            }
            Spot::Header(h) => h.as_str().to_string(),
            Spot::Query(k) => format!("query:{k}"),
        };
        PlaceholderSeen {
            secret: self.secret.clone(),
            where_,
        }
    }
}

/// Why placeholders in a request cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    /// Looks like a placeholder but is not one of this credential's.
    Foreign,
    /// A placeholder used in a way Clawser does not support (presigned AWS URLs,
    /// streaming SigV4 uploads).
    Unsupported(String),
}

/// Finds the placeholders in a request sent with `credential_id`. A string with the
/// placeholder prefix that is not one of this credential's placeholders is
/// [`Unfit::Foreign`] (stolen from another agent, or made up).
pub fn find(
    headers: &HeaderMap,
    query: Option<&str>,
    key: &PlaceholderKey,
    credential_id: &str,
    secrets: &Secrets,
) -> std::result::Result<Vec<Found>, Unfit> {
    let mut candidates: Vec<(String, Spot)> = Vec::new();
    // A presigned AWS URL carries the key id in the query: not re-signable here.
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k.eq_ignore_ascii_case("x-amz-credential") && v.starts_with(PLACEHOLDER_PREFIX) {
            return Err(Unfit::Unsupported(
                "presigned AWS URLs signed with a placeholder are not supported: sign the request in headers".into(),
            ));
        }
    }
    for v in headers.get_all(AUTHORIZATION) {
        let Ok(v) = v.to_str() else { continue };
        let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let Some((user, pass)) = STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .and_then(|s| {
                    s.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                })
            else {
                continue;
            };
            for part in [&user, &pass] {
                if part.starts_with(PLACEHOLDER_PREFIX) {
                    let spot = Spot::AuthBasic {
                        user: user.clone(),
                        pass: pass.clone(),
                    };
                    candidates.push((part.clone(), spot));
                }
            }
        } else if scheme.eq_ignore_ascii_case(super::sigv4::SCHEME) {
            match super::sigv4::parse_authorization(v) {
                Some(signed) if signed.key_id.starts_with(PLACEHOLDER_PREFIX) => {
                    let streaming = headers
                        .get("x-amz-content-sha256")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("STREAMING-"));
                    if streaming {
                        return Err(Unfit::Unsupported(
                            "streaming (aws-chunked) uploads signed with a placeholder are not supported".into(),
                        ));
                    }
                    candidates.push((signed.key_id.clone(), Spot::SigV4(signed)));
                }
                Some(_) => {}
                None if v.contains(PLACEHOLDER_PREFIX) => return Err(Unfit::Foreign),
                None => {}
            }
        } else if rest.starts_with(PLACEHOLDER_PREFIX) {
            let spot = Spot::AuthToken {
                scheme: scheme.to_string(),
            };
            candidates.push((rest.to_string(), spot));
        }
    }
    for d in secrets.decls() {
        match &d.inject {
            Inject::Header { name, .. } => {
                for v in headers.get_all(name) {
                    let text = v.to_str().unwrap_or("");
                    for token in tokens_in(text) {
                        candidates.push((token.to_string(), Spot::Header(name.clone())));
                    }
                }
            }
            Inject::Query(param) => {
                for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
                    if k == param.as_str() && v.starts_with(PLACEHOLDER_PREFIX) {
                        candidates.push((v.into_owned(), Spot::Query(param.clone())));
                    }
                }
            }
            Inject::Bearer | Inject::Basic | Inject::Aws => {}
        }
    }
    let mut found: Vec<Found> = Vec::new();
    for (candidate, spot) in candidates {
        let secret = secrets
            .decls()
            .iter()
            .find(|d| constant_time_eq(&key.placeholder(credential_id, &d.name), &candidate));
        let kind_fits = |d: &&crate::config::SecretDecl| {
            matches!(spot, Spot::SigV4(_)) == (d.inject == Inject::Aws)
        };
        match secret.filter(kind_fits) {
            Some(d) => {
                let f = Found {
                    secret: d.name.clone(),
                    placeholder: candidate,
                    spot,
                };
                if !found.contains(&f) {
                    found.push(f);
                }
            }
            None => return Err(Unfit::Foreign),
        }
    }
    Ok(found)
}

/// Placeholder-shaped words in a header value.
fn tokens_in(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
        .filter(|w| w.starts_with(PLACEHOLDER_PREFIX))
}

/// Replaces each found placeholder with its secret's value in `headers` and the query of
/// `path_and_query` (returned rewritten when it changed). Only called on a permitted
/// request to a host the secret allows.
pub fn inject(
    found: &[Found],
    secrets: &Secrets,
    method: &str,
    headers: &mut HeaderMap,
    path_and_query: &str,
    body_sha256: Option<&str>,
) -> std::result::Result<Option<String>, String> {
    // Swap the plain placeholders first: a SigV4 signature covers the final headers.
    let mut found: Vec<&Found> = found.iter().collect();
    found.sort_by_key(|f| matches!(f.spot, Spot::SigV4(_)));
    let mut rewritten: Option<String> = None;
    for f in found {
        let value = secrets
            .value(&f.secret)
            .ok_or_else(|| format!("secret {:?} has no value", f.secret))?;
        let real = value.expose();
        let sensitive = |s: String| -> std::result::Result<HeaderValue, String> {
            let mut v = HeaderValue::from_str(&s)
                .map_err(|_| format!("secret {:?} is not a valid header value", f.secret))?;
            v.set_sensitive(true);
            Ok(v)
        };
        match &f.spot {
            Spot::AuthToken { scheme } => {
                headers.insert(AUTHORIZATION, sensitive(format!("{scheme} {real}"))?);
            }
            Spot::AuthBasic { user, pass } => {
                let swap = |s: &str| if s == f.placeholder { real } else { s }.to_string();
                let pair = format!("{}:{}", swap(user), swap(pass));
                headers.insert(
                    AUTHORIZATION,
                    sensitive(format!("Basic {}", STANDARD.encode(pair)))?,
                );
            }
            Spot::Header(name) => {
                let values: Vec<String> = headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap_or("").replace(&f.placeholder, real))
                    .collect();
                headers.remove(name);
                for v in values {
                    headers.append(name.clone(), sensitive(v)?);
                }
            }
            Spot::SigV4(signed) => {
                let uri = rewritten.as_deref().unwrap_or(path_and_query);
                let creds = super::sigv4::creds(real);
                super::sigv4::resign(signed, &creds, method, uri, headers, body_sha256)?;
            }
            Spot::Query(_) => {
                let current = rewritten.as_deref().unwrap_or(path_and_query);
                let encoded: String =
                    percent_encoding::utf8_percent_encode(real, percent_encoding::NON_ALPHANUMERIC)
                        .to_string();
                rewritten = Some(current.replace(&f.placeholder, &encoded));
            }
        }
    }
    Ok(rewritten)
}

/// The variables `clawser env` exports for the secrets a credential may use: each secret's
/// `env:` names set to its placeholder, and git's credential helper (in the `GIT_CONFIG_*`
/// form, numbered from `git_index`) answering `x-access-token:<placeholder>` for the hosts
/// of `basic` secrets.
pub fn exports(
    key: &PlaceholderKey,
    credential_id: &str,
    usable: &[&crate::config::SecretDecl],
    git_index: usize,
) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    let mut cases = String::new();
    for d in usable {
        let ph = key.placeholder(credential_id, &d.name);
        for name in &d.env {
            vars.push((name.clone(), ph.clone()));
        }
        if d.inject == Inject::Aws {
            // The SDKs sign with these; Clawser re-signs with the real key.
            vars.push(("AWS_ACCESS_KEY_ID".into(), ph.clone()));
            let secret = key.placeholder(credential_id, &format!("{}#secret", d.name));
            vars.push(("AWS_SECRET_ACCESS_KEY".into(), secret));
            let token = key.placeholder(credential_id, &format!("{}#token", d.name));
            vars.push(("AWS_SESSION_TOKEN".into(), token));
            continue;
        }
        if matches!(d.inject, Inject::Basic | Inject::Bearer) {
            // Host globs are plain `a-z0-9.-*` (validated), safe in a shell `case`.
            let hosts = d.hosts.join("|");
            cases.push_str(&format!(
                "{hosts}) printf 'username=x-access-token\\npassword=%s\\n' {ph};; "
            ));
        }
    }
    if !cases.is_empty() {
        let helper = format!(
            "!f() {{ test \"$1\" = get || exit 0; h=; while read -r l; do case \"$l\" in host=*) h=\"${{l#host=}}\";; esac; done; case \"${{h%:*}}\" in {cases}esac; }}; f"
        );
        vars.push((
            format!("GIT_CONFIG_KEY_{git_index}"),
            "credential.helper".into(),
        ));
        vars.push((format!("GIT_CONFIG_VALUE_{git_index}"), helper));
        vars.push(("GIT_CONFIG_COUNT".into(), (git_index + 1).to_string()));
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SecretDecl, SecretSource};

    fn secrets() -> Secrets {
        std::env::set_var("CLAWSER_TEST_PH_GH", "ghp_real");
        std::env::set_var("CLAWSER_TEST_PH_K", "k-real");
        let d = |name: &str, var: &str, inject| SecretDecl {
            name: name.into(),
            from: SecretSource::Env(var.into()),
            hosts: vec!["api.github.com".into()],
            inject,
            env: vec!["GH_TOKEN".into()],
        };
        Secrets::load(&[
            d("gh", "CLAWSER_TEST_PH_GH", Inject::Basic),
            d(
                "k",
                "CLAWSER_TEST_PH_K",
                Inject::Header {
                    name: HeaderName::from_static("x-api-key"),
                    format: "{value}".into(),
                },
            ),
        ])
        .unwrap()
    }

    #[test]
    fn bound_to_credential_and_secret() {
        let key = PlaceholderKey::from_bytes(&[7; 32]);
        let a = key.placeholder("cred_a", "gh");
        assert!(a.starts_with(PLACEHOLDER_PREFIX) && a.len() > 40);
        assert_ne!(a, key.placeholder("cred_b", "gh"));
        assert_ne!(a, key.placeholder("cred_a", "k"));
        assert_ne!(
            a,
            PlaceholderKey::from_bytes(&[8; 32]).placeholder("cred_a", "gh")
        );
    }

    #[test]
    fn finds_and_injects() {
        let key = PlaceholderKey::from_bytes(&[7; 32]);
        let s = secrets();
        let ph = key.placeholder("cred_a", "gh");
        let cases: Vec<(String, &str)> = vec![
            (format!("Bearer {ph}"), "Bearer ghp_real"),
            (format!("token {ph}"), "token ghp_real"),
            (
                format!("Basic {}", STANDARD.encode(format!("x-access-token:{ph}"))),
                "Basic eC1hY2Nlc3MtdG9rZW46Z2hwX3JlYWw=",
            ),
        ];
        for (value, want) in cases {
            let mut h = HeaderMap::new();
            h.insert(AUTHORIZATION, value.parse().unwrap());
            let found = find(&h, None, &key, "cred_a", &s).unwrap();
            assert_eq!(found.len(), 1, "{value}");
            assert_eq!(found[0].seen().where_, "authorization");
            // Another credential's placeholder is foreign.
            assert_eq!(find(&h, None, &key, "cred_b", &s), Err(Unfit::Foreign));
            inject(&found, &s, "GET", &mut h, "/", None).unwrap();
            assert_eq!(h[AUTHORIZATION], want);
            assert!(h[AUTHORIZATION].is_sensitive());
        }
        let kph = key.placeholder("cred_a", "k");
        let mut h = HeaderMap::new();
        h.insert("x-api-key", kph.parse().unwrap());
        let found = find(&h, None, &key, "cred_a", &s).unwrap();
        assert_eq!(found[0].seen().where_, "x-api-key");
        inject(&found, &s, "GET", &mut h, "/", None).unwrap();
        assert_eq!(h["x-api-key"], "k-real");
        // A made-up value with the prefix is refused, not passed on.
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer clwp_madeup".parse().unwrap());
        assert_eq!(find(&h, None, &key, "cred_a", &s), Err(Unfit::Foreign));
        // No placeholder: nothing found.
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, "Bearer ghp_own".parse().unwrap());
        assert!(find(&h, None, &key, "cred_a", &s).unwrap().is_empty());
    }

    #[test]
    fn git_helper_exports() {
        let key = PlaceholderKey::from_bytes(&[7; 32]);
        let s = secrets();
        let gh = s.decl("gh").unwrap();
        let vars = exports(&key, "cred_a", &[gh], 1);
        let ph = key.placeholder("cred_a", "gh");
        assert!(vars.contains(&("GH_TOKEN".into(), ph.clone())));
        assert!(vars.contains(&("GIT_CONFIG_KEY_1".into(), "credential.helper".into())));
        assert!(vars.contains(&("GIT_CONFIG_COUNT".into(), "2".into())));
        let helper = &vars.iter().find(|v| v.0 == "GIT_CONFIG_VALUE_1").unwrap().1;
        assert!(helper.contains(&ph) && !helper.contains("ghp_real"));
    }
}
