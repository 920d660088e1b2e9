//! Policy tests, run by `clawser policy test` and before every hot reload is accepted:
//! - every rule named `test_*` in any module must evaluate to `true` (OPA convention);
//! - every `*_test.yaml` decision table: each case's input (merged over the table's `base`)
//!   must produce the expected outcome and, when listed, exactly the expected reason codes.

use regorus::unstable::{Expr, Rule, RuleHead};
use regorus::Value;
use serde::Deserialize;

use super::compiled::{engine_for, LoadedPolicy};
use super::source::PolicySource;
use crate::error::{Error, Result};
use crate::model::Outcome;

/// One failed test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestFailure {
    /// `data.pkg.test_x` or `table.yaml: case name`.
    pub name: String,
    /// `file:line` of the test.
    pub location: String,
    pub message: String,
}

/// The outcome of a test run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestReport {
    pub passed: Vec<String>,
    pub failed: Vec<TestFailure>,
    /// Decision-table cases where the VM and the interpreter disagreed.
    pub vm_mismatches: Vec<String>,
}

impl TestReport {
    /// True when nothing failed.
    pub fn ok(&self) -> bool {
        self.failed.is_empty()
    }

    /// One line per failure, for errors and logs.
    pub fn failure_text(&self) -> String {
        self.failed
            .iter()
            .map(|f| format!("{}: {} failed: {}", f.location, f.name, f.message))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs the `test_` rules and the decision tables of `src` against `policy`.
pub fn run_tests(src: &PolicySource, policy: &LoadedPolicy) -> Result<TestReport> {
    let mut report = TestReport::default();
    run_rego_tests(src, &mut report)?;
    for (path, text) in &src.tables {
        run_table(path, text, policy, &mut report)?;
    }
    Ok(report)
}

fn run_rego_tests(src: &PolicySource, report: &mut TestReport) -> Result<()> {
    let mut engine = engine_for(src)?;
    let packages = engine
        .get_policy_package_components()
        .map_err(|e| Error::Policy(e.to_string()))?;
    let mut tests: Vec<(String, String)> = Vec::new();
    for (module, pkg) in engine.get_modules().iter().zip(&packages) {
        for rule in &module.policy {
            let Rule::Spec { head, span, .. } = &**rule else {
                continue;
            };
            let refr = match head {
                RuleHead::Compr { refr, .. } | RuleHead::Set { refr, .. } => refr,
                RuleHead::Func { .. } => continue,
            };
            if let Expr::Var { span: name, .. } = &**refr {
                if name.text().starts_with("test_") {
                    let full = format!("data.{}.{}", pkg.components.join("."), name.text());
                    let location = format!("{}:{}", pkg.source_file, span.line);
                    if !tests.iter().any(|(n, _)| n == &full) {
                        tests.push((full, location));
                    }
                }
            }
        }
    }
    tests.sort();
    engine.set_gather_prints(true);
    for (name, location) in tests {
        let result = engine.eval_rule(name.clone());
        let prints = engine.take_prints().unwrap_or_default();
        let message = match result {
            Ok(Value::Bool(true)) => {
                report.passed.push(name);
                continue;
            }
            Ok(Value::Undefined) => "undefined (a condition in its body was false)".to_string(),
            Ok(v) => format!("evaluated to {v}, not true"),
            Err(e) => format!("error: {}", e.to_string().trim()),
        };
        let message = if prints.is_empty() {
            message
        } else {
            format!("{message}; prints: {}", prints.join(" | "))
        };
        report.failed.push(TestFailure {
            name,
            location,
            message,
        });
    }
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Table {
    #[serde(default)]
    base: serde_json::Value,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    input: serde_json::Value,
    outcome: Outcome,
    #[serde(default)]
    codes: Option<Vec<String>>,
    /// For a hold: who must approve (`{role, count, self_approval}`, all optional).
    #[serde(default)]
    approvers: Option<crate::model::Approvers>,
    /// The grants the decision spends.
    #[serde(default)]
    grants_used: Option<Vec<String>>,
}

fn run_table(path: &str, text: &str, policy: &LoadedPolicy, report: &mut TestReport) -> Result<()> {
    let table: Table =
        serde_yaml::from_str(text).map_err(|e| Error::Policy(format!("{path}: {e}")))?;
    for (i, case) in table.cases.into_iter().enumerate() {
        let mut input = table.base.clone();
        merge(&mut input, case.input);
        let input_json = input.to_string();
        let eval = policy.decide_json(&input_json);
        if policy.uses_vm() {
            let interpreted = policy.decide_json_interpreted(&input_json);
            let vm = if eval.error.is_some() {
                Err(())
            } else {
                Ok(&eval.decision)
            };
            if interpreted.as_ref().map_err(|_| ()) != vm {
                report.vm_mismatches.push(format!("{path}: {}", case.name));
            }
        }
        let got_codes: Vec<String> = eval
            .decision
            .reasons
            .iter()
            .map(|r| r.code.clone())
            .collect();
        let name = format!("{path}: {}", case.name);
        let mut problems = Vec::new();
        if let Some(e) = &eval.error {
            problems.push(format!("policy error: {e}"));
        }
        if eval.decision.outcome != case.outcome {
            problems.push(format!(
                "outcome {} (want {})",
                eval.decision.outcome.as_str(),
                case.outcome.as_str()
            ));
        }
        if let Some(want) = &case.codes {
            let (mut a, mut b) = (got_codes.clone(), want.clone());
            a.sort();
            b.sort();
            if a != b {
                problems.push(format!("codes {got_codes:?} (want {want:?})"));
            }
        }
        if let Some(want) = &case.approvers {
            if eval.decision.approvers.as_ref() != Some(want) {
                problems.push(format!(
                    "approvers {:?} (want {want:?})",
                    eval.decision.approvers
                ));
            }
        }
        if let Some(want) = &case.grants_used {
            if &eval.decision.grants_used != want {
                problems.push(format!(
                    "grants_used {:?} (want {want:?})",
                    eval.decision.grants_used
                ));
            }
        }
        if problems.is_empty() {
            report.passed.push(name);
        } else {
            report.failed.push(TestFailure {
                name,
                location: format!("{path}: case {}", i + 1),
                message: problems.join("; "),
            });
        }
    }
    Ok(())
}

/// Deep-merges `over` into `base`: objects merge key by key, anything else replaces.
pub fn merge(base: &mut serde_json::Value, over: serde_json::Value) {
    match (base, over) {
        (serde_json::Value::Object(b), serde_json::Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k).or_insert(serde_json::Value::Null), v);
            }
        }
        (b, o) if !o.is_null() => *b = o,
        _ => {}
    }
}
