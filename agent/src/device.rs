//! This device's id: 128 random bits made on the agent's first start and kept in the state
//! directory (`device_id`), so every journal row and budget can name the machine without naming
//! its owner or its hardware. It owns the id's format and file; it must not send it anywhere.

use std::path::Path;

use crate::paths::StateDir;
use crate::{AgentError, Result};

/// The id's prefix: `dev_` and 32 hex digits.
const PREFIX: &str = "dev_";

fn valid(id: &str) -> bool {
    id.strip_prefix(PREFIX)
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The device id, made (and kept) on first use. An unreadable or malformed file is replaced, with a
/// warning: a device id is worth nothing secret, only stable.
pub fn id(state: &StateDir) -> Result<String> {
    let path = state.root().join("device_id");
    match std::fs::read_to_string(&path) {
        Ok(text) if valid(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => {
            tracing::warn!(path = %path.display(), "the device id file is malformed; making a new id")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AgentError::io("cannot read", &path, e)),
    }
    make(&path)
}

fn make(path: &Path) -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| AgentError::Io {
        action: "cannot get randomness for",
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let id = format!("{PREFIX}{}", hex::encode(bytes));
    crate::paths::write_atomic(path, format!("{id}\n").as_bytes(), 0o644)?;
    tracing::info!(device = %id, "made this device's id");
    Ok(id)
}

/// The key of the hashes records keep of guardrail matches (`guard.key`, 32 random bytes, readable
/// by the daemon alone): the same value hashes alike across restarts on this machine, so repeats
/// show, and differently on every other, so a hash cannot be looked up elsewhere.
pub fn hash_key(state: &StateDir) -> Result<[u8; 32]> {
    let path = state.root().join("guard.key");
    match std::fs::read(&path) {
        Ok(b) if b.len() == 32 => {
            let mut k = [0u8; 32];
            k.copy_from_slice(&b);
            return Ok(k);
        }
        Ok(_) => {
            tracing::warn!(path = %path.display(), "the guardrail hash key is malformed; making a new one")
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(AgentError::io("cannot read", &path, e)),
    }
    let mut k = [0u8; 32];
    getrandom::fill(&mut k).map_err(|e| AgentError::Io {
        action: "cannot get randomness for",
        path: path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    crate::paths::write_atomic(&path, &k, 0o600)?;
    Ok(k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let a = id(&state).unwrap();
        assert!(valid(&a), "{a}");
        assert_eq!(id(&state).unwrap(), a);
        std::fs::write(dir.path().join("device_id"), "garbage").unwrap();
        let b = id(&state).unwrap();
        assert!(valid(&b) && b != a);
        let k = hash_key(&state).unwrap();
        assert_eq!(hash_key(&state).unwrap(), k);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("guard.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
