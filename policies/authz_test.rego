# Tests for authz.rego. Every rule named test_* must be true; `clawser policy test` runs
# them, and so does every hot reload before the new policy is accepted.
package clawser.authz_test

import rego.v1

base := {
	"version": 1,
	"agent": {"id": "dev", "runtime": "claude-code", "on_behalf_of": "alice", "roles": ["dev"], "labels": {}},
	"grants": [],
	"request": {
		"id": "req_test", "scheme": "https", "method": "GET", "host": "api.github.com", "port": 443,
		"path": "/repos/acme/api", "query": {}, "headers": {},
		"body": {"size": 0, "sha256": "", "truncated": false}, "tls": {"intercepted": true},
	},
	"target": {"env": "development", "service": "github"},
}

req(method, path, env) := object.union(base, {
	"request": object.union(base.request, {"method": method, "path": path}),
	"target": {"env": env, "service": "github"},
})

test_reads_are_allowed_in_production if {
	d := data.clawser.decision with input as req("GET", "/repos/acme/api", "production")
	d.outcome == "allow"
}

test_clone_is_a_read if {
	i := object.union(req("POST", "/acme/api.git/git-upload-pack", "production"), {"git": {"service": "upload-pack", "repo": "acme/api"}})
	d := data.clawser.decision with input as i
	d.outcome == "allow"
}

test_writes_outside_production_are_allowed if {
	d := data.clawser.decision with input as req("POST", "/repos/acme/api/pulls", "staging")
	d.outcome == "allow"
}

test_production_writes_are_held_for_a_release_approver if {
	d := data.clawser.decision with input as req("POST", "/repos/acme/api/pulls/7/merge", "production")
	d.outcome == "hold"
	d.approvers == {"role": "release-approver", "count": 1, "self_approval": false}
	d.reasons[0].code == "production_write"
}

repo_delete(env) := object.union(req("DELETE", "/repos/acme/api", env), {"github": {"repo": "acme/api", "resource": "repos", "action": "repos.delete"}})

test_repo_delete_is_denied if {
	d := data.clawser.decision with input as repo_delete("development")
	d.outcome == "deny"
	d.reasons[0].code == "repo_delete"
}

test_deny_beats_hold if {
	d := data.clawser.decision with input as repo_delete("production")
	d.outcome == "deny"
}

test_protected_branch_force_push_is_denied if {
	inp := object.union(req("POST", "/acme/api.git/git-receive-pack", "development"), {"git": {"ref_updates": [{"ref": "refs/heads/main", "kind": "force"}]}})
	d := data.clawser.decision with input as inp
	d.outcome == "deny"
	d.reasons[0].code == "protected_branch"
}

test_nothing_matched_is_no_rule if {
	d := data.clawser.decision with input as object.remove(req("POST", "/x", "staging"), ["target"])
	d.outcome == "deny"
	d.reasons[0].code == "no_rule"
}

grant(actions) := {"id": "grt_test", "subject": {"kind": "agent", "id": "dev"}, "scope": {"hosts": [], "repos": [], "envs": [], "actions": actions}, "expires_at": null, "uses_left": 1, "issued_by": "carol"}

test_a_grant_satisfies_a_production_hold if {
	i := object.union(req("PUT", "/repos/acme/api/pulls/7/merge", "production"), {"grants": [grant(["production_write"])]})
	d := data.clawser.decision with input as i
	d.outcome == "allow"
	d.grants_used == ["grt_test"]
}

test_a_grant_for_another_action_does_not if {
	i := object.union(req("PUT", "/repos/acme/api/pulls/7/merge", "production"), {"grants": [grant(["deploy"])]})
	d := data.clawser.decision with input as i
	d.outcome == "hold"
	d.grants_used == []
}

test_no_grant_satisfies_a_deny if {
	i := object.union(repo_delete("production"), {"grants": [grant(["*"])]})
	d := data.clawser.decision with input as i
	d.outcome == "deny"
}
