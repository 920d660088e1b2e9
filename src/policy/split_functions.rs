//! A function whose definitions are in more than one file is a load error.
//!
//! OPA allows it; regorus's interpreter does not evaluate it correctly. It keeps one module
//! per function (the first file's) and evaluates every definition with that module's
//! bindings: a definition from another file has its parameters bound wrongly, or the call
//! fails (`ok(a, b) if a == 1` in one file and `ok(b, a) if b == 1` in another made
//! `ok(2, 1)` true in the interpreter; Rego, and regorus's VM, say false). Clawser refuses
//! such a revision when it loads, naming both files, so a hot reload keeps the last good
//! policy. Found by the fifteenth review of the VM.

use std::collections::BTreeMap;

use regorus::unstable::{Expr, Rule, RuleHead, Span};
use regorus::Engine;

use super::syntax::head_ref;

fn at(span: &Span) -> String {
    format!("{}:{}", span.source.get_path(), span.line)
}

/// `Err` with `file:line: ...` naming the first function defined in a second file.
pub fn check(engine: &mut Engine) -> Result<(), String> {
    let packages = engine
        .get_policy_package_components()
        .map_err(|e| format!("its packages could not be read: {e}"))?;
    let mut first: BTreeMap<Vec<String>, &Span> = BTreeMap::new();
    for (m, pkg) in engine.get_modules().iter().zip(&packages) {
        for r in &m.policy {
            let span = match &**r {
                Rule::Spec {
                    span,
                    head: RuleHead::Func { .. },
                    ..
                } => span,
                Rule::Default { span, args, .. } if !args.is_empty() => span,
                _ => continue,
            };
            let Expr::Var { span: name, .. } = head_ref(r) else {
                continue;
            };
            let mut path = pkg.components.clone();
            path.push(name.text().to_string());
            match first.get(&path) {
                Some(earlier) if earlier.source.get_path() != span.source.get_path() => {
                    return Err(format!(
                        "{}: function `{}` is also defined in {}; keep all of a function's definitions in one file (regorus evaluates them with the first file's bindings)",
                        at(span),
                        path.join("."),
                        at(earlier)
                    ));
                }
                Some(_) => {}
                None => {
                    first.insert(path, span);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_files(files: &[(&str, &str)]) -> Result<(), String> {
        let mut engine = Engine::new();
        engine.set_rego_v0(false);
        for (name, text) in files {
            engine
                .add_policy(name.to_string(), text.to_string())
                .unwrap();
        }
        check(&mut engine)
    }

    #[test]
    fn a_function_defined_in_two_files_is_refused_with_both_places() {
        let err = check_files(&[
            (
                "a.rego",
                "package clawser.authz\n\nok(a, b) if a == 1\n\nallow if ok(2, 1)\n",
            ),
            ("b.rego", "package clawser.authz\n\n\nok(b, a) if b == 1\n"),
        ])
        .unwrap_err();
        assert!(
            err.starts_with("b.rego:4: function `clawser.authz.ok` is also defined in a.rego:3"),
            "{err}"
        );
    }

    #[test]
    fn several_definitions_in_one_file_and_like_names_in_other_packages_load() {
        check_files(&[
            (
                "a.rego",
                "package clawser.authz\n\nok(a) if a == 1\n\nok(a) if a == 2\n\nallow if ok(2)\n",
            ),
            ("b.rego", "package clawser.release\n\nok(a) if a == 3\n"),
            // A plain rule with the same name in another file is `names.rs`'s business.
            ("c.rego", "package clawser.lib\n\nx := 1\n"),
        ])
        .unwrap();
    }
}
