//! The bootstrap admin token: written to `<data_dir>/admin.token` (mode 0600) on first start
//! so the operator's CLI on the same machine can use the admin API. The server keeps only
//! its hash in memory.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::token::{constant_time_eq, hash_token, new_token, ADMIN_TOKEN_PREFIX};
use crate::error::{Error, Result};
use crate::fsutil::{check_private, write_private};

/// The file name of the bootstrap token inside the data dir.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

/// The admin token as the server knows it (hash only).
#[derive(Debug, Clone)]
pub struct AdminToken {
    sha256: String,
    /// Where the plaintext lives, for the operator.
    pub path: PathBuf,
    /// True when this start created it.
    pub created: bool,
}

impl AdminToken {
    /// Loads `<data_dir>/admin.token`, creating it on first start.
    pub fn load_or_create(data_dir: &Path) -> Result<AdminToken> {
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        let (token, created) = if path.exists() {
            check_private(&path)?;
            (read_token_file(&path)?, false)
        } else {
            let token = new_token(ADMIN_TOKEN_PREFIX)?;
            write_private(&path, |f| writeln!(f, "{token}"))?;
            (token, true)
        };
        Ok(AdminToken {
            sha256: hash_token(&token),
            path,
            created,
        })
    }

    /// True when `bearer` is this admin token.
    pub fn matches(&self, bearer: &str) -> bool {
        constant_time_eq(&hash_token(bearer), &self.sha256)
    }
}

/// Reads a token file (first line, trimmed).
pub fn read_token_file(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(Error::io("reading", path))?;
    let token = text.lines().next().unwrap_or("").trim().to_string();
    if token.is_empty() {
        return Err(Error::Invalid(format!("{} is empty", path.display())));
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_and_matched() {
        let dir = tempfile::tempdir().unwrap();
        let a = AdminToken::load_or_create(dir.path()).unwrap();
        assert!(a.created);
        let b = AdminToken::load_or_create(dir.path()).unwrap();
        assert!(!b.created);
        let token = read_token_file(&a.path).unwrap();
        assert!(b.matches(&token));
        assert!(!b.matches("cla_nope"));
        assert!(!b.matches(""));
    }
}
