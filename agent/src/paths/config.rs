//! The daemon's configuration directory: where an admin or an MDM puts what the daemon reads but
//! does not own — the fleet enrollment (`enrollment.toml`) and the policy drop folder (`policy.d/`).
//! It only names paths; reading them is the fleet module's job.

use std::path::{Path, PathBuf};

use crate::{AgentError, Result};

/// The system-wide configuration directory (the daemon run as root or as a service user).
pub const SYSTEM_CONFIG_DIR: &str = "/etc/airlock";

/// Environment variable naming the configuration directory.
pub const CONFIG_DIR_ENV: &str = "AIRLOCK_CONFIG_DIR";

/// The daemon's configuration directory and the well-known files in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDir {
    root: PathBuf,
}

impl ConfigDir {
    /// Uses `root` as the configuration directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        ConfigDir { root: root.into() }
    }

    /// An explicit path, else `$AIRLOCK_CONFIG_DIR`, else `/etc/airlock` for root, else
    /// `$XDG_CONFIG_HOME/airlock` or `~/.config/airlock`.
    pub fn resolve(explicit: Option<&Path>) -> Result<Self> {
        if let Some(p) = explicit {
            return Ok(Self::new(p));
        }
        if let Some(p) = std::env::var_os(CONFIG_DIR_ENV).filter(|v| !v.is_empty()) {
            return Ok(Self::new(PathBuf::from(p)));
        }
        if super::current_uid() == Some(0) {
            return Ok(Self::new(SYSTEM_CONFIG_DIR));
        }
        if let Some(p) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            return Ok(Self::new(PathBuf::from(p).join("airlock")));
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => Ok(Self::new(PathBuf::from(home).join(".config/airlock"))),
            None => Err(AgentError::Policy {
                origin: "environment".into(),
                message: format!(
                    "cannot find a configuration directory: HOME is not set; pass --config-dir or set {CONFIG_DIR_ENV}"
                ),
            }),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The fleet enrollment, written by `airlock enroll` or dropped by an MDM.
    pub fn enrollment_file(&self) -> PathBuf {
        self.root.join("enrollment.toml")
    }

    /// The drop folder: a signed bundle written (or renamed) here is applied.
    pub fn drop_dir(&self) -> PathBuf {
        self.root.join("policy.d")
    }
}
