//! `Permitted<T>`: proof that the policy allowed what it wraps. The upstream client and the
//! passthrough tunnel accept nothing else, and the constructors below are the only way to
//! build one: after an `allow`, or after a `hold` released by the approval consumed for
//! exactly that request.

use crate::approval::{Approval, ApprovalState};
use crate::model::Outcome;
use crate::policy::Evaluated;

/// Something the policy allowed: a request to forward, or a tunnel to open.
pub struct Permitted<T> {
    inner: T,
}

impl<T> Permitted<T> {
    /// What was permitted, for the code that sends it.
    pub(crate) fn into_inner(self) -> T {
        self.inner
    }

    /// Changes what was permitted after the decision: only secret injection does this, so
    /// the policy decided on the placeholder and the upstream gets the value.
    pub(super) fn amend<E>(mut self, f: impl FnOnce(&mut T) -> Result<(), E>) -> Result<Self, E> {
        f(&mut self.inner)?;
        Ok(self)
    }
}

/// `inner` if the policy said `allow`.
pub(super) fn allowed<T>(eval: &Evaluated, inner: T) -> Option<Permitted<T>> {
    (eval.decision.outcome == Outcome::Allow).then_some(Permitted { inner })
}

/// `inner` if the policy said `hold` and `approval` was consumed for exactly this request.
pub(super) fn approved<T>(
    eval: &Evaluated,
    approval: &Approval,
    fingerprint: &str,
    inner: T,
) -> Option<Permitted<T>> {
    (eval.decision.outcome == Outcome::Hold
        && approval.state == ApprovalState::Consumed
        && approval.fingerprint == fingerprint)
        .then_some(Permitted { inner })
}
