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

/// The policy directory `d` compiled with `policy.engine: vm`.
fn on_vm(d: &std::path::Path) -> (PolicySource, Result<LoadedPolicy, crate::error::Error>) {
    let src = PolicySource::read_dir(d).unwrap();
    let opts = EvalOptions {
        engine: EvalEngine::Vm,
        ..Default::default()
    };
    let policy = LoadedPolicy::compile_with(&src, opts);
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

/// Policies an operator might write, each with an input on which regorus 0.14.1's VM and its
/// interpreter differed (a review of the VM found them). For each, either both engines now
/// give the same error or the same decision (the fixes in vendor/regorus), or `vm_gate`
/// keeps the revision off the VM. One difference is left, in the fail-closed direction: a
/// constant rule whose body iterates stops at its first success in the interpreter, while the
/// VM goes on and can meet an error (a `policy_error` deny the interpreter would not give).
/// `Fixed`: both engines agree (a fix in vendor/regorus); `Gated`: the revision is kept off the
/// VM; `Stricter`: the VM refuses (an error) what the interpreter decides.
#[derive(Debug, PartialEq)]
enum Expect {
    Fixed,
    Gated,
    Stricter,
}

const AGREEMENT_CASES: &[(&str, &str, &str, Expect)] = &[
    (
        "complete rule with several values from one body",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\ntarget := t if {\n\tsome t in input.targets\n}\n\ndecision := {\"outcome\": \"deny\"} if target == \"production\"\n",
        r#"{"targets": ["production", "staging"]}"#,
        Expect::Gated,
    ),
    (
        "function with several values from one body",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\npick(xs) := x if {\n\tsome x in xs\n}\n\ndecision := {\"outcome\": \"deny\"} if pick(input.targets) == \"production\"\n",
        r#"{"targets": ["production", "staging"]}"#,
        Expect::Gated,
    ),
    (
        "object comprehension with a key generated twice",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nenv := {lower(k): v | some k, v in input.labels}\n\ndecision := {\"outcome\": \"deny\"} if env[\"x-env\"] == \"production\"\n",
        r#"{"labels": {"X-Env": "production", "x-env": "staging"}}"#,
        Expect::Fixed,
    ),
    (
        "partial object rule with a key generated twice",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nenv[lower(k)] := v if {\n\tsome k, v in input.labels\n}\n\ndecision := {\"outcome\": \"deny\"} if env[\"x-env\"] == \"production\"\n",
        r#"{"labels": {"X-Env": "production", "x-env": "staging"}}"#,
        Expect::Gated,
    ),
    (
        "a later definition errors after an earlier one succeeded",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\ntrusted if input.internal\n\ntrusted if to_number(input.port) < 1024\n\ndecision := {\"outcome\": \"deny\"} if not trusted\n",
        r#"{"internal": true, "port": "x"}"#,
        Expect::Fixed,
    ),
    (
        "default value computed from the input",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\ndefault big := [x | some x in input.sizes; to_number(x) > 100]\n\ndecision := {\"outcome\": \"deny\"} if count(big) > 0\n",
        r#"{"sizes": ["500"]}"#,
        Expect::Gated,
    ),
    (
        "comparison across types",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\ndecision := {\"outcome\": \"deny\"} if input.size > 1000\n",
        r#"{"size": null}"#,
        Expect::Fixed,
    ),
    (
        "a constant rule stops at its first success",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nok if {\n\tsome x in input.xs\n\tto_number(x) < 10\n}\n\ndecision := {\"outcome\": \"deny\"} if not ok\n",
        r#"{"xs": ["1", "abc"]}"#,
        Expect::Stricter,
    ),
    (
        "failed condition in a comprehension inside a loop",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nunapproved contains t if {\n\tsome t in input.tools\n\tcount([1 | input.approved[t] == true]) == 0\n}\n\ndecision := {\"outcome\": \"deny\"} if count(unapproved) > 0\n",
        r#"{"tools": ["rm"], "approved": {}}"#,
        Expect::Gated,
    ),
    (
        "assignment of an undefined value",
        "package clawser\n\ndefault decision := {\"outcome\": \"deny\"}\n\ndecision := {\"outcome\": \"allow\"} if {\n\tct := input.ct\n\tnot startswith(ct, \"application/x-\")\n}\n",
        r#"{}"#,
        Expect::Fixed,
    ),
    (
        "key-value membership",
        "package clawser\n\ndefault decision := {\"outcome\": \"deny\"}\n\ndecision := {\"outcome\": \"allow\"} if \"role\", \"reader\" in input.claims\n",
        r#"{"claims": {"role": "admin", "x": "reader"}}"#,
        Expect::Gated,
    ),
    (
        "array comprehension over undefined terms",
        "package clawser\n\ndefault decision := {\"outcome\": \"deny\"}\n\ndecision := {\"outcome\": \"allow\"} if count([t.name | some t in input.tools]) == 0\n",
        r#"{"tools": [{"id": 1}]}"#,
        Expect::Fixed,
    ),
    (
        "else after a body whose loop matched nothing",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nadmin := true if {\n\tsome g in input.groups\n\tg == \"admins\"\n} else := false\n\ndecision := {\"outcome\": \"deny\"} if admin == false\n",
        r#"{"groups": ["dev"]}"#,
        Expect::Fixed,
    ),
    (
        "else after a body whose value is undefined",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nlimit := input.org.limit if input.org\n\nelse := 0\n\ndecision := {\"outcome\": \"deny\"} if limit == 0\n",
        r#"{"org": {}}"#,
        Expect::Fixed,
    ),
    (
        "default function",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\ndefault tier(_) := \"unknown\"\n\ntier(h) := \"corp\" if endswith(h, \".corp\")\n\ndecision := {\"outcome\": \"deny\"} if tier(input.host) == \"unknown\"\n",
        r#"{"host": "evil.com"}"#,
        Expect::Gated,
    ),
    (
        "partial set whose head iterates",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nblocked contains input.tools[_] if true\n\ndecision := {\"outcome\": \"deny\"} if count(blocked) > 0\n",
        r#"{"tools": "rm"}"#,
        Expect::Gated,
    ),
    (
        "complete rule whose head iterates",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\ntarget := input.targets[_] if input.targets\n\ndecision := {\"outcome\": \"deny\"} if target == \"production\"\n",
        r#"{"targets": ["production", "staging"]}"#,
        Expect::Gated,
    ),
    (
        "not over a pattern match",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\ndecision := {\"outcome\": \"deny\"} if not [_, \"read\"] = input.scope\n",
        r#"{"scope": ["x", "write"]}"#,
        Expect::Gated,
    ),
    (
        "rule with a dotted name read through its prefix",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nchecks.shell := true if input.tool == \"shell\"\n\ndecision := {\"outcome\": \"deny\"} if checks[input.kind]\n",
        r#"{"kind": "shell", "tool": "shell"}"#,
        Expect::Gated,
    ),
    (
        "a test_ rule the decision refers to",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\ntest_t := t if {\n\tsome t in input.targets\n}\n\ndecision := {\"outcome\": \"deny\"} if test_t == \"production\"\n",
        r#"{"targets": ["production", "staging"]}"#,
        Expect::Gated,
    ),
    (
        "function with a _ parameter called with an undefined argument",
        "package clawser\n\ndefault decision := {\"outcome\": \"deny\"}\n\nopen(_) := true\n\ndecision := {\"outcome\": \"allow\"} if open(input.missing)\n",
        r#"{}"#,
        Expect::Fixed,
    ),
    (
        "index pattern with a variable",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\npick := v if {\n\tv := input.m[[x, 1]]\n}\n\ndecision := {\"outcome\": \"deny\"} if pick == \"production\"\n",
        r#"{"m": {}}"#,
        Expect::Gated,
    ),
    (
        "not over a comprehension with a pattern match",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\ndecision := {\"outcome\": \"deny\"} if not count([a | some a in input.approvals; a.status = \"approved\"]) > 0\n",
        r#"{"approvals": [{"status": "rejected"}]}"#,
        Expect::Gated,
    ),
    (
        "not over a call with an output pattern",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\ndecision := {\"outcome\": \"deny\"} if not split(input.h, \".\", [\"api\", \"corp\"])\n",
        r#"{"h": "evil.com"}"#,
        Expect::Gated,
    ),
    (
        "a package read as a whole",
        "package clawser.approvals\n\nsecurity if input.approvals.security == \"yes\"\n\nowner if input.approvals.owner == \"yes\"\n----\npackage clawser\n\ndefault decision := {\"outcome\": \"deny\"}\n\ndecision := {\"outcome\": \"allow\"} if count(data.clawser.approvals) == 2\n",
        r#"{"approvals": {}}"#,
        Expect::Gated,
    ),
    (
        "an object literal with a computed key",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nmeta := {input.hname: input.hval, \"source\": \"agent\"}\n\ndecision := {\"outcome\": \"deny\"} if meta.source == \"agent\"\n",
        r#"{"hname": "source", "hval": "trusted"}"#,
        Expect::Gated,
    ),
    (
        "partial set with an undefined element before a defined one",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nrisky contains t.name if {\n\tsome t in input.tools\n\tt.risk == \"high\"\n}\n\ndecision := {\"outcome\": \"deny\"} if \"shell\" in risky\n",
        r#"{"tools": [{"risk": "high"}, {"name": "ls", "risk": "high"}]}"#,
        Expect::Fixed,
    ),
    (
        "some declaration of a rule's name",
        "package clawser\n\ndefault decision := {\"outcome\": \"deny\"}\n\ntool := input.tool\n\ndecision := {\"outcome\": \"allow\"} if {\n\tsome tool\n\tinput.allowed[tool]\n}\n",
        r#"{"tool": "x", "allowed": {}}"#,
        Expect::Gated,
    ),
    (
        "a comprehension whose term iterates, around another comprehension",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nxs := [{input.xs[_]: [1 | input.f]} | true]\n\ndecision := {\"outcome\": \"deny\"} if count(xs) > 0\n",
        r#"{"xs": ["a"], "f": false}"#,
        Expect::Gated,
    ),
    (
        "recursive rules (the VM overflowed its stack and aborted the process)",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\na if b\n\nb if a\n\ndecision := {\"outcome\": \"deny\"} if a\n",
        r#"{}"#,
        Expect::Fixed,
    ),
    (
        "input first read inside an every that runs zero times",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nblocked := []\n\ndecision := {\"outcome\": \"deny\"} if {\n\tevery a in blocked {\n\t\ta != input.agent\n\t}\n\tinput.method == \"DELETE\"\n}\n",
        r#"{"agent": "dev", "method": "DELETE"}"#,
        Expect::Fixed,
    ),
    (
        "input first read inside a comprehension that yields nothing",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nexempt_agents := set()\n\ndecision := {\"outcome\": \"deny\"} if {\n\texempt := {a | some a in exempt_agents; a == input.agent}\n\tcount(exempt) == 0\n\tinput.method == \"DELETE\"\n}\n",
        r#"{"agent": "dev", "method": "DELETE"}"#,
        Expect::Fixed,
    ),
    (
        "input first read inside an every, then in the rule's head",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nblocked := []\n\nflags contains input.flag if {\n\tevery a in blocked {\n\t\ta != input.agent\n\t}\n}\n\ndecision := {\"outcome\": \"deny\"} if \"stop\" in flags\n",
        r#"{"agent": "dev", "flag": "stop"}"#,
        Expect::Fixed,
    ),
    (
        "a function with more than 8 parameters",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\nblocked(a, b, c, d, e, f, g, h, user) if user == \"mallory\"\n\ndecision := {\"outcome\": \"deny\"} if blocked(1, 2, 3, 4, 5, 6, 7, 8, input.agent)\n",
        r#"{"agent": "mallory"}"#,
        Expect::Gated,
    ),
    (
        "a call with _ as an output argument",
        "package clawser\n\ndefault decision := {\"outcome\": \"deny\"}\n\ntrusted(h) := true if endswith(h, \".internal\")\n\ndecision := {\"outcome\": \"allow\"} if {\n\ttrusted(input.host, _)\n}\n",
        r#"{"host": "evil.com"}"#,
        Expect::Gated,
    ),
    (
        "assignment of an undefined value to _",
        "package clawser\n\ndefault decision := {\"outcome\": \"deny\"}\n\ndecision := {\"outcome\": \"allow\"} if {\n\t_ := input.missing\n}\n",
        r#"{}"#,
        Expect::Gated,
    ),
    (
        "not over a call with an output variable",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\ndecision := {\"outcome\": \"deny\"} if {\n\tnot count(input.xs, n)\n}\n",
        r#"{}"#,
        Expect::Gated,
    ),
    (
        "a function parameter named input",
        "package clawser\n\ndefault decision := {\"outcome\": \"deny\"}\n\nf(input) if input.role == \"admin\"\n\ndecision := {\"outcome\": \"allow\"} if f({\"role\": \"guest\"})\n",
        r#"{"role": "admin"}"#,
        Expect::Gated,
    ),
    (
        "an every variable named input",
        "package clawser\n\ndefault decision := {\"outcome\": \"deny\"}\n\ndecision := {\"outcome\": \"allow\"} if {\n\tevery k, input in {\"a\": {\"role\": \"guest\"}} {\n\t\tinput.role == \"admin\"\n\t}\n}\n",
        r#"{"role": "admin"}"#,
        Expect::Gated,
    ),
];

#[test]
fn vm_and_interpreter_agree_on_tricky_policies() {
    let mut wrong = Vec::new();
    for (name, rego, input, expect) in AGREEMENT_CASES {
        // Several modules are separated by a line `----`.
        let d = tempfile::tempdir().unwrap();
        for (i, module) in rego.split("\n----\n").enumerate() {
            std::fs::write(d.path().join(format!("p{i}.rego")), module).unwrap();
        }
        let policy = on_vm(d.path()).1.unwrap_or_else(|e| panic!("{name}: {e}"));
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

/// The shipped pack runs on the VM when it is chosen: the gate finds nothing in it.
#[test]
fn the_shipped_pack_runs_on_the_vm() {
    let (_d, _, policy) = shipped_pack_on_vm();
    assert!(policy.uses_vm(), "{:?}", policy.engine_note);
}
