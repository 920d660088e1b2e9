//! What an isolated run may see and reach, as bubblewrap (`bwrap`) arguments. Pure: the
//! plan is built from the config and the paths it names, and turned into arguments here;
//! `run.rs` (in the CLI) spawns it.
//!
//! The sandbox has its own network namespace (loopback only: no route out, none to the
//! host's loopback or the metadata address), its own PID, IPC and UTS namespaces, a user
//! namespace in which no further user namespace can be made, and no capabilities. The file
//! system is the host's, with:
//! - private, empty `/tmp` and `/run` (no host Unix sockets such as Docker's), the working
//!   directory and home kept when they live there;
//! - Clawser's data dir, CA dir, config file and secret files hidden (an empty tmpfs over a
//!   directory, `/dev/null` over a file), the CA certificate and bundle shown again
//!   read-only, so clients still trust Clawser's CA;
//! - the policy directory and the `clawser` binary read-only;
//! - the proxy's Unix socket at [`SOCKET_INSIDE`], the only way out.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::{Config, SecretSource};
use crate::error::{Error, Result};

/// Where the proxy's Unix socket appears inside the sandbox.
pub const SOCKET_INSIDE: &str = "/run/clawser/proxy.sock";

/// Everything bubblewrap needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Hidden: directories get an empty tmpfs, files `/dev/null`.
    pub hide: Vec<PathBuf>,
    /// Shown again, read-only, on top of what is hidden (the CA certificate and bundle).
    pub show: Vec<PathBuf>,
    /// Read-only (the policy directory, the `clawser` binary).
    pub read_only: Vec<PathBuf>,
    /// Kept writable under the private `/tmp` and `/run` (the working directory, home).
    pub keep: Vec<PathBuf>,
    /// The proxy's Unix socket on the host.
    pub socket: PathBuf,
    /// The working directory inside.
    pub cwd: PathBuf,
    /// Run the command in a new session (no terminal ioctls on the caller's terminal). Off
    /// for an interactive terminal, which a coding agent's UI needs.
    pub new_session: bool,
}

/// What a plan is built from, besides the config.
pub struct PlanInput<'a> {
    pub socket: PathBuf,
    pub ca_cert: &'a Path,
    pub bundle: &'a Path,
    pub cwd: PathBuf,
    pub home: Option<PathBuf>,
    pub exe: Option<PathBuf>,
    /// `--hide PATH` from the command line (e.g. `~/.config/gh`, `~/.aws`).
    pub extra_hide: Vec<PathBuf>,
    pub interactive: bool,
}

/// Absolute, symlinks resolved; `None` for a path that does not exist.
fn real(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok()
}

impl Plan {
    /// The plan for `config`. Fails when the working directory is inside a hidden path.
    pub fn new(config: &Config, input: PlanInput<'_>) -> Result<Plan> {
        let mut hide: Vec<PathBuf> = [&config.data_dir, &config.ca.dir]
            .into_iter()
            .filter_map(|p| real(p))
            .collect();
        if let Some(cfg) = real(Path::new(&config.source)) {
            hide.push(cfg);
        }
        for s in &config.secrets {
            if let SecretSource::File(f) = &s.from {
                hide.extend(real(f));
            }
        }
        for p in &input.extra_hide {
            match real(p) {
                Some(r) => hide.push(r),
                None => {
                    return Err(Error::Invalid(format!(
                        "--hide {}: no such file or directory",
                        p.display()
                    )))
                }
            }
        }
        hide.sort();
        hide.dedup();
        let cwd = real(&input.cwd).unwrap_or(input.cwd);
        if let Some(h) = hide.iter().find(|h| cwd.starts_with(h)) {
            return Err(Error::Invalid(format!(
                "the working directory {} is inside {}, which an isolated run hides: run it from elsewhere",
                cwd.display(),
                h.display()
            )));
        }
        let private = [Path::new("/tmp"), Path::new("/run")];
        let keep = [Some(cwd.clone()), input.home.as_deref().and_then(real)]
            .into_iter()
            .flatten()
            .filter(|k| private.iter().any(|p| k.starts_with(p)))
            .collect();
        let show = [input.ca_cert, input.bundle]
            .into_iter()
            .filter_map(real)
            .collect();
        let read_only = [Some(config.policy.dir.clone()), input.exe]
            .into_iter()
            .flatten()
            .filter_map(|p| real(&p))
            .collect();
        Ok(Plan {
            hide,
            show,
            read_only,
            keep,
            socket: input.socket,
            cwd,
            new_session: !input.interactive,
        })
    }

    /// The bubblewrap arguments that run `inner` (the relay and the command) in the sandbox.
    /// Order matters: later mounts lie on top of earlier ones, so what is hidden is mounted
    /// after what is kept, and what is shown again after what is hidden.
    pub fn args(&self, inner: &[OsString]) -> Vec<OsString> {
        fn bind(a: &mut Vec<OsString>, flag: &str, src: &Path, dst: &Path) {
            a.push(flag.into());
            a.push(src.into());
            a.push(dst.into());
        }
        let mut a: Vec<OsString> = [
            "--unshare-all",
            "--unshare-user",
            "--disable-userns",
            "--die-with-parent",
            "--cap-drop",
            "ALL",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        if self.new_session {
            a.push("--new-session".into());
        }
        for x in [
            "--bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp", "--tmpfs",
            "/run",
        ] {
            a.push(x.into());
        }
        for k in &self.keep {
            bind(&mut a, "--bind", k, k);
        }
        for r in &self.read_only {
            bind(&mut a, "--ro-bind", r, r);
        }
        for h in &self.hide {
            if h.is_dir() {
                a.push("--tmpfs".into());
                a.push(h.into());
            } else {
                bind(&mut a, "--ro-bind", Path::new("/dev/null"), h);
            }
        }
        for s in &self.show {
            bind(&mut a, "--ro-bind", s, s);
        }
        bind(&mut a, "--bind", &self.socket, Path::new(SOCKET_INSIDE));
        a.push("--chdir".into());
        a.push(self.cwd.clone().into());
        a.push("--".into());
        a.extend(inner.iter().cloned());
        a
    }
}

/// The `bwrap` executable on `PATH`.
pub fn find_bwrap() -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("bwrap"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Invalid(
                "clawser run --isolate needs bubblewrap (bwrap) on PATH: apt-get install bubblewrap"
                    .into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dir: &Path) -> Plan {
        Plan {
            hide: vec![dir.join("data"), dir.join("clawser.yaml")],
            show: vec![dir.join("data/ca-bundle.pem")],
            read_only: vec![dir.join("policies")],
            keep: vec![PathBuf::from("/tmp/work")],
            socket: dir.join("data/proxy.sock"),
            cwd: PathBuf::from("/tmp/work"),
            new_session: true,
        }
    }

    fn pos(args: &[OsString], s: &str) -> usize {
        args.iter().position(|a| a == s).unwrap_or(usize::MAX)
    }

    #[test]
    fn hidden_paths_lie_over_kept_ones_and_shown_ones_over_hidden() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("data")).unwrap();
        std::fs::write(d.path().join("clawser.yaml"), "").unwrap();
        let p = plan(d.path());
        let args = p.args(&["sh".into(), "-c".into(), "true".into()]);
        let data = d.path().join("data").display().to_string();
        let cfg = d.path().join("clawser.yaml").display().to_string();
        let bundle = d.path().join("data/ca-bundle.pem").display().to_string();
        assert!(pos(&args, "/tmp/work") < pos(&args, &data));
        assert_eq!(args[pos(&args, &data) - 1], "--tmpfs");
        assert_eq!(
            args[pos(&args, &cfg) - 1],
            "/dev/null",
            "a file is hidden by /dev/null"
        );
        assert!(pos(&args, &data) < pos(&args, &bundle));
        assert!(pos(&args, "--unshare-all") < pos(&args, "--"));
        assert!(args.iter().any(|a| a == "--disable-userns"));
        assert!(args.iter().any(|a| a == SOCKET_INSIDE));
        assert_eq!(args.last().unwrap(), "true");
    }

    #[test]
    fn a_working_directory_inside_a_hidden_path_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let yaml = format!("data_dir: {}/data\n", d.path().display());
        let config = Config::from_yaml(&yaml, "test", d.path()).unwrap();
        std::fs::create_dir_all(d.path().join("data/sub")).unwrap();
        let input = |cwd: PathBuf| PlanInput {
            socket: d.path().join("data/proxy.sock"),
            ca_cert: Path::new("/nonexistent"),
            bundle: Path::new("/nonexistent"),
            cwd,
            home: None,
            exe: None,
            extra_hide: vec![],
            interactive: false,
        };
        let e = Plan::new(&config, input(d.path().join("data/sub"))).unwrap_err();
        assert!(e.to_string().contains("hides"), "{e}");
        let p = Plan::new(&config, input(d.path().to_path_buf())).unwrap();
        assert!(p
            .hide
            .contains(&std::fs::canonicalize(d.path().join("data")).unwrap()));
    }
}
