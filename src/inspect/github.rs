//! GitHub REST, understood: a route table of method + path template -> `<resource>.<verb>` in
//! GitHub's own REST vocabulary, giving policies `input.github = {repo, owner, name,
//! resource, action}`. Owner and repository are lower-cased (GitHub treats them
//! case-insensitively). Unknown routes give their resource and `action: null`.

use serde::Serialize;

use super::graphql::GraphqlView;

/// What a request to a GitHub host does, as policies see it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GithubView {
    /// `owner/name`, lower-case, when the request names a repository.
    pub repo: Option<String>,
    pub owner: Option<String>,
    pub name: Option<String>,
    /// The REST resource (`pulls`, `issues`, `git`, `actions`, …) or `graphql`.
    pub resource: Option<String>,
    /// `pulls.merge`, `repos.delete`, … (`null` for a route not in the table).
    pub action: Option<String>,
    /// For `/repositories/{id}/…` paths: the numeric repository id (`repo` is then unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_id: Option<String>,
    /// The git ref the action changes, when the request says (`refs/heads/main`): from the
    /// path for `git.refs.*`, from the body for `git.refs.create` (`ref`), `repos.merge`
    /// (`base`) and contents writes (`branch`; `null` there means the default branch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
    /// For `deployments.create`: the deployment's `environment` from the JSON body
    /// (GitHub's default, `production`, when absent); for `actions.workflow_dispatch`:
    /// `inputs.environment` when the dispatch names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// For `POST /graphql`: the operation the document asks for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub graphql: Option<GraphqlView>,
}

/// `(method, template, action)`: templates are paths after `/repos/{owner}/{repo}` when they
/// start with `+`, else absolute; `*` matches one segment, `**` the rest (one or more).
const ROUTES: &[(&str, &str, &str)] = &[
    ("POST", "/user/repos", "repos.create"),
    ("POST", "/orgs/*/repos", "repos.create"),
    (
        "PUT",
        "/orgs/*/teams/*/repos/*/*",
        "teams.add_or_update_repo_permissions",
    ),
    ("DELETE", "/orgs/*/teams/*/repos/*/*", "teams.remove_repo"),
    ("GET", "+", "repos.get"),
    ("PATCH", "+", "repos.update"),
    ("DELETE", "+", "repos.delete"),
    ("POST", "+/transfer", "repos.transfer"),
    ("POST", "+/merges", "repos.merge"),
    ("POST", "+/forks", "repos.create_fork"),
    (
        "PUT",
        "+/contents/**",
        "repos.create_or_update_file_contents",
    ),
    ("DELETE", "+/contents/**", "repos.delete_file"),
    ("POST", "+/git/refs", "git.refs.create"),
    ("PATCH", "+/git/refs/**", "git.refs.update"),
    ("DELETE", "+/git/refs/**", "git.refs.delete"),
    ("POST", "+/git/commits", "git.commits.create"),
    ("POST", "+/git/trees", "git.trees.create"),
    ("POST", "+/git/blobs", "git.blobs.create"),
    ("POST", "+/git/tags", "git.tags.create"),
    ("POST", "+/pulls", "pulls.create"),
    ("PATCH", "+/pulls/*", "pulls.update"),
    ("PUT", "+/pulls/*/merge", "pulls.merge"),
    ("PUT", "+/pulls/*/update-branch", "pulls.update_branch"),
    ("POST", "+/pulls/*/reviews", "pulls.create_review"),
    ("POST", "+/pulls/*/reviews/*/events", "pulls.submit_review"),
    (
        "PUT",
        "+/pulls/*/reviews/*/dismissals",
        "pulls.dismiss_review",
    ),
    (
        "POST",
        "+/pulls/*/requested_reviewers",
        "pulls.request_reviewers",
    ),
    (
        "DELETE",
        "+/pulls/*/requested_reviewers",
        "pulls.remove_requested_reviewers",
    ),
    ("POST", "+/pulls/*/comments", "pulls.create_review_comment"),
    ("POST", "+/issues", "issues.create"),
    ("PATCH", "+/issues/*", "issues.update"),
    ("PUT", "+/issues/*/lock", "issues.lock"),
    ("POST", "+/issues/*/comments", "issues.create_comment"),
    ("PATCH", "+/issues/comments/*", "issues.update_comment"),
    ("DELETE", "+/issues/comments/*", "issues.delete_comment"),
    ("POST", "+/issues/*/labels", "issues.add_labels"),
    ("POST", "+/releases", "releases.create"),
    ("PATCH", "+/releases/*", "releases.update"),
    ("DELETE", "+/releases/*", "releases.delete"),
    ("DELETE", "+/releases/assets/*", "releases.delete_asset"),
    ("POST", "+/deployments", "deployments.create"),
    ("DELETE", "+/deployments/*", "deployments.delete"),
    (
        "POST",
        "+/deployments/*/statuses",
        "deployments.create_status",
    ),
    (
        "PUT",
        "+/environments/*",
        "repos.create_or_update_environment",
    ),
    ("DELETE", "+/environments/*", "repos.delete_environment"),
    (
        "POST",
        "+/actions/workflows/*/dispatches",
        "actions.workflow_dispatch",
    ),
    (
        "PUT",
        "+/actions/workflows/*/enable",
        "actions.enable_workflow",
    ),
    (
        "PUT",
        "+/actions/workflows/*/disable",
        "actions.disable_workflow",
    ),
    ("POST", "+/actions/runs/*/rerun", "actions.rerun"),
    (
        "POST",
        "+/actions/runs/*/rerun-failed-jobs",
        "actions.rerun_failed_jobs",
    ),
    ("POST", "+/actions/runs/*/cancel", "actions.cancel"),
    (
        "POST",
        "+/actions/runs/*/force-cancel",
        "actions.force_cancel",
    ),
    ("DELETE", "+/actions/runs/*", "actions.delete_run"),
    (
        "POST",
        "+/actions/runs/*/pending_deployments",
        "actions.review_pending_deployments",
    ),
    ("GET", "+/actions/secrets", "actions.secrets.list"),
    (
        "GET",
        "+/actions/secrets/public-key",
        "actions.secrets.get_public_key",
    ),
    ("PUT", "+/actions/secrets/*", "actions.secrets.update"),
    ("DELETE", "+/actions/secrets/*", "actions.secrets.delete"),
    (
        "PUT",
        "+/environments/*/secrets/*",
        "actions.secrets.update",
    ),
    (
        "DELETE",
        "+/environments/*/secrets/*",
        "actions.secrets.delete",
    ),
    ("POST", "+/actions/variables", "actions.variables.create"),
    ("PATCH", "+/actions/variables/*", "actions.variables.update"),
    (
        "DELETE",
        "+/actions/variables/*",
        "actions.variables.delete",
    ),
    (
        "POST",
        "+/environments/*/variables",
        "actions.variables.create",
    ),
    (
        "PATCH",
        "+/environments/*/variables/*",
        "actions.variables.update",
    ),
    (
        "DELETE",
        "+/environments/*/variables/*",
        "actions.variables.delete",
    ),
    (
        "PUT",
        "+/branches/**/protection",
        "branches.update_protection",
    ),
    (
        "DELETE",
        "+/branches/**/protection",
        "branches.delete_protection",
    ),
    (
        "POST",
        "+/branches/**/protection/**",
        "branches.update_protection",
    ),
    (
        "PUT",
        "+/branches/**/protection/**",
        "branches.update_protection",
    ),
    (
        "PATCH",
        "+/branches/**/protection/**",
        "branches.update_protection",
    ),
    (
        "DELETE",
        "+/branches/**/protection/**",
        "branches.update_protection",
    ),
    ("POST", "+/rulesets", "repos.create_ruleset"),
    ("PUT", "+/rulesets/*", "repos.update_ruleset"),
    ("DELETE", "+/rulesets/*", "repos.delete_ruleset"),
    ("PUT", "+/collaborators/*", "repos.add_collaborator"),
    ("DELETE", "+/collaborators/*", "repos.remove_collaborator"),
    ("POST", "+/hooks", "repos.create_webhook"),
    ("PATCH", "+/hooks/*/config", "repos.update_webhook_config"),
    ("POST", "/orgs/*/hooks", "orgs.create_webhook"),
    ("PATCH", "/orgs/*/hooks/**", "orgs.update_webhook"),
    ("DELETE", "/orgs/*/hooks/*", "orgs.delete_webhook"),
    ("PUT", "/orgs/*/actions/secrets/*", "actions.secrets.update"),
    (
        "DELETE",
        "/orgs/*/actions/secrets/*",
        "actions.secrets.delete",
    ),
    ("PUT", "+/dependabot/secrets/*", "actions.secrets.update"),
    (
        "PUT",
        "/orgs/*/dependabot/secrets/*",
        "actions.secrets.update",
    ),
    ("PUT", "+/codespaces/secrets/*", "actions.secrets.update"),
    ("POST", "/orgs/*/rulesets", "repos.create_ruleset"),
    ("PUT", "/orgs/*/rulesets/*", "repos.update_ruleset"),
    ("DELETE", "/orgs/*/rulesets/*", "repos.delete_ruleset"),
    ("PUT", "/orgs/*/memberships/*", "orgs.set_membership"),
    (
        "PUT",
        "/orgs/*/teams/*/memberships/*",
        "teams.add_or_update_membership",
    ),
    ("PUT", "+/actions/permissions", "actions.set_permissions"),
    ("PUT", "+/actions/permissions/**", "actions.set_permissions"),
    (
        "PUT",
        "+/actions/oidc/customization/sub",
        "actions.set_oidc_subject",
    ),
    (
        "POST",
        "+/actions/runners/registration-token",
        "actions.create_runner_token",
    ),
    (
        "POST",
        "/orgs/*/actions/runners/registration-token",
        "actions.create_runner_token",
    ),
    ("POST", "/user/keys", "users.create_ssh_key"),
    ("POST", "/user/ssh_signing_keys", "users.create_ssh_key"),
    (
        "POST",
        "+/environments/*/deployment-branch-policies",
        "repos.create_deployment_branch_policy",
    ),
    (
        "PUT",
        "+/environments/*/deployment-branch-policies/*",
        "repos.update_deployment_branch_policy",
    ),
    (
        "DELETE",
        "+/environments/*/deployment-branch-policies/*",
        "repos.delete_deployment_branch_policy",
    ),
    ("POST", "+/branches/**/rename", "repos.rename_branch"),
    ("POST", "+/dispatches", "repos.create_dispatch_event"),
    ("POST", "+/actions/jobs/*/rerun", "actions.rerun_job"),
    ("PATCH", "+/releases/assets/*", "releases.update_asset"),
    ("POST", "+/releases/*/assets", "releases.upload_asset"),
    ("PATCH", "+/hooks/*", "repos.update_webhook"),
    ("DELETE", "+/hooks/*", "repos.delete_webhook"),
    ("POST", "+/keys", "repos.create_deploy_key"),
    ("DELETE", "+/keys/*", "repos.delete_deploy_key"),
];

/// The most path segments matched against the route table.
pub const MAX_ROUTE_SEGMENTS: usize = 64;

fn matches(template: &[&str], segs: &[&str]) -> bool {
    match (template.split_first(), segs.split_first()) {
        (None, None) => true,
        // `**`: one or more segments (a branch name may hold slashes).
        (Some((&"**", trest)), Some(_)) => (1..=segs.len()).any(|k| matches(trest, &segs[k..])),
        (Some((t, trest)), Some((s, srest))) => {
            (*t == "*" || t.eq_ignore_ascii_case(s)) && matches(trest, srest)
        }
        _ => false,
    }
}

/// The view of a REST request (`path` canonical, without the query; `api_prefix` is
/// stripped first, e.g. `/api/v3` on GitHub Enterprise). `body` is the parsed JSON body.
pub fn rest(method: &str, path: &str, body: Option<&serde_json::Value>) -> GithubView {
    let path = path.strip_prefix("/api/v3").unwrap_or(path);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let mut view = GithubView::default();
    // No GitHub route is this deep; matching `**` on a path of thousands of segments would
    // cost the proxy time. Such a path names no action (a write is held as unknown).
    if segs.len() > MAX_ROUTE_SEGMENTS {
        return view;
    }
    // Owner and name: /repos/{owner}/{repo}/… (lower-case; `.git` dropped). The same routes
    // answer under /repositories/{id}/…, where only the number is known.
    let first = segs.first().map(|s| s.to_ascii_lowercase());
    let in_repo = match first.as_deref() {
        Some("repos") if segs.len() >= 3 => {
            set_repo(&mut view, segs[1], segs[2]);
            Some(3)
        }
        Some("repositories") if segs.len() >= 2 => {
            view.repository_id = Some(segs[1].to_string());
            Some(2)
        }
        _ => None,
    };
    if let (None, [orgs, _, teams, _, repos, o, r]) = (in_repo, segs.as_slice()) {
        let lower = |s: &str| s.to_ascii_lowercase();
        if (lower(orgs), lower(teams), lower(repos))
            == ("orgs".into(), "teams".into(), "repos".into())
        {
            set_repo(&mut view, o, r);
        }
    }
    let rest: &[&str] = in_repo.map_or(&segs[..], |n| &segs[n..]);
    view.resource = match (in_repo, rest.first()) {
        (Some(_), None) => Some("repos".to_string()),
        (_, Some(first)) => Some(first.to_ascii_lowercase()),
        (None, None) => None,
    };
    for (m, template, action) in ROUTES {
        if *m != method {
            continue;
        }
        let (tsegs, candidate): (Vec<&str>, &[&str]) = match template.strip_prefix('+') {
            Some(t) if in_repo.is_some() => {
                (t.split('/').filter(|s| !s.is_empty()).collect(), rest)
            }
            Some(_) => continue,
            None => (
                template.split('/').filter(|s| !s.is_empty()).collect(),
                &segs,
            ),
        };
        if matches(&tsegs, candidate) {
            view.action = Some(action.to_string());
            view.resource = action.split('.').next().map(str::to_string);
            break;
        }
    }
    let field = |name: &str| {
        body.and_then(|b| b.get(name))
            .and_then(|v| v.as_str())
            .map(str::to_string)
    };
    match view.action.as_deref() {
        Some("deployments.create") => {
            // GitHub's default environment is production.
            view.environment = field("environment").or_else(|| Some("production".to_string()));
        }
        // The environment a dispatch names, in its arguments.
        Some("actions.workflow_dispatch") => view.environment = dispatch_env(body, "inputs"),
        Some("repos.create_dispatch_event") => {
            view.environment = dispatch_env(body, "client_payload");
        }
        Some("repos.rename_branch") => {
            let branch = rest.get(1..rest.len().saturating_sub(1)).unwrap_or(&[]);
            view.r#ref = Some(branch_ref(&branch.join("/").replace("%2F", "/")));
        }
        Some("git.refs.update" | "git.refs.delete") => {
            // Everything after `git/refs/` (`%2F` read as `/`, as GitHub does).
            let after = rest.get(2..).unwrap_or(&[]).join("/").replace("%2F", "/");
            view.r#ref = Some(branch_ref(&format!("refs/{after}")));
        }
        Some("git.refs.create") => view.r#ref = field("ref"),
        Some("repos.merge") => view.r#ref = field("base").map(|b| branch_ref(&b)),
        Some("repos.create_or_update_file_contents" | "repos.delete_file") => {
            view.r#ref = field("branch").map(|b| branch_ref(&b));
        }
        _ => {}
    }
    view
}

/// `body[args].environment`, when it is a string.
fn dispatch_env(body: Option<&serde_json::Value>, args: &str) -> Option<String> {
    body.and_then(|b| b.get(args))
        .and_then(|i| i.get("environment"))
        .and_then(|e| e.as_str())
        .map(str::to_string)
}

/// `main` -> `refs/heads/main`; a full ref stays as it is, without a doubled `refs/`
/// (`refs/refs/heads/main` names `refs/heads/main` to a lenient server).
fn branch_ref(branch: &str) -> String {
    let mut b = branch.trim_start_matches('/');
    if !b.starts_with("refs/") {
        return format!("refs/heads/{b}");
    }
    while let Some(inner) = b.strip_prefix("refs/").filter(|i| i.starts_with("refs/")) {
        b = inner;
    }
    b.to_string()
}

fn set_repo(view: &mut GithubView, owner: &str, name: &str) {
    let owner = owner.to_ascii_lowercase();
    let name = name.to_ascii_lowercase();
    let name = name.strip_suffix(".git").unwrap_or(&name).to_string();
    view.repo = Some(format!("{owner}/{name}"));
    view.owner = Some(owner);
    view.name = Some(name);
}

/// The view of a request to a GitHub web or git host (`github.com/{owner}/{repo}.git/…`):
/// the repository only.
pub fn web(path: &str) -> GithubView {
    let mut view = GithubView::default();
    if let Some(repo) = crate::policy::repo_of(path) {
        if let Some((o, n)) = repo.split_once('/') {
            set_repo(&mut view, o, n);
        }
    }
    view.resource = crate::policy::repo_of(path).map(|_| "repos".to_string());
    view
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_environment_comes_from_the_body() {
        let body = serde_json::json!({"ref": "main", "environment": "staging"});
        let v = rest("POST", "/repos/acme/api/deployments", Some(&body));
        assert_eq!(v.environment.as_deref(), Some("staging"));
        let v = rest(
            "POST",
            "/repos/acme/api/deployments",
            Some(&serde_json::json!({"ref": "main"})),
        );
        assert_eq!(v.environment.as_deref(), Some("production"));
    }

    #[test]
    fn git_over_https_names_the_repo() {
        let v = web("/ACME/api.git/git-receive-pack");
        assert_eq!(v.repo.as_deref(), Some("acme/api"));
    }
}
