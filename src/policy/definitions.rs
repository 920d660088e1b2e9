//! Where a rule may be defined: two load errors about the revision's definitions.
//!
//! - **Two `default`s for one rule**, as in OPA (`multiple default rules ... found`). regorus
//!   accepts them, even with different values in different files, and both engines then use
//!   the first one it loaded: whether `allow` defaults to `true` or `false` would depend on
//!   file names.
//! - **A function whose definitions are in more than one file.** OPA allows it; regorus's
//!   interpreter does not evaluate it correctly. It keeps one module per function (the first
//!   file's) and evaluates every definition with that module's bindings: a definition from
//!   another file has its parameters bound wrongly, or the call fails (`ok(a, b) if a == 1`
//!   in one file and `ok(b, a) if b == 1` in another made `ok(2, 1)` true in the
//!   interpreter; Rego, and regorus's VM, say false). Found by the fifteenth review of the
//!   VM.
//!
//! Clawser refuses such a revision when it loads, naming both places, so a hot reload keeps
//! the last good policy.

use std::collections::BTreeMap;

use regorus::unstable::{Rule, RuleHead, Span};
use regorus::Engine;

use super::syntax::{named_rules, packages, place};

/// `Err` with `file:line: ...` naming the first rule with a second default, else the first
/// function defined in a second file.
pub fn check(engine: &mut Engine) -> Result<(), String> {
    let packages = packages(engine)?;
    let modules = engine.get_modules();
    let mut defaults: BTreeMap<Vec<String>, &Span> = BTreeMap::new();
    for (_, r, path) in named_rules(modules, &packages) {
        let Rule::Default { span, .. } = &**r else {
            continue;
        };
        if let Some(earlier) = defaults.get(&path) {
            return Err(format!(
                "{}: `{}` has a second default (the first is at {}); a rule has at most one",
                place(span),
                path.join("."),
                place(earlier)
            ));
        }
        defaults.insert(path, span);
    }
    let mut functions: BTreeMap<Vec<String>, &Span> = BTreeMap::new();
    for (_, r, path) in named_rules(modules, &packages) {
        let span = match &**r {
            Rule::Spec {
                span,
                head: RuleHead::Func { .. },
                ..
            } => span,
            Rule::Default { span, args, .. } if !args.is_empty() => span,
            _ => continue,
        };
        match functions.get(&path) {
            Some(earlier) if earlier.source.get_path() != span.source.get_path() => {
                return Err(format!(
                    "{}: function `{}` is also defined in {}; keep all of a function's definitions in one file (regorus evaluates them with the first file's bindings)",
                    place(span),
                    path.join("."),
                    place(earlier)
                ));
            }
            Some(_) => {}
            None => {
                functions.insert(path, span);
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
