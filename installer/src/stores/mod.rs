//! The places a CA certificate has to be for the machine's software to trust it: the operating
//! system's store (one file per OS), NSS databases (Firefox everywhere, Chromium on Linux), each
//! JDK's `cacerts`, and the agent's merged bundle for runtimes that read one file. Each store can say
//! whether it holds the current CA and which older Airlock CAs it still holds, add the current one
//! (dropping older ones), and remove every Airlock CA. Which stores exist is discovered, never
//! assumed. It owns that discovery and the order (system → NSS → Java to add, the reverse to remove).

mod bundle;
mod java;
mod nss;
#[cfg(target_os = "linux")]
mod system_linux;
#[cfg(target_os = "macos")]
mod system_macos;
#[cfg(windows)]
mod system_windows;

use std::path::{Path, PathBuf};

use serde::Serialize;

pub use bundle::BundleFile;
pub use java::JavaKeystore;
pub use nss::NssDb;
#[cfg(target_os = "linux")]
pub use system_linux::AnchorDir;

use crate::ca::Ca;
use crate::error::Result;

/// What a store holds of Airlock's CAs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Holding {
    /// The current device CA is there and in force.
    pub current: bool,
    /// Names of other Airlock CAs there (earlier rotations, another install).
    pub stale: Vec<String>,
}

/// Which kind of store, for `--only` and for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// The operating system's store.
    System,
    /// An NSS database.
    Nss,
    /// A Java keystore.
    Java,
    /// A PEM bundle file.
    Bundle,
}

impl Kind {
    /// The word used in `--only` and in JSON.
    pub fn word(self) -> &'static str {
        match self {
            Kind::System => "system",
            Kind::Nss => "nss",
            Kind::Java => "java",
            Kind::Bundle => "bundle",
        }
    }
}

/// A trust store.
pub trait Store {
    /// Its kind.
    fn kind(&self) -> Kind;
    /// What and where, for people: "system store (update-ca-certificates): /usr/local/share/…".
    fn describe(&self) -> String;
    /// The file or folder it lives in.
    fn location(&self) -> PathBuf;
    /// What it holds of Airlock's CAs.
    fn check(&self, ca: &Ca) -> Result<Holding>;
    /// Adds `ca` (if it is not there) and removes older Airlock CAs.
    fn add(&self, ca: &Ca) -> Result<()>;
    /// Removes every Airlock CA; returns how many it removed.
    fn remove_all(&self) -> Result<usize>;
    /// The names of every Airlock CA it holds (what [`Store::remove_all`] would remove).
    fn airlock_entries(&self) -> Result<Vec<String>>;
    /// The database folder to create before the CA can be added, when it does not exist yet.
    fn to_create(&self) -> Option<PathBuf> {
        None
    }
    /// Whether this process may change it (a read-only store is still checked).
    fn writable(&self) -> bool {
        true
    }
}

/// Where to look.
#[derive(Debug, Clone)]
pub struct Where {
    /// System-wide (as root): the OS store, system NSS databases, JDK keystores.
    pub system: bool,
    /// The home whose NSS databases are included (the user's own; root's own in system mode).
    pub home: Option<PathBuf>,
    /// Create `~/.pki/nssdb` when it is missing (user mode), so Chromium finds the CA when it
    /// first runs.
    pub create_user_nssdb: bool,
    /// The agent's merged bundle.
    pub bundle: Option<PathBuf>,
}

/// The stores on this machine, in the order to add to (system, NSS, Java, bundle).
pub fn discover(at: &Where) -> Vec<Box<dyn Store>> {
    let mut out: Vec<Box<dyn Store>> = Vec::new();
    if let Some(s) = system_store(at.system) {
        out.push(s);
    }
    for db in nss::discover(at.system, at.home.as_deref(), at.create_user_nssdb) {
        out.push(Box::new(db));
    }
    for ks in java::discover(at.system) {
        out.push(Box::new(ks));
    }
    if let Some(b) = &at.bundle {
        out.push(Box::new(BundleFile::new(b.clone())));
    }
    out
}

#[cfg(target_os = "linux")]
fn system_store(writable: bool) -> Option<Box<dyn Store>> {
    system_linux::detect(writable).map(|s| Box::new(s) as Box<dyn Store>)
}

#[cfg(target_os = "macos")]
fn system_store(writable: bool) -> Option<Box<dyn Store>> {
    Some(Box::new(system_macos::SystemKeychain::new(writable)))
}

#[cfg(windows)]
fn system_store(writable: bool) -> Option<Box<dyn Store>> {
    Some(Box::new(system_windows::LocalMachineRoot::new(writable)))
}

#[cfg(not(any(target_os = "linux", target_os = "macos", windows)))]
fn system_store(_writable: bool) -> Option<Box<dyn Store>> {
    None
}

/// `Ok` when a store may be changed; else the refusal, in `why`'s words (what it takes instead).
fn writable_or(writable: bool, why: impl FnOnce() -> String) -> Result<()> {
    if writable {
        Ok(())
    } else {
        Err(crate::error::InstallerError::Refused(why()))
    }
}

/// Whether `dir` exists and is a directory.
fn is_dir(dir: &Path) -> bool {
    dir.is_dir()
}
