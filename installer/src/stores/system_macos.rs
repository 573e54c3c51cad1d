//! The macOS system trust store: the System keychain, changed with `security add-trusted-cert` (as
//! root; macOS 11+ may still ask for an admin password, which is why managed Macs get the CA through
//! their MDM's `airlock setup` run) and `security delete-certificate`. Matched by SHA-256 and by the
//! Airlock subject. It owns this store only.

use std::path::PathBuf;

use super::{Holding, Kind, Store};
use crate::ca::Ca;
use crate::cmd;
use crate::error::Result;

const KEYCHAIN: &str = "/Library/Keychains/System.keychain";
/// The subject common name every device CA starts with.
const SUBJECT: &str = "Airlock";

/// The System keychain.
#[derive(Debug, Clone)]
pub struct SystemKeychain {
    writable: bool,
}

impl SystemKeychain {
    /// The store; `writable` when running as root.
    pub fn new(writable: bool) -> Self {
        SystemKeychain { writable }
    }

    fn security() -> Result<PathBuf> {
        cmd::require("security", "the System keychain", "macOS itself")
    }

    /// SHA-256 hashes of the Airlock certificates in the keychain.
    fn ours(&self) -> Result<Vec<String>> {
        let out = cmd::output(
            &Self::security()?,
            ["find-certificate", "-a", "-c", SUBJECT, "-Z", KEYCHAIN],
        )?
        .1;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.trim().strip_prefix("SHA-256 hash:"))
            .map(|h| h.trim().to_string())
            .collect())
    }
}

impl Store for SystemKeychain {
    fn kind(&self) -> Kind {
        Kind::System
    }

    fn describe(&self) -> String {
        format!("system store (security): {KEYCHAIN}")
    }

    fn location(&self) -> PathBuf {
        PathBuf::from(KEYCHAIN)
    }

    fn check(&self, ca: &Ca) -> Result<Holding> {
        let ours = self.ours()?;
        Ok(Holding {
            current: ours.iter().any(|h| ca.has_fingerprint(h)),
            stale: ours
                .into_iter()
                .filter(|h| !ca.has_fingerprint(h))
                .collect(),
        })
    }

    fn add(&self, ca: &Ca) -> Result<()> {
        super::writable_or(self.writable, || {
            "the System keychain can only be changed by an administrator: run `sudo airlock setup`"
                .into()
        })?;
        let sec = Self::security()?;
        for old in self.ours()?.into_iter().filter(|h| !ca.has_fingerprint(h)) {
            cmd::run(&sec, ["delete-certificate", "-Z", &old, "-t", KEYCHAIN])?;
        }
        if self.check(ca)?.current {
            return Ok(());
        }
        ca.with_file("pem", |file| {
            let file = file.display().to_string();
            cmd::run(
                &sec,
                [
                    "add-trusted-cert",
                    "-d",
                    "-r",
                    "trustRoot",
                    "-k",
                    KEYCHAIN,
                    &file,
                ],
            )
            .map(|_| ())
        })
    }

    fn remove_all(&self) -> Result<usize> {
        let ours = self.ours()?;
        let sec = Self::security()?;
        for h in &ours {
            cmd::run(&sec, ["delete-certificate", "-Z", h, "-t", KEYCHAIN])?;
        }
        Ok(ours.len())
    }

    fn airlock_entries(&self) -> Result<Vec<String>> {
        self.ours()
    }

    fn writable(&self) -> bool {
        self.writable
    }
}
