//! Recursion is a compile error, as in OPA (`rego_recursion_error`).
//!
//! regorus compiles a rule or function that refers to itself, directly or through others.
//! At run time its interpreter reports a rule cycle and both engines stop a function after 32
//! nested calls (a `policy_error` deny), but only when an input reaches that deep: a policy
//! whose tests pass can still fail for a request. Clawser refuses such a revision when it
//! loads, with the cycle and the `file:line` of the rule that starts it, so a hot reload keeps
//! the last good policy.
//!
//! The reference graph is built from the parsed modules: a rule refers to another when its
//! head or any of its bodies (comprehensions and `every` included) names it, by its name in
//! the same package, by a `data.` path, or as a called function. A name bound inside the rule
//! (a parameter, `some`, `:=`, `=`, an `every` or comprehension variable) is a local, not a
//! reference; reading it that way can only miss a cycle, never invent one.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use regorus::unstable::{AssignOp, Expr, Literal, Query, Rule, RuleHead, Span};
use regorus::Engine;

use super::syntax::{
    children, head_ref, import_aliases, named_rules_by_module, packages, place, root_name,
};

/// A rule's path: its package's components and its name.
type Path = Vec<String>;

/// One definition of a rule: the rule, its package and its module's import aliases.
type Def<'a> = (&'a Rule, &'a [String], Vec<(String, &'a Expr)>);

/// `Err` with `file:line: ...` naming the first cycle found, when the revision has one.
pub fn check(engine: &mut Engine) -> Result<(), String> {
    let packages = packages(engine)?;
    let modules = engine.get_modules();
    // Every definition of every rule, by path, with the package it was written in and its
    // module's import aliases.
    let mut defs: BTreeMap<Path, Vec<Def<'_>>> = BTreeMap::new();
    for (m, pkg, r, path) in named_rules_by_module(modules, &packages) {
        defs.entry(path)
            .or_default()
            .push((r.as_ref(), pkg, import_aliases(m)));
    }
    let rules: HashSet<&Path> = defs.keys().collect();
    let mut edges: BTreeMap<&Path, BTreeSet<Path>> = BTreeMap::new();
    for (path, rs) in &defs {
        let out = edges.entry(path).or_default();
        for (r, pkg, aliases) in rs {
            References::of(r, pkg, aliases, &rules, out);
        }
    }
    // Depth-first search; a path met again while still on the stack closes a cycle.
    let mut done: HashSet<&Path> = HashSet::new();
    for start in defs.keys() {
        let mut stack: Vec<(&Path, Vec<&Path>)> = Vec::new();
        let mut on_path: Vec<&Path> = Vec::new();
        if done.contains(start) {
            continue;
        }
        stack.push((start, next_of(&edges, start)));
        on_path.push(start);
        while let Some((node, pending)) = stack.last_mut() {
            let node: &Path = node;
            let Some(next) = pending.pop() else {
                done.insert(node);
                stack.pop();
                on_path.pop();
                continue;
            };
            if let Some(at) = on_path.iter().position(|p| *p == next) {
                let cycle: Vec<String> = on_path
                    .get(at..)
                    .unwrap_or_default()
                    .iter()
                    .chain([&next])
                    .map(|p| p.join("."))
                    .collect();
                let span = defs
                    .get(next)
                    .and_then(|d| d.first())
                    .map(|(r, _, _)| head_ref(r).span().clone());
                let prefix = span.map_or_else(String::new, |s: Span| format!("{}: ", place(&s)));
                return Err(format!(
                    "{prefix}`{}` is recursive: {} (Rego does not allow recursion)",
                    next.join("."),
                    cycle.join(" -> ")
                ));
            }
            if !done.contains(next) {
                stack.push((next, next_of(&edges, next)));
                on_path.push(next);
            }
        }
    }
    Ok(())
}

fn next_of<'a>(edges: &'a BTreeMap<&Path, BTreeSet<Path>>, node: &Path) -> Vec<&'a Path> {
    edges
        .get(node)
        .map(|e| e.iter().rev().collect())
        .unwrap_or_default()
}

/// Collects the rules one definition refers to.
struct References<'a> {
    package: &'a [String],
    /// The module's import aliases (a bare `v1` reads `rego.v1`).
    aliases: &'a [(String, &'a Expr)],
    rules: &'a HashSet<&'a Path>,
    /// Names bound anywhere in the definition: locals, not rules.
    bound: HashSet<String>,
}

impl References<'_> {
    fn of(
        r: &Rule,
        package: &[String],
        aliases: &[(String, &Expr)],
        rules: &HashSet<&Path>,
        out: &mut BTreeSet<Path>,
    ) {
        let Rule::Spec { head, bodies, .. } = r else {
            return;
        };
        let mut exprs: Vec<&Expr> = Vec::new();
        let mut params: Vec<&Expr> = Vec::new();
        match head {
            RuleHead::Compr { assign, .. } => exprs.extend(assign.iter().map(|a| &*a.value)),
            RuleHead::Set { key, .. } => exprs.extend(key.iter().map(|k| &**k)),
            RuleHead::Func { args, assign, .. } => {
                params.extend(args.iter().map(|a| &**a));
                exprs.extend(assign.iter().map(|a| &*a.value));
            }
        }
        exprs.extend(
            bodies
                .iter()
                .filter_map(|b| b.assign.as_ref().map(|a| &*a.value)),
        );
        let queries: Vec<&Query> = bodies.iter().map(|b| &*b.query).collect();
        let mut refs = References {
            package,
            aliases,
            rules,
            bound: HashSet::new(),
        };
        // First every binding, then every reference that is not one.
        for p in &params {
            refs.bind_vars(p);
        }
        for q in &queries {
            refs.walk_query(q, &mut |e, me| me.bind(e));
        }
        for e in &exprs {
            refs.walk_expr(e, &mut |e, me| me.bind(e));
        }
        let mut found = BTreeSet::new();
        let mut collect = |e: &Expr, me: &mut References<'_>| me.refer(e, &mut found);
        for q in &queries {
            refs.walk_query(q, &mut collect);
        }
        for e in &exprs {
            refs.walk_expr(e, &mut collect);
        }
        out.extend(found);
    }

    /// Visits every expression of a query, nested queries (comprehensions, `every`) included,
    /// and notes the names its statements bind.
    fn walk_query(&mut self, q: &Query, visit: &mut dyn FnMut(&Expr, &mut Self)) {
        for s in &q.stmts {
            match &s.literal {
                Literal::SomeVars { vars, .. } => {
                    self.bound.extend(vars.iter().map(|v| v.text().to_string()))
                }
                Literal::SomeIn {
                    key,
                    value,
                    collection,
                    ..
                } => {
                    for p in key.iter().chain([value]) {
                        self.bind_vars(p);
                    }
                    self.walk_expr(collection, visit);
                }
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => {
                    self.walk_expr(expr, visit)
                }
                Literal::Every {
                    key,
                    value,
                    domain,
                    query,
                    ..
                } => {
                    self.bound
                        .extend(key.iter().chain([value]).map(|v| v.text().to_string()));
                    self.walk_expr(domain, visit);
                    self.walk_query(query, visit);
                }
            }
        }
    }

    fn walk_expr(&mut self, e: &Expr, visit: &mut dyn FnMut(&Expr, &mut Self)) {
        let mut nested: Vec<&Query> = Vec::new();
        let mut seen: Vec<&Expr> = Vec::new();
        children(e, &mut |c| {
            if let Expr::ArrayCompr { query, .. }
            | Expr::SetCompr { query, .. }
            | Expr::ObjectCompr { query, .. } = c
            {
                nested.push(query);
            }
            seen.push(c);
            true
        });
        for c in seen {
            visit(c, self);
        }
        for q in nested {
            self.walk_query(q, visit);
        }
    }

    /// Notes the names an assignment or unification binds.
    fn bind(&mut self, e: &Expr) {
        if let Expr::AssignExpr { op, lhs, rhs, .. } = e {
            self.bind_vars(lhs);
            if *op == AssignOp::Eq {
                self.bind_vars(rhs);
            }
        }
    }

    /// Notes every variable of a pattern as bound.
    fn bind_vars(&mut self, pattern: &Expr) {
        let mut names = Vec::new();
        children(pattern, &mut |c| {
            if let Expr::Var { span, .. } = c {
                names.push(span.text().to_string());
            }
            // Only the pattern's own variables: not inside references or calls.
            !matches!(
                c,
                Expr::RefDot { .. } | Expr::RefBrack { .. } | Expr::Call { .. }
            )
        });
        self.bound.extend(names);
    }

    /// Records the rule a name not bound in the definition stands for in this package, if
    /// it is one (true then).
    fn refer_name(&self, name: &str, found: &mut BTreeSet<Path>) -> bool {
        if matches!(name, "input" | "data" | "_") || self.bound.contains(name) {
            return false;
        }
        let mut path = self.package.to_vec();
        path.push(name.to_string());
        if self.rules.contains(&path) {
            found.insert(path);
            return true;
        }
        false
    }

    /// Records the rule `e` names, if it names one: a local name, or the longest fixed
    /// `data.` prefix that is a rule.
    fn refer(&mut self, e: &Expr, found: &mut BTreeSet<Path>) {
        match e {
            Expr::Var { span, .. } => {
                let name = span.text();
                if matches!(name, "input" | "data" | "_") || self.bound.contains(name) {
                    return;
                }
                // A rule of this package wins over an import alias of the same name, in both
                // engines; the alias is the fallback.
                if self.refer_name(name, found) {
                    return;
                }
                if let Some((_, aliased)) = self.aliases.iter().find(|(a, _)| a == name) {
                    // The path the alias stands for: a `data.` path, or one whose first part
                    // is read as a name in this package (`rego` for `rego.v1`).
                    match root_name(aliased) {
                        Some("data") => self.refer(aliased, found),
                        Some(root) => {
                            self.refer_name(root, found);
                        }
                        None => {}
                    }
                }
            }
            Expr::RefDot { .. } | Expr::RefBrack { .. } => {
                let Some(parts) = data_parts(e) else {
                    return;
                };
                for n in (1..=parts.len()).rev() {
                    if let Some(prefix) = parts.get(..n) {
                        if self.rules.contains(&prefix.to_vec()) {
                            found.insert(prefix.to_vec());
                            return;
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// The components after `data.` of a reference rooted at `data`, or `None` when it is not
/// rooted at `data`. A computed index is a component no rule path has, so only the fixed
/// prefix before it can name a rule.
fn data_parts(e: &Expr) -> Option<Vec<String>> {
    match e {
        Expr::Var { span, .. } => (span.text() == "data").then(Vec::new),
        Expr::RefDot { refr, field, .. } => {
            let mut parts = data_parts(refr)?;
            parts.push(field.0.text().to_string());
            Some(parts)
        }
        Expr::RefBrack { refr, index, .. } => {
            let mut parts = data_parts(refr)?;
            let fixed = match &**index {
                Expr::String { value, .. } | Expr::RawString { value, .. } => {
                    value.as_string().ok().map(|s| s.to_string())
                }
                _ => None,
            };
            parts.push(fixed.unwrap_or_else(|| "\u{0}computed".to_string()));
            Some(parts)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
