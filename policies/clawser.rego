# Clawser's policy library: builds the one decision Clawser evaluates,
# data.clawser.decision, from the three kinds of rule that authors write in
# package clawser.authz (see authz.rego):
#
#   allow if { ... }
#   deny contains {"code": "...", "message": "..."} if { ... }
#   hold contains {"code": "...", "message": "...", "approvers": {"role": "...", "count": 1}} if { ... }
#
# Grants (input.grants) are authority the control plane holds for the caller. Two helpers:
#
#   granted("deploy")      true when an applicable grant's scope.actions names "deploy" (or "*")
#   grants_for("deploy")   the ids of those grants
#
# A hold that says "grantable": true is satisfied by a grant whose actions name its code
# (what `clawser approvals approve --grant-for 1h` issues): the request is allowed without
# another hold, and the decision's grants_used names the grant, whose use is counted.
# Rules that rely on a grant otherwise name it, so its use is counted (and max_uses holds):
#   grants_used contains sort(grants_for("deploy"))[0] if { ...; granted("deploy") }
# A rule that tests granted() without naming a grant in grants_used spends nothing.
#
# A hold's approvers may add "self_approval": true to let the human the agent acts for
# (input.agent.on_behalf_of) approve it; it applies only when every matching hold says so.
#
# Rules for git and GitHub may also live in package clawser.release (release.rego): they are
# evaluated only for requests Clawser read as git smart HTTP (input.git) or as a GitHub API
# call (input.github), so the many requests that are neither (model APIs, registries) do not
# pay for them. Every other request is decided by clawser.authz alone.
#
# Precedence: any deny wins, then any hold, then allow. Nothing matched is a deny with
# code no_rule. Write your rules in package clawser.authz; you should not need to edit this file.
#
# Evaluation cost grows with the number of rule definitions evaluated (about a microsecond
# each with regorus's VM, several with its interpreter), so the decision below is an
# else-chain and the grant checks run only when the request carries grants.
package clawser

import rego.v1

_reason(r) := {"code": object.get(r, "code", "unspecified"), "message": object.get(r, "message", "")}

_names_action(g, action) if action in object.get(object.get(g, "scope", {}), "actions", [])

_names_action(g, _) if "*" in object.get(object.get(g, "scope", {}), "actions", [])

grants_for(action) := {g.id | some g in input.grants; _names_action(g, action)}

granted(action) if count(grants_for(action)) > 0

_satisfied(r) if {
	object.get(r, "grantable", false) == true
	granted(r.code)
}

# The release workflow (package clawser.release) judges only requests Clawser read as git
# smart HTTP or a GitHub API call: for every other request its rules are not evaluated.
_recognized := true if input.git

else := true if input.github

_deny_rules contains r if some r in data.clawser.authz.deny

_deny_rules contains r if {
	_recognized
	some r in data.clawser.release.deny
}

_hold_rules contains r if some r in data.clawser.authz.hold

_hold_rules contains r if {
	_recognized
	some r in data.clawser.release.hold
}

# Most requests carry no grant: then nothing satisfies a hold and no grant is spent.
_no_grants if count(input.grants) == 0

_holds := _hold_rules if _no_grants

else := {r | some r in _hold_rules; not _satisfied(r)}

_satisfied_holds := {r | some r in _hold_rules; _satisfied(r)}

_named_grants contains g if some g in data.clawser.authz.grants_used

_named_grants contains g if {
	_recognized
	some g in data.clawser.release.grants_used
}

# One grant per satisfied hold (the first by id), so a hold spends one use, not one of every
# grant that names its code. (Clawser spends only grants the request carries.)
_grants_used := [] if _no_grants

else := sort(_named_grants | {sort(grants_for(r.code))[0] | some r in _satisfied_holds})

# The strictest approver requirement among the holds (highest count first).
_approver_list := sort([[0 - object.get(r.approvers, "count", 1), r.approvers.role] | some r in _holds; r.approvers.role])

default _self_approval := false

_self_approval if {
	count(_holds) > 0
	every r in _holds {
		object.get(object.get(r, "approvers", {}), "self_approval", false) == true
	}
}

_approvers := {"role": _approver_list[0][1], "count": 0 - _approver_list[0][0]} if count(_approver_list) > 0

else := {"role": "approver", "count": 1}

_allowed := true if data.clawser.authz.allow == true

else := true if {
	_recognized
	data.clawser.release.allow == true
}

# Every hold satisfied by a grant (and none left): allowed under that grant.
else := true if {
	not _no_grants
	count(_satisfied_holds) > 0
}

decision := {"outcome": "deny", "reasons": sort({_reason(r) | some r in _deny_rules}), "grants_used": _grants_used} if {
	count(data.clawser.authz.deny) > 0
} else := {"outcome": "deny", "reasons": sort({_reason(r) | some r in _deny_rules}), "grants_used": _grants_used} if {
	_recognized
	count(data.clawser.release.deny) > 0
} else := {"outcome": "hold", "reasons": sort({_reason(r) | some r in _holds}), "approvers": object.union(_approvers, {"self_approval": _self_approval}), "grants_used": _grants_used} if {
	count(_holds) > 0
} else := {"outcome": "allow", "reasons": [], "grants_used": _grants_used} if {
	_allowed
} else := {
	"outcome": "deny",
	"reasons": [{"code": "no_rule", "message": "no policy rule allows this request"}],
	"grants_used": [],
}
