//! Secrets and identifiers: random 256-bit tokens (shown once, stored as SHA-256), random
//! ids, and the `Proxy-Authorization: Basic` parser.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::{Error, Result};

/// Prefix of agent credentials (proxy passwords).
pub const AGENT_TOKEN_PREFIX: &str = "clw_";
/// Prefix of admin tokens (bearer tokens of the admin API).
pub const ADMIN_TOKEN_PREFIX: &str = "cla_";

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut buf = [0u8; N];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| Error::Store("the system random generator failed".to_string()))?;
    Ok(buf)
}

/// A new random 256-bit token with the given prefix, URL-safe (it goes in a proxy URL).
pub fn new_token(prefix: &str) -> Result<String> {
    Ok(format!(
        "{prefix}{}",
        URL_SAFE_NO_PAD.encode(random_bytes::<32>()?)
    ))
}

/// A new random identifier such as `job_3f9a0c1d2e4b5a69`.
pub fn new_id(prefix: &str) -> Result<String> {
    Ok(format!("{prefix}_{}", hex::encode(random_bytes::<8>()?)))
}

/// Hex SHA-256, the only form in which tokens are stored.
pub fn hash_token(token: &str) -> String {
    sha256_hex(token.as_bytes())
}

/// Hex SHA-256 of bytes.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes).as_ref())
}

/// Compares two strings in time independent of where they differ.
pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// User name and password from a `Basic` authorization value; `None` if malformed.
pub fn parse_basic(value: &str) -> Option<(String, String)> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_unique_and_prefixed() {
        let a = new_token(AGENT_TOKEN_PREFIX).unwrap();
        let b = new_token(AGENT_TOKEN_PREFIX).unwrap();
        assert!(a.starts_with("clw_") && a.len() == 4 + 43);
        assert_ne!(a, b);
        assert!(a[4..]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
    }

    #[test]
    fn hash_is_sha256_hex() {
        // Known answer: SHA-256("abc").
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn parses_basic() {
        let v = format!("Basic {}", STANDARD.encode("oc-1:clw_x:y"));
        assert_eq!(parse_basic(&v), Some(("oc-1".into(), "clw_x:y".into())));
        assert_eq!(parse_basic("Bearer abc"), None);
        assert_eq!(parse_basic("Basic !!!"), None);
        assert_eq!(
            parse_basic(&format!("Basic {}", STANDARD.encode("nocolon"))),
            None
        );
    }

    #[test]
    fn constant_time_compare() {
        assert!(constant_time_eq("abc", "abc"));
        assert!(!constant_time_eq("abc", "abd"));
        assert!(!constant_time_eq("abc", "ab"));
    }
}
