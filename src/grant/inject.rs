//! Finding placeholders in a request and swapping them for secret values.
//!
//! A placeholder is accepted only in its own secret's place: Bearer / `token` / the
//! password of Basic for `bearer` and `basic` secrets, the configured header or query
//! parameter for those, the SigV4 key id for `aws`. Anywhere else in the URL or the headers
//! (where a swap could carry the value to some other destination, or where it would not be
//! swapped) it is refused. The swap returns every form in which the value went out, so the
//! response can be scrubbed of exactly those.

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine as _;
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderName, HeaderValue};

use super::placeholder::{PlaceholderKey, PLACEHOLDER_PREFIX};
use super::secrets::Secrets;
use super::sigv4::{self, Signed};
use crate::config::Inject;
use crate::identity::token::constant_time_eq;
pub use crate::model::PlaceholderSeen;

/// Where in the request a placeholder sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spot {
    /// `Authorization: <scheme> <placeholder>` (Bearer, token).
    AuthToken { scheme: String },
    /// `Authorization: Basic base64(user:placeholder)`.
    AuthBasic { user: String },
    /// A configured header whose value contains the placeholder.
    Header(HeaderName),
    /// A configured query parameter whose value is the placeholder.
    Query(String),
    /// `Authorization: AWS4-HMAC-SHA256 Credential=<placeholder>/…`: re-signed.
    SigV4(Signed),
    /// No placeholder: the secret (`add: true`) is added where its `inject` says.
    Added,
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
            Spot::Added => "added".to_string(),
        };
        PlaceholderSeen {
            secret: self.secret.clone(),
            where_,
        }
    }

    fn fits(&self, inject: &Inject) -> bool {
        match (&self.spot, inject) {
            (Spot::AuthToken { .. } | Spot::AuthBasic { .. }, Inject::Bearer | Inject::Basic) => {
                true
            }
            (Spot::Header(h), Inject::Header { name, .. }) => h == name,
            (Spot::Query(q), Inject::Query(p)) => q == p,
            (Spot::SigV4(_), Inject::Aws) => true,
            (Spot::Added, _) => true,
            _ => false,
        }
    }
}

/// Why placeholders in a request cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfit {
    /// Looks like a placeholder but is not one of this credential's.
    Foreign,
    /// One of this credential's placeholders, in a place its secret is not injected into.
    Misplaced(String),
    /// A use Clawser does not support (presigned AWS URLs, streaming SigV4 uploads).
    Unsupported(String),
}

fn unsupported(m: &str) -> Unfit {
    Unfit::Unsupported(m.to_string())
}

/// Exact values of query parameter `param` in a raw query.
fn query_values<'a>(query: &'a str, param: &str) -> impl Iterator<Item = String> + 'a {
    let param = param.to_string();
    form_urlencoded::parse(query.as_bytes())
        .filter(move |(k, _)| *k == param.as_str())
        .map(|(_, v)| v.into_owned())
}

/// The candidates: strings with the placeholder prefix in the places secrets go.
fn candidates(
    headers: &HeaderMap,
    query: &str,
    secrets: &Secrets,
) -> Result<Vec<(String, Spot)>, Unfit> {
    let mut out = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k.eq_ignore_ascii_case("x-amz-credential") && v.starts_with(PLACEHOLDER_PREFIX) {
            return Err(unsupported(
                "presigned AWS URLs signed with a placeholder are not supported: sign the request in headers",
            ));
        }
    }
    for v in headers.get_all(AUTHORIZATION) {
        let Ok(v) = v.to_str() else { continue };
        let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v.trim(), ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD
                .decode(rest)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            let Some((user, pass)) = decoded.as_deref().and_then(|s| s.split_once(':')) else {
                continue;
            };
            if user.starts_with(PLACEHOLDER_PREFIX) {
                return Err(Unfit::Misplaced(
                    "a placeholder goes in the password of Basic credentials, not the user name"
                        .into(),
                ));
            }
            if pass.starts_with(PLACEHOLDER_PREFIX) {
                let spot = Spot::AuthBasic {
                    user: user.to_string(),
                };
                out.push((pass.to_string(), spot));
            }
        } else if scheme.eq_ignore_ascii_case(sigv4::SCHEME) {
            match sigv4::parse_authorization(v) {
                Some(signed) if signed.key_id.starts_with(PLACEHOLDER_PREFIX) => {
                    // The real signature covers one value per header: a repeated signed
                    // header would forward what it does not cover.
                    let twice = |h: &String| headers.get_all(h.as_str()).iter().count() > 1;
                    if signed.headers.iter().any(twice) {
                        return Err(unsupported(
                            "a header signed with a placeholder appears twice",
                        ));
                    }
                    let streaming = headers
                        .get("x-amz-content-sha256")
                        .and_then(|v| v.to_str().ok())
                        .is_some_and(|v| v.starts_with("STREAMING-"));
                    if streaming {
                        return Err(unsupported("streaming (aws-chunked) uploads signed with a placeholder are not supported"));
                    }
                    out.push((signed.key_id.clone(), Spot::SigV4(signed)));
                }
                Some(_) => {}
                None if v.contains(PLACEHOLDER_PREFIX) => return Err(Unfit::Foreign),
                None => {}
            }
        } else if rest.starts_with(PLACEHOLDER_PREFIX) {
            let spot = Spot::AuthToken {
                scheme: scheme.to_string(),
            };
            out.push((rest.to_string(), spot));
        }
    }
    for d in secrets.decls() {
        match &d.inject {
            Inject::Header { name, .. } => {
                for v in headers.get_all(name) {
                    let text = v.to_str().unwrap_or("");
                    for word in text
                        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
                        .filter(|w| w.starts_with(PLACEHOLDER_PREFIX))
                    {
                        out.push((word.to_string(), Spot::Header(name.clone())));
                    }
                }
            }
            Inject::Query(param) => {
                for v in query_values(query, param) {
                    if v.starts_with(PLACEHOLDER_PREFIX) {
                        out.push((v, Spot::Query(param.clone())));
                    }
                }
            }
            Inject::Bearer | Inject::Basic | Inject::Aws => {}
        }
    }
    Ok(out)
}

/// True when the request already carries a credential where `inject` would put one (so a
/// secret with `add: true` is not added).
pub fn slot_taken(inject: &Inject, headers: &HeaderMap, path_and_query: &str) -> bool {
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    match inject {
        Inject::Bearer | Inject::Basic | Inject::Aws => headers.contains_key(AUTHORIZATION),
        Inject::Header { name, .. } => headers.contains_key(name),
        Inject::Query(p) => query_values(query, p).next().is_some(),
    }
}

/// Finds the placeholders in a request sent with `credential_id`.
pub fn find(
    headers: &HeaderMap,
    path_and_query: &str,
    key: &PlaceholderKey,
    credential_id: &str,
    secrets: &Secrets,
) -> Result<Vec<Found>, Unfit> {
    let query = path_and_query.split_once('?').map_or("", |(_, q)| q);
    let mut found: Vec<Found> = Vec::new();
    for (candidate, spot) in candidates(headers, query, secrets)? {
        let decl = secrets
            .decls()
            .iter()
            .find(|d| constant_time_eq(&key.placeholder(credential_id, &d.name), &candidate))
            .ok_or(Unfit::Foreign)?;
        let f = Found {
            secret: decl.name.clone(),
            placeholder: candidate,
            spot,
        };
        if !f.fits(&decl.inject) {
            return Err(Unfit::Misplaced(format!(
                "secret {:?} is not injected in {}",
                decl.name,
                f.seen().where_
            )));
        }
        if !found.contains(&f) {
            found.push(f);
        }
    }
    // Nowhere else: not in the path or another query parameter, not in another header.
    for f in &found {
        let allowed_in_url = match &f.spot {
            Spot::Query(p) => query_values(query, p)
                .filter(|v| *v == f.placeholder)
                .count(),
            _ => 0,
        };
        if path_and_query.matches(f.placeholder.as_str()).count() > allowed_in_url {
            return Err(Unfit::Misplaced(format!(
                "the placeholder of secret {:?} appears elsewhere in the URL",
                f.secret
            )));
        }
        let own = |name: &HeaderName| match &f.spot {
            Spot::Header(h) => name == h,
            _ => *name == AUTHORIZATION,
        };
        let elsewhere = headers.iter().any(|(name, v)| {
            !own(name) && v.to_str().is_ok_and(|t| t.contains(f.placeholder.as_str()))
        });
        if elsewhere {
            return Err(Unfit::Misplaced(format!(
                "the placeholder of secret {:?} appears in another header",
                f.secret
            )));
        }
    }
    Ok(found)
}

/// A permitted request after the swap.
pub struct Injected {
    /// The rewritten `path_and_query` (or URI), when a query parameter was swapped.
    pub uri: Option<String>,
    /// Every form in which a secret went out, for scrubbing the response.
    pub needles: Vec<Vec<u8>>,
}

fn sensitive(secret: &str, s: String) -> Result<HeaderValue, String> {
    let mut v = HeaderValue::from_str(&s)
        .map_err(|_| format!("secret {secret:?} is not a valid header value"))?;
    v.set_sensitive(true);
    Ok(v)
}

/// The query with each exact value `placeholder` of `param` replaced by `real`.
fn swap_query(uri: &str, param: &str, placeholder: &str, real: &str) -> String {
    let Some((base, query)) = uri.split_once('?') else {
        return uri.to_string();
    };
    let encoded: String =
        percent_encoding::utf8_percent_encode(real, percent_encoding::NON_ALPHANUMERIC).to_string();
    let pieces: Vec<String> = query
        .split('&')
        .map(|piece| {
            let (k, v) = piece.split_once('=').unwrap_or((piece, ""));
            let name = percent_encoding::percent_decode_str(&k.replace('+', " "))
                .decode_utf8_lossy()
                .into_owned();
            if name == param && v == placeholder {
                format!("{k}={encoded}")
            } else {
                piece.to_string()
            }
        })
        .collect();
    format!("{base}?{}", pieces.join("&"))
}

/// Replaces each found placeholder with its secret's value. Only called on a permitted
/// request to a host the secret allows. `body_sha256` is for SigV4 re-signing.
pub fn inject(
    found: &[Found],
    secrets: &Secrets,
    method: &str,
    headers: &mut HeaderMap,
    uri: &str,
    body_sha256: Option<&str>,
) -> Result<Injected, String> {
    // Swap the plain placeholders first: a SigV4 signature covers the final headers.
    let mut order: Vec<&Found> = found.iter().collect();
    order.sort_by_key(|f| matches!(f.spot, Spot::SigV4(_)));
    let mut rewritten: Option<String> = None;
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for f in order {
        let (value, forms) = secrets
            .value_and_forms(&f.secret)
            .ok_or_else(|| format!("secret {:?} has no value", f.secret))?;
        let real = value.expose();
        match &f.spot {
            Spot::AuthToken { scheme } => {
                headers.insert(
                    AUTHORIZATION,
                    sensitive(&f.secret, format!("{scheme} {real}"))?,
                );
            }
            Spot::AuthBasic { user } => {
                let b64 = STANDARD.encode(format!("{user}:{real}"));
                needles.push(b64.clone().into_bytes());
                headers.insert(AUTHORIZATION, sensitive(&f.secret, format!("Basic {b64}"))?);
            }
            Spot::Header(name) => {
                let values: Vec<String> = headers
                    .get_all(name)
                    .iter()
                    .map(|v| v.to_str().unwrap_or("").replace(&f.placeholder, real))
                    .collect();
                headers.remove(name);
                for v in values {
                    headers.append(name.clone(), sensitive(&f.secret, v)?);
                }
            }
            Spot::Query(param) => {
                let current = rewritten.as_deref().unwrap_or(uri);
                rewritten = Some(swap_query(current, param, &f.placeholder, real));
            }
            Spot::SigV4(signed) => {
                let current = rewritten.as_deref().unwrap_or(uri);
                let creds = sigv4::creds(real);
                let signature =
                    sigv4::resign(signed, &creds, method, current, headers, body_sha256)?;
                // Masked in what comes back, so it cannot be replayed from an error page.
                needles.push(signature.into_bytes());
            }
            Spot::Added => {
                let inject = secrets
                    .decl(&f.secret)
                    .map(|d| d.inject.clone())
                    .ok_or_else(|| format!("secret {:?} is not configured", f.secret))?;
                match inject {
                    Inject::Bearer => {
                        let v = sensitive(&f.secret, format!("Bearer {real}"))?;
                        headers.insert(AUTHORIZATION, v);
                    }
                    Inject::Basic => {
                        let b64 = STANDARD.encode(format!("x-access-token:{real}"));
                        needles.push(b64.clone().into_bytes());
                        headers
                            .insert(AUTHORIZATION, sensitive(&f.secret, format!("Basic {b64}"))?);
                    }
                    Inject::Header { name, format } => {
                        let v = sensitive(&f.secret, format.replace("{value}", real))?;
                        headers.insert(name, v);
                    }
                    Inject::Query(param) => {
                        let current = rewritten.as_deref().unwrap_or(uri);
                        let enc = |s: &str| {
                            percent_encoding::utf8_percent_encode(
                                s,
                                percent_encoding::NON_ALPHANUMERIC,
                            )
                            .to_string()
                        };
                        let sep = if current.contains('?') { '&' } else { '?' };
                        rewritten = Some(format!("{current}{sep}{}={}", enc(&param), enc(real)));
                    }
                    Inject::Aws => return Err("an aws secret cannot be added".to_string()),
                }
            }
        }
        needles.extend(forms.iter().cloned());
    }
    needles.sort_by_key(|n| std::cmp::Reverse(n.len()));
    needles.dedup();
    Ok(Injected {
        uri: rewritten,
        needles,
    })
}

/// The forms in which a value can come back: as is, percent-encoded (upper and lower
/// hex), JSON-escaped, and base64 at each of the three alignments (inside a longer base64
/// text such as `Basic user:value`).
pub fn variants(value: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![value.as_bytes().to_vec()];
    let upper = percent_encoding::utf8_percent_encode(value, percent_encoding::NON_ALPHANUMERIC)
        .to_string();
    // The same escapes with lower-case hex digits (the rest of the value unchanged).
    let mut lower = String::with_capacity(upper.len());
    let mut rest = upper.as_str();
    while let Some(i) = rest.find('%') {
        lower.push_str(&rest[..i]);
        let esc = rest.get(i..i + 3).unwrap_or(&rest[i..]);
        lower.push_str(&esc.to_ascii_lowercase());
        rest = &rest[i + esc.len()..];
    }
    lower.push_str(rest);
    // Python's quote() keeps '/' as is.
    v.push(upper.replace("%2F", "/").into_bytes());
    v.push(lower.replace("%2f", "/").into_bytes());
    v.push(upper.clone().into_bytes());
    v.push(lower.into_bytes());
    v.push(hex::encode(value).into_bytes());
    v.push(hex::encode_upper(value).into_bytes());
    let json = serde_json::to_string(value).unwrap_or_default();
    v.push(json.trim_matches('"').as_bytes().to_vec());
    v.push(json.trim_matches('"').replace('/', "\\/").into_bytes());
    let n = value.len();
    if n >= 6 {
        for k in 0..3usize {
            let mut bytes = vec![0u8; k];
            bytes.extend_from_slice(value.as_bytes());
            // Characters whose six bits all come from the value.
            let first = (8 * k).div_ceil(6);
            let last = (8 * (k + n)) / 6;
            for enc in [STANDARD.encode(&bytes), URL_SAFE.encode(&bytes)] {
                if let Some(part) = enc.get(first..last) {
                    v.push(part.as_bytes().to_vec());
                }
            }
        }
    }
    v.retain(|x| !x.is_empty());
    v.sort();
    v.dedup();
    v
}

#[cfg(test)]
mod tests;
