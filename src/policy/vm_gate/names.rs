//! What a revision defines, for `vm_gate`: its rules, functions and packages by path.

use std::collections::{HashMap, HashSet};

use regorus::unstable::{Module, Ref, Rule, RuleHead};
use regorus::PolicyPackageComponents;

use super::super::syntax::named_rules;

/// The paths (package components and rule name) of every rule, function and package in the
/// revision.
#[derive(Default)]
pub(super) struct Names {
    /// The fewest and most parameters of the definitions of each function, by its path.
    pub(super) functions: HashMap<Vec<String>, (usize, usize)>,
    /// The paths of rules that are not functions (defaults included).
    pub(super) plain: HashSet<Vec<String>>,
    pub(super) packages: HashSet<Vec<String>>,
}

impl Names {
    /// Collects the names of `modules`, whose packages are `packages` (in the same order).
    pub(super) fn of(modules: &[Ref<Module>], packages: &[PolicyPackageComponents]) -> Names {
        let mut names = Names {
            packages: packages.iter().map(|p| p.components.clone()).collect(),
            ..Names::default()
        };
        for (_, r, path) in named_rules(modules, packages) {
            if let Rule::Spec {
                head: RuleHead::Func { args, .. },
                ..
            } = &**r
            {
                let takes = names
                    .functions
                    .entry(path)
                    .or_insert((args.len(), args.len()));
                *takes = (takes.0.min(args.len()), takes.1.max(args.len()));
            } else {
                names.plain.insert(path);
            }
        }
        names
    }

    /// Whether `path` names a rule or function of the revision.
    pub(super) fn is_rule(&self, path: &[String]) -> bool {
        self.plain.contains(path) || self.functions.contains_key(path)
    }

    /// The first name the two engines resolve differently: a package with a part named like
    /// a builtin; a rule path that is also a package's, or the start of one (the interpreter
    /// reads the package, the VM the rule); or a path with both function and other
    /// definitions (the interpreter calls only the functions, the VM every definition,
    /// ignoring the arguments).
    pub(super) fn collision(
        &self,
        modules: &[Ref<Module>],
        packages: &[PolicyPackageComponents],
    ) -> Option<String> {
        // A dotted call (`regex.match`) resolves first to `data.<package>.regex.match`: in
        // the interpreter to a function or default rule there, in the VM to any rule there
        // (ignoring the arguments).
        for (m, pkg) in modules.iter().zip(packages) {
            if let Some(part) = pkg.components.iter().find(|p| named_like_a_builtin(p)) {
                return Some(super::at(
                    m.package.refr.span(),
                    &format!("a package named like a builtin (`{part}`)"),
                ));
            }
        }
        named_rules(modules, packages).find_map(|(_, r, path)| {
            if self.packages.iter().any(|p| p.starts_with(&path)) {
                Some(super::at(
                    r.span(),
                    "a rule whose path is also a package's, or the start of one",
                ))
            } else if self.functions.contains_key(&path) && self.plain.contains(&path) {
                Some(super::at(
                    r.span(),
                    "a name with both function and non-function definitions",
                ))
            } else {
                None
            }
        })
    }
}

/// The rule path a dotted name denotes in `package`: a bare name in that package, or a
/// `data.` path; `None` for any other dotted name (a builtin such as `object.get`).
pub(super) fn rule_path(package: &[String], parts: &[String]) -> Option<Vec<String>> {
    match parts {
        [name] => {
            let mut path = package.to_vec();
            path.push(name.clone());
            Some(path)
        }
        [root, rest @ ..] if root == "data" => Some(rest.to_vec()),
        _ => None,
    }
}

/// Whether `name` is a builtin's name, or a dotted builtin's first part (`object`, `regex`):
/// a rule, function or package of that name shadows the builtin, or is shadowed by it,
/// differently in the two engines. Names beginning with `__` are regorus's own: the VM's
/// compiler turns a call of `__builtin_host_await` into a host call before it looks for the
/// revision's functions (the sixteenth review; that fails closed in Clawser, which answers
/// no host call, but the interpreter calls the revision's function).
pub(super) fn named_like_a_builtin(name: &str) -> bool {
    name.starts_with("__")
        || name == "print"
        || regorus::unstable::BUILTINS
            .keys()
            .any(|k| *k == name || k.split('.').next() == Some(name))
}
