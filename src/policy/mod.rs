//! Policy: Rego files in `policies/`, evaluated with regorus behind one interface,
//! [`PolicyEngine::decide`], which never fails open.
//!
//! - `input.rs`: the input document (version 1).
//! - `target.rs`: `target.env` from the config's environment map.
//! - `source.rs`: reading a policy directory and its revision hash.
//! - `compiled.rs`: one compiled revision and fail-closed evaluation.
//! - `testing.rs`: `test_` rules and YAML decision tables.
//! - `pack.rs`: the shipped policy pack, written to an empty policy directory.
//! - `recursion.rs`: a recursive rule or function is a load error, as in OPA.
//! - `definitions.rs`: two `default`s for one rule are a load error, as in OPA, and so is a
//!   function defined in more than one file (regorus evaluates it wrongly).
//! - `vm_gate.rs`: which revisions the regorus VM may evaluate (`syntax.rs` reads the AST).
//!
//! Hot reload: [`PolicyEngine::reload_if_changed`] re-reads the directory; a changed revision
//! is parsed, compiled and tested, then swapped in atomically. On any failure the last good
//! revision stays in force and the error (with file:line) is kept for `status()`.

mod compiled;
mod definitions;
#[cfg(test)]
mod differential;
mod input;
pub mod pack;
mod recursion;
mod source;
mod syntax;
mod target;
mod testing;
mod value;
mod vm_gate;

pub use compiled::{
    EvalEngine, EvalOptions, Evaluated, LoadedPolicy, DEFAULT_MAX_INSTRUCTIONS, ENTRYPOINT,
};
pub use input::{AgentView, JobView, PolicyInput};
pub use source::PolicySource;
pub use target::{classify, glob_match, lenient_view, repo_of, Target};
pub use testing::{merge, run_tests, TestFailure, TestReport};

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::EventSink;

/// What `/v1/policy` and `clawser policy check` report.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyStatus {
    pub dir: String,
    /// `interpreter` or `vm` (the evaluator in force for this revision).
    pub engine: &'static str,
    /// Why the interpreter is in force although `policy.engine` is `vm` (`file:line: reason`).
    pub engine_note: Option<String>,
    pub revision: String,
    pub files: Vec<String>,
    pub loaded_at: String,
    /// The error of the last failed reload, if the newest files are not in force.
    pub last_error: Option<String>,
}

/// Compiles `src` and runs its tests; the policy is returned only if every test passes.
pub fn load_tested(src: &PolicySource, opts: EvalOptions) -> Result<(LoadedPolicy, TestReport)> {
    let mut policy = LoadedPolicy::compile_with(src, opts)?;
    let mut report = run_tests(src, &policy)?;
    if !report.vm_mismatches.is_empty() {
        tracing::warn!(cases = ?report.vm_mismatches, "the regorus VM disagreed with the interpreter; this policy revision is evaluated by the interpreter");
        policy.disable_vm();
        report = run_tests(src, &policy)?;
    }
    if !report.ok() {
        return Err(Error::Policy(format!(
            "{} policy test(s) failed:\n{}",
            report.failed.len(),
            report.failure_text()
        )));
    }
    Ok((policy, report))
}

/// Compiles `src` as the proxy would serve it, whether its tests pass or not (for
/// `clawser policy eval`): a revision on whose decision tables the VM disagrees with the
/// interpreter is evaluated by the interpreter, as `load_tested` does.
pub fn compile_as_served(src: &PolicySource, opts: EvalOptions) -> Result<LoadedPolicy> {
    let mut policy = LoadedPolicy::compile_with(src, opts)?;
    // Tables that cannot be read: the proxy would not load this revision; to evaluate it
    // anyway, the interpreter, which needs no tables to agree with.
    if policy.uses_vm() && run_tests(src, &policy).map_or(true, |r| !r.vm_mismatches.is_empty()) {
        policy.disable_vm();
    }
    Ok(policy)
}

fn loaded_event(p: &LoadedPolicy) -> serde_json::Value {
    serde_json::json!({
        "revision": p.revision,
        "files": p.files,
        "engine": p.engine_name(),
        "engine_note": p.engine_note,
    })
}

/// Sets the evaluation time limit for every regorus evaluation in this process.
pub fn set_eval_timeout(limit: Duration) {
    regorus::utils::limits::set_fallback_execution_timer_config(Some(
        regorus::utils::limits::ExecutionTimerConfig {
            limit,
            check_interval: NonZeroU32::MIN.saturating_add(63),
        },
    ));
}

/// The policy in force, swapped atomically on reload.
pub struct PolicyEngine {
    dir: PathBuf,
    opts: EvalOptions,
    current: ArcSwap<LoadedPolicy>,
    last_error: Mutex<Option<String>>,
    /// The revision of the files last looked at (good or bad), to avoid recompiling a
    /// broken revision on every poll.
    last_seen: Mutex<String>,
    sink: Option<Arc<dyn EventSink>>,
}

impl PolicyEngine {
    /// Loads and tests the policies in `dir`. Fails if they do not compile or a test fails:
    /// Clawser does not start without a working policy.
    pub fn load(dir: &Path, eval_timeout: Duration, opts: EvalOptions) -> Result<PolicyEngine> {
        PolicyEngine::load_recorded(dir, eval_timeout, opts, None)
    }

    /// Like `load`, recording `policy.loaded` (and rejected reloads) in `sink`.
    pub fn load_recorded(
        dir: &Path,
        eval_timeout: Duration,
        opts: EvalOptions,
        sink: Option<Arc<dyn EventSink>>,
    ) -> Result<PolicyEngine> {
        set_eval_timeout(eval_timeout);
        let src = PolicySource::read_dir(dir)?;
        let (policy, _) = load_tested(&src, opts)?;
        if let Some(s) = &sink {
            s.record("policy.loaded", loaded_event(&policy))?;
        }
        Ok(PolicyEngine {
            sink,
            dir: dir.to_path_buf(),
            opts,
            last_seen: Mutex::new(src.revision.clone()),
            current: ArcSwap::from_pointee(policy),
            last_error: Mutex::new(None),
        })
    }

    /// The revision in force.
    pub fn current(&self) -> Arc<LoadedPolicy> {
        self.current.load_full()
    }

    /// Evaluates `input`; any failure is a `policy_error` deny, logged here.
    pub fn decide<T: Serialize>(&self, input: &T) -> Evaluated {
        let policy = self.current.load();
        let eval = policy.decide_input(input);
        if let Some(err) = &eval.error {
            tracing::error!(revision = policy.short_revision(), error = %err, "policy evaluation failed; request denied (fail closed)");
        }
        eval
    }

    /// Re-reads the directory; if the files changed, compiles, tests and swaps. Returns the
    /// new revision when one was swapped in, `Ok(None)` when nothing changed, and the error
    /// (also kept for `status`) when the new files were rejected.
    pub fn reload_if_changed(&self) -> Result<Option<String>> {
        let result = PolicySource::read_dir(&self.dir).and_then(|src| {
            let mut seen = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
            if *seen == src.revision {
                return Ok(None);
            }
            *seen = src.revision.clone();
            drop(seen);
            let (policy, report) = load_tested(&src, self.opts)?;
            tracing::info!(
                revision = policy.short_revision(),
                files = policy.files.len(),
                tests = report.passed.len(),
                "policy reloaded"
            );
            let rev = policy.revision.clone();
            if let Some(s) = &self.sink {
                s.record("policy.loaded", loaded_event(&policy))?;
            }
            self.current.store(Arc::new(policy));
            Ok(Some(rev))
        });
        let mut last = self.last_error.lock().unwrap_or_else(|e| e.into_inner());
        match &result {
            Ok(Some(_)) => *last = None,
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, kept = self.current.load().short_revision(), "policy reload rejected; keeping the last good policy");
                *last = Some(e.to_string());
                if let Some(s) = &self.sink {
                    let kept = self.current.load().revision.clone();
                    let _ = s.record(
                        "policy.rejected",
                        serde_json::json!({"error": e.to_string(), "kept_revision": kept}),
                    );
                }
            }
        }
        result
    }

    /// Polls the directory every `interval` until `shutdown` resolves.
    pub async fn watch(
        self: Arc<Self>,
        interval: Duration,
        shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let mut shutdown = shutdown;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let engine = self.clone();
            // Compiling and testing is CPU work: keep it off the async workers.
            let _ = tokio::task::spawn_blocking(move || engine.reload_if_changed()).await;
        }
    }

    /// What is in force and the last reload error.
    pub fn status(&self) -> PolicyStatus {
        let p = self.current.load();
        PolicyStatus {
            dir: self.dir.display().to_string(),
            engine: p.engine_name(),
            engine_note: p.engine_note.clone(),
            revision: p.revision.clone(),
            files: p.files.clone(),
            loaded_at: p.loaded_at.clone(),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

/// Sets regorus's memory limit: while the process's heap (as counted by the global
/// allocator, regorus's mimalloc) exceeds `mib` MiB, evaluations fail, which Clawser turns
/// into a deny (`policy_error`, fail closed) instead of growing until the kernel kills it.
/// Process-wide; only the default `mimalloc` feature's allocator counts (see Cargo.toml).
#[cfg(feature = "mimalloc")]
pub fn set_memory_limit(mib: u64) {
    regorus::set_global_memory_limit(Some(mib.saturating_mul(1024 * 1024)));
}

/// A heap-profiling build (`heap-profile`, without `mimalloc`) counts nothing: it says so,
/// on stderr too, whatever the log level.
#[cfg(not(feature = "mimalloc"))]
pub fn set_memory_limit(mib: u64) {
    eprintln!("clawser: a heap-profiling build: policy.max_memory_mib ({mib} MiB) is not enforced");
    tracing::warn!(
        max_memory_mib = mib,
        "built without the mimalloc feature: policy.max_memory_mib is not enforced (heap profiling builds only)"
    );
}
