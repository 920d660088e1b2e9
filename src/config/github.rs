//! `github:`: which hosts are GitHub (the public one and any GitHub Enterprise servers), so
//! policies get `input.github`.

use super::raw::RawGithub;
use super::Validator;
use crate::error::Result;

/// The hosts read as GitHub.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GithubConfig {
    /// Lower-case host globs.
    pub hosts: Vec<String>,
}

impl Validator<'_> {
    pub(super) fn github(&self, raw: RawGithub) -> Result<GithubConfig> {
        let hosts = super::lower(raw.hosts.unwrap_or_else(|| {
            vec![
                "api.github.com".into(),
                "github.com".into(),
                "uploads.github.com".into(),
            ]
        }));
        for h in &hosts {
            crate::grant::check_host_glob(h).map_err(|m| self.err("github.hosts", m))?;
        }
        Ok(GithubConfig { hosts })
    }
}
