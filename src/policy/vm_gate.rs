//! Which policy revisions the regorus VM may evaluate.
//!
//! The vendored VM (`vendor/regorus`) fails closed on errors and agrees with the interpreter
//! on the constructs `differential.rs` checks. A few constructs it still evaluates differently
//! from the interpreter, in ways that could let a request through that the interpreter would
//! refuse. A revision that uses any of them is evaluated by the interpreter instead (slower,
//! same decisions as before), and the reason is logged with `file:line`:
//!
//! - a complete rule or function whose value is not a constant and whose body iterates: the
//!   interpreter reports several values as an error, the VM keeps the last one;
//! - a rule head with a `[...]` (partial object rules, `p[k] := v`): conflicting keys are an
//!   error in the interpreter and last-one-wins in the VM (see also dotted names below);
//! - a `default` whose value is not a constant: the VM computes it once, without the input;
//! - a comprehension evaluated inside an iteration (a rule body, comprehension or `every`
//!   that iterates): the VM can send a condition that fails inside the comprehension to the
//!   enclosing loop instead;
//! - `k, v in collection` (membership of a key-value pair): the VM ignores the key;
//! - a default function (`default f(_) := v`): the VM never applies it;
//! - a rule head that iterates (`p contains input.xs[_]`, `v := input.xs[_]`): errors the
//!   interpreter reports (several values, indexing a non-collection) the VM does not;
//! - a rule name with dots or `[...]` (ref heads): the VM reads a prefix as one rule;
//! - `not` over an assignment or pattern match (`not [_, "read"] = x`): the VM drops the
//!   element comparisons.
//!
//! "Iterates" is read conservatively: `some`, `every`, or any `[...]` whose index mentions a
//! variable. Every rule is checked, `test_*` rules too (a decision may refer to them).

use regorus::unstable::{Expr, Literal, Module, Query, Rule, RuleHead};
use regorus::Engine;

/// Why the VM must not evaluate this revision, as `file:line: reason`; `None` when it may.
pub fn vm_unsupported(engine: &mut Engine) -> Option<String> {
    engine.get_modules().iter().find_map(|m| module(m))
}

fn module(m: &Module) -> Option<String> {
    m.policy.iter().find_map(|r| rule(r))
}

fn at(span: &regorus::unstable::Span, reason: &str) -> String {
    format!("{}:{}: {reason}", span.source.get_path(), span.line)
}

fn rule(r: &Rule) -> Option<String> {
    match r {
        Rule::Default {
            span, value, args, ..
        } => {
            if !args.is_empty() {
                Some(at(span, "a default function"))
            } else if !constant(value) {
                Some(at(span, "a default value that is not a constant"))
            } else {
                None
            }
        }
        Rule::Spec { span, head, bodies } => {
            let (refr, value, key) = match head {
                RuleHead::Compr { refr, assign, .. } | RuleHead::Func { refr, assign, .. } => {
                    (refr, assign.as_ref().map(|a| &a.value), None)
                }
                RuleHead::Set { refr, key, .. } => (refr, None, key.as_ref()),
            };
            if !matches!(&**refr, Expr::Var { .. }) {
                return Some(at(
                    span,
                    "a rule name with dots or [...] (a partial object rule or a ref head)",
                ));
            }
            let complete = !matches!(head, RuleHead::Set { .. });
            let mut values: Vec<&Expr> = value.map(|v| &**v).into_iter().collect();
            values.extend(
                bodies
                    .iter()
                    .filter_map(|b| b.assign.as_ref().map(|a| &*a.value)),
            );
            let iterates = bodies.iter().any(|b| query_iterates(&b.query));
            if complete && iterates && values.iter().any(|v| !constant(v)) {
                return Some(at(
                    span,
                    "a complete rule or function whose value is not a constant and whose body iterates",
                ));
            }
            let head_exprs: Vec<&Expr> = values.into_iter().chain(key.map(|k| &**k)).collect();
            if head_exprs.iter().any(|e| expr_iterates(e)) {
                return Some(at(span, "a rule head that iterates"));
            }
            for e in head_exprs {
                if let Some(why) = expr(e, iterates) {
                    return Some(why);
                }
            }
            bodies.iter().find_map(|b| query(&b.query, false))
        }
    }
}

/// True for literals, and arrays, sets and objects of literals.
fn constant(e: &Expr) -> bool {
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
fn query_iterates(q: &Query) -> bool {
    q.stmts.iter().any(|s| match &s.literal {
        Literal::SomeVars { .. } | Literal::SomeIn { .. } | Literal::Every { .. } => true,
        Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => expr_iterates(expr),
    })
}

fn expr_iterates(e: &Expr) -> bool {
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

/// Checks a query; `in_loop` when an enclosing query iterates.
fn query(q: &Query, in_loop: bool) -> Option<String> {
    let in_loop = in_loop || query_iterates(q);
    q.stmts.iter().find_map(|s| match &s.literal {
        Literal::SomeVars { .. } => None,
        Literal::SomeIn {
            key,
            value,
            collection,
            ..
        } => key
            .iter()
            .chain([value, collection])
            .find_map(|e| expr(e, in_loop)),
        Literal::NotExpr { span, expr: e } if matches!(&**e, Expr::AssignExpr { .. }) => {
            Some(at(span, "`not` over an assignment or a pattern match"))
        }
        Literal::Expr { expr: e, .. } | Literal::NotExpr { expr: e, .. } => expr(e, in_loop),
        Literal::Every {
            domain, query: q, ..
        } => expr(domain, in_loop).or_else(|| query(q, true)),
    })
}

/// Checks an expression and everything in it; `in_loop` when it is evaluated inside an
/// iteration.
fn expr(e: &Expr, in_loop: bool) -> Option<String> {
    let mut why = None;
    children(e, &mut |c| {
        if why.is_some() {
            return false;
        }
        match c {
            Expr::ArrayCompr {
                span,
                term,
                query: q,
                ..
            }
            | Expr::SetCompr {
                span,
                term,
                query: q,
                ..
            } => {
                why = if in_loop {
                    Some(at(span, "a comprehension inside an iteration"))
                } else {
                    let inner = query_iterates(q);
                    query(q, false).or_else(|| expr(term, inner))
                };
                false
            }
            Expr::ObjectCompr {
                span,
                key,
                value,
                query: q,
                ..
            } => {
                why = if in_loop {
                    Some(at(span, "a comprehension inside an iteration"))
                } else {
                    let inner = query_iterates(q);
                    query(q, false)
                        .or_else(|| expr(key, inner))
                        .or_else(|| expr(value, inner))
                };
                false
            }
            Expr::Membership {
                span, key: Some(_), ..
            } => {
                why = Some(at(span, "`k, v in collection` (a key-value membership)"));
                false
            }
            _ => true,
        }
    });
    why
}

/// Visits `e` and, while `visit` returns true for a node, its children.
fn children(e: &Expr, visit: &mut dyn FnMut(&Expr) -> bool) {
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
        // A comprehension's query is checked by `query`; its terms here.
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
