//! One compiled policy revision and the fail-closed evaluation of `data.clawser.decision`.
//!
//! Two evaluators (`policy.engine`):
//! - `interpreter` (default): regorus's interpreter with strict builtin errors, so an error
//!   anywhere (a `deny` rule included) is a `policy_error` deny. Fails closed.
//! - `vm`: regorus's bytecode VM, about five times faster, with an instruction limit. In
//!   regorus 0.14 the VM treats an error inside a rule body as that body failing (OPA's
//!   non-strict behaviour) even in strict mode, so a `deny` or `hold` rule that errors does
//!   not fire. Opt-in only. Each thread keeps one VM per policy generation; if the VM cannot
//!   compile a policy, or disagrees with the interpreter on any decision-table case at load
//!   time, that revision is evaluated by the interpreter.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use regorus::languages::rego::compiler::Compiler;
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
    /// Strict interpreter: every evaluation error fails closed.
    #[default]
    Interpreter,
    /// Bytecode VM: faster; rule-body errors make that rule undefined.
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
            engine: EvalEngine::Interpreter,
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
        let program = match opts.engine {
            EvalEngine::Interpreter => None,
            EvalEngine::Vm => match Compiler::compile_from_policy(&compiled, &[ENTRYPOINT]) {
                Ok(p) => Some(p),
                Err(e) => {
                    tracing::warn!(error = %e, "policy not supported by the regorus VM; using the interpreter");
                    None
                }
            },
        };
        Ok(LoadedPolicy {
            compiled,
            program,
            generation: GENERATION.fetch_add(1, Ordering::Relaxed),
            max_instructions,
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

    fn eval_vm(&self, program: &Arc<Program>, input: Value) -> std::result::Result<Value, String> {
        VM.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.as_ref().map(|(g, _)| *g) != Some(self.generation) {
                *slot = Some((self.generation, self.new_vm(program)?));
            }
            let Some((_, vm)) = slot.as_mut() else {
                return Err("no VM".to_string());
            };
            vm.set_input(input);
            let out = vm.execute().map_err(|e| e.to_string());
            if out.is_err() {
                // Never reuse a VM whose execution failed half-way.
                *slot = None;
            }
            out
        })
    }

    fn eval(&self, input: Value) -> std::result::Result<Decision, String> {
        let out = match &self.program {
            Some(p) => self.eval_vm(p, input)?,
            None => self
                .compiled
                .eval_with_input(input)
                .map_err(|e| e.to_string().trim().to_string())?,
        };
        to_decision(out)
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

    #[test]
    fn builtin_errors_fail_closed_with_the_default_engine() {
        let e = policy(ERRORING_DENY).decide_json(r#"{"x": "not a number"}"#);
        assert_eq!(
            e.decision.reasons.first().map(|r| r.code.as_str()),
            Some("policy_error"),
            "{e:?}"
        );
    }

    /// Documents the VM's OPA-style behaviour (why it is opt-in): an erroring rule body is
    /// undefined. If regorus changes this, this test tells us to revisit the default.
    #[test]
    fn vm_treats_an_erroring_rule_body_as_undefined() {
        let e = policy_with(ERRORING_DENY, EvalEngine::Vm).decide_json(r#"{"x": "not a number"}"#);
        assert_eq!(e.decision.outcome, Outcome::Allow, "{e:?}");
    }
}
