//! What `airlock setup` changed outside the trust stores, kept in a JSON file so that `airlock
//! uninstall` can undo exactly that: files written and the folders made for them, blocks put into
//! the user's own files, NSS databases created, and the desktop proxy setting it replaced. Trust-store
//! entries need no record (they carry the Airlock prefix and are found again), but are listed for
//! people. It is saved after every change, so a setup that stops half way can still be undone.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::desktop::Saved;
use crate::error::{InstallerError, Result};
use crate::fsutil::{self, BlockAdded};

/// The manifest's format version.
const VERSION: u32 = 1;

/// One change that uninstall undoes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum Change {
    /// A file the installer wrote whole.
    File {
        /// Where.
        path: PathBuf,
        /// Folders made for it, outermost first.
        created_dirs: Vec<PathBuf>,
    },
    /// A marked block in a file the user owns.
    Block {
        /// Where.
        path: PathBuf,
        /// How it went in.
        how: BlockAdded,
        /// Folders made for it.
        created_dirs: Vec<PathBuf>,
    },
    /// An NSS database the installer created.
    NssDb {
        /// Its folder.
        dir: PathBuf,
        /// Folders made for it (the database folder included).
        created_dirs: Vec<PathBuf>,
    },
    /// The desktop's proxy setting, as it was.
    DesktopProxy {
        /// The previous values.
        previous: Saved,
    },
    /// A trust store the CA was added to (informational: uninstall searches every store anyway).
    Store {
        /// What and where.
        describe: String,
    },
}

/// Every change of one setup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// `system` or `user`.
    pub scope: String,
    /// The serial of the CA trusted.
    pub ca_serial: Option<String>,
    /// Folders made to hold the manifest itself, outermost first.
    #[serde(default)]
    pub created_dirs: Vec<PathBuf>,
    /// The changes, in the order they were made.
    pub changes: Vec<Change>,
}

impl Manifest {
    /// A new manifest for `scope`.
    pub fn new(scope: &str) -> Manifest {
        Manifest {
            version: VERSION,
            scope: scope.into(),
            ..Manifest::default()
        }
    }

    /// The manifest at `path`, if there is one.
    pub fn load(path: &Path) -> Result<Option<Manifest>> {
        let text = match fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(InstallerError::io("read", path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| InstallerError::Manifest {
                path: path.to_path_buf(),
                message: e.to_string(),
            })
    }

    /// Saves it at `path` (0600: it names the user's files).
    pub fn save(&mut self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| InstallerError::Manifest {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let created = fsutil::write_file(path, &(text + "\n"), 0o600)?;
        if !created.is_empty() && self.created_dirs.is_empty() {
            self.created_dirs = created;
            return self.save(path);
        }
        Ok(())
    }

    /// Records `change` unless the same one is there already (a setup run again).
    pub fn record(&mut self, change: Change) {
        let same = |c: &Change| match (c, &change) {
            (Change::File { path: a, .. }, Change::File { path: b, .. })
            | (Change::Block { path: a, .. }, Change::Block { path: b, .. })
            | (Change::NssDb { dir: a, .. }, Change::NssDb { dir: b, .. }) => a == b,
            (Change::DesktopProxy { .. }, Change::DesktopProxy { .. }) => true,
            (Change::Store { describe: a }, Change::Store { describe: b }) => a == b,
            _ => false,
        };
        if !self.changes.iter().any(same) {
            self.changes.push(change);
        }
    }

    /// Whether it holds a change for `path`.
    pub fn has_path(&self, path: &Path) -> bool {
        self.changes.iter().any(|c| match c {
            Change::File { path: p, .. } | Change::Block { path: p, .. } => p == path,
            Change::NssDb { dir, .. } => dir == path,
            _ => false,
        })
    }

    /// The desktop proxy setting saved, if any.
    pub fn desktop_proxy(&self) -> Option<&Saved> {
        self.changes.iter().find_map(|c| match c {
            Change::DesktopProxy { previous } => Some(previous),
            _ => None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_round_trips_and_a_rerun_records_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/airlock/setup.json");
        let mut m = Manifest::new("user");
        m.record(Change::File {
            path: "/x".into(),
            created_dirs: vec![],
        });
        m.record(Change::File {
            path: "/x".into(),
            created_dirs: vec![],
        });
        assert_eq!(m.changes.len(), 1);
        m.save(&path).unwrap();
        let back = Manifest::load(&path).unwrap().unwrap();
        assert_eq!(back.created_dirs.len(), 2, "{back:?}");
        assert_eq!(back.changes, m.changes);
        fs::write(&path, "{").unwrap();
        let e = Manifest::load(&path).unwrap_err().to_string();
        assert!(e.contains("move it aside"), "{e}");
    }
}
