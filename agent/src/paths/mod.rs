//! Where the agent keeps its state and how files there are protected. It owns the layout of the state
//! directory (CA, bundles, runtime info, records, the control socket) and the helpers that create private directories and
//! write files atomically with a given mode. It must not decide what goes into those files.

pub mod config;

pub use config::ConfigDir;

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{AgentError, Result};

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as os;
#[cfg(not(unix))]
mod other;
#[cfg(not(unix))]
use other as os;

// Where the managed (system-wide) configuration lives on each OS; see `config`.
#[cfg(not(any(target_os = "macos", windows)))]
mod managed_unix;
#[cfg(not(any(target_os = "macos", windows)))]
use managed_unix as managed;
#[cfg(target_os = "macos")]
mod managed_macos;
#[cfg(target_os = "macos")]
use managed_macos as managed;
#[cfg(windows)]
mod managed_windows;
#[cfg(windows)]
use managed_windows as managed;

/// Default listen address of the agent (loopback only).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8479";

/// The state directory of an agent running as root (the system service).
pub const SYSTEM_STATE_DIR: &str = "/var/lib/airlock";

/// Environment variable that overrides the state directory for both `airlockd` and `airlock`.
pub const STATE_DIR_ENV: &str = "AIRLOCK_STATE_DIR";

/// The agent's state directory and the well-known files in it.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// Uses `root` as the state directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    /// Resolves the state directory: an explicit path, else `$AIRLOCK_STATE_DIR`, else `/var/lib/airlock`
    /// for root, else `$XDG_STATE_HOME/airlock` or `~/.local/state/airlock`.
    pub fn resolve(explicit: Option<&Path>) -> Result<Self> {
        if let Some(p) = explicit {
            return Ok(Self::new(p));
        }
        if let Some(p) = std::env::var_os(STATE_DIR_ENV).filter(|v| !v.is_empty()) {
            return Ok(Self::new(PathBuf::from(p)));
        }
        if os::is_superuser() {
            return Ok(Self::new(SYSTEM_STATE_DIR));
        }
        if let Some(p) = std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
            return Ok(Self::new(PathBuf::from(p).join("airlock")));
        }
        match std::env::var_os("HOME").filter(|v| !v.is_empty()) {
            Some(home) => Ok(Self::new(PathBuf::from(home).join(".local/state/airlock"))),
            None => Err(AgentError::Policy {
                origin: "environment".into(),
                message: format!(
                    "cannot find a state directory: HOME is not set; pass --state-dir or set {STATE_DIR_ENV}"
                ),
            }),
        }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where the fleet's trust (pinned keys, ratchets) and the last good bundle are kept.
    pub fn policy_dir(&self) -> PathBuf {
        self.root.join("policy")
    }

    /// Directory holding the public CA material (certificate, merged bundle). World-readable.
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }

    /// Path of the CA certificate (PEM).
    pub fn ca_cert(&self) -> PathBuf {
        self.ca_dir().join("airlock-ca.pem")
    }

    /// Directory holding the CA private key: mode 0700, owned by the daemon's user.
    pub fn ca_private_dir(&self) -> PathBuf {
        self.ca_dir().join("private")
    }

    /// Path of the CA private key (PEM, mode 0600).
    pub fn ca_key(&self) -> PathBuf {
        self.ca_private_dir().join("airlock-ca.key")
    }

    /// Directory where rotated-out CA certificates are kept (so they can be removed from trust stores).
    pub fn ca_retired_dir(&self) -> PathBuf {
        self.ca_dir().join("retired")
    }

    /// Merged trust bundle: the system roots plus the Airlock CA, for runtimes whose CA variable
    /// replaces their default roots (`SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`).
    pub fn merged_bundle(&self) -> PathBuf {
        self.ca_dir().join("bundle.pem")
    }

    /// The Java trust store (PKCS#12): the same certificates as the merged bundle, for
    /// `-Djavax.net.ssl.trustStore`.
    pub fn java_trust_store(&self) -> PathBuf {
        self.ca_dir().join("truststore.p12")
    }

    /// Runtime information written by a running agent (address, pid), read by the CLI.
    pub fn runtime_file(&self) -> PathBuf {
        self.root.join("airlockd.json")
    }

    /// The journal (SQLite, with `-wal` and `-shm` beside it).
    pub fn journal_file(&self) -> PathBuf {
        self.root.join("journal.db")
    }

    /// The control API's unix socket (mode 0666: any local user may connect, and the agent decides
    /// per request from the caller's peer credentials what they may do).
    pub fn control_socket(&self) -> PathBuf {
        self.root.join(CONTROL_SOCKET)
    }
}

/// File name of the control API's unix socket in the state directory.
pub const CONTROL_SOCKET: &str = "airlock.sock";

/// Makes sure the state directory is private to this user: a missing one is created with mode 0711
/// (others may reach the public CA certificate and the control socket inside by name, and list
/// nothing; the CA key and the records are 0600 files of their own); an existing one is
/// refused if someone else owns it or others may write to it, and its mode is never changed — a
/// `--state-dir /tmp` must not lose its sticky bit, and a directory others can write is one where
/// they could plant the runtime file the CLI trusts.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    match fs::metadata(dir) {
        Ok(meta) => {
            if !meta.is_dir() {
                return Err(AgentError::StateDir {
                    path: dir.to_path_buf(),
                    problem: "exists but is not a directory".into(),
                    fix: "pass --state-dir with a directory of its own".into(),
                });
            }
            os::check_private(dir, &meta).map_err(|(problem, fix)| AgentError::StateDir {
                path: dir.to_path_buf(),
                problem,
                fix,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                fs::create_dir_all(parent)
                    .map_err(|e| AgentError::io("cannot create directory", parent, e))?;
            }
            os::create_dir_with_mode(dir, 0o711)
                .map_err(|e| AgentError::io("cannot create directory", dir, e))
        }
        Err(e) => Err(AgentError::io("cannot read", dir, e)),
    }
}

/// Creates `dir` (and parents) and sets its mode (unix) to `mode`.
pub fn create_dir_with_mode(dir: &Path, mode: u32) -> Result<()> {
    fs::create_dir_all(dir).map_err(|e| AgentError::io("cannot create directory", dir, e))?;
    os::set_mode(dir, mode).map_err(|e| AgentError::io("cannot set permissions on", dir, e))
}

/// Writes `contents` to `path` atomically (temporary file in the same directory, then rename), with
/// `mode` applied before any byte is written, so a secret is never readable by others even briefly.
pub fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let tmp = dir.join(format!(".{file_name}.tmp.{}", std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = os::create_with_mode(&tmp, mode)?;
        f.write_all(contents)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(AgentError::io("cannot write", path, e));
    }
    Ok(())
}

/// Creates `path` with `mode` applied before any byte is written, failing with
/// [`std::io::ErrorKind::AlreadyExists`] if it exists: for files that must never be overwritten, such
/// as a signing key.
pub fn create_new_with_mode(path: &Path, mode: u32) -> std::io::Result<fs::File> {
    os::create_new_with_mode(path, mode)
}

/// Opens `path` for appending, creating it with `mode` if it does not exist.
pub fn open_append(path: &Path, mode: u32) -> std::io::Result<fs::File> {
    os::open_append(path, mode)
}

/// Creates `path` empty with mode 0600 if it does not exist, and sets an existing one to 0600
/// (unix): for files another library creates and writes, such as the journal's database, whose
/// companion files (`-wal`, `-shm`) SQLite then creates with the same mode.
pub fn restrict_file(path: &Path) -> std::io::Result<()> {
    drop(os::open_append(path, 0o600)?);
    os::set_mode(path, 0o600)
}

/// The effective uid of this process (unix), `None` elsewhere.
pub fn current_uid() -> Option<u32> {
    os::current_uid()
}

/// The permission bits of `path` (unix), for status reports and tests.
pub fn mode_of(path: &Path) -> Option<u32> {
    os::mode_of(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_applies_mode_and_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret.key");
        write_atomic(&p, b"one", 0o600).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        #[cfg(unix)]
        assert_eq!(mode_of(&p), Some(0o600));
        // No temporary files are left behind.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn state_dir_is_created_private_and_a_shared_one_is_refused_untouched() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("a/b/state");
        ensure_private_dir(&fresh).unwrap();
        assert_eq!(mode_of(&fresh), Some(0o711));
        // An existing private one is used as it is.
        fs::set_permissions(&fresh, fs::Permissions::from_mode(0o700)).unwrap();
        ensure_private_dir(&fresh).unwrap();
        assert_eq!(mode_of(&fresh), Some(0o700));
        // World-writable with the sticky bit, like /tmp: refused, and its mode left alone.
        let shared = dir.path().join("tmp-like");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, fs::Permissions::from_mode(0o1777)).unwrap();
        let e = ensure_private_dir(&shared).unwrap_err().to_string();
        assert!(
            e.contains("writable by others") && e.contains("--state-dir"),
            "{e}"
        );
        assert_eq!(mode_of(&shared), Some(0o1777));
        let group = dir.path().join("group-writable");
        fs::create_dir(&group).unwrap();
        fs::set_permissions(&group, fs::Permissions::from_mode(0o770)).unwrap();
        assert!(ensure_private_dir(&group).is_err());
        let file = dir.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(ensure_private_dir(&file)
            .unwrap_err()
            .to_string()
            .contains("not a directory"));
    }

    #[test]
    fn explicit_state_dir_wins() {
        let s = StateDir::resolve(Some(Path::new("/tmp/x"))).unwrap();
        assert_eq!(
            s.ca_key(),
            PathBuf::from("/tmp/x/ca/private/airlock-ca.key")
        );
    }
}
