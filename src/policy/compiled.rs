//! One compiled policy revision and the fail-closed evaluation of `data.clawser.decision`.

use std::time::{Duration, Instant};

use regorus::{CompiledPolicy, Engine, Value};

use super::source::PolicySource;
use crate::error::{Error, Result};
use crate::model::Decision;

/// The single entry point Clawser evaluates.
pub const ENTRYPOINT: &str = "data.clawser.decision";

/// A compiled, tested policy revision.
#[derive(Clone)]
pub struct LoadedPolicy {
    compiled: CompiledPolicy,
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
    /// Parses and compiles `src` for the entry point (no tests run here).
    pub fn compile(src: &PolicySource) -> Result<LoadedPolicy> {
        let mut engine = engine_for(src)?;
        let compiled = engine
            .compile_with_entrypoint(&ENTRYPOINT.into())
            .map_err(|e| Error::Policy(e.to_string().trim().to_string()))?;
        Ok(LoadedPolicy {
            compiled,
            revision: src.revision.clone(),
            files: src.modules.iter().map(|(p, _)| p.clone()).collect(),
            loaded_at: crate::time::now_rfc3339(),
        })
    }

    /// Short revision for logs.
    pub fn short_revision(&self) -> &str {
        self.revision.get(..12).unwrap_or(&self.revision)
    }

    /// Evaluates the decision for an input given as JSON text. Never fails: any error, an
    /// undefined decision or a malformed decision object is a deny with `policy_error`.
    pub fn decide_json(&self, input_json: &str) -> Evaluated {
        let start = Instant::now();
        let result = self.eval(input_json);
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

    fn eval(&self, input_json: &str) -> std::result::Result<Decision, String> {
        let input = Value::from_json_str(input_json).map_err(|e| format!("input: {e}"))?;
        let out = self
            .compiled
            .eval_with_input(input)
            .map_err(|e| e.to_string().trim().to_string())?;
        if out == Value::Undefined {
            return Err(format!("{ENTRYPOINT} is undefined"));
        }
        let json = serde_json::to_value(&out).map_err(|e| e.to_string())?;
        serde_json::from_value::<Decision>(json.clone())
            .map_err(|e| format!("{ENTRYPOINT} is not a decision object ({e}): {json}"))
    }
}
