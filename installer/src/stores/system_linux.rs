//! The Linux system trust store: an anchor folder plus the distribution's refresh command, found by
//! which anchor folder exists (mkcert's order): Fedora/RHEL `update-ca-trust`, Debian/Ubuntu
//! `update-ca-certificates`, Arch `trust extract-compat`, openSUSE `update-ca-certificates`. The CA is
//! one file named after its serial; "in force" means the refreshed bundle holds it too. It owns this
//! store only and never runs in the daemon (the refresh needs root).

use std::fs;
use std::path::{Path, PathBuf};

use super::{Holding, Kind, Store};
use crate::ca::{Ca, FILE_PREFIX};
use crate::cmd;
use crate::error::Result;
use crate::fsutil;

/// One distribution family's anchor folder, refresh command and resulting bundle.
#[derive(Debug, Clone)]
pub struct AnchorDir {
    /// Where anchors go.
    pub dir: PathBuf,
    /// The extension the refresh command reads (`crt` or `pem`).
    pub ext: &'static str,
    /// The refresh command and its arguments.
    pub refresh: Vec<String>,
    /// The bundle the refresh writes, which tools read.
    pub bundle: PathBuf,
    /// The package that provides the refresh command.
    pub package: &'static str,
    /// Whether this process may change it.
    pub writable: bool,
}

/// The families, in the order their folders are looked for.
fn families() -> [(
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
    &'static str,
); 4] {
    [
        (
            "/etc/pki/ca-trust/source/anchors",
            "pem",
            &["update-ca-trust", "extract"],
            "/etc/pki/tls/certs/ca-bundle.crt",
            "ca-certificates",
        ),
        (
            "/usr/local/share/ca-certificates",
            "crt",
            &["update-ca-certificates"],
            "/etc/ssl/certs/ca-certificates.crt",
            "ca-certificates",
        ),
        (
            "/etc/ca-certificates/trust-source/anchors",
            "crt",
            &["trust", "extract-compat"],
            "/etc/ssl/certs/ca-certificates.crt",
            "p11-kit",
        ),
        (
            "/usr/share/pki/trust/anchors",
            "pem",
            &["update-ca-certificates"],
            "/etc/ssl/ca-bundle.pem",
            "ca-certificates",
        ),
    ]
}

/// This machine's system store, if its family is known.
pub fn detect(writable: bool) -> Option<AnchorDir> {
    families()
        .into_iter()
        .find_map(|(dir, ext, refresh, bundle, package)| {
            let dir = Path::new(dir);
            super::is_dir(dir).then(|| AnchorDir {
                dir: dir.to_path_buf(),
                ext,
                refresh: refresh.iter().map(|s| s.to_string()).collect(),
                bundle: PathBuf::from(bundle),
                package,
                writable,
            })
        })
}

impl AnchorDir {
    fn file(&self, ca: &Ca) -> PathBuf {
        self.dir.join(format!("{}.{}", ca.file_name(), self.ext))
    }

    /// Anchor files named like ours.
    fn ours(&self) -> Vec<PathBuf> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut out: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(FILE_PREFIX))
            })
            .collect();
        out.sort();
        out
    }

    fn refresh(&self) -> Result<()> {
        let Some((tool, args)) = self.refresh.split_first() else {
            return Ok(());
        };
        let path = cmd::require(tool, "the system trust store", self.package)?;
        cmd::run(&path, args)?;
        Ok(())
    }

    fn refuse_unless_writable(&self) -> Result<()> {
        super::writable_or(self.writable, || {
            format!(
                "the system trust store ({}) can only be changed by root: run `sudo airlock setup`",
                self.dir.display()
            )
        })
    }
}

impl Store for AnchorDir {
    fn kind(&self) -> Kind {
        Kind::System
    }

    fn describe(&self) -> String {
        format!(
            "system store ({}): {}",
            self.refresh.join(" "),
            self.dir.display()
        )
    }

    fn location(&self) -> PathBuf {
        self.dir.clone()
    }

    fn check(&self, ca: &Ca) -> Result<Holding> {
        let file = self.file(ca);
        let anchored = fs::read_to_string(&file).is_ok_and(|t| ca.is_in(&t));
        let in_bundle = fs::read_to_string(&self.bundle).is_ok_and(|t| ca.is_in(&t));
        let stale = self
            .ours()
            .into_iter()
            .filter(|p| *p != file)
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        Ok(Holding {
            current: anchored && in_bundle,
            stale,
        })
    }

    fn add(&self, ca: &Ca) -> Result<()> {
        self.refuse_unless_writable()?;
        let file = self.file(ca);
        for old in self.ours().into_iter().filter(|p| *p != file) {
            fsutil::remove_file(&old)?;
        }
        fsutil::write_file(&file, ca.pem(), 0o644)?;
        self.refresh()
    }

    fn remove_all(&self) -> Result<usize> {
        let ours = self.ours();
        if ours.is_empty() {
            return Ok(0);
        }
        self.refuse_unless_writable()?;
        for p in &ours {
            fsutil::remove_file(p)?;
        }
        self.refresh()?;
        Ok(ours.len())
    }

    fn airlock_entries(&self) -> Result<Vec<String>> {
        Ok(self
            .ours()
            .into_iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn writable(&self) -> bool {
        self.writable
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca::tests::{ca, PEM};

    fn store(dir: &Path, bundle: &Path) -> AnchorDir {
        // `true` stands in for the refresh; the test plays its part by writing the bundle.
        AnchorDir {
            dir: dir.to_path_buf(),
            ext: "crt",
            refresh: vec!["true".into()],
            bundle: bundle.to_path_buf(),
            package: "coreutils",
            writable: true,
        }
    }

    #[test]
    fn add_replaces_older_airlock_anchors_and_leaves_others() {
        let tmp = tempfile::tempdir().unwrap();
        let bundle = tmp.path().join("bundle.crt");
        let s = store(tmp.path(), &bundle);
        fs::write(tmp.path().join("airlock-00aa.crt"), PEM).unwrap();
        fs::write(tmp.path().join("corp-root.crt"), "x").unwrap();
        let ca = ca();
        assert_eq!(s.check(&ca).unwrap().stale, ["airlock-00aa.crt"]);
        s.add(&ca).unwrap();
        assert!(tmp.path().join("airlock-5f2a990123456789.crt").exists());
        assert!(!tmp.path().join("airlock-00aa.crt").exists());
        assert!(tmp.path().join("corp-root.crt").exists());
        // On disk but not yet in the refreshed bundle: not in force.
        assert!(!s.check(&ca).unwrap().current);
        fs::write(&bundle, PEM).unwrap();
        assert!(s.check(&ca).unwrap().current);
        assert_eq!(s.remove_all().unwrap(), 1);
        assert!(tmp.path().join("corp-root.crt").exists());
        assert_eq!(s.remove_all().unwrap(), 0);
    }

    #[test]
    fn a_read_only_store_is_checked_not_changed() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = store(tmp.path(), &tmp.path().join("b"));
        s.writable = false;
        let e = s.add(&ca()).unwrap_err().to_string();
        assert!(e.contains("sudo airlock setup"), "{e}");
    }
}
