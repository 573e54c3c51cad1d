//! The fleet enrollment: which fleet this device belongs to, the public keys its bundles must be
//! signed by, where to pull them and what to do with no valid policy at all. `airlock enroll` writes
//! it; an MDM may drop the same file. It owns the file's format and validation; it must not fetch or
//! apply anything.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::bundle::PublicKey;
use crate::policy::FailMode;
use crate::{AgentError, Result};

/// Shortest pull interval (tests go down to 1 s).
pub const MIN_INTERVAL_SECS: u64 = 1;
/// Default pull interval.
pub const DEFAULT_INTERVAL_SECS: u64 = 300;

/// `enrollment.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrollment {
    /// The fleet id bundles must name.
    pub fleet: String,
    /// HTTPS URL of the fleet's bundle; absent: bundles come only from the drop folder and
    /// `airlock policy apply`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The pinned public keys (the text of each `KEYFILE.pub`).
    pub pubkeys: Vec<String>,
    /// A root CA (PEM file) trusted for `url` besides the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// Seconds between pulls (jittered).
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// With no valid policy at all: `open` forwards and records under the embedded default,
    /// `closed` refuses AI hosts (`policy_unavailable`).
    #[serde(default)]
    pub fail_mode: FailMode,
}

fn default_interval() -> u64 {
    DEFAULT_INTERVAL_SECS
}

impl Enrollment {
    /// Checks what the file says, naming the file in every error.
    pub fn validate(&self, origin: &Path) -> Result<()> {
        let bad = |message: String| AgentError::Policy {
            origin: format!("enrollment {}", origin.display()),
            message,
        };
        if self.fleet.trim().is_empty() {
            return Err(bad("fleet is empty; give the fleet id bundles are built for (airlock enroll --fleet ID)".into()));
        }
        if self.pubkeys.is_empty() {
            return Err(bad(
                "no pubkeys: pin at least one signing key (airlock enroll --pubkey KEYFILE.pub)"
                    .into(),
            ));
        }
        for (i, k) in self.pubkeys.iter().enumerate() {
            PublicKey::from_text(k)
                .map_err(|e| bad(format!("pubkeys[{i}] is not an Ed25519 public key: {e}")))?;
        }
        if let Some(url) = &self.url {
            if !url.starts_with("https://") {
                return Err(bad(format!(
                    "url {url:?} must be https:// (bundles are signed, but their source must not be observable or blockable in plain text)"
                )));
            }
        }
        if self.interval_secs < MIN_INTERVAL_SECS {
            return Err(bad(format!(
                "interval_secs must be at least {MIN_INTERVAL_SECS}"
            )));
        }
        Ok(())
    }

    /// The pinned keys.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.pubkeys
            .iter()
            .filter_map(|k| PublicKey::from_text(k).ok())
            .collect()
    }

    /// Reads and validates the file; `None` when there is none (the device is not enrolled).
    pub fn load(path: &Path) -> Result<Option<Enrollment>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(AgentError::io("cannot read the enrollment", path, e)),
        };
        let e: Enrollment = toml::from_str(&text).map_err(|e| AgentError::Policy {
            origin: format!("enrollment {}", path.display()),
            message: e.message().to_string(),
        })?;
        e.validate(path)?;
        Ok(Some(e))
    }

    /// Writes the file (atomically, readable by all: it holds only public keys).
    pub fn save(&self, path: &Path) -> Result<()> {
        self.validate(path)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| AgentError::io("cannot create directory", dir, e))?;
        }
        let text = toml::to_string_pretty(self).map_err(|e| AgentError::Policy {
            origin: format!("enrollment {}", path.display()),
            message: e.to_string(),
        })?;
        let header = "# Airlock fleet enrollment (written by `airlock enroll`; an MDM may install this file instead).\n";
        crate::paths::write_atomic(path, format!("{header}{text}").as_bytes(), 0o644)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bundle::SigningKey;

    fn enrollment() -> Enrollment {
        Enrollment {
            fleet: "acme".into(),
            url: Some("https://policy.acme.example/laptops.bundle".into()),
            pubkeys: vec![SigningKey::generate().unwrap().public_key().to_text()],
            ca_file: None,
            interval_secs: 60,
            fail_mode: FailMode::Closed,
        }
    }

    #[test]
    fn an_enrollment_round_trips_through_its_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("enrollment.toml");
        assert_eq!(Enrollment::load(&path).unwrap(), None);
        let e = enrollment();
        e.save(&path).unwrap();
        assert_eq!(Enrollment::load(&path).unwrap(), Some(e));
    }

    #[test]
    fn a_bad_enrollment_says_what_to_fix() {
        let p = Path::new("/etc/airlock/enrollment.toml");
        let mut e = enrollment();
        e.url = Some("http://policy.acme.example/b".into());
        assert!(e
            .validate(p)
            .unwrap_err()
            .to_string()
            .contains("must be https://"));
        let mut e = enrollment();
        e.pubkeys = vec!["not a key".into()];
        assert!(e
            .validate(p)
            .unwrap_err()
            .to_string()
            .contains("pubkeys[0] is not an Ed25519 public key"));
        let mut e = enrollment();
        e.pubkeys.clear();
        assert!(e
            .validate(p)
            .unwrap_err()
            .to_string()
            .contains("pin at least one signing key"));
    }
}
