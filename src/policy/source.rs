//! Reading a policy directory: every `*.rego` file (recursively, sorted) and every
//! `*_test.yaml` decision table, plus the revision, a SHA-256 over names and contents.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::identity::token::sha256_hex;

/// The files of one policy revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySource {
    /// The directory they were read from.
    pub dir: PathBuf,
    /// `(path relative to dir, contents)` of every `.rego` file.
    pub modules: Vec<(String, String)>,
    /// `(path, contents)` of every `*_test.yaml` / `*_test.yml` decision table.
    pub tables: Vec<(String, String)>,
    /// Hex SHA-256 over every file's relative path and contents.
    pub revision: String,
}

/// Upper bound on the number of files read from a policy directory.
pub const MAX_POLICY_FILES: usize = 1000;

impl PolicySource {
    /// Reads `dir`. A missing or empty directory is an error: Clawser never runs without a
    /// policy.
    pub fn read_dir(dir: &Path) -> Result<PolicySource> {
        let mut files = Vec::new();
        collect(dir, dir, &mut files)?;
        files.sort();
        let mut modules = Vec::new();
        let mut tables = Vec::new();
        let mut hashed = Vec::new();
        for rel in files {
            let path = dir.join(&rel);
            let text = std::fs::read_to_string(&path).map_err(Error::io("reading", &path))?;
            hashed.extend_from_slice(rel.as_bytes());
            hashed.push(0);
            hashed.extend_from_slice(text.as_bytes());
            hashed.push(0);
            let shown = path.display().to_string();
            if rel.ends_with(".rego") {
                modules.push((shown, text));
            } else {
                tables.push((shown, text));
            }
        }
        if modules.is_empty() {
            return Err(Error::Policy(format!(
                "no .rego files in {}",
                dir.display()
            )));
        }
        Ok(PolicySource {
            dir: dir.to_path_buf(),
            modules,
            tables,
            revision: sha256_hex(&hashed),
        })
    }

    /// The first 12 hex digits of the revision, for logs.
    pub fn short_revision(&self) -> &str {
        self.revision.get(..12).unwrap_or(&self.revision)
    }
}

fn collect(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(Error::io("reading", dir))?;
    for entry in entries {
        let entry = entry.map_err(Error::io("reading", dir))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue; // editor swap files, .git
        }
        let ft = entry.file_type().map_err(Error::io("reading", &path))?;
        if ft.is_dir() {
            collect(root, &path, out)?;
        } else if name.ends_with(".rego")
            || name.ends_with("_test.yaml")
            || name.ends_with("_test.yml")
        {
            if out.len() >= MAX_POLICY_FILES {
                return Err(Error::Policy(format!(
                    "more than {MAX_POLICY_FILES} policy files under {}",
                    root.display()
                )));
            }
            let rel = path.strip_prefix(root).unwrap_or(&path);
            out.push(rel.to_string_lossy().into_owned());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revision_changes_with_content_and_ignores_other_files() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("a.rego"), "package x\n").unwrap();
        std::fs::write(d.path().join("notes.md"), "hi").unwrap();
        let a = PolicySource::read_dir(d.path()).unwrap();
        std::fs::write(d.path().join("notes.md"), "changed").unwrap();
        assert_eq!(
            PolicySource::read_dir(d.path()).unwrap().revision,
            a.revision
        );
        std::fs::write(d.path().join("a.rego"), "package y\n").unwrap();
        assert_ne!(
            PolicySource::read_dir(d.path()).unwrap().revision,
            a.revision
        );
        assert_eq!(a.modules.len(), 1);
    }

    #[test]
    fn empty_dir_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        assert!(PolicySource::read_dir(d.path()).is_err());
        assert!(PolicySource::read_dir(&d.path().join("missing")).is_err());
    }
}
