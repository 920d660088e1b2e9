//! Tests of `compiled.rs`: fail-closed evaluation on both engines.

use super::*;
use crate::model::Outcome;

fn opts(engine: EvalEngine) -> EvalOptions {
    EvalOptions {
        engine,
        max_instructions: DEFAULT_MAX_INSTRUCTIONS,
    }
}

fn policy_with(rego: &str, engine: EvalEngine) -> LoadedPolicy {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("p.rego"), rego).unwrap();
    LoadedPolicy::compile_with(&PolicySource::read_dir(d.path()).unwrap(), opts(engine)).unwrap()
}

fn policy(rego: &str) -> LoadedPolicy {
    policy_with(rego, EvalEngine::Interpreter)
}

#[test]
fn vm_and_interpreter_agree_on_a_plain_decision() {
    let p = policy_with("package clawser\n\ndecision := {\"outcome\": \"allow\"} if input.ok\n\ndecision := {\"outcome\": \"deny\", \"reasons\": [{\"code\": \"x\"}]} if not input.ok\n", EvalEngine::Vm);
    assert!(p.uses_vm());
    assert_eq!(
        p.decide_json(r#"{"ok": true}"#).decision.outcome,
        Outcome::Allow
    );
    let d = p.decide_json(r#"{"ok": false}"#).decision;
    assert_eq!(d, p.decide_json_interpreted(r#"{"ok": false}"#).unwrap());
}

#[test]
fn runaway_policy_hits_the_instruction_limit_and_is_denied() {
    let rego = "package clawser\n\ndecision := {\"outcome\": \"allow\"} if count([x | some x in numbers.range(1, 50000000)]) > 0\n";
    // numbers.range is not on the VM's allow-list: the VM is tested without the list.
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("p.rego"), rego).unwrap();
    let src = PolicySource::read_dir(d.path()).unwrap();
    let p = LoadedPolicy::compile_without_allow_list(&src, opts(EvalEngine::Vm)).unwrap();
    assert!(p.uses_vm());
    let e = p.decide_json("{}");
    assert_eq!(e.decision.outcome, Outcome::Deny);
    assert_eq!(e.decision.reasons[0].code, "policy_error");
    assert!(e.error.is_some());
}

#[test]
fn runaway_policy_hits_the_time_limit_in_the_interpreter() {
    // The limit is process-wide: other tests evaluate beside this one, in a debug build on a
    // machine that may be loaded, so it must stay far above what they take (the runaway
    // policy takes minutes).
    crate::policy::set_eval_timeout(Duration::from_secs(3));
    let rego = "package clawser\n\ndecision := {\"outcome\": \"allow\"} if count([x | some x in numbers.range(1, 50000000)]) > 0\n";
    let e = policy(rego).decide_json("{}");
    assert_eq!(e.decision.reasons[0].code, "policy_error");
    assert!(
        e.error.as_deref().unwrap_or("").contains("time limit"),
        "{e:?}"
    );
}

#[test]
fn undefined_or_malformed_decisions_fail_closed() {
    for rego in [
        "package clawser\n\ndecision := {\"outcome\": \"allow\"} if input.never\n",
        "package clawser\n\ndecision := \"allow\"\n",
        "package clawser\n\ndecision := {\"outcome\": \"maybe\"}\n",
    ] {
        let e = policy(rego).decide_json("{}");
        assert_eq!(e.decision.outcome, Outcome::Deny, "{rego}");
        assert_eq!(e.decision.reasons[0].code, "policy_error", "{rego}");
    }
}

const ERRORING_DENY: &str = "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\ndecision := {\"outcome\": \"deny\"} if to_number(input.x) > 0\n";

/// Policies where an error (or a conflict) would, if evaluation went on, let a request
/// through: a `deny` that errors, a `not` over an erroring helper, a function whose body
/// errors, rule definitions that disagree, an erroring `else` branch, and `some .. in` over
/// a value that is not a collection. Each must be a `policy_error` deny on both engines.
/// With regorus 0.14.1 as released the VM allowed the erroring `deny`, the conflict and the
/// `some .. in` case; the fixes in vendor/regorus are what make this test pass.
const ERROR_CASES: &[(&str, &str, &str)] = &[
    ("erroring deny", ERRORING_DENY, r#"{"x": "not a number"}"#),
    (
        "not over an erroring helper",
        "package clawser\n\nsafe if to_number(input.x) < 10\n\ndecision := {\"outcome\": \"allow\"} if not unsafe\n\nunsafe if not safe\n\ndefault decision := {\"outcome\": \"deny\"}\n",
        r#"{"x": "1e999x"}"#,
    ),
    (
        "function body errors",
        "package clawser\n\nbig(x) if to_number(x) > 10\n\ndefault decision := {\"outcome\": \"allow\"}\n\ndecision := {\"outcome\": \"deny\"} if big(input.x)\n",
        r#"{"x": "lots"}"#,
    ),
    (
        "conflicting rule values",
        "package clawser\n\nenv := \"staging\" if input.a\n\nenv := \"production\" if input.b\n\ndefault decision := {\"outcome\": \"allow\"}\n\ndecision := {\"outcome\": \"deny\"} if env == \"production\"\n",
        r#"{"a": true, "b": true}"#,
    ),
    (
        "erroring else branch",
        "package clawser\n\nlevel := 1 if input.never else := to_number(input.x)\n\ndefault decision := {\"outcome\": \"allow\"}\n\ndecision := {\"outcome\": \"deny\"} if level > 0\n",
        r#"{"x": "nope"}"#,
    ),
    (
        "some .. in over a value that is not a collection",
        "package clawser\n\ndefault decision := {\"outcome\": \"allow\"}\n\ndecision := {\"outcome\": \"deny\"} if {\n\tsome x in input.items\n\tx == \"rm\"\n}\n",
        r#"{"items": "rm"}"#,
    ),
    (
        "erroring deny in a partial set",
        "package clawser\n\ndeny contains \"big\" if to_number(input.x) > 10\n\ndefault decision := {\"outcome\": \"allow\"}\n\ndecision := {\"outcome\": \"deny\"} if count(deny) > 0\n",
        r#"{"x": "huge"}"#,
    ),
];

#[test]
fn errors_and_conflicts_fail_closed_on_both_engines() {
    for engine in [EvalEngine::Interpreter, EvalEngine::Vm] {
        for (name, rego, input) in ERROR_CASES {
            let p = policy_with(rego, engine);
            assert_eq!(p.uses_vm(), engine == EvalEngine::Vm, "{name}");
            let e = p.decide_json(input);
            assert_eq!(
                e.decision.reasons.first().map(|r| r.code.as_str()),
                Some("policy_error"),
                "{name} on {engine:?}: {e:?}"
            );
            // The logged error names the rule's file:line (the VM's own error is explained
            // by the interpreter).
            let error = e.error.unwrap_or_default();
            assert!(error.contains("p.rego:"), "{name} on {engine:?}: {error}");
        }
    }
}

/// The same policies decide normally when nothing errors, on both engines.
#[test]
fn the_error_case_policies_decide_when_nothing_errors() {
    let inputs = [
        r#"{"x": "0"}"#,
        r#"{"x": "1"}"#,
        r#"{"x": "1"}"#,
        r#"{"a": true}"#,
        r#"{"x": "0"}"#,
        r#"{"items": ["ok"]}"#,
        r#"{"x": "1"}"#,
    ];
    for engine in [EvalEngine::Interpreter, EvalEngine::Vm] {
        for ((name, rego, _), input) in ERROR_CASES.iter().zip(inputs) {
            let e = policy_with(rego, engine).decide_json(input);
            assert!(e.error.is_none(), "{name} on {engine:?}: {e:?}");
            assert_eq!(e.decision.outcome, Outcome::Allow, "{name} on {engine:?}");
        }
    }
}

/// `strings.count` with an empty substring panicked in regorus (`windows(0)`) on both
/// engines; an agent could supply the substring. It now counts as OPA does.
#[test]
fn strings_count_of_an_empty_substring_does_not_panic() {
    let rego = "package clawser\n\ndefault decision := {\"outcome\": \"deny\"}\n\ndecision := {\"outcome\": \"allow\"} if strings.count(input.s, input.n) == 4\n";
    for engine in [EvalEngine::Interpreter, EvalEngine::Vm] {
        let e = policy_with(rego, engine).decide_json(r#"{"s": "abc", "n": ""}"#);
        assert!(e.error.is_none(), "{engine:?}: {e:?}");
        assert_eq!(e.decision.outcome, Outcome::Allow, "{engine:?}");
    }
}

#[test]
fn the_vm_is_the_default_engine_and_the_interpreter_can_be_chosen() {
    assert_eq!(EvalOptions::default().engine, EvalEngine::Vm);
    let d = tempfile::tempdir().unwrap();
    let rego = "package clawser\n\ndecision := {\"outcome\": \"allow\"}\n";
    std::fs::write(d.path().join("p.rego"), rego).unwrap();
    let src = PolicySource::read_dir(d.path()).unwrap();
    assert!(LoadedPolicy::compile(&src).unwrap().uses_vm());
    let p = LoadedPolicy::compile_with(&src, opts(EvalEngine::Interpreter)).unwrap();
    assert!(!p.uses_vm());
    assert!(p.engine_note.is_none());
    // The config says the same: no `policy.engine` is the VM.
    let c = crate::config::Config::from_yaml("{}", "t.yaml", d.path()).unwrap();
    assert_eq!(c.policy.eval.engine, EvalEngine::Vm);
    let c = crate::config::Config::from_yaml("policy: {engine: interpreter}", "t.yaml", d.path())
        .unwrap();
    assert_eq!(c.policy.eval.engine, EvalEngine::Interpreter);
}

/// A recursive function whose depth the agent controls. Rego forbids recursion, but regorus
/// compiles it: the interpreter used to recurse until the stack overflowed and the process
/// aborted (no decision, no log line, every open request gone), and the VM's error message
/// re-ran the interpreter and did the same. Clawser now refuses recursion at load
/// (`recursion.rs`); behind that, both engines stop at 32 nested calls: a `policy_error`
/// deny, on a thread with tokio's default 2 MiB worker stack.
#[test]
fn a_recursive_function_is_a_policy_error_not_a_stack_overflow() {
    let rego = "package clawser\n\ndefault decision := {\"outcome\": \"deny\"}\n\ndown(n) := 0 if n <= 0\n\ndown(n) := down(n - 1) + 1 if n > 0\n\ndecision := {\"outcome\": \"allow\"} if down(input.n) >= 0\n";
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("p.rego"), rego).unwrap();
    let src = PolicySource::read_dir(d.path()).unwrap();
    for engine in [EvalEngine::Interpreter, EvalEngine::Vm] {
        assert!(LoadedPolicy::compile_with(&src, opts(engine)).is_err());
        let p = LoadedPolicy::compile_recursive(&src, opts(engine)).unwrap();
        assert_eq!(p.uses_vm(), engine == EvalEngine::Vm);
        let run = move || {
            let shallow = p.decide_json(r#"{"n": 5}"#);
            let deep = p.decide_json(r#"{"n": 100000}"#);
            (shallow, deep)
        };
        let (shallow, deep) = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(run)
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(
            shallow.decision.outcome,
            Outcome::Allow,
            "{engine:?} {shallow:?}"
        );
        assert_eq!(deep.decision.reasons[0].code, "policy_error", "{engine:?}");
        assert!(
            deep.error
                .as_deref()
                .unwrap_or("")
                .contains("nested more than 32"),
            "{engine:?} {deep:?}"
        );
    }
}

/// A `deny` whose element is undefined for some input (its message reads a field the agent
/// left out) used to be dropped silently by the interpreter, which then allowed the request;
/// OPA omits such an element too. Both engines now make it an error: a `policy_error` deny.
#[test]
fn a_deny_with_an_undefined_message_fails_closed_on_both_engines() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("clawser.rego"),
        include_str!("../../../policies/clawser.rego"),
    )
    .unwrap();
    std::fs::write(
        d.path().join("authz.rego"),
        "package clawser.authz\n\nimport rego.v1\n\nallow if true\n\ndeny contains {\"code\": \"repo_blocked\", \"message\": sprintf(\"%v is blocked\", [input.github.repo])} if {\n\tinput.request.method == \"DELETE\"\n}\n",
    )
    .unwrap();
    let src = PolicySource::read_dir(d.path()).unwrap();
    for engine in [EvalEngine::Interpreter, EvalEngine::Vm] {
        let p = LoadedPolicy::compile_with(&src, opts(engine)).unwrap();
        assert_eq!(p.uses_vm(), engine == EvalEngine::Vm);
        let named = p.decide_json(
            r#"{"request": {"method": "DELETE"}, "github": {"repo": "acme/api"}, "grants": []}"#,
        );
        assert_eq!(named.decision.reasons[0].code, "repo_blocked", "{engine:?}");
        let unnamed = p.decide_json(r#"{"request": {"method": "DELETE"}, "grants": []}"#);
        assert_eq!(
            unnamed.decision.outcome,
            Outcome::Deny,
            "{engine:?} {unnamed:?}"
        );
        assert_eq!(
            unnamed.decision.reasons[0].code, "policy_error",
            "{engine:?}"
        );
        let read = p.decide_json(r#"{"request": {"method": "GET"}, "grants": []}"#);
        assert_eq!(read.decision.outcome, Outcome::Allow, "{engine:?} {read:?}");
    }
}

/// A revision on whose decision tables the VM disagrees with the interpreter (here in the
/// fail-closed direction: a constant rule whose body iterates meets an error on the VM only)
/// is evaluated by the interpreter: by the proxy (`load_tested`) and by `clawser policy eval`
/// (`compile_as_served`) alike.
#[test]
fn a_table_the_vm_disagrees_on_keeps_the_revision_on_the_interpreter() {
    let d = tempfile::tempdir().unwrap();
    let rego = "package clawser\n\nimport rego.v1\n\nok if {\n\tsome x in input.xs\n\tto_number(x) < 10\n}\n\ndefault decision := {\"outcome\": \"deny\", \"reasons\": []}\n\ndecision := {\"outcome\": \"allow\", \"reasons\": []} if ok\n";
    std::fs::write(d.path().join("p.rego"), rego).unwrap();
    let table = "cases:\n  - name: a number, then not\n    input: {xs: [\"1\", \"abc\"]}\n    outcome: allow\n";
    std::fs::write(d.path().join("p_test.yaml"), table).unwrap();
    let src = PolicySource::read_dir(d.path()).unwrap();
    assert!(LoadedPolicy::compile_with(&src, opts(EvalEngine::Vm))
        .unwrap()
        .uses_vm());
    for p in [
        crate::policy::compile_as_served(&src, opts(EvalEngine::Vm)).unwrap(),
        crate::policy::load_tested(&src, opts(EvalEngine::Vm))
            .unwrap()
            .0,
    ] {
        assert!(!p.uses_vm());
        let note = p.engine_note.clone().unwrap_or_default();
        assert!(note.contains("disagreed"), "{note}");
        assert!(p.decide_json(r#"{"xs": ["1", "abc"]}"#).error.is_none());
    }
}
