# The release workflow: what agents may do to code on GitHub and in git, on top of the
# general rules in authz.rego (reads allowed, production writes held). Delete this file to
# turn it off; edit the sets below to fit your repositories.
#
#   allow  (by authz.rego's general rules, which nothing here overrides) reads; pushes to
#          feature branches; issues, pull requests, reviews, comments; deployments and
#          workflow dispatches to staging
#   hold   (a release-approver) merges, pushes and API commits to main/master/release
#          branches, release tags and releases;
#          (two release-approvers, never the human the agent acts for) deployments and
#          workflow dispatches to production
#   deny   force-pushing or deleting main/master/release branches and tags; repository
#          delete, transfer and settings; secrets, webhooks, deploy keys, branch protection,
#          collaborators and team access; approving a waiting deployment
#
# What Clawser reads for these rules (README "Policy input"):
#   input.git     a push's ref updates: ref, old, new, kind (create|update|force|delete),
#                 fast_forward (true, false, or null when the pushed pack does not show it)
#   input.github  for github.hosts: repo, action (pulls.merge, deployments.create, ...),
#                 ref (the branch an API call changes), environment (of a deployment or
#                 dispatch), graphql {operation, fields, parsed}
#
# Its package, clawser.release, is evaluated only for requests that carry input.git or
# input.github (clawser.rego): every rule here, and any you add, applies to git and GitHub
# requests only. It needs the clawser.rego shipped with it (the test at the end fails, and a
# reload keeps the last good policy, if an older library would never evaluate this package).
package clawser.release

import rego.v1

# Branches and tags that only move through a release-approver. Lower-cased before matching.
protected_ref(ref) if lower_ref(ref) in {"refs/heads/main", "refs/heads/master"}

protected_ref(ref) if startswith(lower_ref(ref), "refs/heads/release")

protected_ref(ref) if startswith(lower_ref(ref), "refs/tags/")

lower_ref(ref) := lower(ref) if is_string(ref)

# Deployment environments that are not production. Any other name, and a deployment that
# names none (GitHub's default is production), is production.
staging_envs := {"staging", "development", "dev", "test", "preview"}

# --- git pushes -------------------------------------------------------------------------

deny contains {
	"code": "protected_branch",
	"message": sprintf("agents may not %s %s", [u.kind, u.ref]),
} if {
	some u in input.git.ref_updates
	u.kind in {"delete", "force"}
	protected_ref(u.ref)
}

# An update Clawser cannot show to be a fast-forward (the pushed pack does not lead back to
# the old commit) is treated like a force push.
deny contains {
	"code": "protected_branch",
	"message": sprintf("agents may not force-push %s (this update is not shown to be a fast-forward)", [u.ref]),
} if {
	some u in input.git.ref_updates
	u.kind == "update"
	u.fast_forward == null
	protected_ref(u.ref)
}

hold contains release_hold("protected_branch_update", sprintf("push to %s", [u.ref])) if {
	some u in input.git.ref_updates
	u.kind in {"create", "update"}
	u.fast_forward != false
	protected_ref(u.ref)
}

# --- the GitHub API ---------------------------------------------------------------------

# Actions agents never take; the code says which rule refused.
denied_actions := {
	"repos.delete": "repo_delete",
	"repos.transfer": "repo_transfer",
	"repos.update": "repo_settings",
	"repos.create_ruleset": "branch_protection",
	"repos.update_ruleset": "branch_protection",
	"repos.delete_ruleset": "branch_protection",
	"branches.update_protection": "branch_protection",
	"branches.delete_protection": "branch_protection",
	"repos.create_or_update_environment": "branch_protection",
	"repos.delete_environment": "branch_protection",
	"actions.secrets.update": "secrets",
	"actions.secrets.delete": "secrets",
	"repos.create_webhook": "webhooks",
	"repos.update_webhook": "webhooks",
	"repos.delete_webhook": "webhooks",
	"repos.create_deploy_key": "deploy_keys",
	"repos.delete_deploy_key": "deploy_keys",
	"repos.add_collaborator": "collaborators",
	"repos.remove_collaborator": "collaborators",
	"teams.add_or_update_repo_permissions": "collaborators",
	"teams.remove_repo": "collaborators",
	"actions.review_pending_deployments": "deployment_review",
	"repos.update_webhook_config": "webhooks",
	"orgs.create_webhook": "webhooks",
	"orgs.update_webhook": "webhooks",
	"orgs.delete_webhook": "webhooks",
	"repos.create_deployment_branch_policy": "branch_protection",
	"repos.update_deployment_branch_policy": "branch_protection",
	"repos.delete_deployment_branch_policy": "branch_protection",
	"actions.set_permissions": "repo_settings",
	"actions.set_oidc_subject": "repo_settings",
	"actions.create_runner_token": "runners",
	"orgs.set_membership": "collaborators",
	"teams.add_or_update_membership": "collaborators",
	"users.create_ssh_key": "ssh_keys",
}

# The same, for GraphQL mutations (top-level fields).
denied_mutations := {
	"deleteRepository": "repo_delete",
	"archiveRepository": "repo_settings",
	"updateRepository": "repo_settings",
	"createBranchProtectionRule": "branch_protection",
	"updateBranchProtectionRule": "branch_protection",
	"deleteBranchProtectionRule": "branch_protection",
	"createRepositoryRuleset": "branch_protection",
	"updateRepositoryRuleset": "branch_protection",
	"deleteRepositoryRuleset": "branch_protection",
	"createEnvironment": "branch_protection",
	"updateEnvironment": "branch_protection",
	"deleteEnvironment": "branch_protection",
	"updateTeamsRepository": "collaborators",
	"approveDeployments": "deployment_review",
	"rejectDeployments": "deployment_review",
	# Which ref a GraphQL deleteRef removes is not read: use git or REST for branches.
	"deleteRef": "protected_branch",
}

deny contains {
	"code": code,
	"message": sprintf("agents may not %s (%s)", [input.github.action, object.get(input.github, "repo", "a repository")]),
} if code := denied_actions[input.github.action]

deny contains {"code": code, "message": sprintf("agents may not %s (GraphQL)", [f])} if {
	some f in input.github.graphql.fields
	code := denied_mutations[f]
}

# A GraphQL request Clawser cannot read (it does not parse, is ambiguous, or is only a
# persisted-query hash) might be any mutation: refused.
deny contains {
	"code": "graphql_unreadable",
	"message": sprintf("GraphQL request not readable: %s", [object.get(input.github.graphql, "error", "unknown")]),
} if input.github.graphql.parsed == false

# A write the route table does not know might be any of the above: it waits for a
# release-approver, who sees exactly what it is. (git smart HTTP has its own rules; Git LFS
# downloads are reads.)
hold contains release_hold("unknown_github_write", sprintf("%s %s is not in Clawser's GitHub route table", [input.request.method, input.request.path])) if {
	input.github
	not input.git
	not input.request.method in {"GET", "HEAD", "OPTIONS"}
	object.get(input.github, "action", null) == null
	not input.github.graphql
	not lfs_download
}

lfs_download if {
	contains(lower(input.request.path), ".git/info/lfs/objects/batch")
	input.request.body.json.operation == "download"
}

# Method overrides would make GitHub do something other than the method the policy read.
deny contains {
	"code": "method_override",
	"message": "method-override headers are not accepted for GitHub",
} if {
	input.github
	some h in {"x-http-method-override", "x-http-method", "x-method-override"}
	input.request.headers[h]
}

# GraphQL arguments in the URL (alongside or instead of the body) are not read.
deny contains {
	"code": "graphql_unreadable",
	"message": "GraphQL documents are read from the JSON body only, not the URL",
} if {
	input.github
	lower(trim_right(input.request.path, "/")) in {"/graphql", "/api/graphql"}
	count(object.keys(object.get(input.request, "query", {}))) > 0
}

# /repositories/{id}/... names a repository by number, which environment rules (repos:)
# cannot match: writes must name it as /repos/{owner}/{name}.
deny contains {
	"code": "repo_by_id",
	"message": "name the repository as /repos/OWNER/NAME to change it",
} if {
	input.github.repository_id
	not input.request.method in {"GET", "HEAD", "OPTIONS"}
}

# Branch changes through the API: a ref update forced, or a protected ref deleted.
deny contains {
	"code": "protected_branch",
	"message": sprintf("agents may not %s %s", [input.github.action, ref]),
} if {
	ref := object.get(input.github, "ref", null)
	input.github.action in {"git.refs.update", "git.refs.delete"}
	protected_ref(ref)
	rest_force_or_delete
}

rest_force_or_delete if input.github.action == "git.refs.delete"

rest_force_or_delete if object.get(object.get(input.request.body, "json", {}), "force", false) != false

# A body Clawser could not read (over proxy.max_inspect_bytes) might say force: true.
rest_force_or_delete if not input.request.body.json

# Merges: the pull request's base branch is not in the request, so every merge waits
# (updating a pull request's branch merges its base into its head, which may be protected).
hold contains release_hold("merge", sprintf("merge of %s", [input.request.path])) if {
	input.github.action in {"pulls.merge", "repos.merge", "pulls.update_branch"}
}

hold contains release_hold("merge", sprintf("%s (GraphQL)", [f])) if {
	some f in input.github.graphql.fields
	f in {"mergePullRequest", "enablePullRequestAutoMerge", "mergeBranch", "updatePullRequestBranch", "enqueuePullRequest"}
}

# Renaming a protected branch removes it; renaming another branch to a protected name
# replaces it.
deny contains {
	"code": "protected_branch",
	"message": sprintf("agents may not rename %s", [input.github.ref]),
} if {
	input.github.action == "repos.rename_branch"
	protected_ref(input.github.ref)
}

hold contains release_hold("protected_branch_update", sprintf("rename to %v", [new])) if {
	input.github.action == "repos.rename_branch"
	new := object.get(object.get(input.request.body, "json", {}), "new_name", null)
	api_ref_protected(new_ref(new))
}

new_ref(name) := concat("", ["refs/heads/", name]) if is_string(name)

new_ref(name) := null if not is_string(name)

# Commits and ref moves on a protected branch (or the default branch, when a contents
# write names no branch).
hold contains release_hold("protected_branch_update", sprintf("%s on %s", [input.github.action, object.get(input.github, "ref", "the default branch")])) if {
	input.github.action in {"git.refs.create", "git.refs.update", "repos.create_or_update_file_contents", "repos.delete_file"}
	ref := object.get(input.github, "ref", null)
	api_ref_protected(ref)
}

api_ref_protected(ref) if ref == null

# A workflow file runs with the repository's secrets and can deploy anywhere: changing one
# through the API waits for a release-approver. (A push that changes one is not read yet.)
hold contains release_hold("workflow_change", sprintf("%s of %s", [input.github.action, input.request.path])) if {
	input.github.action in {"repos.create_or_update_file_contents", "repos.delete_file"}
	contains(lower(input.request.path), "/contents/.github/workflows/")
}

api_ref_protected(ref) if protected_ref(ref)

# GraphQL ref changes do not say which branch in a way the pack reads: they wait.
# updateRef and updateRefs can force: those holds are not grantable.
hold contains release_hold("protected_branch_update", sprintf("%s (GraphQL)", [f])) if {
	some f in input.github.graphql.fields
	f in {"createRef", "createCommitOnBranch"}
}

hold contains {
	"code": "ref_force_unseen",
	"message": sprintf("%s (GraphQL) may force-move any branch: ask a release-approver", [f]),
	"approvers": {"role": "release-approver", "count": 1},
} if {
	some f in input.github.graphql.fields
	f in {"updateRef", "updateRefs"}
}

# Releases and their files (assets are uploaded to uploads.github.com).
hold contains release_hold("release", sprintf("%s of %s", [input.github.action, object.get(input.github, "repo", "a repository")])) if {
	is_string(input.github.action)
	startswith(input.github.action, "releases.")
	not input.request.method in {"GET", "HEAD", "OPTIONS"}
}

# --- deployments ------------------------------------------------------------------------

# The environment a deployment or dispatch names; a dispatch that names none is judged by
# the repository's target.env (the config's environments: map, repos: rules), and one
# whose body Clawser could not read is production.
dispatches := {"actions.workflow_dispatch", "repos.create_dispatch_event"}

default deploy_env := "production"

deploy_env := lower(input.github.environment) if {
	deploying
	is_string(input.github.environment)
} else := lower(input.target.env) if {
	input.github.action in dispatches
	input.request.body.json
}

deploying if input.github.action in {"deployments.create", "actions.workflow_dispatch", "repos.create_dispatch_event"}

deploying if "createDeployment" in input.github.graphql.fields

hold contains {
	"code": "production_deploy",
	"message": sprintf("%s to %s: two release approvers must approve it", [object.get(input.github, "action", "createDeployment"), deploy_env]),
	"approvers": {"role": "release-approver", "count": 2},
} if {
	deploying
	not deploy_env in staging_envs
}

release_hold(code, what) := {
	"code": code,
	"message": sprintf("%s: ask a release-approver", [what]),
	"approvers": {"role": "release-approver", "count": 1},
	# `clawser approvals approve apr_... --grant-for 1h` lets the next ones through.
	"grantable": true,
}

# Guards against a partial upgrade: an older clawser.rego never evaluates this package, and
# would let this force-push of main through.
test_the_library_evaluates_the_release_package if {
	d := data.clawser.decision with input as {
		"request": {"method": "POST", "host": "github.com", "path": "/acme/api.git/git-receive-pack", "headers": {}},
		"grants": [],
		"target": {"env": "development"},
		"git": {"service": "receive-pack", "repo": "acme/api", "ref_updates": [{"ref": "refs/heads/main", "old": "1111111111111111111111111111111111111111", "new": "2222222222222222222222222222222222222222", "kind": "force", "fast_forward": false}]},
	}
	d.outcome == "deny"
}
