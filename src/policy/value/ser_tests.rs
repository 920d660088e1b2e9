//! The serializer against the reference route (`serde_json::to_value`, then `to_rego`):
//! value for value, on a full proxy input and on every serde shape.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

use super::{to_rego, to_value, MAX_DEPTH};
use crate::grant::GrantView;
use crate::identity::{Agent, Job, Principal};
use crate::model::{Destination, RequestSummary};
use crate::policy::{PolicyInput, Target};

fn reference<T: Serialize>(v: &T) -> Result<regorus::Value, String> {
    to_rego(serde_json::to_value(v).map_err(|e| e.to_string())?)
}

fn same<T: Serialize>(what: &str, v: &T) {
    let direct = to_value(v).unwrap();
    let reference = reference(v).unwrap();
    assert_eq!(direct, reference, "{what}");
    // Equal as written out too, so numbers kept their kind (1 and 1.0 compare equal).
    assert_eq!(
        serde_json::to_value(&direct).unwrap(),
        serde_json::to_value(&reference).unwrap(),
        "{what}"
    );
}

/// A proxy input with every part filled: agent, job, grants, a request with headers, query
/// and a JSON body of every type, the destination, the target, git and GitHub views.
#[test]
fn a_full_proxy_input_serializes_as_through_json() {
    let agent: Agent = serde_json::from_value(json!({
        "id": "oc-1", "runtime": "openclaw", "on_behalf_of": "alice", "roles": ["dev", "ops"],
        "labels": {"team": "api", "tier": "1"}, "created_at": "2026-11-24T12:00:00Z", "source": "config"
    }))
    .unwrap();
    let job: Job = serde_json::from_value(json!({
        "id": "job_1", "title": "release 1.4 \"q\" caf\u{e9}", "started_by": "oc-1",
        "agents": ["oc-1", "hermes-2"], "state": "open", "created_at": "2026-11-24T12:00:00Z"
    }))
    .unwrap();
    let principal = Principal {
        agent: Arc::new(agent),
        job: Some(Arc::new(job)),
        credential_id: "cred_1".into(),
    };
    let summary: RequestSummary = serde_json::from_value(json!({
        "id": "req_1", "scheme": "https", "method": "POST", "host": "api.github.com", "port": 443,
        "path": "/repos/acme/api/pulls/7/merge", "query": {"a": ["1", "2"], "": [""]},
        "headers": {"content-type": ["application/json"], "authorization": ["<redacted>"]},
        "body": {"size": 123, "sha256": "ab", "truncated": false, "json": {
            "n": null, "t": true, "i": -7, "u": 18446744073709551615u64, "f": 0.1, "big": 1e300,
            "s": "\u{1F600}\u{0}", "a": [[], {}, [1, [2, [3]]]], "o": {"k": {"k": "v"}}}},
        "tls": {"sni": "api.github.com", "intercepted": true},
        "placeholders": [{"secret": "github", "where": "authorization"}]
    }))
    .unwrap();
    let target = Target {
        env: "production".into(),
        service: "github".into(),
    };
    let destination = Destination {
        ips: vec![
            "140.82.112.6".parse().unwrap(),
            "2606:50c0::1".parse().unwrap(),
        ],
        class: "global".into(),
    };
    let mut input = PolicyInput::new(&principal, &summary, &target);
    input.destination = Some(&destination);
    input.grants = vec![GrantView {
        id: "grt_1".into(),
        subject: serde_json::from_value(json!({"kind": "job", "id": "job_1"})).unwrap(),
        scope: serde_json::from_value(json!({"hosts": ["api.github.com"], "actions": ["deploy"]}))
            .unwrap(),
        secret: Some("github".into()),
        expires_at: None,
        uses_left: Some(3),
        issued_by: "bob".into(),
    }];
    input.github = Some(json!({"repo": "acme/api", "action": "pulls.merge",
        "graphql": {"operation": "mutation", "name": null, "fields": ["mergePullRequest"]}}));
    input.git = Some(json!({"service": "receive-pack", "ref_updates": [
        {"ref": "refs/heads/main", "old": "0", "new": "1", "kind": "force", "fast_forward": false}]}));
    same("full input", &input);

    // And the minimal one: no job, no destination, no body JSON, no protocol views.
    let bare = Principal {
        job: None,
        ..principal.clone()
    };
    let summary = RequestSummary {
        body: Default::default(),
        ..summary
    };
    same("bare input", &PolicyInput::new(&bare, &summary, &target));
}

#[derive(Serialize)]
enum Shape {
    Unit,
    Newtype(u8),
    Tuple(i32, String),
    Struct { a: Option<f32>, b: char },
}

#[derive(Serialize)]
struct Unit;

#[derive(Serialize)]
struct Wrapper(i16);

#[derive(Serialize)]
struct Pair(u32, bool);

#[derive(Serialize)]
struct Every {
    shapes: Vec<Shape>,
    unit: (),
    unit_struct: Unit,
    wrapper: Wrapper,
    pair: Pair,
    tuple: (i8, u16, i64, u64),
    wide: (i128, u128),
    floats: (f32, f64, f64, f64),
    none: Option<String>,
    some: Option<Vec<u8>>,
    int_keys: BTreeMap<i64, &'static str>,
    bool_keys: BTreeMap<bool, u8>,
    enum_keys: BTreeMap<Key, u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<u8>,
    #[serde(rename = "where")]
    renamed: &'static str,
}

#[derive(Serialize, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Left,
    Right,
}

#[test]
fn every_serde_shape_serializes_as_serde_json_writes_it() {
    let every = Every {
        shapes: vec![
            Shape::Unit,
            Shape::Newtype(7),
            Shape::Tuple(-1, "x".into()),
            Shape::Struct {
                a: Some(1.5),
                b: '\u{e9}',
            },
            Shape::Struct { a: None, b: 'z' },
        ],
        unit: (),
        unit_struct: Unit,
        wrapper: Wrapper(-3),
        pair: Pair(4, true),
        tuple: (i8::MIN, u16::MAX, i64::MIN, u64::MAX),
        wide: (-5, 6),
        floats: (0.25, f64::NAN, f64::INFINITY, -0.0),
        none: None,
        some: Some(vec![0, 255]),
        int_keys: [(-1, "a"), (10, "b")].into(),
        bool_keys: [(true, 1), (false, 0)].into(),
        enum_keys: [(Key::Left, 1), (Key::Right, 2)].into(),
        skipped: None,
        renamed: "kept",
    };
    same("every shape", &every);
    // Bytes (serde_bytes-style) are an array of numbers, as serde_json writes them.
    struct Bytes;
    impl Serialize for Bytes {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(&[1, 2, 250])
        }
    }
    same("bytes", &Bytes);
}

#[test]
fn keys_that_are_not_strings_are_refused_like_serde_json() {
    let float_keys: Vec<(f64, u8)> = vec![(f64::NAN, 1)];
    struct FloatMap(Vec<(f64, u8)>);
    impl Serialize for FloatMap {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().map(|(k, v)| (k, v)))
        }
    }
    assert!(serde_json::to_value(FloatMap(float_keys.clone())).is_err());
    assert!(to_value(&FloatMap(float_keys)).unwrap_err().contains("key"));
    let list_keys: BTreeMap<Vec<u8>, u8> = [(vec![1], 1)].into();
    assert!(serde_json::to_value(&list_keys).is_err());
    assert!(to_value(&list_keys).unwrap_err().contains("key"));
}

#[test]
fn nesting_is_bounded_where_the_reference_bounds_it() {
    let mut v = json!(1);
    for _ in 0..MAX_DEPTH {
        v = json!([v]);
    }
    // MAX_DEPTH levels of arrays around a number: the number sits at depth MAX_DEPTH.
    same("deepest allowed", &v);
    let empty_at_limit = {
        let mut e = json!([]);
        for _ in 0..MAX_DEPTH {
            e = json!({ "k": e });
        }
        e
    };
    same("empty array at the limit", &empty_at_limit);
    let deeper = json!([v]);
    assert!(reference(&deeper).unwrap_err().contains("nested deeper"));
    assert!(to_value(&deeper).unwrap_err().contains("nested deeper"));
    let deeper_enum = vec![Some(Box::new(deeper))];
    assert!(to_value(&deeper_enum)
        .unwrap_err()
        .contains("nested deeper"));
}
