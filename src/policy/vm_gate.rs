//! Which policy revisions the regorus VM may evaluate.
//!
//! Two lists decide: `allow.rs`, the constructs the VM may run at all (with the allow-list
//! on, as always outside tests), and this module, the combinations of them and the names
//! (`names.rs`) the VM still evaluates or resolves differently.
//!
//! The vendored VM (`vendor/regorus`) fails closed on errors and agrees with the interpreter
//! on the constructs `differential.rs` checks. Some constructs it still evaluates differently
//! from the interpreter, in ways that could let a request through that the interpreter would
//! refuse. A revision that uses any of them is evaluated by the interpreter instead (slower,
//! same decisions as before), and the reason is logged with `file:line`:
//!
//! - a complete rule or function whose value is not a constant and whose body iterates: the
//!   interpreter reports several values as an error, the VM keeps the last one;
//! - a rule name with dots or `[...]` (partial object rules `p[k] := v`, ref heads): the VM
//!   keeps the last of conflicting keys, and reads a dotted prefix as one rule;
//! - a `default` whose value is not a constant (the VM computes it once, without the input),
//!   and default functions (the VM never applies them);
//! - a rule head that iterates (`p contains input.xs[_]`): errors the interpreter reports
//!   (several values, indexing a non-collection) the VM does not;
//! - a comprehension evaluated inside an iteration (a rule body, comprehension or `every`
//!   that iterates, or a comprehension whose own term iterates): the VM can send a condition
//!   that fails inside it to the enclosing loop instead;
//! - `not` over an assignment or pattern match, over a comprehension, or over a call with an
//!   output argument (more arguments than the callee takes, or a last argument that is an
//!   array or object): inside `not` the VM drops pattern comparisons, and an unbound output
//!   ends the body (the interpreter reports an unsafe variable);
//! - `k, v in collection` (membership of a key-value pair): the VM ignores the key;
//! - an object literal with a computed key: the VM inserts computed keys after literal ones,
//!   so an agent-chosen key can overwrite a field the policy set;
//! - a `data` reference that does not name a rule (a whole package or the start of one, or a
//!   computed path): the VM keeps undefined rules as keys of the package object; and one with a computed or
//!   number index anywhere: the interpreter tries a number as a string key there
//!   (`data.clawser.lib.ports[22]` finds `"22"`), the VM does not;
//! - `some x` declarations (the VM can read `x` as a rule of the same name), and imports other
//!   than `rego.v1` and `future.keywords`;
//! - a function with more than 8 parameters: the VM passes only the first 8 arguments;
//! - `_` as a call argument or assigned (`f(x, _)`, `_ := input.missing`): the VM does not
//!   check that the value exists;
//! - a function parameter or `every` variable named `input` or `data`: the VM reads the
//!   global document instead of the local;
//! - a comprehension that does not begin with `some .. in` over a collection bound outside
//!   it (the engines schedule a binding of the collection ahead of the loop): when a
//!   condition before its first loop fails, the VM leaves the comprehension open, and a
//!   later failure in the same rule resumes the earlier definition with the wrong values (an
//!   agent's value can end up in an allow-list);
//! - a function with `else`: the VM takes the `else` when the body succeeds but its value is
//!   undefined;
//! - array, set or object patterns (function parameters, `some .. in`, `:=` and `=`, the
//!   output argument of a call): the VM matches them loosely (`{}` matches any value, `[]` an
//!   empty object);
//! - a call of a rule that is not a function (`max := 1000` then `max(xs)`,
//!   `allowed_hosts(h)` for `allowed_hosts[h]`): the VM evaluates the rule and ignores the
//!   arguments (names spelled with `["..."]`, `data.clawser["lib"].f`, are read as dotted);
//! - a package with a part named like a builtin or a builtin namespace (`clawser.regex`):
//!   a call `regex.match` in package `clawser` finds a function or default rule
//!   `clawser.regex.match` first in the interpreter, any rule of that name in the VM;
//! - a rule whose path is also a package's, or the start of one (the interpreter reads the
//!   package, the VM the rule), and a name with both function and other definitions (the
//!   interpreter calls only the functions, the VM every definition);
//! - a call with fewer arguments than the function takes (the VM leaves the missing ones
//!   undefined), or with more, except an output argument of a whole statement
//!   (`concat("/", parts, repo)`): inside an expression the VM compares or binds the extra
//!   one where the interpreter reports an error.
//!
//! "Iterates" is read conservatively: `some`, `every`, or any `[...]` whose index mentions a
//! variable. Every rule is checked, `test_*` rules too (a decision may refer to them).

use regorus::unstable::{AssignOp, Expr, Literal, Module, Query, Rule, RuleHead, Span, BUILTINS};
use regorus::Engine;

mod allow;
mod names;

use names::{rule_path, Names};

use super::syntax::{
    begins_with_a_loop, children, composite, constant, dotted, expr_iterates, is_wildcard,
    names_root, packages, place, query_iterates, rooted_at_data,
};

/// Why the VM must not evaluate this revision, as `file:line: reason`; `None` when it may.
/// With `allow_list`, a construct not on the allow-list (`allow.rs`) is a reason too.
pub fn vm_unsupported(engine: &mut Engine, allow_list: bool) -> Option<String> {
    let packages = match packages(engine) {
        Ok(p) => p,
        Err(e) => return Some(e),
    };
    let modules = engine.get_modules();
    let names = Names::of(modules, &packages);
    if let Some(why) = names.collision(modules, &packages) {
        return Some(why);
    }
    modules.iter().zip(&packages).find_map(|(m, pkg)| {
        allow_list
            .then(|| allow::outside(m, &names, &pkg.components))
            .flatten()
            .or_else(|| {
                Gate {
                    names: &names,
                    package: &pkg.components,
                }
                .module(m)
            })
    })
}

fn at(span: &Span, reason: &str) -> String {
    format!("{}: {reason}", place(span))
}

/// Checks one module (of package `package`).
struct Gate<'a> {
    names: &'a Names,
    package: &'a [String],
}

impl Gate<'_> {
    fn module(&self, m: &Module) -> Option<String> {
        for i in &m.imports {
            let path = i.refr.span().text();
            if path != "rego.v1" && !path.starts_with("future.keywords") {
                return Some(at(&i.span, "an import other than rego.v1"));
            }
        }
        m.policy.iter().find_map(|r| self.rule(r))
    }

    fn rule(&self, r: &Rule) -> Option<String> {
        let (span, head, bodies) = match r {
            Rule::Default {
                span, value, args, ..
            } => {
                return if !args.is_empty() {
                    Some(at(span, "a default function"))
                } else if !constant(value) {
                    Some(at(span, "a default value that is not a constant"))
                } else {
                    None
                };
            }
            Rule::Spec { span, head, bodies } => (span, head, bodies),
        };
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
        if let RuleHead::Func { args, .. } = head {
            if args.len() > 8 {
                return Some(at(span, "a function with more than 8 parameters"));
            }
            if args.iter().any(|a| names_root(a)) {
                return Some(at(span, "a function parameter named input or data"));
            }
            if args.iter().any(|a| composite(a)) {
                return Some(at(
                    span,
                    "a function parameter that is an array, set or object pattern",
                ));
            }
            if bodies.iter().any(|b| b.is_else) {
                return Some(at(span, "a function with `else`"));
            }
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
        head_exprs
            .into_iter()
            .find_map(|e| self.expr(e, iterates))
            .or_else(|| bodies.iter().find_map(|b| self.query(&b.query, false)))
    }

    /// Checks a query; `in_loop` when an enclosing query iterates.
    fn query(&self, q: &Query, in_loop: bool) -> Option<String> {
        let in_loop = in_loop || query_iterates(q);
        q.stmts.iter().find_map(|s| match &s.literal {
            Literal::SomeVars { span, .. } => Some(at(span, "a `some x` declaration")),
            Literal::SomeIn {
                span, key, value, ..
            } if key.iter().chain([value]).any(|p| composite(p)) => Some(at(
                span,
                "a `some .. in` pattern that is an array, set or object",
            )),
            Literal::SomeIn {
                key,
                value,
                collection,
                ..
            } => key
                .iter()
                .chain([value, collection])
                .find_map(|e| self.expr(e, in_loop)),
            Literal::NotExpr { span, expr: e } if self.not_unsupported(e) => Some(at(
                span,
                "`not` over a pattern match, a comprehension or an output argument",
            )),
            Literal::Expr { expr: e, .. } => match &**e {
                // A whole statement `f(x, out)`: one argument more than `f` takes is its
                // output, which both engines bind alike; its arguments are checked.
                Expr::Call { fcn, params, .. }
                    if self
                        .takes(fcn)
                        .is_some_and(|(min, max)| min == max && params.len() == max + 1)
                        && !params.iter().any(|p| is_wildcard(p))
                        // A pattern as the output is matched loosely by the VM.
                        && params.last().is_some_and(|p| matches!(&**p, Expr::Var { .. })) =>
                {
                    params.iter().find_map(|p| self.expr(p, in_loop))
                }
                _ => self.expr(e, in_loop),
            },
            Literal::NotExpr { expr: e, .. } => self.expr(e, in_loop),
            Literal::Every {
                span,
                key,
                value,
                domain,
                query: q,
            } => {
                if key
                    .iter()
                    .chain([value])
                    .any(|v| matches!(v.text(), "input" | "data"))
                {
                    return Some(at(span, "an `every` variable named input or data"));
                }
                self.expr(domain, in_loop).or_else(|| self.query(q, true))
            }
        })
    }

    /// Checks an expression and everything in it; `in_loop` when it is evaluated inside an
    /// iteration.
    fn expr(&self, e: &Expr, in_loop: bool) -> Option<String> {
        let mut why = None;
        children(e, &mut |c| {
            if why.is_some() {
                return false;
            }
            let (span, query, terms): (&Span, &Query, Vec<&Expr>) = match c {
                Expr::ArrayCompr {
                    span, term, query, ..
                }
                | Expr::SetCompr {
                    span, term, query, ..
                } => (span, query, vec![&**term]),
                Expr::ObjectCompr {
                    span,
                    key,
                    value,
                    query,
                    ..
                } => (span, query, vec![&**key, &**value]),
                Expr::Membership {
                    span, key: Some(_), ..
                } => {
                    why = Some(at(span, "`k, v in collection` (a key-value membership)"));
                    return false;
                }
                Expr::Call { span, params, .. } if params.iter().any(|p| is_wildcard(p)) => {
                    why = Some(at(
                        span,
                        "a call with `_` as an argument (an output nothing checks)",
                    ));
                    return false;
                }
                Expr::AssignExpr { span, lhs, .. } if is_wildcard(lhs) => {
                    why = Some(at(span, "an assignment to `_`"));
                    return false;
                }
                Expr::AssignExpr {
                    span, op, lhs, rhs, ..
                } if composite(lhs) || (*op == AssignOp::Eq && composite(rhs)) => {
                    why = Some(at(
                        span,
                        "a pattern match against an array, set or object literal",
                    ));
                    return false;
                }
                Expr::Call { span, fcn, .. } if self.calls_a_rule(fcn) => {
                    why = Some(at(span, "a call of a rule that is not a function"));
                    return false;
                }
                Expr::Call {
                    span, fcn, params, ..
                } if self
                    .takes(fcn)
                    .is_some_and(|(min, max)| params.len() < min || params.len() > max) =>
                {
                    why = Some(at(
                        span,
                        "a call with more or fewer arguments than the function takes",
                    ));
                    return false;
                }
                Expr::Object { span, fields, .. }
                    if fields.iter().any(|(_, k, _)| !constant(k)) =>
                {
                    why = Some(at(span, "an object literal with a computed key"));
                    return false;
                }
                Expr::Var { span, .. }
                | Expr::RefDot { span, .. }
                | Expr::RefBrack { span, .. }
                    if rooted_at_data(c) =>
                {
                    why = self.data_ref(c, span);
                    return false;
                }
                _ => return true,
            };
            why = if in_loop {
                Some(at(span, "a comprehension inside an iteration"))
            } else if !begins_with_a_loop(query) {
                Some(at(
                    span,
                    "a comprehension that does not begin with `some .. in` over a collection bound outside it",
                ))
            } else {
                let inner = query_iterates(query) || terms.iter().any(|t| expr_iterates(t));
                self.query(query, false)
                    .or_else(|| terms.iter().find_map(|t| self.expr(t, inner)))
            };
            false
        });
        why
    }

    /// Whether a call names a rule that is not a function (the VM evaluates the rule and
    /// ignores the arguments; the interpreter calls the builtin of that name, or fails): by
    /// its name in this package, by a `data.` path, or by a dotted name whose first part is a
    /// rule of this package (a rule `object` and a call `object.get(...)`).
    fn calls_a_rule(&self, fcn: &Expr) -> bool {
        let Some(parts) = dotted(fcn) else {
            return false;
        };
        match rule_path(self.package, &parts) {
            Some(path) => self.names.is_rule(&path) && !self.names.functions.contains_key(&path),
            None => parts.first().is_some_and(|root| {
                rule_path(self.package, std::slice::from_ref(root))
                    .is_some_and(|path| self.names.is_rule(&path))
            }),
        }
    }

    /// The fewest and most arguments a call's callee takes: a function of this revision (by
    /// its name in this package or a `data.` path), else a builtin; `None` when it is neither.
    fn takes(&self, fcn: &Expr) -> Option<(usize, usize)> {
        let parts = dotted(fcn)?;
        if let Some(takes) =
            rule_path(self.package, &parts).and_then(|path| self.names.functions.get(&path))
        {
            return Some(*takes);
        }
        BUILTINS.get(parts.join(".").as_str()).map(|b| {
            let n = usize::from(b.1);
            (n, n)
        })
    }

    /// `not` over something whose pattern comparisons or output bindings the VM handles
    /// differently inside `not`: an assignment or pattern match, a comprehension, or a call
    /// with an output argument (more arguments than the callee takes, or a last argument that
    /// is an array or object pattern).
    fn not_unsupported(&self, e: &Expr) -> bool {
        let mut found = false;
        children(e, &mut |c| {
            found |= match c {
                Expr::AssignExpr { .. }
                | Expr::ArrayCompr { .. }
                | Expr::SetCompr { .. }
                | Expr::ObjectCompr { .. } => true,
                Expr::Call { fcn, params, .. } => {
                    self.takes(fcn).is_some_and(|(_, max)| params.len() > max)
                        || params.last().is_some_and(|p| {
                            matches!(&**p, Expr::Array { .. } | Expr::Object { .. })
                        })
                }
                _ => false,
            };
            !found
        });
        found
    }

    /// A reference rooted at `data` must name a rule, or a path inside a package that names no
    /// rule (undefined in both engines), by fixed parts only, after the rule too: for a
    /// computed or number index there the interpreter tries a number as a string key
    /// (`data.clawser.lib.ports[22]` finds `"22"`) and the VM does not (thirteenth review).
    fn data_ref(&self, e: &Expr, span: &Span) -> Option<String> {
        // Fixed parts are dots and quoted strings (`dotted`): both engines read a raw string
        // (`x[`a`]`) as a computed index, and the interpreter then evaluates the whole prefix
        // (twelfth review).
        let Some(parts) = dotted(e) else {
            return Some(at(
                span,
                "a computed or number index on a `data` path (bind the rule to a local first)",
            ));
        };
        let mut path = Vec::new();
        let mut named = false;
        // After the root, `data`.
        for c in parts.iter().skip(1) {
            path.push(c.clone());
            if self.names.is_rule(&path) {
                named = true;
                break;
            }
        }
        // Neither a package nor the start of one: the VM would build a package object
        // with undefined rules as keys.
        let missing_rule = !self.names.packages.iter().any(|p| p.starts_with(&path))
            && (1..path.len()).any(|n| {
                path.get(..n)
                    .is_some_and(|p| self.names.packages.contains(p))
            });
        (!named && !missing_rule).then(|| {
            at(
                span,
                "a `data` reference that does not name a rule (a package as a whole, or a computed path)",
            )
        })
    }
}
