//! One compiled policy revision and the fail-closed evaluation of `data.clawser.decision`.
//!
//! Two evaluators (`policy.engine`):
//! - `vm` (default): regorus's bytecode VM with strict builtin errors and an instruction
//!   limit, about four times faster than the interpreter, for the revisions it may run.
//!   regorus 0.14.1 as released evaluates several things differently in the VM (an erroring
//!   `deny` rule that does not fire, among others); Clawser builds the vendored copy in
//!   `vendor/regorus` with those it found fixed (`vendor/README.md`). The VM runs a revision
//!   only if it is made of the constructs on `vm_gate/allow.rs`'s list and avoids the
//!   combinations `vm_gate` lists; any other revision, one the VM cannot compile, and one on
//!   which the VM disagrees with the interpreter on any decision-table case at load time, is
//!   evaluated by the interpreter. Each thread keeps one VM per policy generation.
//! - `interpreter`: regorus's interpreter with strict builtin errors, the reference
//!   semantics, for every revision.
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
    Interpreter,
    /// Bytecode VM (the vendored, strict one) for revisions on its allow-list, else the
    /// interpreter: every evaluation error fails closed too; about four times faster.
    #[default]
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

/// Which load-time checks run (all of them, but in tests).
#[derive(Clone, Copy)]
struct Checks {
    /// A recursive rule or function (`recursion.rs`), a rule with two defaults or a function
    /// defined in two files (`definitions.rs`), is an error.
    load_errors: bool,
    /// The VM runs only revisions on its allow-list (`vm_gate/allow.rs`).
    allow_list: bool,
}

impl Checks {
    const ALL: Checks = Checks {
        load_errors: true,
        allow_list: true,
    };
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
    /// Parses and compiles `src` for the entry point with the default engine.
    pub fn compile(src: &PolicySource) -> Result<LoadedPolicy> {
        LoadedPolicy::compile_with(src, EvalOptions::default())
    }

    /// Parses and compiles `src` for the entry point (no tests run here). A recursive rule or
    /// function (`recursion.rs`), a rule with two defaults or a function defined in two files
    /// (`definitions.rs`), is an error.
    pub fn compile_with(src: &PolicySource, opts: EvalOptions) -> Result<LoadedPolicy> {
        LoadedPolicy::compile_checked(src, opts, Checks::ALL)
    }

    /// As `compile_with`, but lets recursion (and two defaults) through, to test what
    /// evaluation does with them.
    #[cfg(test)]
    pub(crate) fn compile_recursive(src: &PolicySource, opts: EvalOptions) -> Result<LoadedPolicy> {
        let checks = Checks {
            load_errors: false,
            ..Checks::ALL
        };
        LoadedPolicy::compile_checked(src, opts, checks)
    }

    /// As `compile_with`, but the VM gate checks combinations only, not the allow-list: to
    /// test the VM's fixes and the combination gates on constructs the list leaves out.
    #[cfg(test)]
    pub(crate) fn compile_without_allow_list(
        src: &PolicySource,
        opts: EvalOptions,
    ) -> Result<LoadedPolicy> {
        let checks = Checks {
            allow_list: false,
            ..Checks::ALL
        };
        LoadedPolicy::compile_checked(src, opts, checks)
    }

    fn compile_checked(
        src: &PolicySource,
        opts: EvalOptions,
        checks: Checks,
    ) -> Result<LoadedPolicy> {
        let max_instructions = opts.max_instructions;
        let mut engine = engine_for(src)?;
        let compiled = engine
            .compile_with_entrypoint(&ENTRYPOINT.into())
            .map_err(|e| Error::Policy(e.to_string().trim().to_string()))?;
        if checks.load_errors {
            super::recursion::check(&mut engine).map_err(Error::Policy)?;
            super::definitions::check(&mut engine).map_err(Error::Policy)?;
        }
        let mut engine_note = None;
        let program = match opts.engine {
            EvalEngine::Interpreter => None,
            EvalEngine::Vm => {
                match super::vm_gate::vm_unsupported(&mut engine, checks.allow_list) {
                    Some(why) => {
                        tracing::warn!(reason = %why, "this policy uses a construct the regorus VM may not run (the reason says which); using the interpreter");
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
                }
            }
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

    /// The engine deciding this revision, as `policy.engine` spells it (`vm` or
    /// `interpreter`), for logs, `clawser policy check|eval` and `GET /v1/policy`.
    pub fn engine_name(&self) -> &'static str {
        if self.uses_vm() {
            "vm"
        } else {
            "interpreter"
        }
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

    /// Evaluates the decision for an input struct, serialized straight into a regorus value
    /// (what the proxy does: no JSON tree or text in between). Never fails, as `decide_json`.
    pub fn decide_input<T: serde::Serialize + ?Sized>(&self, input: &T) -> Evaluated {
        let start = Instant::now();
        let input = super::value::to_value(input)
            .map_err(|e| format!("input could not be serialized: {e}"));
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
mod tests;
