//! Files that hold secrets: created 0600, refused when group or world can read them.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// Creates (or replaces) `path` with mode 0600 and lets `fill` write its contents; the
/// parent directory is created if needed. The contents go to a fresh temporary file (a
/// unique name, created exclusively with mode 0600, so a leftover or planted file can never
/// receive the secret), which is synced and renamed into place; the directory is synced too.
pub fn write_private(
    path: &Path,
    fill: impl FnOnce(&mut File) -> std::io::Result<()>,
) -> Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
    let tmp = unique_temp(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(Error::io("creating", &tmp))?;
    let written = fill(&mut f)
        .and_then(|_| f.flush())
        .and_then(|_| f.sync_all())
        .map_err(Error::io("writing", &tmp))
        .and_then(|_| std::fs::rename(&tmp, path).map_err(Error::io("renaming", path)));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    sync_dir(parent).map_err(Error::io("syncing", parent))
}

/// `.<name>.<pid>.<random>.tmp` beside `path`.
fn unique_temp(path: &Path) -> std::path::PathBuf {
    use ring::rand::SecureRandom;
    let mut r = [0u8; 8];
    let _ = ring::rand::SystemRandom::new().fill(&mut r);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(
        ".{name}.{}.{}{nanos:x}.tmp",
        std::process::id(),
        hex::encode(r)
    ))
}

/// fsyncs a directory (so a rename or a new file in it survives power loss).
pub fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// fsyncs every regular file in `dir` and in its `blobs/` subdirectory, then the
/// directories: everything sled needs to recover lives there (its log `db`, `conf`,
/// snapshots, and large values in `blobs/`, which sled writes without syncing).
pub fn sync_dir_contents(dir: &Path) -> std::io::Result<()> {
    for d in [dir.join("blobs"), dir.to_path_buf()] {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                File::open(entry.path())?.sync_all()?;
            }
        }
        sync_dir(&d)?;
    }
    Ok(())
}

/// Fails with `InsecureKeyFile` when `path` is readable or writable by group or others.
pub fn check_private(path: &Path) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(Error::io("reading", path))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(Error::InsecureKeyFile {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// Writes a public file atomically (write to a temp file, then rename).
pub fn write_public(path: &Path, contents: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(Error::io("creating", parent))?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(Error::io("writing", &tmp))?;
    std::fs::rename(&tmp, path).map_err(Error::io("renaming", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_are_0600_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        write_private(&p, |f| f.write_all(b"secret")).unwrap();
        check_private(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = check_private(&p).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn a_planted_world_readable_temp_file_never_receives_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ledger.key");
        // The temp names an older version used, planted world-readable.
        for planted in [p.with_extension("tmp"), dir.path().join(".ledger.key.tmp")] {
            std::fs::write(&planted, b"").unwrap();
            std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        write_private(&p, |f| f.write_all(b"secret")).unwrap();
        check_private(&p).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"secret");
        assert_eq!(std::fs::read(p.with_extension("tmp")).unwrap(), b"");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| {
                e.file_name().to_string_lossy().contains(".tmp")
                    && std::fs::read(e.path())
                        .map(|b| !b.is_empty())
                        .unwrap_or(false)
            })
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        sync_dir_contents(dir.path()).unwrap();
    }
}
