//! Inside the sandbox (`clawser sandbox-relay`): the command's `HTTPS_PROXY` points at a
//! loopback port of the sandbox's own network namespace, where this relay listens; each
//! connection is carried, byte for byte, to the proxy's Unix socket. The relay runs the
//! command and exits with its status. It holds no secret: what it carries is what the
//! command sends, and the proxy authenticates it as on its TCP port.

use std::path::PathBuf;

use tokio::net::{TcpListener, UnixStream};

use crate::error::{Error, Result};

/// Binds `127.0.0.1:port` (and `[::1]:port` where the sandbox has IPv6), starts `cmd`
/// (confined, through `clawser sandbox-exec`), and relays until it exits; returns its exit
/// code (128 + signal when a signal ended it). The relay is PID 1 of the sandbox.
pub async fn run(port: u16, socket: PathBuf, cmd: Vec<String>) -> Result<i32> {
    if cmd.is_empty() {
        return Err(Error::Invalid("no command given".into()));
    }
    // The command runs as the same user: without this it could write into the relay's
    // memory (/proc/1/mem) and use its unfiltered Unix socket calls.
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(|e| Error::Sandbox(format!("making the relay non-dumpable: {e}")))?;
    let v4 = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(Error::io(
            "binding the relay on",
            format!("127.0.0.1:{port}"),
        ))?;
    let v6 = TcpListener::bind(("::1", port)).await.ok();
    for l in std::iter::once(v4).chain(v6) {
        let socket = socket.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut tcp, _)) = l.accept().await else {
                    continue;
                };
                let socket = socket.clone();
                tokio::spawn(async move {
                    // A refused connection is the proxy's to explain; here it just closes.
                    if let Ok(mut unix) = UnixStream::connect(&socket).await {
                        let _ = tcp.set_nodelay(true);
                        let _ = tokio::io::copy_bidirectional(&mut tcp, &mut unix).await;
                    }
                });
            }
        });
    }
    // The command starts through `clawser sandbox-exec`, which installs the seccomp filter
    // (`confine.rs`) and then becomes the command.
    let exe = std::env::current_exe().map_err(Error::io("locating", "the clawser binary"))?;
    let prog = cmd[0].as_str();
    let mut child = tokio::process::Command::new(&exe)
        .arg("sandbox-exec")
        .arg("--")
        .args(&cmd)
        .spawn()
        .map_err(Error::io("running", prog))?;
    // Ctrl-C reaches the command too (same process group): the relay keeps carrying its
    // connections until the command itself ends.
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(Error::io("handling", "SIGINT"))?;
    let status = loop {
        tokio::select! {
            s = child.wait() => break s.map_err(Error::io("waiting for", prog))?,
            _ = interrupt.recv() => {}
        }
    };
    Ok(exit_code(status))
}

/// The shell's convention: the exit code, else 128 + the signal that ended the process.
pub fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}
