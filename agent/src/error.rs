//! The agent's one error type. Every variant's text says what happened and what to do next; callers at the
//! binary edge print it as is. This module must not log: errors are values, logged once where handled.

use std::path::PathBuf;

/// Result alias for the agent library.
pub type Result<T, E = AgentError> = std::result::Result<T, E>;

/// Everything that can go wrong inside the agent library.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A file or directory operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What the agent was doing, e.g. "cannot read policy file".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The policy could not be parsed or is inconsistent.
    #[error("invalid policy {origin}: {message}")]
    Policy {
        /// Where the policy came from ("embedded default" or a path).
        origin: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The policy could not be parsed or is inconsistent, with where and how to fix it.
    #[error("invalid policy {0}")]
    PolicyAt(Box<crate::policy::diagnostic::Diagnostic>),
    /// The device CA could not be created, loaded or used.
    #[error("device CA: {0}")]
    Ca(String),
    /// The listener could not be bound.
    #[error("cannot listen on {addr}: {source}. {hint}")]
    Bind {
        /// The address that was asked for.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
        /// What to do about it.
        hint: String,
    },
    /// The state directory is not safe to use.
    #[error("state directory {path}: it {problem}; {fix}")]
    StateDir {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// The control socket cannot be taken.
    #[error("control socket {path}: it {problem}; {fix}")]
    Control {
        /// The socket's path.
        path: PathBuf,
        /// What is wrong.
        problem: String,
        /// What to do.
        fix: String,
    },
    /// TLS configuration for the upstream client failed.
    #[error("upstream TLS setup: {0}")]
    UpstreamTls(String),
    /// The journal cannot be opened, written or read.
    #[error(transparent)]
    Journal(#[from] crate::journal::JournalError),
}

impl AgentError {
    /// Shorthand for an [`AgentError::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        AgentError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
