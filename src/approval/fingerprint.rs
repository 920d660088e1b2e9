//! The approval fingerprint: SHA-256 over agent, job, method, URL and body hash, each
//! length-prefixed and under a version tag, so an approval releases exactly the request that
//! was reviewed and no other.

/// Hex SHA-256 fingerprint of a request for approval binding.
pub fn fingerprint(
    agent: &str,
    job: Option<&str>,
    method: &str,
    url: &str,
    body_sha256: &str,
) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(b"clawser-approval-v1\n");
    for field in [agent, job.unwrap_or(""), method, url, body_sha256] {
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
        );
        assert_eq!(base.len(), 64);
        assert_eq!(
            base,
            fingerprint(
                "oc-1",
                Some("job_1"),
                "POST",
                "https://api.github.com:443/repos/a/b/merges",
                "ab"
            )
        );
        for other in [
            fingerprint(
                "oc-2",
                Some("job_1"),
                "POST",
                "https://api.github.com:443/repos/a/b/merges",
                "ab",
            ),
            fingerprint(
                "oc-1",
                None,
                "POST",
                "https://api.github.com:443/repos/a/b/merges",
                "ab",
            ),
            fingerprint(
                "oc-1",
                Some("job_1"),
                "PUT",
                "https://api.github.com:443/repos/a/b/merges",
                "ab",
            ),
            fingerprint(
                "oc-1",
                Some("job_1"),
                "POST",
                "https://api.github.com:443/repos/a/b/merge",
                "ab",
            ),
            fingerprint(
                "oc-1",
                Some("job_1"),
                "POST",
                "https://api.github.com:443/repos/a/b/merges",
                "ac",
            ),
            // Moving a byte between fields changes the fingerprint (length prefixes).
            fingerprint(
                "oc-1j",
                Some("ob_1"),
                "POST",
                "https://api.github.com:443/repos/a/b/merges",
                "ab",
            ),
        ] {
            assert_ne!(base, other);
        }
    }
}
