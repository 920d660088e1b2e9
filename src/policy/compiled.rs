//! One compiled policy revision and the fail-closed evaluation of `data.clawser.decision`.
//!
//! Two evaluators (`policy.engine`):
//! - `interpreter` (default): regorus's interpreter with strict builtin errors.
//! - `vm` (opt-in): regorus's bytecode VM with strict builtin errors and an instruction limit,
//!   about four times faster. regorus 0.14.1 as released evaluates several things differently
//!   in the VM (an erroring `deny` rule that does not fire, among others); Clawser builds the
//!   vendored copy in `vendor/regorus` with those it found fixed (`vendor/README.md`), and
//!   `vm_gate` keeps revisions that use constructs it still evaluates differently on the
//!   interpreter. Each thread keeps one VM per policy generation. If the VM cannot compile a
//!   policy, or disagrees with the interpreter on any decision-table case at load time, that
//!   revision is evaluated by the interpreter. Reviews of the VM kept finding new differences
//!   (`differential.rs`), so it is not the default.
//!
//! Either way an error anywhere (a `deny` rule included) is a `policy_error` deny.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use regorus::languages::rego::compiler::Compiler;
use regorus::rvm::vm::VmError;
use regorus::rvm::{Program, RegoVM};
use regorus::{CompiledPolicy, Engine, Value};

use super::source::PolicySource;
use crate::error::{Error, Result};
use crate::model::Decision;

/// The single entry point Clawser evaluates.
pub const ENTRYPOINT: &str = "data.clawser.decision";

/// Default VM instruction budget per decision (`policy.max_instructions`).
pub const DEFAULT_MAX_INSTRUCTIONS: usize = 1_000_000;

/// Which regorus evaluator decides requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvalEngine {
    /// Strict interpreter: every evaluation error fails closed. The reference semantics.
    #[default]
    Interpreter,
    /// Bytecode VM (the vendored, strict one): every evaluation error fails closed too; about
    /// four times faster; opt-in while reviews still find differences from the interpreter.
    Vm,
}

/// How policies are evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EvalOptions {
    pub engine: EvalEngine,
    pub max_instructions: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            engine: EvalEngine::default(),
            max_instructions: DEFAULT_MAX_INSTRUCTIONS,
        }
    }
}

static GENERATION: AtomicU64 = AtomicU64::new(1);

thread_local! {
    static VM: RefCell<Option<(u64, RegoVM)>> = const { RefCell::new(None) };
}

/// A compiled, tested policy revision.
#[derive(Clone)]
pub struct LoadedPolicy {
    compiled: CompiledPolicy,
    program: Option<Arc<Program>>,
    generation: u64,
    max_instructions: usize,
    /// Why the interpreter evaluates this revision although `policy.engine` is `vm`.
    pub engine_note: Option<String>,
    /// Full hex revision.
    pub revision: String,
    /// The files it was built from.
    pub files: Vec<String>,
    /// When it was loaded (RFC 3339).
    pub loaded_at: String,
}

impl std::fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("revision", &self.revision)
            .field("files", &self.files)
            .finish_non_exhaustive()
    }
}

/// The result of one evaluation.
#[derive(Debug, Clone)]
pub struct Evaluated {
    pub decision: Decision,
    pub revision: String,
    pub elapsed: Duration,
    /// Set when the evaluation failed and the decision is the fail-closed deny.
    pub error: Option<String>,
}

/// Builds an interpreter engine with every module of `src` loaded. Parse errors carry
/// `file:line:col`.
pub fn engine_for(src: &PolicySource) -> Result<Engine> {
    let mut engine = Engine::new();
    engine.set_rego_v0(false);
    for (path, text) in &src.modules {
        engine
            .add_policy(path.clone(), text.clone())
            .map_err(|e| Error::Policy(e.to_string().trim().to_string()))?;
    }
    Ok(engine)
}

impl LoadedPolicy {
    /// Parses and compiles `src` for the entry point with the default (interpreter) engine.
    pub fn compile(src: &PolicySource) -> Result<LoadedPolicy> {
        LoadedPolicy::compile_with(src, EvalOptions::default())
    }

    /// Parses and compiles `src` for the entry point (no tests run here).
    pub fn compile_with(src: &PolicySource, opts: EvalOptions) -> Result<LoadedPolicy> {
        let max_instructions = opts.max_instructions;
        let mut engine = engine_for(src)?;
        let compiled = engine
            .compile_with_entrypoint(&ENTRYPOINT.into())
            .map_err(|e| Error::Policy(e.to_string().trim().to_string()))?;
        let mut engine_note = None;
        let program = match opts.engine {
            EvalEngine::Interpreter => None,
            EvalEngine::Vm => match super::vm_gate::vm_unsupported(&mut engine) {
                Some(why) => {
                    tracing::warn!(reason = %why, "this policy uses a construct the regorus VM evaluates differently from the interpreter; using the interpreter");
                    engine_note = Some(why);
                    None
                }
                None => match Compiler::compile_from_policy(&compiled, &[ENTRYPOINT]) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(error = %e, "policy not supported by the regorus VM; using the interpreter");
                        engine_note = Some(format!("the VM cannot compile this policy: {e}"));
                        None
                    }
                },
            },
        };
        Ok(LoadedPolicy {
            compiled,
            program,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            max_instructions,
            engine_note,
            revision: src.revision.clone(),
            files: src.modules.iter().map(|(p, _)| p.clone()).collect(),
            loaded_at: crate::time::now_rfc3339(),
        })
    }

    /// True when decisions run on the RVM.
    pub fn uses_vm(&self) -> bool {
        self.program.is_some()
    }

    /// Evaluates with the interpreter from now on (used when the VM disagreed at load time).
    pub fn disable_vm(&mut self) {
        self.program = None;
        self.engine_note =
            Some("the VM disagreed with the interpreter on decision-table cases".into());
    }

    /// Short revision for logs.
    pub fn short_revision(&self) -> &str {
        self.revision.get(..12).unwrap_or(&self.revision)
    }

    /// Evaluates the decision for an input given as JSON text. Never fails: any error, an
    /// undefined decision or a malformed decision object is a deny with `policy_error`.
    pub fn decide_json(&self, input_json: &str) -> Evaluated {
        let start = Instant::now();
        let input = Value::from_json_str(input_json).map_err(|e| format!("input: {e}"));
        self.finish(start, input.and_then(|i| self.eval(i)))
    }

    /// Evaluates the decision for an input already serialized to a JSON tree (what the proxy
    /// does: no JSON text in between). Never fails, as `decide_json`.
    pub fn decide_tree(&self, input: std::result::Result<serde_json::Value, String>) -> Evaluated {
        let start = Instant::now();
        let input = input.and_then(super::value::to_rego);
        self.finish(start, input.and_then(|i| self.eval(i)))
    }

    fn finish(&self, start: Instant, result: std::result::Result<Decision, String>) -> Evaluated {
        let elapsed = start.elapsed();
        match result {
            Ok(decision) => Evaluated {
                decision,
                revision: self.revision.clone(),
                elapsed,
                error: None,
            },
            Err(e) => Evaluated {
                decision: Decision::deny(
                    "policy_error",
                    "the policy could not be evaluated, so the request is refused (details in the Clawser log)",
                ),
                revision: self.revision.clone(),
                elapsed,
                error: Some(e),
            },
        }
    }

    /// Evaluates with the interpreter only (load-time cross-check of the VM).
    pub fn decide_json_interpreted(
        &self,
        input_json: &str,
    ) -> std::result::Result<Decision, String> {
        let input = Value::from_json_str(input_json).map_err(|e| format!("input: {e}"))?;
        let out = self
            .compiled
            .eval_with_input(input)
            .map_err(|e| e.to_string().trim().to_string())?;
        to_decision(out)
    }

    fn new_vm(&self, program: &Arc<Program>) -> std::result::Result<RegoVM, String> {
        let mut vm = RegoVM::new();
        vm.load_program(program.clone());
        vm.set_data(Value::new_object())
            .map_err(|e| e.to_string())?;
        vm.set_max_instructions(self.max_instructions);
        vm.set_strict_builtin_errors(true);
        vm.set_execution_timer_config(regorus::utils::limits::fallback_execution_timer_config());
        Ok(vm)
    }

    /// Runs the VM; the outer error is a VM that could not be set up, the inner one what the
    /// evaluation raised.
    fn eval_vm(
        &self,
        program: &Arc<Program>,
        input: Value,
    ) -> std::result::Result<std::result::Result<Value, VmError>, String> {
        VM.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().map(|(g, _)| *g) != Some(self.generation) {
                *slot = Some((self.generation, self.new_vm(program)?));
            }
            let Some((_, vm)) = slot.as_mut() else {
                return Err("no VM".to_string());
            };
            vm.set_input(input);
            let out = vm.execute();
            if out.is_err() {
                // Never reuse a VM whose execution failed half-way.
                *slot = None;
            }
            Ok(out)
        })
    }

    /// Evaluates, turning a panic inside regorus (a bug there, possibly reachable with input
    /// the agent shapes) into an evaluation error: a `policy_error` deny that is logged and
    /// recorded like any other refusal, instead of a dropped connection with no decision.
    fn eval(&self, input: Value) -> std::result::Result<Decision, String> {
        let run = std::panic::AssertUnwindSafe(|| self.eval_unguarded(input));
        match std::panic::catch_unwind(run) {
            Ok(result) => result,
            Err(payload) => {
                // A VM that panicked half-way is not reused.
                VM.with(|cell| {
                    if let Ok(mut slot) = cell.try_borrow_mut() {
                        *slot = None;
                    }
                });
                let what = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "unknown".to_string());
                Err(format!(
                    "regorus panicked while evaluating the policy: {what}"
                ))
            }
        }
    }

    fn eval_unguarded(&self, input: Value) -> std::result::Result<Decision, String> {
        let out = match &self.program {
            // The input's collections are shared, so keeping it for an explanation is cheap.
            Some(p) => match self.eval_vm(p, input.clone())? {
                Ok(out) => out,
                Err(e) => return Err(self.explain_vm_error(input, e)),
            },
            None => self
                .compiled
                .eval_with_input(input)
                .map_err(|e| e.to_string().trim().to_string())?,
        };
        to_decision(out)
    }

    /// The message logged for a VM evaluation error (the request is refused either way). The
    /// VM's own errors name a program counter, so a rule error is evaluated again by the
    /// interpreter, whose error names `file:line:col`. Limits are reported as they are: running
    /// a runaway policy a second time would only double its cost.
    fn explain_vm_error(&self, input: Value, e: VmError) -> String {
        let limit = matches!(
            e,
            VmError::InstructionLimitExceeded { .. }
                | VmError::TimeLimitExceeded { .. }
                | VmError::MemoryLimitExceeded { .. }
                | VmError::MemoryBudgetExceeded { .. }
                | VmError::RegexSizeLimitExceeded { .. }
        );
        if limit {
            return e.to_string();
        }
        match self.compiled.eval_with_input(input) {
            Err(ie) => ie.to_string().trim().to_string(),
            Ok(_) => format!("{e} (the interpreter found no error; refused all the same)"),
        }
    }
}

fn to_decision(out: Value) -> std::result::Result<Decision, String> {
    if out == Value::Undefined {
        return Err(format!("{ENTRYPOINT} is undefined"));
    }
    let json = serde_json::to_value(&out).map_err(|e| e.to_string())?;
    serde_json::from_value::<Decision>(json.clone())
        .map_err(|e| format!("{ENTRYPOINT} is not a decision object ({e}): {json}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Outcome;

    fn policy_with(rego: &str, engine: EvalEngine) -> LoadedPolicy {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("p.rego"), rego).unwrap();
        let opts = EvalOptions {
            engine,
            max_instructions: DEFAULT_MAX_INSTRUCTIONS,
        };
        LoadedPolicy::compile_with(&PolicySource::read_dir(d.path()).unwrap(), opts).unwrap()
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
        let e = policy_with(rego, EvalEngine::Vm).decide_json("{}");
        assert_eq!(e.decision.outcome, Outcome::Deny);
        assert_eq!(e.decision.reasons[0].code, "policy_error");
        assert!(e.error.is_some());
    }

    #[test]
    fn runaway_policy_hits_the_time_limit_in_the_interpreter() {
        crate::policy::set_eval_timeout(Duration::from_millis(100));
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
    fn the_interpreter_is_the_default_engine() {
        assert_eq!(EvalOptions::default().engine, EvalEngine::Interpreter);
        let d = tempfile::tempdir().unwrap();
        let rego = "package clawser\n\ndecision := {\"outcome\": \"allow\"}\n";
        std::fs::write(d.path().join("p.rego"), rego).unwrap();
        let p = LoadedPolicy::compile(&PolicySource::read_dir(d.path()).unwrap()).unwrap();
        assert!(!p.uses_vm());
    }
}
