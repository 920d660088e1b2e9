//! AWS Signature Version 4 with placeholders: the agent signs with placeholder keys
//! (`AWS_ACCESS_KEY_ID=clwp_…`), Clawser recognises the placeholder key id in the
//! `Authorization: AWS4-HMAC-SHA256 Credential=…` header and re-signs the permitted request
//! with the real key, using AWS's own signer (`aws-sigv4`: a spec-heavy algorithm with
//! service-specific quirks, so a maintained implementation rather than our own).
//!
//! Header-signed requests are supported. Presigned URLs and streaming (`aws-chunked`)
//! uploads signed with a placeholder are refused with a reason.

use std::time::SystemTime;

use aws_sigv4::http_request::{
    sign, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode,
};
use aws_sigv4::sign::v4;
use http::{HeaderMap, HeaderName, HeaderValue};

/// The scheme of a SigV4 `Authorization` header.
pub const SCHEME: &str = "AWS4-HMAC-SHA256";

/// Real AWS credentials, parsed from a secret's value.
pub struct AwsCreds<'a> {
    pub key_id: &'a str,
    pub secret: &'a str,
    pub token: Option<&'a str>,
}

/// Normalizes what an `aws` secret's source yields into `KEY_ID:SECRET[:TOKEN]`: either that
/// form, or the JSON of `aws configure export-credentials --format process`
/// (`{"AccessKeyId", "SecretAccessKey", "SessionToken"}`).
pub fn normalize(raw: &str) -> Result<String, String> {
    let (k, s, t) = if raw.trim_start().starts_with('{') {
        let v: serde_json::Value =
            serde_json::from_str(raw).map_err(|_| "its JSON does not parse".to_string())?;
        let get = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        (
            get("AccessKeyId").ok_or("no AccessKeyId")?,
            get("SecretAccessKey").ok_or("no SecretAccessKey")?,
            get("SessionToken"),
        )
    } else {
        let mut parts = raw.trim().splitn(3, ':');
        let k = parts.next().unwrap_or("").to_string();
        let s = parts
            .next()
            .ok_or("expected KEY_ID:SECRET[:TOKEN]")?
            .to_string();
        (k, s, parts.next().map(str::to_string))
    };
    let ok = |x: &str| !x.is_empty() && !x.contains(':') && x.bytes().all(|b| b > 0x20 && b < 0x7f);
    if !ok(&k) || !ok(&s) || t.as_deref().is_some_and(|t| !ok(t)) {
        return Err("key id, secret and token must be non-empty printable text without ':'".into());
    }
    Ok(match t {
        Some(t) => format!("{k}:{s}:{t}"),
        None => format!("{k}:{s}"),
    })
}

/// Splits a normalized value.
pub fn creds(value: &str) -> AwsCreds<'_> {
    let mut p = value.splitn(3, ':');
    AwsCreds {
        key_id: p.next().unwrap_or(""),
        secret: p.next().unwrap_or(""),
        token: p.next(),
    }
}

/// What the agent's signature says: key id, scope and signed headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub key_id: String,
    pub region: String,
    pub service: String,
    /// Lower-case names, as listed in `SignedHeaders`.
    pub headers: Vec<String>,
}

/// Parses `AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request,
/// SignedHeaders=a;b, Signature=…`; `None` for anything else.
pub fn parse_authorization(value: &str) -> Option<Signed> {
    let rest = value.trim().strip_prefix(SCHEME)?;
    let mut cred = None;
    let mut signed = None;
    for part in rest.split(',') {
        let (k, v) = part.trim().split_once('=')?;
        match k.trim() {
            "Credential" => cred = Some(v.trim()),
            "SignedHeaders" => signed = Some(v.trim()),
            _ => {}
        }
    }
    let scope: Vec<&str> = cred?.split('/').collect();
    let [key_id, _date, region, service, "aws4_request"] = scope.as_slice() else {
        return None;
    };
    Some(Signed {
        key_id: key_id.to_string(),
        region: region.to_string(),
        service: service.to_string(),
        headers: signed?
            .split(';')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect(),
    })
}

/// Headers the signer adds itself (never taken from the agent's request).
const SIGNER_HEADERS: &[&str] = &["authorization", "x-amz-date", "x-amz-security-token"];

/// Re-signs a request with the real credentials: the same method, URL and signed headers
/// the agent signed, the current time, and the real key (and session token). Returns the
/// new signature.
///
/// The payload hash signed is the body's: `body_sha256` (the hex SHA-256 of the whole body,
/// when it was read whole) replaces whatever `x-amz-content-sha256` claims, so a signature
/// never covers `UNSIGNED-PAYLOAD` or a made-up hash for a body Clawser saw. Only a body too
/// large to read whole is signed with the request's own claim.
pub fn resign(
    signed: &Signed,
    creds: &AwsCreds<'_>,
    method: &str,
    uri: &str,
    headers: &mut HeaderMap,
    body_sha256: Option<&str>,
) -> Result<String, String> {
    let claimed = headers
        .get("x-amz-content-sha256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let payload = match (claimed, body_sha256) {
        (Some(v), _) if v.starts_with("STREAMING-") => {
            return Err(
                "streaming (aws-chunked) uploads signed with a placeholder are not supported"
                    .into(),
            )
        }
        (Some(_), Some(h)) => {
            let v = HeaderValue::from_str(h).map_err(|e| e.to_string())?;
            headers.insert("x-amz-content-sha256", v);
            h.to_string()
        }
        (None, Some(h)) => h.to_string(),
        (Some(v), None) => v,
        (None, None) => {
            return Err(
                "the body was too large to hash for re-signing (set x-amz-content-sha256)".into(),
            )
        }
    };
    let owned: Vec<(String, String)> = signed
        .headers
        .iter()
        .filter(|h| !SIGNER_HEADERS.contains(&h.as_str()))
        .filter_map(|h| {
            let v = headers.get(h.as_str())?.to_str().ok()?;
            Some((h.clone(), v.to_string()))
        })
        .collect();
    let identity = aws_credential_types::Credentials::new(
        creds.key_id,
        creds.secret,
        creds.token.map(str::to_string),
        None,
        "clawser",
    )
    .into();
    let mut settings = SigningSettings::default();
    if signed.service == "s3" {
        // S3 signs the path as sent: single encoding, no normalization.
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(&signed.region)
        .name(&signed.service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|e| format!("SigV4 parameters: {e}"))?
        .into();
    let request = SignableRequest::new(
        method,
        uri,
        owned.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        SignableBody::Precomputed(payload),
    )
    .map_err(|e| format!("SigV4 request: {e}"))?;
    let (instructions, signature) = sign(request, &params)
        .map_err(|e| format!("SigV4 signing: {e}"))?
        .into_parts();
    for h in SIGNER_HEADERS {
        headers.remove(*h);
    }
    let (new_headers, _) = instructions.into_parts();
    for h in new_headers {
        let name = HeaderName::from_bytes(h.name().as_bytes()).map_err(|e| e.to_string())?;
        let mut v = HeaderValue::from_str(h.value()).map_err(|e| e.to_string())?;
        v.set_sensitive(true);
        headers.insert(name, v);
    }
    Ok(signature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_authorization_header() {
        let v = "AWS4-HMAC-SHA256 Credential=clwp_abc/20261130/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=deadbeef";
        let s = parse_authorization(v).unwrap();
        assert_eq!(s.key_id, "clwp_abc");
        assert_eq!((s.region.as_str(), s.service.as_str()), ("us-east-1", "s3"));
        assert_eq!(
            s.headers,
            vec!["host", "x-amz-content-sha256", "x-amz-date"]
        );
        for bad in [
            "Bearer x",
            "AWS4-HMAC-SHA256 Credential=a/b/c",
            "AWS4-HMAC-SHA256 garbage",
        ] {
            assert!(parse_authorization(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn normalizes_sources() {
        assert_eq!(normalize("AKID:SECRET").unwrap(), "AKID:SECRET");
        assert_eq!(
            normalize(r#"{"Version": 1, "AccessKeyId": "AKID", "SecretAccessKey": "S", "SessionToken": "T"}"#).unwrap(),
            "AKID:S:T"
        );
        assert!(normalize("AKID").is_err());
        assert!(normalize("{}").is_err());
        let c = normalize("AKID:S:T").unwrap();
        let c = creds(&c);
        assert_eq!((c.key_id, c.secret, c.token), ("AKID", "S", Some("T")));
    }

    /// Known answer: AWS's documented example (get-vanilla, SigV4 test suite) re-signed from
    /// a placeholder signature gives AWS's signature when the time is the suite's.
    #[test]
    fn resigns_with_the_real_key() {
        let signed = parse_authorization("AWS4-HMAC-SHA256 Credential=clwp_x/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=00").unwrap();
        let mut h = HeaderMap::new();
        h.insert("host", "example.amazonaws.com".parse().unwrap());
        h.insert("x-amz-date", "20150830T123600Z".parse().unwrap());
        h.insert(
            "authorization",
            "AWS4-HMAC-SHA256 Credential=clwp_x/...".parse().unwrap(),
        );
        h.insert("x-amz-security-token", "clwp_token".parse().unwrap());
        let creds = AwsCreds {
            key_id: "AKIDEXAMPLE",
            secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            token: None,
        };
        let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        resign(
            &signed,
            &creds,
            "GET",
            "https://example.amazonaws.com/",
            &mut h,
            Some(empty),
        )
        .unwrap();
        let auth = h["authorization"].to_str().unwrap();
        assert!(
            auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/"),
            "{auth}"
        );
        assert!(auth.contains("SignedHeaders=host;x-amz-date"), "{auth}");
        assert!(
            !h.contains_key("x-amz-security-token"),
            "the placeholder token is gone"
        );
        assert!(h["authorization"].is_sensitive());
        let mut streaming = HeaderMap::new();
        streaming.insert(
            "x-amz-content-sha256",
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD".parse().unwrap(),
        );
        assert!(resign(
            &signed,
            &creds,
            "PUT",
            "https://example.amazonaws.com/",
            &mut streaming,
            None
        )
        .is_err());
    }
}
