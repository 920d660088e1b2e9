# The default Clawser policy. Edit it freely: Clawser reloads this directory when a file
# changes, runs the tests (authz_test.rego, decisions_test.yaml), and keeps the last good
# policy if your edit does not compile or breaks a test.
#
#   allow  reads anywhere, and writes outside production
#   hold   writes to production wait for a release approver, unless a grant covers them
#          (`clawser approvals approve apr_... --grant-for 1h`, or `clawser grants add
#          --actions production_write ...`)
#
# What agents may do to code on GitHub and in git (merges, protected branches, releases,
# deployments, repository settings) is in release.rego.
#
# `input` is documented in README.md ("Policy input"); input.target.env comes from the
# `environments:` map of the config.
package clawser.authz

import rego.v1

read_methods := {"GET", "HEAD", "OPTIONS"}

is_read if input.request.method in read_methods

# git fetch and git clone POST to git-upload-pack: that is a read too.
is_read if {
	input.request.method == "POST"
	input.git.service == "upload-pack"
}

# A GraphQL query (not a mutation) is a read, when Clawser could read the document.
is_read if input.github.graphql.operation == "query"

allow if is_read

allow if {
	not is_read
	input.target.env != "production"
}

hold contains {
	"code": "production_write",
	"message": sprintf("%s %s%s changes production: a release approver must approve it", [input.request.method, input.request.host, input.request.path]),
	"approvers": {"role": "release-approver", "count": 1},
	# A grant whose scope.actions names production_write satisfies this hold.
	"grantable": true,
} if {
	not is_read
	input.target.env == "production"
}

# Example: a grant with action "deploy" lets an agent create deployments in staging.
# allow if {
# 	input.request.method == "POST"
# 	endswith(input.request.path, "/deployments")
# 	data.clawser.granted("deploy")
# }
# grants_used contains sort(data.clawser.grants_for("deploy"))[0] if data.clawser.granted("deploy")

# Deleting a repository through a GitHub-shaped API on a host missing from github.hosts (a
# GitHub Enterprise server not configured yet). On GitHub hosts release.rego decides.
deny contains {
	"code": "repo_delete",
	"message": "agents may not delete repositories",
} if {
	not input.github
	input.request.method == "DELETE"
	regex.match(`^/(api/v3/)?repos/[^/]+/[^/]+/?$`, lower(input.request.path))
}
