//! Approvals (`approval`, DESIGN.md section 5): the objects a `hold` creates, bound to the
//! exact request reviewed by a fingerprint, decided N-of-M by approvers, durable across
//! restarts, and consumed once.
//!
//! - `types.rs`: approval objects and decisions.
//! - `fingerprint.rs`: the binding between an approval and a request.
//! - `store.rs`: persistence, the decision rules, waiting, consumption and expiry.
//!
//! Not wired yet: the proxy still answers a hold with a refusal (issue 4 wires this module
//! into the pipeline, the admin API, the CLI and the web page).

mod fingerprint;
mod store;
mod types;

pub use fingerprint::fingerprint;
pub use store::{ApprovalStore, DecideError};
pub use types::{
    Approval, ApprovalDecision, ApprovalState, ApproverRef, NewApproval, Required, ReviewedRequest,
    Verdict,
};

#[cfg(test)]
mod tests;
