//! The node's ledger signing key: Ed25519 (ring, the same audited crate as the TLS provider),
//! PKCS#8 in `<data_dir>/ledger.key`, mode 0600, refused if group/world readable.

use std::io::Write;
use std::path::Path;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};

use crate::error::{Error, Result};
use crate::fsutil::{check_private, write_private};

/// The key file name inside the data dir.
pub const LEDGER_KEY_FILE: &str = "ledger.key";

/// An Ed25519 signing key.
pub struct LedgerKey {
    pair: Ed25519KeyPair,
}

impl std::fmt::Debug for LedgerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerKey")
            .field("public", &hex::encode(self.public()))
            .finish()
    }
}

impl LedgerKey {
    /// Loads `<data_dir>/ledger.key`, generating it on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<LedgerKey> {
        let path = data_dir.join(LEDGER_KEY_FILE);
        if path.exists() {
            check_private(&path)?;
            let der = std::fs::read(&path).map_err(Error::io("reading", &path))?;
            let pair = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| {
                Error::Store(format!(
                    "{}: not an Ed25519 PKCS#8 key: {e}",
                    path.display()
                ))
            })?;
            return Ok(LedgerKey { pair });
        }
        let doc = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| Error::Store("could not generate the ledger key".to_string()))?;
        write_private(&path, |f| f.write_all(doc.as_ref()))?;
        let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
            .map_err(|e| Error::Store(format!("ledger key: {e}")))?;
        Ok(LedgerKey { pair })
    }

    /// Loads an existing key (never creates one).
    pub fn load(data_dir: &Path) -> Result<LedgerKey> {
        let path = data_dir.join(LEDGER_KEY_FILE);
        if !path.exists() {
            return Err(Error::NotFound {
                kind: "ledger key",
                id: path.display().to_string(),
            });
        }
        LedgerKey::load_or_create(data_dir)
    }

    /// A key from a 32-byte seed (known-answer tests).
    pub fn from_seed(seed: &[u8]) -> Result<LedgerKey> {
        let pair = Ed25519KeyPair::from_seed_unchecked(seed)
            .map_err(|e| Error::Store(format!("seed: {e}")))?;
        Ok(LedgerKey { pair })
    }

    /// The 32-byte public key.
    pub fn public(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.pair.public_key().as_ref());
        out
    }

    /// Signs `msg` (64-byte signature).
    pub fn sign(&self, msg: &[u8]) -> Vec<u8> {
        self.pair.sign(msg).as_ref().to_vec()
    }
}
