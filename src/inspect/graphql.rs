//! GraphQL documents, read with Apollo's parser (`apollo-parser`: maintained, error
//! resilient, bounded recursion and token counts), so policies see what a `POST /graphql`
//! asks for: `{"operation": "mutation", "name": "M", "fields": ["mergePullRequest"]}`.
//! A document that does not parse (or is ambiguous) is visible as such (`parsed: false`),
//! and so is a persisted-query hash sent without a document.

use std::collections::{HashMap, HashSet};

use apollo_parser::{cst, Parser};
use serde::Serialize;

/// How deep a document may nest, and how many tokens it may have.
pub const RECURSION_LIMIT: usize = 128;

/// Deepest nesting of fragments (named or inline) read; deeper documents are unreadable.
pub const MAX_FRAGMENT_DEPTH: usize = 64;
pub const TOKEN_LIMIT: usize = 100_000;

/// What a GraphQL request asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GraphqlView {
    /// `query`, `mutation` or `subscription` of the operation that would run.
    pub operation: Option<String>,
    /// Its name, if it has one.
    pub name: Option<String>,
    /// Top-level fields it selects (through fragments too), e.g. `mergePullRequest`.
    pub fields: Vec<String>,
    /// False when there is no document Clawser could read.
    pub parsed: bool,
    /// Why not, when `parsed` is false.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// A persisted-query hash sent without a document (what runs is unknown here).
    pub persisted: bool,
}

fn unreadable(why: &str) -> GraphqlView {
    GraphqlView {
        error: Some(why.to_string()),
        ..GraphqlView::default()
    }
}

/// The view of a GraphQL request body (`body`: the parsed JSON, `None` when the body was not
/// JSON or too large to inspect whole).
pub fn inspect(body: Option<&serde_json::Value>) -> GraphqlView {
    let Some(body) = body else {
        return unreadable("the body is not JSON, or too large to inspect");
    };
    let persisted = body
        .pointer("/extensions/persistedQuery/sha256Hash")
        .is_some();
    let Some(doc) = body.get("query").and_then(|q| q.as_str()) else {
        return GraphqlView {
            persisted,
            error: Some(if persisted {
                "a persisted-query hash without a document".into()
            } else {
                "no query document".into()
            }),
            ..GraphqlView::default()
        };
    };
    let wanted = body.get("operationName").and_then(|n| n.as_str());
    let mut view = document(doc, wanted);
    view.persisted = persisted;
    view
}

/// Reads one document; `wanted` is the request's `operationName`.
pub fn document(text: &str, wanted: Option<&str>) -> GraphqlView {
    let tree = Parser::new(text)
        .recursion_limit(RECURSION_LIMIT)
        .token_limit(TOKEN_LIMIT)
        .parse();
    if let Some(e) = tree.errors().next() {
        return unreadable(&format!("does not parse: {}", e.message()));
    }
    let doc = tree.document();
    let mut ops = Vec::new();
    let mut fragments: HashMap<String, cst::SelectionSet> = HashMap::new();
    for def in doc.definitions() {
        match def {
            cst::Definition::OperationDefinition(op) => ops.push(op),
            cst::Definition::FragmentDefinition(f) => {
                let name = f
                    .fragment_name()
                    .and_then(|n| n.name())
                    .map(|n| n.text().to_string());
                if let (Some(name), Some(set)) = (name, f.selection_set()) {
                    fragments.insert(name, set);
                }
            }
            _ => {}
        }
    }
    let name_of = |op: &cst::OperationDefinition| op.name().map(|n| n.text().to_string());
    let op = match (wanted, ops.len()) {
        (_, 0) => return unreadable("no operation in the document"),
        (None, 1) => ops.swap_remove(0),
        (None, _) => return unreadable("several operations and no operationName"),
        (Some(w), _) => match ops.into_iter().find(|o| name_of(o).as_deref() == Some(w)) {
            Some(o) => o,
            None => return unreadable("operationName names no operation in the document"),
        },
    };
    let operation = match op.operation_type() {
        None => "query",
        Some(t) if t.mutation_token().is_some() => "mutation",
        Some(t) if t.subscription_token().is_some() => "subscription",
        Some(_) => "query",
    };
    let mut fields = Vec::new();
    if let Some(set) = op.selection_set() {
        let mut expanded = HashSet::new();
        if !collect(&set, &fragments, &mut fields, &mut expanded, 0) {
            return unreadable("fragments nested too deeply to read");
        }
    }
    GraphqlView {
        operation: Some(operation.to_string()),
        name: name_of(&op),
        fields,
        parsed: true,
        error: None,
        persisted: false,
    }
}

/// Top-level field names of a selection set, through fragment spreads and inline fragments.
/// Each named fragment is expanded once (`expanded`: what it adds is already collected), so
/// cycles end and a document cannot make the work grow beyond its size. `false` when the
/// nesting goes deeper than Clawser reads: the caller then reports the document unreadable
/// rather than a partial list of fields.
fn collect(
    set: &cst::SelectionSet,
    fragments: &HashMap<String, cst::SelectionSet>,
    out: &mut Vec<String>,
    expanded: &mut HashSet<String>,
    depth: usize,
) -> bool {
    if depth > MAX_FRAGMENT_DEPTH {
        return false;
    }
    for sel in set.selections() {
        match sel {
            cst::Selection::Field(f) => {
                if let Some(n) = f.name() {
                    let n = n.text().to_string();
                    if !out.contains(&n) {
                        out.push(n);
                    }
                }
            }
            cst::Selection::FragmentSpread(s) => {
                let name = s
                    .fragment_name()
                    .and_then(|n| n.name())
                    .map(|n| n.text().to_string());
                let Some(name) = name else { continue };
                if !expanded.insert(name.clone()) {
                    continue;
                }
                if let Some(inner) = fragments.get(&name) {
                    if !collect(inner, fragments, out, expanded, depth + 1) {
                        return false;
                    }
                }
            }
            cst::Selection::InlineFragment(i) => {
                if let Some(inner) = i.selection_set() {
                    if !collect(&inner, fragments, out, expanded, depth + 1) {
                        return false;
                    }
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn documents() {
        let v = inspect(Some(
            &json!({"query": "mutation Merge($id: ID!) { m: mergePullRequest(input: {pullRequestId: $id}) { clientMutationId } }"}),
        ));
        assert_eq!(v.operation.as_deref(), Some("mutation"));
        assert_eq!(v.name.as_deref(), Some("Merge"));
        assert_eq!(v.fields, vec!["mergePullRequest"]);
        assert!(v.parsed);
        let v = inspect(Some(&json!({"query": "{ viewer { login } }"})));
        assert_eq!(
            (v.operation.as_deref(), v.fields.clone()),
            (Some("query"), vec!["viewer".to_string()])
        );
        // The operation that runs is the one operationName picks.
        let two = "query A { viewer { login } } mutation B { deleteRepository(input: {}) { x } }";
        let v = inspect(Some(&json!({"query": two, "operationName": "B"})));
        assert_eq!(
            (v.operation.as_deref(), v.fields.clone()),
            (Some("mutation"), vec!["deleteRepository".to_string()])
        );
        assert!(!inspect(Some(&json!({"query": two}))).parsed, "ambiguous");
        // Fields through fragments.
        let frag = "mutation { ...F } fragment F on Mutation { createRef(input: {}) { x } ... on Mutation { updateRef(input: {}) { x } } }";
        assert_eq!(
            inspect(Some(&json!({"query": frag}))).fields,
            vec!["createRef", "updateRef"]
        );
        // Unreadable or absent documents are said to be so.
        let bad = inspect(Some(&json!({"query": "mutation { mergePullRequest("})));
        assert!(!bad.parsed && bad.error.is_some());
        let p = inspect(Some(
            &json!({"extensions": {"persistedQuery": {"version": 1, "sha256Hash": "abc"}}}),
        ));
        assert!(p.persisted && !p.parsed);
        assert!(!inspect(None).parsed);
        // A self-referencing fragment does not loop.
        let cyc = "query { ...F } fragment F on Query { ...F viewer { login } }";
        assert_eq!(inspect(Some(&json!({"query": cyc}))).fields, vec!["viewer"]);
        // Deep nesting is cut off by the parser's limits, not a stack overflow.
        let deep = format!("query {{ {}x{} }}", "a { ".repeat(5000), " }".repeat(5000));
        assert!(!inspect(Some(&json!({"query": deep}))).parsed);
    }

    #[test]
    fn nested_fragments_hide_no_field() {
        // 17 nested inline fragments: the mutation inside is still seen.
        let doc = format!(
            "mutation {{ {} deleteRepository(input: {{}}) {{ x }} {} }}",
            "... { ".repeat(17),
            "} ".repeat(17)
        );
        assert_eq!(
            inspect(Some(&json!({"query": doc}))).fields,
            vec!["deleteRepository"]
        );
        // A chain of named fragments deeper than Clawser reads is unreadable, not empty.
        let n = MAX_FRAGMENT_DEPTH + 2;
        let mut doc = "mutation { ...F0 }".to_string();
        for i in 0..n {
            doc.push_str(&format!(" fragment F{i} on Mutation {{ ...F{} }}", i + 1));
        }
        doc.push_str(&format!(
            " fragment F{n} on Mutation {{ deleteRepository(input: {{}}) {{ x }} }}"
        ));
        let v = inspect(Some(&json!({"query": doc})));
        assert!(!v.parsed, "{v:?}");
        // Fragments spread many times over are expanded once each (no blow-up).
        let mut doc = "mutation { ...F0 }".to_string();
        for i in 0..30 {
            let spreads = format!("...F{} ", i + 1).repeat(50);
            doc.push_str(&format!(" fragment F{i} on Mutation {{ {spreads} }}"));
        }
        doc.push_str(" fragment F30 on Mutation { mergePullRequest(input: {}) { x } }");
        assert_eq!(
            inspect(Some(&json!({"query": doc}))).fields,
            vec!["mergePullRequest"]
        );
    }
}
