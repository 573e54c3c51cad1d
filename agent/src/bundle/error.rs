//! The two ways bundle code fails: a [`Refusal`] (a bundle was looked at and is not to be used, with
//! a stable [`Reason`] code) and a [`BundleError`] (an admin operation — key generation, key files,
//! building — could not be done). It owns their codes and wording; it must not decide when either
//! happens.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Why a bundle was refused, as a stable machine-readable code. The checks run in the order of the
/// variants, so a bundle with several faults reports the first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Larger than [`super::MAX_BUNDLE_BYTES`].
    TooLarge,
    /// Not a DSSE envelope of [`super::PAYLOAD_TYPE`] whose payload is a bundle [`super::Payload`].
    Malformed,
    /// A trusted key's signature does not verify: the bundle was altered or signed wrongly.
    BadSignature,
    /// No signature is by a key the agent trusts.
    UnknownKey,
    /// Signed for another fleet.
    WrongFleet,
    /// Older than the version already accepted from the same key.
    Rollback,
    /// Past its `expires_at`.
    Expired,
    /// Needs a newer agent than this one.
    AgentTooOld,
    /// The policy inside does not compile.
    InvalidPolicy,
}

impl Reason {
    /// The stable code: `too_large`, `malformed`, `bad_signature`, `unknown_key`, `wrong_fleet`,
    /// `rollback`, `expired`, `agent_too_old`, `invalid_policy`.
    pub fn code(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::Malformed => "malformed",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownKey => "unknown_key",
            Reason::WrongFleet => "wrong_fleet",
            Reason::Rollback => "rollback",
            Reason::Expired => "expired",
            Reason::AgentTooOld => "agent_too_old",
            Reason::InvalidPolicy => "invalid_policy",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

/// Why a bundle was refused: a stable code and a sentence saying what was wrong and what to do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {message}", reason.code())]
pub struct Refusal {
    /// The stable code.
    pub reason: Reason,
    /// What was wrong and what to do about it.
    pub message: String,
}

impl Refusal {
    /// A refusal with `reason` and `message`.
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Refusal {
            reason,
            message: message.into(),
        }
    }

    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Refusal::new(Reason::Malformed, message)
    }
}

/// An admin operation on keys or bundles failed. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done, e.g. "cannot read public key".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A key file already exists, and keys are never overwritten.
    #[error(
        "{} already exists; a key file is never overwritten (a lost signing key cannot be recovered): \
         choose another name, or move the old file away yourself if you are sure it is unused",
        path.display()
    )]
    Exists {
        /// The existing file.
        path: PathBuf,
    },
    /// A key file or key text is not an Ed25519 key in the expected format.
    #[error("{origin}: {message}")]
    Key {
        /// Where the key came from (a path, or "public key text").
        origin: String,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A signing key file that others may read.
    #[error(
        "{} is readable by group or others (mode {mode:o}); a signing key must be private: \
         run `chmod 600 {}` and consider the key leaked if others could log in here",
        path.display(),
        path.display()
    )]
    KeyPermissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The policy source does not compile; the compiler's own error, naming the file.
    #[error(transparent)]
    Policy(#[from] crate::AgentError),
    /// A build option is unusable.
    #[error("{0}")]
    Options(String),
    /// The OS random number generator failed.
    #[error("cannot generate a key: the OS random number generator failed ({0}); try again")]
    Random(String),
}

impl BundleError {
    pub(crate) fn io(action: &'static str, path: &std::path::Path, source: std::io::Error) -> Self {
        BundleError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}
