//! Where placeholders are accepted, refused, and what is swapped.

use super::*;
use crate::config::{SecretDecl, SecretSource};

fn secrets() -> Secrets {
    std::env::set_var("CLAWSER_TEST_INJ_GH", "ghp_real/value+1");
    std::env::set_var("CLAWSER_TEST_INJ_K", "k-real");
    std::env::set_var("CLAWSER_TEST_INJ_Q", "q-real");
    let d = |name: &str, var: &str, inject| SecretDecl {
        name: name.into(),
        from: SecretSource::Env(var.into()),
        hosts: vec!["api.github.com".into()],
        inject,
        env: vec![],
        add: false,
    };
    Secrets::load(&[
        d("gh", "CLAWSER_TEST_INJ_GH", Inject::Basic),
        d(
            "k",
            "CLAWSER_TEST_INJ_K",
            Inject::Header {
                name: HeaderName::from_static("x-api-key"),
                format: "{value}".into(),
            },
        ),
        d("q", "CLAWSER_TEST_INJ_Q", Inject::Query("key".into())),
    ])
    .unwrap()
}

fn key() -> PlaceholderKey {
    PlaceholderKey::from_bytes(&[7; 32])
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    h
}

#[test]
fn accepted_in_their_place_and_swapped() {
    let (key, s) = (key(), secrets());
    let gh = key.placeholder("cred_a", "gh");
    let basic = format!("Basic {}", STANDARD.encode(format!("x-access-token:{gh}")));
    let cases: Vec<(String, String)> = vec![
        (format!("Bearer {gh}"), "Bearer ghp_real/value+1".into()),
        (format!("token {gh}"), "token ghp_real/value+1".into()),
        (
            basic,
            format!(
                "Basic {}",
                STANDARD.encode("x-access-token:ghp_real/value+1")
            ),
        ),
    ];
    for (value, want) in cases {
        let mut h = headers(&[("authorization", &value)]);
        let found = find(&h, "/", &key, "cred_a", &s).unwrap();
        assert_eq!(found.len(), 1, "{value}");
        assert_eq!(find(&h, "/", &key, "cred_b", &s), Err(Unfit::Foreign));
        let out = inject(&found, &s, "GET", &mut h, "/", None).unwrap();
        assert_eq!(h[AUTHORIZATION], want.as_str());
        assert!(h[AUTHORIZATION].is_sensitive());
        assert!(out.needles.iter().any(|n| n == b"ghp_real/value+1"));
    }
    // Header secret.
    let k = key.placeholder("cred_a", "k");
    let mut h = headers(&[("x-api-key", &k)]);
    let found = find(&h, "/", &key, "cred_a", &s).unwrap();
    inject(&found, &s, "GET", &mut h, "/", None).unwrap();
    assert_eq!(h["x-api-key"], "k-real");
    // Query secret: only the exact value of its own parameter is swapped.
    let q = key.placeholder("cred_a", "q");
    let uri = format!("https://api.github.com/x?a=1&key={q}&b=2");
    let found = find(&HeaderMap::new(), &uri, &key, "cred_a", &s).unwrap();
    let out = inject(&found, &s, "GET", &mut HeaderMap::new(), &uri, None).unwrap();
    assert_eq!(
        out.uri.unwrap(),
        "https://api.github.com/x?a=1&key=q%2Dreal&b=2"
    );
}

#[test]
fn refused_anywhere_else() {
    let (key, s) = (key(), secrets());
    let gh = key.placeholder("cred_a", "gh");
    let q = key.placeholder("cred_a", "q");
    let k = key.placeholder("cred_a", "k");
    let misplaced = |h: HeaderMap, uri: &str| {
        matches!(find(&h, uri, &key, "cred_a", &s), Err(Unfit::Misplaced(_)))
    };
    // The query secret smuggled into a callback URL beside its own parameter.
    assert!(misplaced(
        HeaderMap::new(),
        &format!("/x?key={q}&cb=https%3A%2F%2Fevil%2F%3Ft%3D{q}")
    ));
    assert!(misplaced(HeaderMap::new(), &format!("/{q}/x?key={q}")));
    // Basic with the placeholder as the user name.
    let b = format!("Basic {}", STANDARD.encode(format!("{gh}:x")));
    assert!(misplaced(headers(&[("authorization", &b)]), "/"));
    // A secret sent where another kind goes: the query secret as Bearer, the header
    // secret in Authorization, the bearer secret in the query parameter.
    assert!(misplaced(
        headers(&[("authorization", &format!("Bearer {q}"))]),
        "/"
    ));
    assert!(misplaced(
        headers(&[("authorization", &format!("Bearer {k}"))]),
        "/"
    ));
    assert!(misplaced(HeaderMap::new(), &format!("/x?key={gh}")));
    // Its own place plus a copy in another header.
    let bearer = format!("Bearer {gh}");
    assert!(misplaced(
        headers(&[("authorization", &bearer), ("x-forward-to", &gh)]),
        "/"
    ));
    // Unsupported AWS forms.
    let presigned = format!("/o?X-Amz-Credential={gh}%2F20261130%2Fus-east-1%2Fs3%2Faws4_request");
    assert!(matches!(
        find(&HeaderMap::new(), &presigned, &key, "cred_a", &s),
        Err(Unfit::Unsupported(_))
    ));
    // No placeholder, nothing found.
    assert!(find(
        &headers(&[("authorization", "Bearer ghp_own")]),
        "/",
        &key,
        "cred_a",
        &s
    )
    .unwrap()
    .is_empty());
}

#[test]
fn variants_cover_encoded_echoes() {
    let value = "ghp_real/value+1";
    let v = variants(value);
    let has = |s: &str| v.iter().any(|n| n == s.as_bytes());
    assert!(has("ghp%5Freal%2Fvalue%2B1"));
    assert!(has("ghp%5freal%2fvalue%2b1"));
    assert!(has("ghp_real\\/value+1"));
    // Whatever the user name before it, the base64 of `user:value` contains one of the
    // three alignments.
    for user in ["", "x", "xy", "x-access-token"] {
        let b64 = STANDARD.encode(format!("{user}:{value}"));
        assert!(
            v.iter()
                .any(|n| b64.as_bytes().windows(n.len()).any(|w| w == n.as_slice())),
            "user {user:?}: {b64}"
        );
    }
}
