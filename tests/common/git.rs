//! git as the tests run it: a command with exactly a given environment, a bare repository
//! seeded with one commit, and where its `main` points.

use std::collections::HashMap;
use std::path::Path;
use std::process::Output;

use super::run_with_env;

/// `git -C cwd ARGS` with an agent's identity and `env` (the parent's proxy settings removed).
pub async fn git(env: &HashMap<String, String>, cwd: &Path, args: &[&str]) -> Output {
    let mut all = vec![
        "-C",
        cwd.to_str().unwrap(),
        "-c",
        "user.name=Agent",
        "-c",
        "user.email=agent@example.com",
        "-c",
        "init.defaultBranch=main",
    ];
    all.extend_from_slice(args);
    run_with_env("git", &all, env).await
}

/// Requires success; returns git's stderr.
pub fn ok(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "git failed: {err}");
    err
}

/// Seeds a bare repo with one commit, directly on disk.
pub async fn seed(bare: &Path, scratch: &Path) {
    let env = HashMap::new();
    std::fs::create_dir_all(scratch).unwrap();
    ok(&git(&env, scratch, &["init", "-q"]).await);
    std::fs::write(scratch.join("README"), "hello\n").unwrap();
    ok(&git(&env, scratch, &["add", "."]).await);
    ok(&git(&env, scratch, &["commit", "-qm", "init"]).await);
    ok(&git(
        &env,
        scratch,
        &["push", "-q", bare.to_str().unwrap(), "main"],
    )
    .await);
}

/// The commit `main` of a bare repository points at.
pub fn head(bare: &Path) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(bare)
        .args(["rev-parse", "main"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
