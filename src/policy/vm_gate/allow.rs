//! The constructs the VM may evaluate: an allow-list.
//!
//! The gate in `vm_gate.rs` lists what the VM evaluates differently from the interpreter;
//! every broad review of the VM found more. This list names instead what the VM may run: the
//! constructs of the shipped pack and a few close relatives, which a review generated
//! thousands of policies from and found no case where the VM allows what the interpreter
//! refuses. A revision with anything else is evaluated by the interpreter (same decisions,
//! slower), and `engine_note` says which construct, with `file:line`. The gate's own checks,
//! on combinations of these constructs, still apply on top.
//!
//! Allowed:
//! - imports of `rego.v1` (and `future.keywords`, which changes nothing in Rego v1);
//! - package names and `data` paths to rules spelled with dots (after the rule, fixed parts
//!   only: `vm_gate.rs` refuses a computed index on a `data` path; bind the rule to a local
//!   to index it);
//! - rules named by one plain name (not `_`): complete rules (`p := v if`, `p if`, with `else`),
//!   partial set rules (`p contains v if`), functions whose parameters are plain names,
//!   `default p := constant`; heads assigned with `:=`;
//! - statements: an expression, `not` an expression, `some x in xs` (no key), `every x in xs`
//!   (no key), each without `with`;
//! - `test_*` rules are not checked, and nothing else may refer to them: the VM runs only
//!   what the decision refers to;
//! - expressions: literals, names, `.field` and `[index]` references, arrays, sets, objects,
//!   array and set comprehensions, `:=`, `==` `!=` `<` `<=` `>` `>=`, `+` `-`, set union `|`,
//!   `x in xs`, and calls of the revision's own functions or of the builtins in `BUILTINS`,
//!   with as many arguments as they take.
//!
//! (`__target__ := "..."` is not a rule: the parser reads it, and Clawser, which compiles for
//! no target, ignores it.)
//!
//! Left to the interpreter, among others: unification `=`, object comprehensions,
//! `some k, v in`, `every k, v in`, unary minus, `*` `/` `%`, set intersection `&`, functions
//! with literal parameters, a rule or function named like a builtin, output arguments
//! (`concat("/", parts, out)`), and every other builtin.

use regorus::unstable::{
    ArithOp, AssignOp, BinOp, Expr, Literal, Module, Query, Rule, RuleHead, Span,
};

use super::super::syntax::{dotted, place, plain_dotted};
use super::names::{named_like_a_builtin, rule_path, Names};

/// The builtins the VM may call: the shipped pack's, and pure string, type and collection
/// builtins like them (a builtin is the same Rust function in both engines; what differs is
/// how the VM passes arguments and errors, which the reviews exercised with these).
pub(super) const BUILTINS: &[&str] = &[
    "array.concat",
    "concat",
    "contains",
    "count",
    "endswith",
    "indexof",
    "is_array",
    "is_boolean",
    "is_null",
    "is_number",
    "is_object",
    "is_set",
    "is_string",
    "lower",
    "object.get",
    "object.keys",
    "object.remove",
    "object.union",
    "regex.match",
    "replace",
    "sort",
    "split",
    "sprintf",
    "startswith",
    "to_number",
    "trim",
    "trim_left",
    "trim_prefix",
    "trim_right",
    "trim_space",
    "trim_suffix",
    "upper",
];

fn at(span: &Span, what: &str) -> String {
    format!(
        "{}: {what}, which is not on the VM's list (vm_gate/allow.rs)",
        place(span)
    )
}

/// The first construct of module `m` (of package `package`) that is not on the list.
pub(super) fn outside(m: &Module, names: &Names, package: &[String]) -> Option<String> {
    for i in &m.imports {
        let path = i.refr.span().text();
        if i.r#as.is_some() || (path != "rego.v1" && !path.starts_with("future.keywords")) {
            return Some(at(&i.span, "an import other than rego.v1"));
        }
    }
    if plain_dotted(&m.package.refr).is_none() {
        return Some(at(
            m.package.refr.span(),
            "a package name spelled with [...]",
        ));
    }
    let list = List { names, package };
    m.policy
        .iter()
        // Nothing else may refer to a test rule (`List::name`), so the VM never runs one.
        .filter(|r| !rule_name(r).is_some_and(|n| n.starts_with("test_")))
        .find_map(|r| list.rule(r))
}

fn rule_name(r: &Rule) -> Option<&str> {
    match super::super::syntax::head_ref(r) {
        Expr::Var { span, .. } => Some(span.text()),
        _ => None,
    }
}

struct List<'a> {
    names: &'a Names,
    package: &'a [String],
}

impl List<'_> {
    fn rule(&self, r: &Rule) -> Option<String> {
        let Some(name) = rule_name(r) else {
            return Some(at(r.span(), "a rule name with dots or [...]"));
        };
        if name == "_" {
            return Some(at(r.span(), "a rule named `_`"));
        }
        if named_like_a_builtin(name) {
            return Some(at(r.span(), "a rule or function named like a builtin"));
        }
        match r {
            Rule::Default {
                span,
                op,
                value,
                args,
                ..
            } => {
                if !args.is_empty() {
                    return Some(at(span, "a default function"));
                }
                if *op != AssignOp::ColEq {
                    return Some(at(span, "a default assigned with `=`"));
                }
                self.expr(value)
            }
            Rule::Spec { span, head, bodies } => {
                let value = match head {
                    RuleHead::Compr { assign, .. } => assign.as_ref(),
                    RuleHead::Func { args, assign, .. } => {
                        if let Some(a) = args.iter().find(|a| !matches!(&***a, Expr::Var { .. })) {
                            return Some(at(a.span(), "a function parameter that is not a name"));
                        }
                        assign.as_ref()
                    }
                    RuleHead::Set { key: None, .. } => {
                        return Some(at(span, "a partial set rule without a value"));
                    }
                    RuleHead::Set { key: Some(k), .. } => {
                        return self
                            .expr(k)
                            .or_else(|| bodies.iter().find_map(|b| self.body(b)))
                    }
                };
                if let Some(a) = value {
                    if a.op != AssignOp::ColEq {
                        return Some(at(&a.span, "a rule value assigned with `=`"));
                    }
                    if let Some(why) = self.expr(&a.value) {
                        return Some(why);
                    }
                }
                bodies.iter().find_map(|b| self.body(b))
            }
        }
    }

    fn body(&self, b: &regorus::unstable::RuleBody) -> Option<String> {
        if let Some(a) = &b.assign {
            if a.op != AssignOp::ColEq {
                return Some(at(&a.span, "a rule value assigned with `=`"));
            }
            if let Some(why) = self.expr(&a.value) {
                return Some(why);
            }
        }
        self.query(&b.query)
    }

    fn query(&self, q: &Query) -> Option<String> {
        q.stmts.iter().find_map(|s| {
            if let Some(w) = s.with_mods.first() {
                return Some(at(&w.span, "`with` outside a test_ rule"));
            }
            match &s.literal {
                Literal::SomeVars { span, .. } => Some(at(span, "a `some x` declaration")),
                Literal::SomeIn {
                    span, key: Some(_), ..
                } => Some(at(span, "`some k, v in` (a key and a value)")),
                Literal::SomeIn {
                    value, collection, ..
                } => self.pattern(value).or_else(|| self.expr(collection)),
                Literal::Every {
                    span, key: Some(_), ..
                } => Some(at(span, "`every k, v in` (a key and a value)")),
                Literal::Every { domain, query, .. } => {
                    self.expr(domain).or_else(|| self.query(query))
                }
                Literal::Expr { expr, .. } | Literal::NotExpr { expr, .. } => self.expr(expr),
            }
        })
    }

    /// The variable of `some x in`: a plain name.
    fn pattern(&self, e: &Expr) -> Option<String> {
        match e {
            Expr::Var { .. } => self.expr(e),
            _ => Some(at(e.span(), "a `some .. in` pattern that is not a name")),
        }
    }

    fn expr(&self, e: &Expr) -> Option<String> {
        match e {
            Expr::String { .. }
            | Expr::RawString { .. }
            | Expr::Number { .. }
            | Expr::Bool { .. }
            | Expr::Null { .. } => None,
            Expr::Var { span, .. } => self.name(span, span.text()),
            Expr::RefDot {
                span, refr, field, ..
            } => self.name(span, field.0.text()).or_else(|| self.expr(refr)),
            Expr::RefBrack {
                span, refr, index, ..
            } => {
                if let Some(why) = self.data_path(span, refr) {
                    return Some(why);
                }
                if let Expr::String { value, span, .. } | Expr::RawString { value, span, .. } =
                    &**index
                {
                    if let Some(why) = value.as_string().ok().and_then(|s| self.name(span, s)) {
                        return Some(why);
                    }
                }
                self.expr(refr).or_else(|| self.expr(index))
            }
            Expr::Array { items, .. } | Expr::Set { items, .. } => {
                items.iter().find_map(|i| self.expr(i))
            }
            Expr::Object { fields, .. } => fields
                .iter()
                .find_map(|(_, k, v)| self.expr(k).or_else(|| self.expr(v))),
            Expr::ArrayCompr { term, query, .. } | Expr::SetCompr { term, query, .. } => {
                self.query(query).or_else(|| self.expr(term))
            }
            Expr::ObjectCompr { span, .. } => Some(at(span, "an object comprehension")),
            Expr::Call {
                span, fcn, params, ..
            } => self
                .call(span, fcn, params.len())
                .or_else(|| params.iter().find_map(|p| self.expr(p))),
            Expr::UnaryExpr { span, .. } => Some(at(span, "unary minus")),
            Expr::BinExpr {
                span, op, lhs, rhs, ..
            } => match op {
                BinOp::Union => self.expr(lhs).or_else(|| self.expr(rhs)),
                BinOp::Intersection => Some(at(span, "set intersection `&`")),
            },
            Expr::BoolExpr { lhs, rhs, .. } => self.expr(lhs).or_else(|| self.expr(rhs)),
            Expr::ArithExpr {
                span, op, lhs, rhs, ..
            } => match op {
                ArithOp::Add | ArithOp::Sub => self.expr(lhs).or_else(|| self.expr(rhs)),
                ArithOp::Mul | ArithOp::Div | ArithOp::Mod => Some(at(span, "`*`, `/` or `%`")),
            },
            Expr::AssignExpr {
                span, op, lhs, rhs, ..
            } => match op {
                AssignOp::ColEq => self.expr(lhs).or_else(|| self.expr(rhs)),
                AssignOp::Eq => Some(at(span, "unification `=`")),
            },
            Expr::Membership {
                span,
                key,
                value,
                collection,
                ..
            } => match key {
                Some(_) => Some(at(span, "`k, v in collection`")),
                None => self.expr(value).or_else(|| self.expr(collection)),
            },
        }
    }

    /// `refr[...]` where `refr` is a `data` path that names no rule yet: the path to a rule
    /// must be spelled with dots (the engines read `[...]` spellings of it differently: a raw
    /// string as a computed index, for which the interpreter evaluates the whole prefix);
    /// after the rule, `vm_gate.rs` wants fixed parts only.
    fn data_path(&self, span: &Span, refr: &Expr) -> Option<String> {
        let parts = plain_dotted(refr)?;
        let (root, path) = parts.split_first()?;
        let names_a_rule =
            (1..=path.len()).any(|n| path.get(..n).is_some_and(|p| self.names.is_rule(p)));
        (root == "data" && !names_a_rule)
            .then(|| at(span, "a `data` path to a rule spelled with [...]"))
    }

    /// A name in a reference: none may name a test rule (the allow-list does not check them,
    /// and a decision that evaluated one would evaluate its `with`).
    fn name(&self, span: &Span, name: &str) -> Option<String> {
        name.starts_with("test_")
            .then(|| at(span, "a reference to a test_ rule outside test_ rules"))
    }

    /// A call's callee: a function of this revision (by its name in this package or a
    /// `data.` path), or a builtin on the list; with as many arguments as it takes (no output
    /// argument).
    fn call(&self, span: &Span, fcn: &Expr, args: usize) -> Option<String> {
        let Some(parts) = dotted(fcn) else {
            return Some(at(span, "a call of a computed function"));
        };
        if parts.first().is_some_and(|p| p == "data") && plain_dotted(fcn).is_none() {
            return Some(at(span, "a `data` path to a rule spelled with [...]"));
        }
        let path = rule_path(self.package, &parts);
        let name = parts.join(".");
        let takes = match path.and_then(|p| self.names.functions.get(&p)) {
            Some(&(min, max)) => {
                if let Some(why) = parts.iter().find_map(|p| self.name(span, p)) {
                    return Some(why);
                }
                min..=max
            }
            None if BUILTINS.contains(&name.as_str()) => {
                match regorus::unstable::BUILTINS.get(name.as_str()) {
                    Some(b) => usize::from(b.1)..=usize::from(b.1),
                    None => return Some(at(span, &format!("a call of `{name}`"))),
                }
            }
            None => return Some(at(span, &format!("a call of `{name}`"))),
        };
        (!takes.contains(&args)).then(|| {
            at(
                span,
                "a call with an output argument, or with fewer arguments than the function takes",
            )
        })
    }
}

#[cfg(test)]
mod tests;
