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

type Interpreted = Result<crate::model::Decision, String>;

fn both(policy: &LoadedPolicy, input: &str) -> (super::compiled::Evaluated, Interpreted) {
    (
        policy.decide_json(input),
        policy.decide_json_interpreted(input),
    )
}

/// The decision of an interpreter result, `None` for an error, to compare with the VM's.
fn outcome(i: &Interpreted) -> Option<crate::model::Decision> {
    i.as_ref().ok().cloned()
}

fn vm_outcome(e: &super::compiled::Evaluated) -> Option<crate::model::Decision> {
    e.error.is_none().then(|| e.decision.clone())
}

const VM: EvalOptions = EvalOptions {
    engine: EvalEngine::Vm,
    max_instructions: super::compiled::DEFAULT_MAX_INSTRUCTIONS,
};

/// The policy directory `d` compiled with `policy.engine: vm`.
fn on_vm(d: &std::path::Path) -> (PolicySource, Result<LoadedPolicy, crate::error::Error>) {
    let src = PolicySource::read_dir(d).unwrap();
    let policy = LoadedPolicy::compile_with(&src, VM);
    (src, policy)
}

/// The shipped pack, installed in a temporary directory, compiled for the VM.
fn shipped_pack_on_vm() -> (tempfile::TempDir, PolicySource, LoadedPolicy) {
    let d = tempfile::tempdir().unwrap();
    super::pack::install_if_missing(d.path()).unwrap();
    let (src, policy) = on_vm(d.path());
    (d, src, policy.unwrap())
}

#[test]
fn vm_and_interpreter_agree_on_mutated_table_inputs() {
    let (_d, src, policy) = shipped_pack_on_vm();
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
    let (mut compared, mut errors, mut stricter) = (0, 0, 0);
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
                    // Other tests set a short process-wide evaluation time limit, which a
                    // loaded machine can hit: a mismatch counts only if it repeats.
                    let (mut vm, mut interpreted) = both(&policy, &text);
                    for _ in 0..2 {
                        if vm_outcome(&vm) == outcome(&interpreted) {
                            break;
                        }
                        (vm, interpreted) = both(&policy, &text);
                    }
                    let at = format!("{file} case {i}, {} := {with:?}", path.join("."));
                    match (&vm.error, interpreted) {
                        (None, Ok(d)) => assert_eq!(vm.decision, d, "{at}"),
                        (Some(_), Err(_)) => errors += 1,
                        // Fail-closed: the VM refuses what the interpreter decides (an
                        // undefined partial-set element the interpreter silently drops).
                        (Some(_), Ok(_)) => stricter += 1,
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
    // Refusals only the VM makes stay rare.
    assert!(stricter * 20 < compared, "{stricter} of {compared}");
}

mod cases;

use cases::{Expect, ADMITTED, AGREEMENT_CASES};

/// A case's policy in a temporary directory (several modules are separated by `----`).
fn case_dir(rego: &str) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (i, module) in rego.split("\n----\n").enumerate() {
        std::fs::write(d.path().join(format!("p{i}.rego")), module).unwrap();
    }
    d
}

/// Each case, with the allow-list off: the combination gates and the VM's fixes are
/// checked on every construct, listed or not.
#[test]
fn vm_and_interpreter_agree_on_tricky_policies() {
    let mut wrong = Vec::new();
    for (name, rego, input, expect) in AGREEMENT_CASES {
        let d = case_dir(rego);
        let src = PolicySource::read_dir(d.path()).unwrap();
        let policy = match LoadedPolicy::compile_without_allow_list(&src, VM) {
            Ok(p) => p,
            Err(_) if *expect == Expect::Refused => continue,
            Err(e) => panic!("{name}: {e}"),
        };
        let got = if !policy.uses_vm() {
            let note = policy.engine_note.clone().unwrap_or_default();
            assert!(note.contains(".rego:"), "{name}: {note}");
            Expect::Gated
        } else {
            let (vm, interpreted) = both(&policy, input);
            match (vm_outcome(&vm), outcome(&interpreted)) {
                (v, i) if v == i => Expect::Fixed,
                (None, Some(_)) => Expect::Stricter,
                (v, i) => {
                    wrong.push(format!(
                        "{name}: the VM {v:?}, the interpreter {i:?} {interpreted:?}"
                    ));
                    continue;
                }
            }
        };
        if got != *expect {
            wrong.push(format!("{name}: expected {expect:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// With the allow-list on, no gated case reaches the VM, and the cases it admits are the
/// fixed or stricter ones made only of listed constructs.
#[test]
fn the_allow_list_admits_only_listed_cases() {
    let mut admitted = Vec::new();
    for (name, rego, _, expect) in AGREEMENT_CASES {
        let d = case_dir(rego);
        let Ok(policy) = on_vm(d.path()).1 else {
            assert_eq!(*expect, Expect::Refused, "{name}");
            continue;
        };
        if policy.uses_vm() {
            assert_ne!(*expect, Expect::Gated, "{name}");
            admitted.push(*name);
        }
    }
    assert_eq!(admitted, ADMITTED, "cases the allow-list admits");
}

/// The shipped pack runs on the VM (the default engine): the gates find nothing in it.
#[test]
fn the_shipped_pack_runs_on_the_vm() {
    let (_d, _, policy) = shipped_pack_on_vm();
    assert!(policy.uses_vm(), "{:?}", policy.engine_note);
}
