//! Enforced egress (`clawser run --isolate`, DESIGN.md section 10): the command and
//! everything it spawns run in a bubblewrap sandbox whose only way out is Clawser's proxy.
//!
//! - `plan.rs`: what the sandbox hides, shows and keeps, as bubblewrap arguments (pure).
//! - `relay.rs`: inside the sandbox (PID 1), the loopback port `HTTPS_PROXY` names, relayed
//!   to the proxy's Unix socket; it runs the command and exits with its status.
//! - `confine.rs`: the command's seccomp filter (no terminal injection, no Unix sockets to
//!   host services, no io_uring), then `exec`.
//!
//! Why bubblewrap: it is the established, audited tool for unprivileged namespaces (Debian's
//! `bubblewrap`, used by Flatpak and by Anthropic's sandbox-runtime), works as root and as an
//! unprivileged user through user namespaces, and keeps Clawser free of `unsafe` code
//! (the crate forbids it; calling `unshare`/`mount` directly would need it).

pub mod confine;
pub mod plan;
pub mod relay;

pub use plan::{find_bwrap, Plan, PlanInput, SOCKET_INSIDE};
