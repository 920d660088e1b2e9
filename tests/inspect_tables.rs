//! Table tests for what Clawser reads from git and GitHub requests, with no server:
//! - the GitHub REST route table (`tests/fixtures/github_routes.txt`),
//! - real `git push` bodies captured by `tests/fixtures/pushes/capture.py`, each with what
//!   git itself says the push did, read whole and truncated,
//! - a fuzzer (proptest, stable Rust) that mutates those captured pushes (the corpus) and
//!   random pkt-lines: the reader answers or refuses with a reason, never panics, and never
//!   calls a push a fast-forward (or not) unless the pack shows it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use clawser::inspect::git::{view, GitView};
use proptest::prelude::*;
use serde_json::Value;

const PUSH: &str = "/acme/api.git/git-receive-pack";

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn none_if_dash(s: &str) -> Option<&str> {
    (s != "-").then_some(s)
}

#[test]
fn github_route_table() {
    let text = std::fs::read_to_string(fixtures().join("github_routes.txt")).unwrap();
    let mut n = 0;
    for line in text.lines() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        let [method, path, action, repo, r#ref, env, ..] = cols[..] else {
            panic!("bad line: {line}");
        };
        let body: Option<Value> = line
            .find('{')
            .map(|i| serde_json::from_str(&line[i..]).unwrap());
        let v = clawser::inspect::github("api.github.com", method, path, body.as_ref());
        let got = (
            v.action.as_deref(),
            v.repo.as_deref(),
            v.r#ref.as_deref(),
            v.environment.as_deref(),
        );
        let want = (
            none_if_dash(action),
            none_if_dash(repo),
            none_if_dash(r#ref),
            none_if_dash(env),
        );
        assert_eq!(got, want, "{line}");
        if path.starts_with("/repositories/") {
            assert_eq!(v.repository_id.as_deref(), Some("123456"), "{line}");
        }
        n += 1;
    }
    assert!(n >= 40, "{n} cases");
    // Unknown routes still name their resource; GraphQL in any spelling is read as GraphQL.
    let v = clawser::inspect::github("api.github.com", "GET", "/repos/acme/api/pulls", None);
    assert_eq!(v.resource.as_deref(), Some("pulls"));
    for path in ["/graphql", "/GraphQL", "/graphql/", "/api/graphql"] {
        let body = serde_json::json!({"query": "mutation { mergePullRequest(input: {}) { clientMutationId } }"});
        let v = clawser::inspect::github("api.github.com", "POST", path, Some(&body));
        let g = v
            .graphql
            .unwrap_or_else(|| panic!("{path} not read as GraphQL"));
        assert_eq!(g.fields, vec!["mergePullRequest".to_string()], "{path}");
    }
    // A path deeper than any route names no action (and costs no backtracking).
    let deep = format!(
        "/repos/acme/api/branches/{}protection",
        "protection/".repeat(5000)
    );
    let v = clawser::inspect::github("api.github.com", "DELETE", &deep, None);
    assert_eq!(v.action, None);
    // git over HTTPS to github.com names the repository.
    let v = clawser::inspect::github("github.com", "POST", "/ACME/api.git/git-receive-pack", None);
    assert_eq!(v.repo.as_deref(), Some("acme/api"));
}

/// The captured pushes: `(name, body, expected ref updates)`.
fn captured() -> Vec<(String, Vec<u8>, Value)> {
    let dir = fixtures().join("pushes");
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) == Some("bin") {
            let want = std::fs::read_to_string(p.with_extension("json")).unwrap();
            let name = p.file_stem().unwrap().to_string_lossy().to_string();
            out.push((
                name,
                std::fs::read(&p).unwrap(),
                serde_json::from_str(&want).unwrap(),
            ));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert!(out.len() >= 14, "{} captured pushes", out.len());
    out
}

fn updates(v: &GitView) -> Value {
    serde_json::to_value(&v.ref_updates).unwrap()
}

#[test]
fn captured_pushes_read_as_git_says() {
    for (name, body, want) in captured() {
        let v = view("POST", PUSH, "", &body, true).unwrap().unwrap();
        assert_eq!(v.service, "receive-pack", "{name}");
        assert_eq!(v.repo.as_deref(), Some("acme/api"), "{name}");
        assert!(v.sideband, "{name}: git asks for side-band-64k");
        assert_eq!(updates(&v), want, "{name}");
    }
}

#[test]
fn a_truncated_push_never_claims_more_than_it_shows() {
    for (name, body, want) in captured() {
        for cut in [body.len() / 2, body.len() - 1, 200.min(body.len())] {
            let Ok(Some(v)) = view("POST", PUSH, "", &body[..cut], false) else {
                continue; // the command list itself was cut: refused with a reason
            };
            for (got, want) in v.ref_updates.iter().zip(want.as_array().unwrap()) {
                assert_eq!(got.name, want["ref"], "{name} cut at {cut}");
                if let Some(ff) = got.fast_forward {
                    assert_eq!(
                        Some(ff),
                        want["fast_forward"].as_bool(),
                        "{name} cut at {cut}"
                    );
                }
            }
        }
    }
}

#[test]
fn clone_and_fetch_name_their_service_and_repo() {
    let cases = [
        (
            "GET",
            "/acme/api.git/info/refs",
            "service=git-upload-pack",
            Some("upload-pack"),
        ),
        (
            "POST",
            "/acme/api.git/git-upload-pack",
            "",
            Some("upload-pack"),
        ),
        (
            "GET",
            "/acme/api.git/info/refs",
            "service=git-receive-pack",
            Some("receive-pack"),
        ),
        ("GET", "/acme/api.git/info/refs", "", None),
        ("GET", "/acme/api/pulls", "", None),
    ];
    for (method, path, query, service) in cases {
        let v = view(method, path, query, b"", true).unwrap();
        assert_eq!(
            v.as_ref().map(|v| v.service.as_str()),
            service,
            "{method} {path}?{query}"
        );
        if let Some(v) = v {
            assert_eq!(v.repo.as_deref(), Some("acme/api"));
            assert!(v.ref_updates.is_empty());
        }
    }
}

#[test]
fn malformed_command_lists_are_refused_with_a_reason() {
    for body in [
        &b"zzzz"[..],
        b"0004",
        b"0009abcde",
        b"ffff",
        b"0030short line without two spaces in it........",
        b"",
    ] {
        let e = view("POST", PUSH, "", body, true).unwrap_err();
        assert!(!e.0.is_empty());
    }
}

/// What the fuzzer does to a captured push.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Length(usize, [u8; 4]),
}

fn apply(mut body: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        let n = body.len().max(1);
        match m {
            Mutation::Flip(at, x) => {
                if let Some(b) = body.get_mut(at % n) {
                    *b ^= x;
                }
            }
            Mutation::Truncate(at) => body.truncate(at % n),
            Mutation::Insert(at, bytes) => {
                let at = (at % n).min(body.len());
                body.splice(at..at, bytes.iter().copied());
            }
            // Overwrite what may be a pkt-line length with hex digits.
            Mutation::Length(at, hex) => {
                let at = at % n;
                for (i, h) in hex.iter().enumerate() {
                    if let Some(b) = body.get_mut(at + i) {
                        *b = b"0123456789abcdef"[(*h % 16) as usize];
                    }
                }
            }
        }
    }
    body
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1u8..).prop_map(|(a, x)| Mutation::Flip(a, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..64)
        )
            .prop_map(|(a, b)| Mutation::Insert(a, b)),
        (any::<usize>(), any::<[u8; 4]>()).prop_map(|(a, h)| Mutation::Length(a, h)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn mutated_pushes_never_panic(
        pick in any::<usize>(),
        muts in proptest::collection::vec(mutation(), 1..6),
        whole in any::<bool>(),
    ) {
        let corpus = captured();
        let (_, body, _) = &corpus[pick % corpus.len()];
        let body = apply(body.clone(), &muts);
        match view("POST", PUSH, "", &body, whole) {
            Ok(Some(v)) => {
                for u in &v.ref_updates {
                    let ok = matches!(
                        (u.kind.as_str(), u.fast_forward),
                        ("create" | "delete", None) | ("update", Some(true) | None) | ("force", Some(false))
                    );
                    prop_assert!(ok, "{u:?}");
                }
            }
            Ok(None) => prop_assert!(false, "a receive-pack POST is always git"),
            Err(e) => prop_assert!(!e.0.is_empty()),
        }
    }

    #[test]
    fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = view("POST", PUSH, "", &body, true);
        let _ = clawser::inspect::pack::commits(&body, false, 1 << 20);
    }
}
