//! The installer's one error type: what could not be changed on this machine, and what to do about
//! it. It owns the wording of those messages; it does not decide what to retry.

use std::path::PathBuf;

/// Something `airlock setup` or `airlock uninstall` could not do.
#[derive(Debug, thiserror::Error)]
pub enum InstallerError {
    /// A file or directory could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done ("write", "read", "remove").
        action: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A tool the step needs is not installed.
    #[error("`{tool}` is not installed, so {what} cannot be changed: install {package} and run this again")]
    ToolMissing {
        /// The command.
        tool: String,
        /// The store or setting it serves.
        what: String,
        /// The package that provides it.
        package: String,
    },
    /// A command ran and failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line (never holds a secret: only paths and names).
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on stderr, trimmed.
        stderr: String,
    },
    /// The manifest of an earlier setup is unreadable.
    #[error("the setup manifest {} is not valid ({message}); move it aside and run `airlock uninstall` again to remove what can be found without it", path.display())]
    Manifest {
        /// Where it is.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// The certificate given is not one PEM certificate.
    #[error("the device CA certificate is not a PEM certificate ({0}); run `airlockd --init` to make it again")]
    BadCertificate(String),
    /// A store or setting holds something that is not ours to change.
    #[error("{0}")]
    Refused(String),
}

impl InstallerError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        InstallerError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Results of this crate.
pub type Result<T, E = InstallerError> = std::result::Result<T, E>;
