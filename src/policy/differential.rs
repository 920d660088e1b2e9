//! The VM and the interpreter decide alike on the shipped pack, for hostile inputs too.
//!
//! The VM is the default evaluator (the vendored regorus whose VM fails closed on a rule-body
//! error). Two ways it could go wrong: it could hide an error the interpreter reports (a
//! request let through that the interpreter would refuse), or report an error the interpreter
//! does not (requests refused for no reason). Every decision-table case of the shipped pack is
//! taken as a realistic input, and every node of it (every field the agent could shape, as
//! `request.body.json` and the headers are) is replaced by a value of each JSON type, or
//! removed; both engines must then agree on the error, or on the whole decision.

use serde::Deserialize;

use super::compiled::{EvalEngine, EvalOptions, LoadedPolicy};
use super::source::PolicySource;
use super::testing::merge;

#[derive(Deserialize)]
struct Table {
    #[serde(default)]
    base: serde_json::Value,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    #[serde(default)]
    input: serde_json::Value,
}

/// Every path to a node of `v` (objects' keys and arrays' indices), the root excluded.
fn paths(v: &serde_json::Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    let children: Vec<(String, &serde_json::Value)> = match v {
        serde_json::Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), v)).collect(),
        serde_json::Value::Array(a) => a
            .iter()
            .enumerate()
            .map(|(i, v)| (i.to_string(), v))
            .collect(),
        _ => Vec::new(),
    };
    for (k, child) in children {
        prefix.push(k);
        out.push(prefix.clone());
        paths(child, prefix, out);
        prefix.pop();
    }
}

/// `v` with the node at `path` replaced by `with`, or removed when `with` is `None`.
fn mutate(
    v: &serde_json::Value,
    path: &[String],
    with: Option<&serde_json::Value>,
) -> serde_json::Value {
    let mut out = v.clone();
    let Some((last, parents)) = path.split_last() else {
        return out;
    };
    let mut node = &mut out;
    for p in parents {
        node = match node {
            serde_json::Value::Object(m) => m.get_mut(p).unwrap(),
            serde_json::Value::Array(a) => a.get_mut(p.parse::<usize>().unwrap()).unwrap(),
            _ => unreachable!(),
        };
    }
    match (node, with) {
        (serde_json::Value::Object(m), Some(w)) => {
            m.insert(last.clone(), w.clone());
        }
        (serde_json::Value::Object(m), None) => {
            m.remove(last);
        }
        (serde_json::Value::Array(a), Some(w)) => a[last.parse::<usize>().unwrap()] = w.clone(),
        (serde_json::Value::Array(a), None) => {
            a.remove(last.parse::<usize>().unwrap());
        }
        _ => unreachable!(),
    }
    out
}

#[test]
fn vm_and_interpreter_agree_on_mutated_table_inputs() {
    let d = tempfile::tempdir().unwrap();
    super::pack::install_if_missing(d.path()).unwrap();
    let src = PolicySource::read_dir(d.path()).unwrap();
    let opts = EvalOptions {
        engine: EvalEngine::Vm,
        ..Default::default()
    };
    let policy = LoadedPolicy::compile_with(&src, opts).unwrap();
    assert!(policy.uses_vm());

    let replacements = [
        Some(serde_json::json!(null)),
        Some(serde_json::json!(7)),
        Some(serde_json::json!("x")),
        Some(serde_json::json!(true)),
        Some(serde_json::json!([])),
        Some(serde_json::json!({"code": 1})),
        None,
    ];
    let (mut compared, mut errors) = (0, 0);
    let mut mismatches = Vec::new();
    for (file, text) in &src.tables {
        let table: Table = serde_yaml::from_str(text).unwrap();
        for (i, case) in table.cases.into_iter().enumerate() {
            let mut input = table.base.clone();
            merge(&mut input, case.input.clone());
            // The base's own fields are mutated once per table; each case's own fields in
            // every case.
            let mut targets = Vec::new();
            paths(
                if i == 0 { &input } else { &case.input },
                &mut Vec::new(),
                &mut targets,
            );
            for path in &targets {
                for with in &replacements {
                    let mutated = mutate(&input, path, with.as_ref());
                    let text = mutated.to_string();
                    let vm = policy.decide_json(&text);
                    let interpreted = policy.decide_json_interpreted(&text);
                    let at = format!("{file} case {i}, {} := {with:?}", path.join("."));
                    match (&vm.error, interpreted) {
                        (None, Ok(d)) => assert_eq!(vm.decision, d, "{at}"),
                        (Some(_), Err(_)) => errors += 1,
                        (e, d) => {
                            let d = format!("{d:?}");
                            mismatches.push(format!(
                                "{at}: the VM said {e:?} / {:?}, the interpreter {}",
                                vm.decision,
                                d.get(..d.len().min(400)).unwrap_or("")
                            ));
                        }
                    }
                    compared += 1;
                }
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
    // The mutations reach the rules: some of them make both engines fail (closed).
    assert!(compared > 1_000, "{compared}");
    assert!(
        errors > 0,
        "no mutation made the policy fail: {compared} compared"
    );
}
