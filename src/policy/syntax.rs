//! Reading the parsed policy (`vm_gate`, `recursion`, `definitions`): the revision's named
//! rules, constants, iteration, patterns, dotted names and a visitor.

use std::collections::HashSet;

use regorus::unstable::{AssignOp, Expr, Literal, Module, Query, Ref, Rule, RuleHead, Span};
use regorus::{Engine, PolicyPackageComponents};

/// `file:line` of a span, to start an error or a reason with.
pub(super) fn place(span: &Span) -> String {
    format!("{}:{}", span.source.get_path(), span.line)
}

/// The revision's packages, in the order of `engine.get_modules()`.
pub(super) fn packages(engine: &mut Engine) -> Result<Vec<PolicyPackageComponents>, String> {
    engine
        .get_policy_package_components()
        .map_err(|e| format!("its packages could not be read: {e}"))
}

/// Every rule named by one plain name, in module order, with its module's package and its
/// path (the package's components and the name).
pub(super) fn named_rules<'a>(
    modules: &'a [Ref<Module>],
    packages: &'a [PolicyPackageComponents],
) -> impl Iterator<Item = (&'a [String], &'a Ref<Rule>, Vec<String>)> + 'a {
    named_rules_by_module(modules, packages).map(|(_, pkg, r, path)| (pkg, r, path))
}

/// [`named_rules`], each with the module it is written in.
pub(super) fn named_rules_by_module<'a>(
    modules: &'a [Ref<Module>],
    packages: &'a [PolicyPackageComponents],
) -> impl Iterator<Item = (&'a Module, &'a [String], &'a Ref<Rule>, Vec<String>)> + 'a {
    modules.iter().zip(packages).flat_map(|(m, pkg)| {
        m.policy.iter().filter_map(move |r| match head_ref(r) {
            Expr::Var { span, .. } => {
                let mut path = pkg.components.clone();
                path.push(span.text().to_string());
                Some((&**m, pkg.components.as_slice(), r, path))
            }
            _ => None,
        })
    })
}

/// A module's import aliases: the name each import binds (its `as` name, or the last part
/// of its path: `v1` for `import rego.v1`) and the path it stands for. Both engines read a
/// bare alias as that path.
pub(super) fn import_aliases(m: &Module) -> Vec<(String, &Expr)> {
    m.imports
        .iter()
        .filter_map(|i| {
            let name = match (&i.r#as, &*i.refr) {
                (Some(a), _) => a.text().to_string(),
                (None, Expr::RefDot { field, .. }) => field.0.text().to_string(),
                (None, Expr::Var { span, .. }) => span.text().to_string(),
                _ => return None,
            };
            Some((name, &*i.refr))
        })
        .collect()
}

pub(super) fn is_wildcard(e: &Expr) -> bool {
    matches!(e, Expr::Var { span, .. } if span.text() == "_")
}

/// Whether a pattern (a function parameter) binds a variable named `input` or `data`.
pub(super) fn names_root(e: &Expr) -> bool {
    let mut found = false;
    children(e, &mut |c| {
        found |= matches!(c, Expr::Var { span, .. } if matches!(span.text(), "input" | "data"));
        !found
    });
    found
}

pub(super) fn rooted_at_data(e: &Expr) -> bool {
    root_name(e) == Some("data")
}

/// The variable a reference starts from (`rego` in `rego.v1`, `data` in `data.x[y]`).
pub(super) fn root_name(e: &Expr) -> Option<&str> {
    match e {
        Expr::Var { span, .. } => Some(span.text()),
        Expr::RefDot { refr, .. } | Expr::RefBrack { refr, .. } => root_name(refr),
        _ => None,
    }
}

/// An array, set or object literal (as a pattern, the VM matches it loosely: `{}` matches any
/// value, `[]` an empty object or set, `[a, b]` a set of two).
pub(super) fn composite(e: &Expr) -> bool {
    matches!(
        e,
        Expr::Array { .. } | Expr::Set { .. } | Expr::Object { .. }
    )
}

/// The parts of a dotted name (`f`, `data.pkg.f`, `object.get`), or `None` when it is not one.
/// A `["..."]` index with a quoted string is a part like any other (`data.clawser["lib"].f`
/// is `data.clawser.lib.f`); a raw string (`` [`lib`] ``) is not, as in both engines.
pub(super) fn dotted(e: &Expr) -> Option<Vec<String>> {
    parts(e, true)
}

/// The parts of a name spelled with dots only (`data.clawser.lib`), or `None`.
pub(super) fn plain_dotted(e: &Expr) -> Option<Vec<String>> {
    parts(e, false)
}

fn parts(e: &Expr, quoted_indices: bool) -> Option<Vec<String>> {
    let (refr, part) = match e {
        Expr::Var { span, .. } => return Some(vec![span.text().to_string()]),
        Expr::RefDot { refr, field, .. } => (refr, field.0.text().to_string()),
        Expr::RefBrack { refr, index, .. } if quoted_indices => match &**index {
            Expr::String { value, .. } => (refr, value.as_string().ok()?.to_string()),
            _ => return None,
        },
        _ => return None,
    };
    let mut parts = parts(refr, quoted_indices)?;
    parts.push(part);
    Some(parts)
}

/// The names a query binds itself: `some` variables, `every` variables, the variables of
/// `:=` targets and of either side of `=`, and those of a whole statement's last call
/// argument (an output). Nested queries are not looked into.
pub(super) fn bound_in(q: &Query) -> HashSet<String> {
    let mut bound = HashSet::new();
    let vars_of = |e: &Expr, bound: &mut HashSet<String>| {
        children(e, &mut |c| {
            if let Expr::Var { span, .. } = c {
                bound.insert(span.text().to_string());
            }
            true
        })
    };
    for s in &q.stmts {
        match &s.literal {
            Literal::SomeVars { vars, .. } => {
                bound.extend(vars.iter().map(|v| v.text().to_string()))
            }
            Literal::SomeIn { key, value, .. } => {
                for p in key.iter().chain([value]) {
                    vars_of(p, &mut bound);
                }
            }
            Literal::Every { key, value, .. } => {
                bound.extend(key.iter().chain([value]).map(|v| v.text().to_string()))
            }
            Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => {
                if let Expr::Call { params, .. } = &**expr {
                    if let Some(last) = params.last() {
                        vars_of(last, &mut bound);
                    }
                }
                let mut assigned = Vec::new();
                children(expr, &mut |c| {
                    if let Expr::AssignExpr { op, lhs, rhs, .. } = c {
                        assigned.push(&**lhs);
                        if *op == AssignOp::Eq {
                            assigned.push(&**rhs);
                        }
                    }
                    true
                });
                for a in assigned {
                    vars_of(a, &mut bound);
                }
            }
        }
    }
    bound
}

/// True for literals, and arrays, sets and objects of literals.
pub(super) fn constant(e: &Expr) -> bool {
    match e {
        Expr::String { .. }
        | Expr::RawString { .. }
        | Expr::Number { .. }
        | Expr::Bool { .. }
        | Expr::Null { .. } => true,
        Expr::Array { items, .. } | Expr::Set { items, .. } => items.iter().all(|i| constant(i)),
        Expr::Object { fields, .. } => fields.iter().all(|(_, k, v)| constant(k) && constant(v)),
        _ => false,
    }
}

/// Whether a query iterates: `some`, `every`, or a `[...]` indexed by a variable anywhere in
/// it outside nested comprehensions (which are queries of their own).
pub(super) fn query_iterates(q: &Query) -> bool {
    q.stmts.iter().any(|s| match &s.literal {
        Literal::SomeVars { .. } | Literal::SomeIn { .. } | Literal::Every { .. } => true,
        Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => expr_iterates(expr),
    })
}

pub(super) fn expr_iterates(e: &Expr) -> bool {
    let mut found = false;
    children(e, &mut |c| {
        if let Expr::RefBrack { index, .. } = c {
            found |= has_var(index);
        }
        // Do not descend into comprehensions: their loops are their own.
        !matches!(
            c,
            Expr::ArrayCompr { .. } | Expr::SetCompr { .. } | Expr::ObjectCompr { .. }
        )
    });
    found
}

/// Whether `e` mentions a variable (an index that does, iterates or may).
fn has_var(e: &Expr) -> bool {
    let mut found = false;
    children(e, &mut |c| {
        found |= matches!(c, Expr::Var { .. });
        !found
    });
    found
}

/// Visits `e` and, while `visit` returns true for a node, its children.
pub(super) fn children<'a>(e: &'a Expr, visit: &mut dyn FnMut(&'a Expr) -> bool) {
    if !visit(e) {
        return;
    }
    match e {
        Expr::String { .. }
        | Expr::RawString { .. }
        | Expr::Number { .. }
        | Expr::Bool { .. }
        | Expr::Null { .. }
        | Expr::Var { .. } => {}
        Expr::Array { items, .. } | Expr::Set { items, .. } => {
            items.iter().for_each(|i| children(i, visit))
        }
        Expr::Object { fields, .. } => fields.iter().for_each(|(_, k, v)| {
            children(k, visit);
            children(v, visit);
        }),
        // A comprehension's query is checked by `Gate::query`; its terms here.
        Expr::ArrayCompr { term, .. } | Expr::SetCompr { term, .. } => children(term, visit),
        Expr::ObjectCompr { key, value, .. } => {
            children(key, visit);
            children(value, visit);
        }
        Expr::Call { fcn, params, .. } => {
            children(fcn, visit);
            params.iter().for_each(|p| children(p, visit));
        }
        Expr::UnaryExpr { expr, .. } => children(expr, visit),
        Expr::RefDot { refr, .. } => children(refr, visit),
        Expr::RefBrack { refr, index, .. } => {
            children(refr, visit);
            children(index, visit);
        }
        Expr::BinExpr { lhs, rhs, .. }
        | Expr::BoolExpr { lhs, rhs, .. }
        | Expr::ArithExpr { lhs, rhs, .. }
        | Expr::AssignExpr { lhs, rhs, .. } => {
            children(lhs, visit);
            children(rhs, visit);
        }
        Expr::Membership {
            key,
            value,
            collection,
            ..
        } => {
            if let Some(k) = key {
                children(k, visit);
            }
            children(value, visit);
            children(collection, visit);
        }
    }
}

/// The expression naming a rule (`p`, `p.q`, `p[x]`).
pub(super) fn head_ref(r: &Rule) -> &Expr {
    match r {
        Rule::Spec { head, .. } => match head {
            RuleHead::Compr { refr, .. }
            | RuleHead::Set { refr, .. }
            | RuleHead::Func { refr, .. } => refr,
        },
        Rule::Default { refr, .. } => refr,
    }
}

/// Whether a comprehension's query begins with `some .. in` over a collection that nothing in
/// the query binds. Both engines schedule statements by what they bind: a collection bound
/// later in the query (`some x in xs; xs = input.a`) moves that binding, and conditions with
/// it, ahead of the loop, where a failure leaves the VM's comprehension open.
pub(super) fn begins_with_a_loop(q: &Query) -> bool {
    let Some(Literal::SomeIn { collection, .. }) = q.stmts.first().map(|s| &s.literal) else {
        return false;
    };
    let bound = bound_in(q);
    let mut uses_bound = false;
    children(collection, &mut |c| {
        uses_bound |= matches!(c, Expr::Var { span, .. } if bound.contains(span.text()));
        !uses_bound
    });
    !uses_bound
}
