//! The shipped policy pack (`policies/` in the repository), embedded in the binary so that
//! `clawser serve` with no config and no `policies/` directory starts with a readable
//! default policy, written where the operator can edit it.

use std::path::Path;

use crate::error::{Error, Result};

/// `(file name, contents)` of the shipped pack.
pub const SHIPPED: &[(&str, &str)] = &[
    ("clawser.rego", include_str!("../../policies/clawser.rego")),
    ("authz.rego", include_str!("../../policies/authz.rego")),
    ("release.rego", include_str!("../../policies/release.rego")),
    (
        "authz_test.rego",
        include_str!("../../policies/authz_test.rego"),
    ),
    (
        "decisions_test.yaml",
        include_str!("../../policies/decisions_test.yaml"),
    ),
    (
        "release_test.yaml",
        include_str!("../../policies/release_test.yaml"),
    ),
];

/// Writes the shipped pack into `dir` if the directory does not exist or has no `.rego`
/// file. Returns true when it wrote the pack.
pub fn install_if_missing(dir: &Path) -> Result<bool> {
    if dir.is_dir() {
        let has_rego = std::fs::read_dir(dir)
            .map_err(Error::io("reading", dir))?
            .filter_map(|e| e.ok())
            .any(|e| e.file_name().to_string_lossy().ends_with(".rego"));
        if has_rego {
            return Ok(false);
        }
    }
    std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    for (name, text) in SHIPPED {
        let path = dir.join(name);
        std::fs::write(&path, text).map_err(Error::io("writing", &path))?;
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{load_tested, PolicySource};

    #[test]
    fn shipped_pack_compiles_and_its_tests_pass() {
        let d = tempfile::tempdir().unwrap();
        assert!(install_if_missing(d.path()).unwrap());
        assert!(!install_if_missing(d.path()).unwrap());
        let src = PolicySource::read_dir(d.path()).unwrap();
        let (_, report) = load_tested(&src, Default::default()).unwrap_or_else(|e| panic!("{e}"));
        // The VM agrees with the interpreter on every shipped decision-table case.
        let (vm, _) = load_tested(
            &src,
            crate::policy::EvalOptions {
                engine: crate::policy::EvalEngine::Vm,
                ..Default::default()
            },
        )
        .unwrap();
        assert!(vm.uses_vm());
        assert!(report.passed.len() >= 10, "{report:?}");
    }
}
