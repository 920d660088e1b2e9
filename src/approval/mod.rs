//! Approvals (`approval`, DESIGN.md section 5): the objects a `hold` creates, bound to the
//! exact request reviewed by a fingerprint, decided N-of-M by approvers, durable across
//! restarts, and consumed once.
//!
//! - `types.rs`: approval objects and decisions.
//! - `fingerprint.rs`: the binding between an approval and a request.
//! - `index.rs`: the approvals in memory, indexed by fingerprint and pending count per agent.
//! - `preview.rs`: the bounded, redacted body preview an approver reads.
//! - `rules.rs`: the rules every store applies: verdicts, joining, expiry, pruning, and
//!   what the ledger records of a change.
//! - `store.rs`: the [`ApprovalStore`] trait: opening, waiting, deciding, consumption, expiry.
//! - `sled_store.rs`: [`SledApprovals`], the embedded implementation.
//!
//! The proxy (`proxy/hold.rs`) opens approvals and waits on them; the admin API
//! (`admin/approvals.rs`), the CLI and the web page decide them.

mod fingerprint;
mod index;
mod preview;
mod rules;
mod sled_store;
mod store;
mod types;

pub use fingerprint::{fingerprint, FINGERPRINT_HEADERS, SHOWN_HEADERS};
pub use preview::{preview, DEFAULT_PREVIEW_BYTES};
pub use sled_store::SledApprovals;
pub use store::{ApprovalStore, DecideError, OpenError, Opened, Requirement};
pub use types::{
    Approval, ApprovalDecision, ApprovalState, ApproverRef, NewApproval, Required, ReviewedRequest,
    Verdict,
};

#[cfg(test)]
mod tests;
