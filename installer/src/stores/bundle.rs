//! The agent's merged bundle (the platform roots plus the device CA) that `airlock env` points
//! runtimes at which read one file and replace their roots with it (`SSL_CERT_FILE`,
//! `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE` …). The agent writes it; the installer only checks that it
//! holds the current CA, so it is a store that is checked, never changed here.

use std::fs;
use std::path::PathBuf;

use super::{Holding, Kind, Store};
use crate::ca::Ca;
use crate::error::{InstallerError, Result};

/// The bundle file in the agent's state directory.
#[derive(Debug, Clone)]
pub struct BundleFile {
    path: PathBuf,
}

impl BundleFile {
    /// The bundle at `path`.
    pub fn new(path: PathBuf) -> BundleFile {
        BundleFile { path }
    }
}

impl Store for BundleFile {
    fn kind(&self) -> Kind {
        Kind::Bundle
    }

    fn describe(&self) -> String {
        format!(
            "merged bundle for SSL_CERT_FILE and the like: {}",
            self.path.display()
        )
    }

    fn location(&self) -> PathBuf {
        self.path.clone()
    }

    fn check(&self, ca: &Ca) -> Result<Holding> {
        Ok(Holding {
            current: fs::read_to_string(&self.path).is_ok_and(|t| ca.is_in(&t)),
            stale: Vec::new(),
        })
    }

    fn add(&self, ca: &Ca) -> Result<()> {
        if self.check(ca)?.current {
            Ok(())
        } else {
            Err(InstallerError::Refused(format!(
                "the merged bundle {} does not hold the current CA: it is written by airlockd at start \
                 (or `airlockd --init`); restart the agent",
                self.path.display()
            )))
        }
    }

    fn remove_all(&self) -> Result<usize> {
        // Part of the agent's state directory: removed with it (`airlock uninstall --purge`).
        Ok(0)
    }

    fn airlock_entries(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn writable(&self) -> bool {
        false
    }
}
