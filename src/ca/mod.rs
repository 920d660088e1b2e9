//! The local certificate authority that lets Clawser inspect HTTPS.
//!
//! - `local.rs`: load or generate the CA in `certs/` (`ca.pem`, `ca.key` 0600).
//! - `leaf.rs`: issue leaf certificates on demand (one shared P-256 key) and cache them,
//!   merging concurrent misses for the same host.
//!
//! The proxy sees only the small [`CertificateAuthority`] trait.

mod leaf;
mod local;

pub use leaf::LeafIssuer;
pub use local::{LocalCa, CA_CERT_FILE, CA_KEY_FILE};

use std::sync::Arc;

use crate::error::Result;

/// Something that can hand out a server certificate for a host name or IP literal.
pub trait CertificateAuthority: Send + Sync + std::fmt::Debug {
    /// A certificate (chain + key) valid for `host`.
    fn leaf_for(&self, host: &str) -> Result<Arc<rustls::sign::CertifiedKey>>;
}
