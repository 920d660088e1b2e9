//! The crate's error type. Every variant says which side is at fault, so the proxy can
//! answer with the right status and the operator can read what went wrong.

use std::path::PathBuf;

/// Who caused an error: the client (4xx), the upstream (502/504) or Clawser itself (500).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// Bad input from the agent or the operator.
    Client,
    /// The upstream server failed.
    Upstream,
    /// Clawser failed (storage, CA, policy engine).
    Internal,
}

/// Errors of the Clawser library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error("config {path}: {message}")]
    Config {
        /// The config file (or `<embedded defaults>`).
        path: String,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done (`reading`, `writing`, `creating`).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A secret file is readable by group or others.
    #[error("{path} is readable by group or others (mode {mode:o}); run: chmod 600 {path}", path = path.display())]
    InsecureKeyFile {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The certificate authority could not load or issue a certificate.
    #[error("certificate authority: {0}")]
    Ca(String),
    /// TLS configuration failed.
    #[error("tls: {0}")]
    Tls(String),
    /// The sled store failed.
    #[error("store: {0}")]
    Store(String),
    /// The ledger's append queue is full (`ledger.max_queue`): nothing is forwarded.
    #[error("the ledger has {0} appends waiting (ledger.max_queue); try again shortly")]
    LedgerBusy(usize),
    /// A policy could not be loaded, compiled, tested or evaluated.
    #[error("policy: {0}")]
    Policy(String),
    /// A referenced object does not exist.
    #[error("{kind} {id:?} not found")]
    NotFound {
        /// agent, job, credential...
        kind: &'static str,
        /// The id that was looked up.
        id: String,
    },
    /// The request is invalid (bad id, duplicate, bad JSON).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// `clawser run --isolate` cannot confine the command (so it does not run it).
    #[error("isolated run: {0}")]
    Sandbox(String),
    /// The upstream server failed or timed out.
    #[error("upstream: {0}")]
    Upstream(String),
    /// The admin API answered with an error (CLI side).
    #[error("admin API {status}: {message}")]
    Admin {
        /// HTTP status.
        status: u16,
        /// The error message from the server.
        message: String,
    },
}

impl Error {
    /// Who is at fault.
    pub fn blame(&self) -> Blame {
        match self {
            Error::Config { .. } | Error::NotFound { .. } | Error::Invalid(_) => Blame::Client,
            Error::Upstream(_) => Blame::Upstream,
            Error::Admin { status, .. } if *status < 500 => Blame::Client,
            _ => Blame::Internal,
        }
    }

    /// Wraps an I/O error with what was being done to which path.
    pub fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io {
            action,
            path,
            source,
        }
    }
}

impl From<sled::Error> for Error {
    fn from(e: sled::Error) -> Self {
        Error::Store(e.to_string())
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
