//! Org credentials the agent injects: a [`Secret`] type that never prints, and the [`Store`] that
//! keeps them — the OS credential store through the keyring crate (Secret Service on Linux, the
//! Keychain, Credential Manager), or, where there is none (a headless machine, a service with no
//! session bus), a 0600 file in the daemon's state directory. Names and when they were set are kept
//! in a small index beside it (the OS stores cannot list). It owns storage; it must not decide
//! which request gets which secret (the policy's `[credentials]` and the pipeline do).

use crate::sync::lock;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::paths::StateDir;

/// The keyring service name entries are kept under.
const SERVICE: &str = "airlock";

/// A secret value: compared and used, never printed (`Debug` and `Display` show `[REDACTED]`),
/// wiped from memory when dropped.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: String) -> Secret {
        Secret(Zeroizing::new(value))
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret([REDACTED])")
    }
}

impl std::fmt::Display for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// The fingerprint of a credential a client presented: `sha256:` and the hex of its SHA-256. API
/// keys carry far more than 128 bits of randomness, so this cannot be reversed; it lets an org list
/// its keys (`allowed_fingerprints`) without listing the keys.
pub fn fingerprint(value: &str) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(value.as_bytes())))
}

/// Where secrets are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StoreKind {
    /// The OS credential store (Secret Service, Keychain, Credential Manager).
    Os,
    /// `credentials.json` (0600) in the state directory.
    File,
}

/// What went wrong with the store.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    /// A name that cannot be a credential's.
    #[error("{0:?} is not a credential name: use letters, digits, '-', '_' and '.', at most 64")]
    BadName(String),
    /// An empty secret.
    #[error("the secret is empty: give the key's text on standard input")]
    Empty,
    /// The OS store failed.
    #[error("the OS credential store failed: {0}")]
    Os(String),
    /// The file store failed.
    #[error("cannot use the credentials file {path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// A name's entry in the index.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Listed {
    /// The name.
    pub name: String,
    /// When it was set, RFC 3339.
    pub set_at: String,
}

#[derive(Default, Serialize, Deserialize)]
struct FileStore {
    #[serde(default)]
    secrets: BTreeMap<String, String>,
}

/// The credential store.
pub struct Store {
    kind: StoreKind,
    /// Why the OS store is not used, when it is not.
    why_file: Option<String>,
    index_path: PathBuf,
    file_path: PathBuf,
    cache: Mutex<BTreeMap<String, Secret>>,
}

/// Forces a store: `file` or `os` (default: the OS store when it answers).
pub const STORE_ENV: &str = "AIRLOCK_CREDENTIAL_STORE";

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

fn os_entry(name: &str) -> Result<keyring::Entry, CredentialError> {
    keyring::Entry::new(SERVICE, name).map_err(|e| CredentialError::Os(e.to_string()))
}

/// Whether the OS store answers (an absent entry is an answer); why not, when it does not.
fn os_store_works() -> Result<(), String> {
    match os_entry("__airlock_probe__").map(|e| e.get_password()) {
        Ok(Ok(_)) | Ok(Err(keyring::Error::NoEntry)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

impl Store {
    /// Opens the store for `state` (blocking: it asks the OS store once) and loads the secrets it
    /// holds into memory, so a request never waits for the OS store.
    pub fn open(state: &StateDir) -> Store {
        let forced = std::env::var(STORE_ENV).ok();
        let (kind, why_file) = match forced.as_deref() {
            Some("file") => (StoreKind::File, Some(format!("{STORE_ENV}=file"))),
            _ => match os_store_works() {
                Ok(()) => (StoreKind::Os, None),
                Err(why) => (
                    StoreKind::File,
                    Some(format!("the OS credential store is not available ({why})")),
                ),
            },
        };
        let store = Store {
            kind,
            why_file,
            index_path: state.root().join("credentials.index.json"),
            file_path: state.root().join("credentials.json"),
            cache: Mutex::new(BTreeMap::new()),
        };
        for l in store.list() {
            match store.read(&l.name) {
                Ok(Some(s)) => {
                    lock(&store.cache).insert(l.name.clone(), s);
                }
                Ok(None) => {
                    tracing::warn!(name = %l.name, "a listed credential is missing from the store; set it again with `airlock credentials set`")
                }
                Err(e) => tracing::warn!(name = %l.name, error = %e, "cannot read a credential"),
            }
        }
        tracing::info!(store = ?store.kind, credentials = lock(&store.cache).len(), "credential store opened");
        store
    }

    /// Which store is in use.
    pub fn kind(&self) -> StoreKind {
        self.kind
    }

    /// For `airlock status`: the store, why it is the file, and how many names it holds.
    pub fn status(&self) -> serde_json::Value {
        serde_json::json!({
            "store": self.kind,
            "file_because": self.why_file,
            "names": self.list().len(),
        })
    }

    /// The secret `name`, from memory.
    pub fn get(&self, name: &str) -> Option<Secret> {
        lock(&self.cache).get(name).cloned()
    }

    /// Every name, with when it was set.
    pub fn list(&self) -> Vec<Listed> {
        std::fs::read(&self.index_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Vec<Listed>>(&b).ok())
            .unwrap_or_default()
    }

    fn write_index(&self, list: &[Listed]) -> Result<(), CredentialError> {
        let json = serde_json::to_vec_pretty(list).unwrap_or_default();
        crate::paths::write_atomic(&self.index_path, &json, 0o600).map_err(|e| {
            CredentialError::File {
                path: self.index_path.clone(),
                message: e.to_string(),
            }
        })
    }

    fn read_file(&self) -> Result<FileStore, CredentialError> {
        match std::fs::read(&self.file_path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| CredentialError::File {
                path: self.file_path.clone(),
                message: format!("it is not the agent's format ({e})"),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileStore::default()),
            Err(e) => Err(CredentialError::File {
                path: self.file_path.clone(),
                message: e.to_string(),
            }),
        }
    }

    fn write_file(&self, f: &FileStore) -> Result<(), CredentialError> {
        let json = Zeroizing::new(serde_json::to_vec(f).unwrap_or_default());
        crate::paths::write_atomic(&self.file_path, &json, 0o600).map_err(|e| {
            CredentialError::File {
                path: self.file_path.clone(),
                message: e.to_string(),
            }
        })
    }

    fn read(&self, name: &str) -> Result<Option<Secret>, CredentialError> {
        match self.kind {
            StoreKind::Os => match os_entry(name)?.get_password() {
                Ok(s) => Ok(Some(Secret::new(s))),
                Err(keyring::Error::NoEntry) => Ok(None),
                Err(e) => Err(CredentialError::Os(e.to_string())),
            },
            StoreKind::File => Ok(self
                .read_file()?
                .secrets
                .get(name)
                .cloned()
                .map(Secret::new)),
        }
    }

    /// Stores `secret` as `name` (blocking), replacing any earlier one.
    pub fn set(&self, name: &str, secret: Secret) -> Result<(), CredentialError> {
        if !valid_name(name) {
            return Err(CredentialError::BadName(name.to_string()));
        }
        if secret.expose().trim().is_empty() {
            return Err(CredentialError::Empty);
        }
        match self.kind {
            StoreKind::Os => os_entry(name)?
                .set_password(secret.expose())
                .map_err(|e| CredentialError::Os(e.to_string()))?,
            StoreKind::File => {
                let mut f = self.read_file()?;
                f.secrets
                    .insert(name.to_string(), secret.expose().to_string());
                self.write_file(&f)?;
            }
        }
        let mut list = self.list();
        list.retain(|l| l.name != name);
        list.push(Listed {
            name: name.to_string(),
            set_at: crate::record::now_rfc3339(),
        });
        list.sort_by(|a, b| a.name.cmp(&b.name));
        self.write_index(&list)?;
        lock(&self.cache).insert(name.to_string(), secret);
        Ok(())
    }

    /// Removes `name` (blocking); whether it existed.
    pub fn remove(&self, name: &str) -> Result<bool, CredentialError> {
        let mut list = self.list();
        let before = list.len();
        list.retain(|l| l.name != name);
        let existed = list.len() != before;
        match self.kind {
            StoreKind::Os => match os_entry(name)?.delete_credential() {
                Ok(()) | Err(keyring::Error::NoEntry) => {}
                Err(e) => return Err(CredentialError::Os(e.to_string())),
            },
            StoreKind::File => {
                let mut f = self.read_file()?;
                if f.secrets.remove(name).is_some() {
                    self.write_file(&f)?;
                }
            }
        }
        self.write_index(&list)?;
        lock(&self.cache).remove(name);
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints() {
        let s = Secret::new("sk-live-abc".into());
        assert_eq!(format!("{s:?} {s}"), "Secret([REDACTED]) [REDACTED]");
        assert_eq!(s.expose(), "sk-live-abc");
        let fp = fingerprint("sk-live-abc");
        assert!(fp.starts_with("sha256:") && fp.len() == 71 && !fp.contains("abc"));
    }

    #[test]
    fn the_file_store_keeps_names_secrets_and_times_privately() {
        let dir = tempfile::tempdir().unwrap();
        std::env::set_var(STORE_ENV, "file");
        let state = StateDir::new(dir.path());
        let store = Store::open(&state);
        assert_eq!(store.kind(), StoreKind::File);
        store
            .set("openai-org", Secret::new("sk-org-1".into()))
            .unwrap();
        assert!(matches!(
            store.set("bad name", Secret::new("x".into())),
            Err(CredentialError::BadName(_))
        ));
        assert!(matches!(
            store.set("empty", Secret::new(" ".into())),
            Err(CredentialError::Empty)
        ));
        assert_eq!(store.get("openai-org").unwrap().expose(), "sk-org-1");
        #[cfg(unix)]
        assert_eq!(
            crate::paths::mode_of(&dir.path().join("credentials.json")),
            Some(0o600)
        );
        let index = std::fs::read_to_string(dir.path().join("credentials.index.json")).unwrap();
        assert!(index.contains("openai-org") && !index.contains("sk-org-1"));
        // A new start loads it again.
        let again = Store::open(&state);
        assert_eq!(again.get("openai-org").unwrap().expose(), "sk-org-1");
        assert_eq!(again.list().len(), 1);
        assert!(again.remove("openai-org").unwrap());
        assert!(!again.remove("openai-org").unwrap());
        assert!(again.get("openai-org").is_none() && again.list().is_empty());
        std::env::remove_var(STORE_ENV);
    }
}
