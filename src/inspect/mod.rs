//! Protocol-aware views of a request (DESIGN.md section 2, layer 1): what a request to
//! GitHub does, for policies (`input.github`). Pure functions over the canonical path and
//! the parsed body; no sockets.
//!
//! - `github.rs`: the REST route table (`pulls.merge`, `repos.delete`, …), owner/repo.
//! - `graphql.rs`: GraphQL documents (operation, name, top-level fields).
//! - `git.rs`: git smart HTTP: the service, the repository, a push's ref updates.
//! - `pktline.rs`, `pack.rs`: the receive-pack command list; commits of the pushed pack.

pub mod git;
pub mod github;
pub mod graphql;
pub mod pack;
pub mod pktline;

pub use github::GithubView;
pub use graphql::GraphqlView;

/// The GitHub view of a request to one of `github.hosts`: `POST /graphql` (or
/// `/api/graphql` on GitHub Enterprise) is read as GraphQL, `api.*` hosts and `/api/v3`
/// paths as REST, anything else as a web or git URL naming a repository.
pub fn github(
    host: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> GithubView {
    // Spelled as any server might still route it: any case, a trailing slash.
    let gql = path.trim_end_matches('/').to_ascii_lowercase();
    if method == "POST" && (gql == "/graphql" || gql == "/api/graphql") {
        return GithubView {
            resource: Some("graphql".to_string()),
            graphql: Some(graphql::inspect(body)),
            ..GithubView::default()
        };
    }
    let lower = path.to_ascii_lowercase();
    let rest_path = ["/api/v3/", "/repos/", "/repositories/"]
        .iter()
        .any(|p| lower.starts_with(p));
    if host.starts_with("api.") || rest_path {
        github::rest(method, path, body)
    } else {
        github::web(path)
    }
}
