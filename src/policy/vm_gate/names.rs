//! What a revision defines, for `vm_gate`: its rules, functions and packages by path.

use std::collections::{HashMap, HashSet};

use regorus::unstable::{Expr, Module, Rule, RuleHead};

use super::super::syntax::head_ref;

/// The paths (package components and rule name) of every rule, function and package in the
/// revision.
#[derive(Default)]
pub(super) struct Names {
    pub(super) rules: HashSet<Vec<String>>,
    /// The fewest and most parameters of the definitions of each function, by its path.
    pub(super) functions: HashMap<Vec<String>, (usize, usize)>,
    /// The paths of rules that are not functions (defaults included).
    pub(super) plain: HashSet<Vec<String>>,
    pub(super) packages: HashSet<Vec<String>>,
}

impl Names {
    /// Collects the names of `modules`, whose packages are `packages` (in the same order).
    pub(super) fn of(
        modules: &[regorus::unstable::Ref<Module>],
        packages: &[regorus::PolicyPackageComponents],
    ) -> Names {
        let mut names = Names::default();
        for (m, pkg) in modules.iter().zip(packages) {
            names.packages.insert(pkg.components.clone());
            for r in &m.policy {
                let Expr::Var { span, .. } = head_ref(r) else {
                    continue;
                };
                let mut path = pkg.components.clone();
                path.push(span.text().to_string());
                if let Rule::Spec {
                    head: RuleHead::Func { args, .. },
                    ..
                } = &**r
                {
                    let takes = names
                        .functions
                        .entry(path.clone())
                        .or_insert((args.len(), args.len()));
                    *takes = (takes.0.min(args.len()), takes.1.max(args.len()));
                } else {
                    names.plain.insert(path.clone());
                }
                names.rules.insert(path);
            }
        }
        names
    }
}

impl Names {
    /// The first name the two engines resolve differently: a package with a part named like
    /// a builtin; a rule path that is also a package's, or the start of one (the interpreter
    /// reads the package, the VM the rule); or a path with both function and other
    /// definitions (the interpreter calls only the functions, the VM every definition,
    /// ignoring the arguments).
    pub(super) fn collision(
        &self,
        modules: &[regorus::unstable::Ref<Module>],
        packages: &[regorus::PolicyPackageComponents],
    ) -> Option<String> {
        for (m, pkg) in modules.iter().zip(packages) {
            // A dotted call (`regex.match`) resolves first to `data.<package>.regex.match`:
            // in the interpreter to a function or default rule there, in the VM to any rule
            // there (ignoring the arguments).
            if let Some(part) = pkg.components.iter().find(|p| named_like_a_builtin(p)) {
                return Some(super::at(
                    m.package.refr.span(),
                    &format!("a package named like a builtin (`{part}`)"),
                ));
            }
            for r in &m.policy {
                let Expr::Var { span, .. } = head_ref(r) else {
                    continue;
                };
                let mut path = pkg.components.clone();
                path.push(span.text().to_string());
                if self.packages.iter().any(|p| p.starts_with(&path)) {
                    return Some(super::at(
                        r.span(),
                        "a rule whose path is also a package's, or the start of one",
                    ));
                }
                if self.functions.contains_key(&path) && self.plain.contains(&path) {
                    return Some(super::at(
                        r.span(),
                        "a name with both function and non-function definitions",
                    ));
                }
            }
        }
        None
    }
}

/// Whether `name` is a builtin's name, or a dotted builtin's first part (`object`, `regex`):
/// a rule, function or package of that name shadows the builtin, or is shadowed by it,
/// differently in the two engines.
pub(super) fn named_like_a_builtin(name: &str) -> bool {
    name == "print"
        || regorus::unstable::BUILTINS
            .keys()
            .any(|k| *k == name || k.split('.').next() == Some(name))
}
