//! The last step inside the sandbox (`clawser sandbox-exec -- CMD`): a seccomp filter for
//! what namespaces cannot express, then `exec` of the command. The filter refuses (`EPERM`):
//! - `ioctl(TIOCSTI)` and `ioctl(TIOCLINUX)`: pushing keystrokes into the caller's terminal,
//!   which an interactive run keeps;
//! - `socket(AF_UNIX, …)`: connecting to host services listening on Unix sockets in the
//!   file system (ssh-agent, Docker, D-Bus, tmux), which the network namespace does not cover.
//!   `socketpair` stays allowed (pipes between a program's own processes);
//! - `io_uring_setup`: io_uring can open sockets without the `socket` system call.
//!
//! Other architectures' system calls (i386 on x86_64) kill the process (seccompiler's
//! architecture check); x32 calls, which pass that check, are refused by number. The relay,
//! outside this filter, is not dumpable, so the command cannot write into its memory to
//! borrow its Unix socket.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::os::unix::process::CommandExt as _;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use crate::error::{Error, Result};

/// The filter for this machine's architecture.
pub fn filter() -> Result<BpfProgram> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => TargetArch::x86_64,
        "aarch64" => TargetArch::aarch64,
        "riscv64" => TargetArch::riscv64,
        other => {
            return Err(Error::Sandbox(format!(
                "clawser run --isolate has no seccomp filter for {other}"
            )))
        }
    };
    let bad = |e: seccompiler::BackendError| Error::Sandbox(format!("seccomp filter: {e}"));
    let arg_is = |index: u8, value: u64| -> Result<SeccompRule> {
        let c = SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value)
            .map_err(bad)?;
        SeccompRule::new(vec![c]).map_err(bad)
    };
    // The ioctl request type differs between C libraries and targets (u64 here).
    #[allow(clippy::unnecessary_cast)]
    let (tiocsti, tioclinux) = (libc::TIOCSTI as u64, libc::TIOCLINUX as u64);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    rules.insert(
        libc::SYS_ioctl,
        vec![arg_is(1, tiocsti)?, arg_is(1, tioclinux)?],
    );
    rules.insert(libc::SYS_socket, vec![arg_is(0, libc::AF_UNIX as u64)?]);
    rules.insert(libc::SYS_io_uring_setup, vec![]);
    // x32 system calls report the x86_64 architecture with bit 30 set in the number: the
    // same three are refused outright there (kernels built with the x32 ABI).
    if matches!(arch, TargetArch::x86_64) {
        const X32: i64 = 0x4000_0000;
        for nr in [
            libc::SYS_socket,
            libc::SYS_io_uring_setup,
            514, /* x32 ioctl */
        ] {
            rules.insert(X32 | nr, vec![]);
        }
    }
    let f = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EPERM as u32),
        arch,
    )
    .map_err(bad)?;
    f.try_into().map_err(bad)
}

/// Installs the filter on this process and replaces it with `cmd`. Returns only on failure.
pub fn exec(cmd: &[String]) -> Result<Infallible> {
    let (prog, args) = cmd
        .split_first()
        .ok_or_else(|| Error::Sandbox("no command given".into()))?;
    let program = filter()?;
    seccompiler::apply_filter(&program)
        .map_err(|e| Error::Sandbox(format!("installing the seccomp filter: {e}")))?;
    let e = std::process::Command::new(prog).args(args).exec();
    Err(Error::io("running", prog)(e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filter_compiles_for_this_machine() {
        let p = super::filter().unwrap();
        assert!(p.len() > 8, "{} instructions", p.len());
    }
}
