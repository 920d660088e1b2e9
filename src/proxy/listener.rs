//! What the proxy accepts connections on: its TCP listener (`proxy.listen`) and its Unix
//! socket (`proxy.unix_socket`, the way out of `clawser run --isolate`). Both speak the same
//! proxy protocol and authenticate the same way.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::error::{Error, Result};

/// A listener the proxy serves: each accepted stream and a peer label for logs.
pub trait Accept: Send + Sync + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&self) -> impl Future<Output = io::Result<(Self::Io, String)>> + Send;
}

/// How long the accept loop pauses after a failed accept (e.g. out of file descriptors).
const ACCEPT_RETRY: std::time::Duration = std::time::Duration::from_millis(50);

/// The next accepted stream and its peer label, or `None` once `shutdown` turns true. A
/// failed accept is logged and retried after [`ACCEPT_RETRY`].
pub async fn next<L: Accept>(
    listener: &L,
    shutdown: &mut watch::Receiver<bool>,
) -> Option<(L::Io, String)> {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => return Some(x),
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            _ = shutdown.changed() => return None,
        }
    }
}

impl Accept for TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&self) -> io::Result<(Self::Io, String)> {
        let (s, peer) = TcpListener::accept(self).await?;
        let _ = s.set_nodelay(true);
        Ok((s, peer.to_string()))
    }
}

impl Accept for UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept(&self) -> io::Result<(Self::Io, String)> {
        let (s, _) = UnixListener::accept(self).await?;
        Ok((s, "unix".to_string()))
    }
}

/// Binds the proxy's Unix socket at `path`: a stale socket left by a previous run is
/// replaced, anything else at that path is an error. The socket is mode 0666, like a TCP
/// port on loopback that every local user can reach: the proxy credential is the gate.
pub fn bind_unix(path: &Path) -> Result<UnixListener> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(Error::Invalid(format!(
                "proxy.unix_socket: {} exists and is not a socket",
                path.display()
            )));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(Error::Invalid(format!(
                "proxy.unix_socket: another server listens on {}",
                path.display()
            )));
        }
        std::fs::remove_file(path).map_err(Error::io("removing the stale socket", path))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(Error::io("creating", dir))?;
    }
    let l = UnixListener::bind(path).map_err(Error::io("binding proxy.unix_socket", path))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
        .map_err(Error::io("setting the mode of", path))?;
    Ok(l)
}

/// Removes the socket file when the server stops.
pub struct SocketFile(pub PathBuf);

impl Drop for SocketFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
