//! What an isolated run may see and reach, as bubblewrap (`bwrap`) arguments. Pure: the
//! plan is built from the config and the paths it names, and turned into arguments here;
//! `cli/run.rs` spawns it.
//!
//! The sandbox has its own network namespace (loopback only: no route out, none to the
//! host's loopback or the metadata address), its own PID, IPC and UTS namespaces, a user
//! namespace in which no further user namespace can be made, and no capabilities. The file
//! system is the host's, **read-only**, with:
//! - the working directory writable (and the runtimes' own state folders in the home
//!   directory, [`HOME_WRITABLE`], plus `--writable` paths), its `.git/hooks` read-only;
//! - private, empty `/tmp` and `/run` (no host Unix sockets such as Docker's);
//! - Clawser's data dir, CA dir, config file and secret files hidden (an empty tmpfs over a
//!   directory, `/dev/null` over a file), and so are the usual credential stores of the
//!   home directory ([`HOME_HIDDEN`]) and `--hide` paths; the CA certificate and bundle are
//!   shown again read-only, so clients still trust Clawser's CA;
//! - the proxy's Unix socket at [`SOCKET_INSIDE`], the only way out.
//!
//! A protected path (hidden or read-only) below a writable one must be its direct child (a
//! mount point, which cannot be renamed): deeper, the command could rename a parent aside
//! and put its own in place. Such plans are refused.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use crate::config::{Config, SecretSource};
use crate::error::{Error, Result};

/// Where the proxy's Unix socket appears inside the sandbox.
pub const SOCKET_INSIDE: &str = "/run/clawser/proxy.sock";

/// Its folder.
const SOCKET_DIR_INSIDE: &str = "/run/clawser";

/// Credential stores in the home directory, hidden from every isolated run.
pub const HOME_HIDDEN: &[&str] = &[
    ".aws",
    ".azure",
    ".config/gcloud",
    ".config/gh",
    ".config/hub",
    ".docker",
    ".kube",
    ".ssh",
    ".gnupg",
    ".netrc",
    ".git-credentials",
    ".vault-token",
    ".pgpass",
    ".npmrc",
    ".pypirc",
    ".cargo/credentials",
    ".cargo/credentials.toml",
];

/// The agent runtimes' own state in the home directory, kept writable when it exists.
pub const HOME_WRITABLE: &[&str] = &[
    ".cache",
    ".claude",
    ".claude.json",
    ".codex",
    ".openclaw",
    ".hermes",
    ".npm",
    ".cargo/registry",
    ".cargo/git",
];

/// Everything bubblewrap needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Writable (the working directory, runtime state, `--writable`).
    pub writable: Vec<PathBuf>,
    /// Read-only on top of what is writable (the policy directory, the `clawser` binary,
    /// the working directory's `.git/hooks`).
    pub read_only: Vec<PathBuf>,
    /// Hidden: directories get an empty tmpfs, files `/dev/null`.
    pub hide: Vec<PathBuf>,
    /// Shown again, read-only, on top of what is hidden (the CA certificate and bundle).
    pub show: Vec<PathBuf>,
    /// The proxy's Unix socket on the host.
    pub socket: PathBuf,
    /// The working directory inside.
    pub cwd: PathBuf,
    /// Run the command in a new session. Off for an interactive terminal, which a coding
    /// agent's UI needs (terminal injection is refused by the seccomp filter instead).
    pub new_session: bool,
    /// `/var/run` is a directory of its own (not a link to `/run`): made private too.
    pub var_run: bool,
}

/// What a plan is built from, besides the config.
pub struct PlanInput<'a> {
    pub socket: PathBuf,
    pub ca_cert: &'a Path,
    pub bundle: &'a Path,
    pub cwd: PathBuf,
    pub home: Option<PathBuf>,
    pub exe: Option<PathBuf>,
    /// `--hide PATH` (e.g. where a `command:` secret reads its credential).
    pub extra_hide: Vec<PathBuf>,
    /// `--writable PATH`.
    pub extra_writable: Vec<PathBuf>,
    pub interactive: bool,
}

/// Absolute, symlinks resolved; `None` for a path that does not exist.
fn real(p: &Path) -> Option<PathBuf> {
    std::fs::canonicalize(p).ok()
}

fn must_exist(flag: &str, p: &Path) -> Result<PathBuf> {
    real(p)
        .ok_or_else(|| Error::Sandbox(format!("{flag} {}: no such file or directory", p.display())))
}

impl Plan {
    /// The plan for `config`; refused when it could not keep its promises (see the module
    /// documentation).
    pub fn new(config: &Config, input: PlanInput<'_>) -> Result<Plan> {
        let home = input.home.as_deref().and_then(real);
        let mut hide: Vec<PathBuf> = [&config.data_dir, &config.ca.dir]
            .into_iter()
            .filter_map(|p| real(p))
            .collect();
        hide.extend(real(Path::new(&config.source)));
        for s in &config.secrets {
            if let SecretSource::File(f) = &s.from {
                hide.extend(real(f));
            }
        }
        if let Some(h) = &home {
            hide.extend(HOME_HIDDEN.iter().filter_map(|r| real(&h.join(r))));
        }
        for p in &input.extra_hide {
            hide.push(must_exist("--hide", p)?);
        }
        hide.sort();
        hide.dedup();
        let cwd = real(&input.cwd).unwrap_or(input.cwd);
        let private = [Path::new("/tmp"), Path::new("/run")];
        // The home directory (or a folder above it) as the working directory would make the
        // user's shell start-up files and the runtimes' settings writable.
        let opens_home = home.as_ref().is_some_and(|h| h.starts_with(&cwd));
        if cwd == Path::new("/")
            || private.iter().any(|p| cwd == *p)
            || cwd.starts_with("/run")
            || opens_home
        {
            return Err(Error::Sandbox(format!(
                "the working directory {} would open too much of the host to the command: run it from a project directory",
                cwd.display()
            )));
        }
        let mut writable = vec![cwd.clone()];
        // A repository's .git is a mount of its own (it cannot be moved aside), so its hooks
        // can be read-only below it.
        let git_dir = real(&cwd.join(".git")).filter(|g| g.is_dir() && g.parent() == Some(&cwd));
        writable.extend(git_dir.clone());
        if let Some(h) = &home {
            writable.extend(HOME_WRITABLE.iter().filter_map(|r| real(&h.join(r))));
        }
        for p in &input.extra_writable {
            writable.push(must_exist("--writable", p)?);
        }
        writable.sort();
        writable.dedup();
        let mut read_only: Vec<PathBuf> = [Some(config.policy.dir.clone()), input.exe]
            .into_iter()
            .flatten()
            .filter_map(|p| real(&p))
            .collect();
        if let Some(g) = &git_dir {
            read_only.extend(real(&g.join("hooks")));
        }
        let show = [input.ca_cert, input.bundle]
            .into_iter()
            .filter_map(real)
            .collect();
        let plan = Plan {
            writable,
            read_only,
            hide,
            show,
            socket: input.socket,
            cwd,
            new_session: !input.interactive,
            var_run: std::fs::symlink_metadata("/var/run").is_ok_and(|m| m.is_dir()),
        };
        plan.check()?;
        Ok(plan)
    }

    /// Refuses a plan whose protected paths could be moved aside from inside.
    fn check(&self) -> Result<()> {
        for w in &self.writable {
            if let Some(h) = self.hide.iter().find(|h| w.starts_with(h)) {
                return Err(Error::Sandbox(format!(
                    "{} is inside {}, which an isolated run hides: run it from elsewhere",
                    w.display(),
                    h.display()
                )));
            }
            for p in self.hide.iter().chain(&self.read_only) {
                // Its parent must be a mount of the plan (which cannot be renamed).
                let parent_is_mount = p.parent().is_some_and(|parent| {
                    self.writable
                        .iter()
                        .chain(&self.read_only)
                        .any(|m| m == parent)
                });
                if p != w && p.starts_with(w) && !parent_is_mount {
                    return Err(Error::Sandbox(format!(
                        "{} lies inside {}, which the command may write: it could move a parent folder aside and put its own in place. Keep Clawser's files and binary out of the working directory (or run from elsewhere)",
                        p.display(),
                        w.display()
                    )));
                }
            }
        }
        Ok(())
    }

    /// The bubblewrap arguments that run `inner` (the relay and the command) in the sandbox.
    /// Order matters: later mounts lie on top of earlier ones.
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
            // The relay is PID 1: no bubblewrap init beside it whose memory the command
            // could write (the relay makes itself non-dumpable).
            "--as-pid-1",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        if self.new_session {
            a.push("--new-session".into());
        }
        for x in [
            "--ro-bind",
            "/",
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
            "--tmpfs",
            "/run",
        ] {
            a.push(x.into());
        }
        if self.var_run {
            a.push("--tmpfs".into());
            a.push("/var/run".into());
        }
        for w in &self.writable {
            bind(&mut a, "--bind", w, w);
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
        // The socket's folder is a read-only mount of its own: the command cannot rename it
        // and put a link to some host socket in its place for the relay to follow.
        a.push("--tmpfs".into());
        a.push(SOCKET_DIR_INSIDE.into());
        bind(&mut a, "--bind", &self.socket, Path::new(SOCKET_INSIDE));
        a.push("--remount-ro".into());
        a.push(SOCKET_DIR_INSIDE.into());
        a.push("--chdir".into());
        a.push(self.cwd.clone().into());
        a.push("--".into());
        a.extend(inner.iter().cloned());
        a
    }
}

/// Where bubblewrap is looked for: system locations only (never `PATH`, which the command
/// could extend with a folder it writes).
pub const BWRAP_PATHS: &[&str] = &["/usr/bin/bwrap", "/bin/bwrap", "/usr/local/bin/bwrap"];

/// The first `bwrap` of [`BWRAP_PATHS`] that it and every folder above it are owned by root
/// and writable by no one else.
pub fn find_bwrap() -> Result<PathBuf> {
    use std::os::unix::fs::MetadataExt as _;
    let trusted = |p: &Path| {
        p.ancestors()
            .all(|a| std::fs::metadata(a).is_ok_and(|m| m.uid() == 0 && m.mode() & 0o022 == 0))
    };
    BWRAP_PATHS
        .iter()
        .map(PathBuf::from)
        .find_map(|p| real(&p).filter(|r| r.is_file() && trusted(r)))
        .ok_or_else(|| {
            Error::Sandbox(
                "clawser run --isolate needs bubblewrap, root-owned in /usr/bin, /bin or /usr/local/bin: apt-get install bubblewrap"
                    .into(),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(dir: &Path) -> Plan {
        Plan {
            writable: vec![PathBuf::from("/tmp/work")],
            read_only: vec![dir.join("policies")],
            hide: vec![dir.join("data"), dir.join("clawser.yaml")],
            show: vec![dir.join("data/ca-bundle.pem")],
            socket: dir.join("data/proxy.sock"),
            cwd: PathBuf::from("/tmp/work"),
            new_session: true,
            var_run: false,
        }
    }

    fn pos(args: &[OsString], s: &str) -> usize {
        args.iter().position(|a| a == s).unwrap_or(usize::MAX)
    }

    #[test]
    fn mounts_are_ordered_so_hidden_paths_stay_hidden() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("data")).unwrap();
        std::fs::write(d.path().join("clawser.yaml"), "").unwrap();
        let p = plan(d.path());
        let args = p.args(&["sh".into(), "-c".into(), "true".into()]);
        let data = d.path().join("data").display().to_string();
        let cfg = d.path().join("clawser.yaml").display().to_string();
        let bundle = d.path().join("data/ca-bundle.pem").display().to_string();
        // The root is read-only; what is writable comes after it, what is hidden after that,
        // what is shown again last.
        assert_eq!(args[pos(&args, "--ro-bind") + 1], "/");
        assert!(pos(&args, "/tmp/work") < pos(&args, &data));
        assert_eq!(args[pos(&args, &data) - 1], "--tmpfs");
        assert_eq!(
            args[pos(&args, &cfg) - 1],
            "/dev/null",
            "a file is hidden by /dev/null"
        );
        assert!(pos(&args, &data) < pos(&args, &bundle));
        for flag in [
            "--unshare-all",
            "--disable-userns",
            "--as-pid-1",
            "--new-session",
        ] {
            assert!(pos(&args, flag) < pos(&args, "--"), "{flag}");
        }
        assert!(args.iter().any(|a| a == SOCKET_INSIDE));
        assert_eq!(args.last().unwrap(), "true");
    }

    fn input(d: &Path, cwd: PathBuf, exe: Option<PathBuf>) -> PlanInput<'static> {
        PlanInput {
            socket: d.join("data/proxy.sock"),
            ca_cert: Path::new("/nonexistent"),
            bundle: Path::new("/nonexistent"),
            cwd,
            home: None,
            exe,
            extra_hide: vec![],
            extra_writable: vec![],
            interactive: false,
        }
    }

    #[test]
    fn plans_that_could_not_keep_their_promises_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let d = &std::fs::canonicalize(d.path()).unwrap();
        let yaml = format!("data_dir: {}/data\n", d.display());
        let config = Config::from_yaml(&yaml, "test", d).unwrap();
        std::fs::create_dir_all(d.join("data/sub")).unwrap();
        std::fs::create_dir_all(d.join("proj/target/release")).unwrap();
        std::fs::write(d.join("proj/target/release/clawser"), "").unwrap();
        // Inside a hidden path.
        let e = Plan::new(&config, input(d, d.join("data/sub"), None)).unwrap_err();
        assert!(e.to_string().contains("hides"), "{e}");
        // The binary two folders below the writable working directory: `mv target x` would
        // let the command put its own in place.
        let exe = Some(d.join("proj/target/release/clawser"));
        let e = Plan::new(&config, input(d, d.join("proj"), exe.clone())).unwrap_err();
        assert!(e.to_string().contains("move a parent folder aside"), "{e}");
        // The same binary with the working directory elsewhere is fine; so is the data dir
        // as a direct child of the working directory (a mount point cannot be moved).
        std::fs::create_dir_all(d.join("other")).unwrap();
        Plan::new(&config, input(d, d.join("other"), exe)).unwrap();
        let p = Plan::new(&config, input(d, d.to_path_buf(), None)).unwrap();
        assert!(p.hide.contains(&d.join("data")));
        // Working directories that would open the host.
        for cwd in ["/", "/tmp", "/run"] {
            assert!(
                Plan::new(&config, input(d, PathBuf::from(cwd), None)).is_err(),
                "{cwd}"
            );
        }
        let mut home = input(d, d.join("other"), None);
        home.home = Some(d.join("other"));
        assert!(Plan::new(&config, home).is_err(), "cwd = home");
        // A git checkout: .git is a mount of its own, its hooks read-only below it.
        std::fs::create_dir_all(d.join("other/.git/hooks")).unwrap();
        let p = Plan::new(&config, input(d, d.join("other"), None)).unwrap();
        assert!(p.writable.contains(&d.join("other/.git")), "{p:?}");
        assert!(p.read_only.contains(&d.join("other/.git/hooks")), "{p:?}");
    }
}
