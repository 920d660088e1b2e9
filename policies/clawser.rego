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
# Precedence: any deny wins, then any hold, then allow. Nothing matched is a deny with
# code no_rule. Write your rules in package clawser.authz; you should not need to edit this file.
package clawser

import rego.v1

_reason(r) := {"code": object.get(r, "code", "unspecified"), "message": object.get(r, "message", "")}

_denies := {_reason(r) | some r in data.clawser.authz.deny}

_names_action(g, action) if action in object.get(object.get(g, "scope", {}), "actions", [])

_names_action(g, _) if "*" in object.get(object.get(g, "scope", {}), "actions", [])

grants_for(action) := {g.id | some g in input.grants; _names_action(g, action)}

granted(action) if count(grants_for(action)) > 0

_satisfied(r) if {
	object.get(r, "grantable", false) == true
	granted(r.code)
}

# Grant checks run only when the caller has grants (most requests have none).
_all_holds := {r | some r in data.clawser.authz.hold}

_satisfied_holds := {r | count(input.grants) > 0; some r in _all_holds; _satisfied(r)}

_holds := _all_holds - _satisfied_holds

_hold_reasons := {_reason(r) | some r in _holds}

_named_grants := {g | some g in data.clawser.authz.grants_used}

# One grant per satisfied hold (the first by id), so a hold spends one use, not one of every
# grant that names its code.
_hold_grants := {sort(grants_for(r.code))[0] | some r in _satisfied_holds}

_grants_used := sort(_named_grants | _hold_grants)

# The strictest approver requirement among the holds (highest count first).
_approver_list := sort([[0 - object.get(r.approvers, "count", 1), r.approvers.role] | some r in _holds; r.approvers.role])

default _self_approval := false

_self_approval if {
	count(_holds) > 0
	every r in _holds {
		object.get(object.get(r, "approvers", {}), "self_approval", false) == true
	}
}

default _approvers := {"role": "approver", "count": 1}

_approvers := {"role": _approver_list[0][1], "count": 0 - _approver_list[0][0]} if count(_approver_list) > 0

_approvers_out := object.union(_approvers, {"self_approval": _self_approval})

default _allowed := false

_allowed if data.clawser.authz.allow == true

# Every hold satisfied by a grant (and none left): allowed under that grant.
_allowed if count(_satisfied_holds) > 0

decision := {"outcome": "deny", "reasons": sort(_denies), "grants_used": _grants_used} if {
	count(_denies) > 0
} else := {"outcome": "hold", "reasons": sort(_hold_reasons), "approvers": _approvers_out, "grants_used": _grants_used} if {
	count(_holds) > 0
} else := {"outcome": "allow", "reasons": [], "grants_used": _grants_used} if {
	_allowed
} else := {
	"outcome": "deny",
	"reasons": [{"code": "no_rule", "message": "no policy rule allows this request"}],
	"grants_used": [],
}
