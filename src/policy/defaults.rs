//! Two `default` rules for one rule are a compile error, as in OPA (`multiple default rules
//! ... found`).
//!
//! regorus accepts them, even with different values in different files, and both engines
//! then use the first one it loaded: whether `allow` defaults to `true` or `false` would
//! depend on file names. Clawser refuses such a revision when it loads, naming both, so a
//! hot reload keeps the last good policy.

use std::collections::BTreeMap;

use regorus::unstable::{Expr, Rule, Span};
use regorus::Engine;

use super::syntax::head_ref;

fn at(span: &Span) -> String {
    format!("{}:{}", span.source.get_path(), span.line)
}

/// `Err` with `file:line: ...` naming the first rule that has two defaults.
pub fn check(engine: &mut Engine) -> Result<(), String> {
    let packages = engine
        .get_policy_package_components()
        .map_err(|e| format!("its packages could not be read: {e}"))?;
    let mut first: BTreeMap<Vec<String>, &Span> = BTreeMap::new();
    for (m, pkg) in engine.get_modules().iter().zip(&packages) {
        for r in &m.policy {
            let (Rule::Default { span, .. }, Expr::Var { span: name, .. }) = (&**r, head_ref(r))
            else {
                continue;
            };
            let mut path = pkg.components.clone();
            path.push(name.text().to_string());
            if let Some(earlier) = first.get(&path) {
                return Err(format!(
                    "{}: `{}` has a second default (the first is at {}); a rule has at most one",
                    at(span),
                    path.join("."),
                    at(earlier)
                ));
            }
            first.insert(path, span);
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
    fn two_defaults_for_one_rule_are_refused_with_both_places() {
        let err = check_files(&[
            (
                "a.rego",
                "package clawser.authz\n\ndefault allow := false\n",
            ),
            (
                "b.rego",
                "package clawser.authz\n\n\ndefault allow := true\n",
            ),
        ])
        .unwrap_err();
        assert!(
            err.starts_with("b.rego:4: `clawser.authz.allow` has a second default"),
            "{err}"
        );
        assert!(err.contains("the first is at a.rego:3"), "{err}");
        // In one file, and with the same value, too.
        let one = "package p\n\ndefault x := 1\n\ndefault x := 1\n";
        assert!(check_files(&[("p.rego", one)]).is_err());
    }

    #[test]
    fn one_default_per_rule_loads() {
        check_files(&[
            (
                "a.rego",
                "package clawser.authz\n\ndefault allow := false\n\nallow if input.ok\n",
            ),
            (
                "b.rego",
                "package clawser.release\n\ndefault allow := false\n",
            ),
        ])
        .unwrap();
    }
}
