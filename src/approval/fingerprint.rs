//! The approval fingerprint: SHA-256 over agent, job, method, URL, body hash, the headers
//! that change what a request means (content type and encoding, method overrides; every
//! value of each) and the credentials it is sent with (Authorization, Cookie), each
//! length-prefixed and under a version tag, so an approval releases exactly the request that
//! was reviewed, as the identity that was reviewed, and no other.

/// Request headers bound into the fingerprint: a retry that changes one of them is a
/// different request. (Headers that vary per attempt, such as dates or signatures, are not.)
pub const FINGERPRINT_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
    // The upstream identity: an approval given for one token does not release another's.
    "authorization",
    "cookie",
];

/// The bound headers an approver is shown (the credentials are bound but never shown).
pub const SHOWN_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// Hex SHA-256 fingerprint of a request for approval binding. `headers` are the values of
/// [`FINGERPRINT_HEADERS`] present on the request (name, value), in that order.
pub fn fingerprint(
    agent: &str,
    job: Option<&str>,
    method: &str,
    url: &str,
    body_sha256: &str,
    headers: &[(&str, &str)],
) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"clawser-approval-v1\n");
    let fixed = [agent, job.unwrap_or(""), method, url, body_sha256];
    let varying = headers.iter().flat_map(|(n, v)| [*n, *v]);
    for field in fixed.into_iter().chain(varying) {
        ctx.update(&(field.len() as u64).to_be_bytes());
        ctx.update(field.as_bytes());
    }
    hex::encode(ctx.finish().as_ref())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_every_field_without_ambiguity() {
        let base = fingerprint(
            "oc-1",
            Some("job_1"),
            "POST",
            "https://api.github.com:443/repos/a/b/merges",
            "ab",
            &[],
        );
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            fingerprint(
                "oc-1",
                Some("job_1"),
                "POST",
                "https://api.github.com:443/repos/a/b/merges",
                "ab",
                &[]
            )
        );
        for other in [
            fingerprint(
                "oc-2",
                Some("job_1"),
                "POST",
                "https://api.github.com:443/repos/a/b/merges",
                "ab",
                &[],
            ),
            fingerprint(
                "oc-1",
                None,
                "POST",
                "https://api.github.com:443/repos/a/b/merges",
                "ab",
                &[],
            ),
            fingerprint(
                "oc-1",
                Some("job_1"),
                "PUT",
                "https://api.github.com:443/repos/a/b/merges",
                "ab",
                &[],
            ),
            fingerprint(
                "oc-1",
                Some("job_1"),
                "POST",
                "https://api.github.com:443/repos/a/b/merge",
                "ab",
                &[],
            ),
            fingerprint(
                "oc-1",
                Some("job_1"),
                "POST",
                "https://api.github.com:443/repos/a/b/merges",
                "ac",
                &[],
            ),
            fingerprint(
                "oc-1",
                Some("job_1"),
                "POST",
                "https://api.github.com:443/repos/a/b/merges",
                "ab",
                &[("x-http-method-override", "DELETE")],
            ),
            // Moving a byte between fields changes the fingerprint (length prefixes).
            fingerprint(
                "oc-1j",
                Some("ob_1"),
                "POST",
                "https://api.github.com:443/repos/a/b/merges",
                "ab",
                &[],
            ),
        ] {
            assert_ne!(base, other);
        }
    }
}
