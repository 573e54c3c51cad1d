//! Java keystores: the `cacerts` of every JDK found (`$JAVA_HOME`, `/usr/lib/jvm/*`, macOS's
//! `/Library/Java/JavaVirtualMachines/*`), each counted once however many JDKs share it (Debian links
//! them all to `/etc/ssl/certs/java/cacerts`, which its `ca-certificates-java` hook also fills from the
//! system store). Changed through `keytool` with the JDK's default store password; the alias carries
//! the CA's serial. A keystore that already trusts the CA under another alias counts as holding it.
//! It owns Java only; a user's own (unwritable) JDK stores are checked, not changed.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Holding, Kind, Store};
use crate::ca::{Ca, FILE_PREFIX};
use crate::cmd;
use crate::error::Result;

/// The password every JDK ships its `cacerts` with.
const STOREPASS: &str = "changeit";

/// One `cacerts` file.
#[derive(Debug, Clone)]
pub struct JavaKeystore {
    path: PathBuf,
    keytool: PathBuf,
    writable: bool,
}

/// The distinct keystores of the JDKs on this machine.
pub fn discover(writable: bool) -> Vec<JavaKeystore> {
    let mut homes: Vec<PathBuf> = Vec::new();
    if let Some(h) = std::env::var_os("JAVA_HOME").filter(|h| !h.is_empty()) {
        homes.push(PathBuf::from(h));
    }
    for root in ["/usr/lib/jvm", "/Library/Java/JavaVirtualMachines"] {
        if let Ok(entries) = fs::read_dir(root) {
            let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
            dirs.sort();
            homes.extend(dirs.into_iter().map(|d| {
                if d.join("Contents/Home").is_dir() {
                    d.join("Contents/Home")
                } else {
                    d
                }
            }));
        }
    }
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut out = Vec::new();
    for home in homes {
        let Some(store) = ["lib/security/cacerts", "jre/lib/security/cacerts"]
            .iter()
            .map(|p| home.join(p))
            .find(|p| p.is_file())
        else {
            continue;
        };
        let real = fs::canonicalize(&store).unwrap_or(store);
        if seen.contains(&real) {
            continue;
        }
        let keytool = home.join("bin/keytool");
        let keytool = if keytool.is_file() {
            keytool
        } else if let Some(k) = cmd::find("keytool") {
            k
        } else {
            continue;
        };
        seen.push(real.clone());
        out.push(JavaKeystore {
            path: real,
            keytool,
            writable,
        });
    }
    out
}

/// Whether `alias` names an Airlock CA: ours (`airlock-<serial>`), or the copy Debian's
/// `ca-certificates-java` hook makes from the system store's anchor (`debian:airlock-<serial>.crt`),
/// which that hook does not always take out again when the anchor goes.
fn is_ours(alias: &str) -> bool {
    alias
        .strip_prefix("debian:")
        .unwrap_or(alias)
        .starts_with(FILE_PREFIX)
}

/// `(alias, SHA-256 fingerprint)` of each entry in a `keytool -list` listing.
fn entries(listing: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut alias: Option<String> = None;
    for line in listing.lines() {
        if let Some(f) = line.strip_prefix("Certificate fingerprint (SHA-256):") {
            if let Some(a) = alias.take() {
                out.push((a, f.trim().to_string()));
            }
        } else if line.contains(", ")
            && (line.contains("trustedCertEntry") || line.contains("PrivateKeyEntry"))
        {
            alias = line.split(',').next().map(|a| a.trim().to_string());
        }
    }
    out
}

impl JavaKeystore {
    fn list(&self) -> Result<Vec<(String, String)>> {
        let path = self.path.display().to_string();
        let out = cmd::run(
            &self.keytool,
            ["-list", "-keystore", &path, "-storepass", STOREPASS],
        )?;
        Ok(entries(&String::from_utf8_lossy(&out.stdout)))
    }

    fn delete(&self, alias: &str) -> Result<()> {
        let path = self.path.display().to_string();
        cmd::run(
            &self.keytool,
            [
                "-delete",
                "-noprompt",
                "-alias",
                alias,
                "-keystore",
                &path,
                "-storepass",
                STOREPASS,
            ],
        )?;
        Ok(())
    }

    fn refuse_unless_writable(&self) -> Result<()> {
        super::writable_or(self.writable, || {
            format!(
                "the Java keystore {} can only be changed by root: run `sudo airlock setup` (for your own \
                 shells `airlock env` points JVMs at the agent's trust store instead)",
                self.path.display()
            )
        })
    }

    /// The path of the keystore.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Store for JavaKeystore {
    fn kind(&self) -> Kind {
        Kind::Java
    }

    fn describe(&self) -> String {
        format!("Java keystore: {}", self.path.display())
    }

    fn location(&self) -> PathBuf {
        self.path.clone()
    }

    fn check(&self, ca: &Ca) -> Result<Holding> {
        let list = self.list()?;
        let alias = ca.file_name();
        Ok(Holding {
            current: list.iter().any(|(_, f)| ca.has_fingerprint(f)),
            stale: list
                .iter()
                .filter(|(a, f)| is_ours(a) && *a != alias && !ca.has_fingerprint(f))
                .map(|(a, _)| a.clone())
                .collect(),
        })
    }

    fn add(&self, ca: &Ca) -> Result<()> {
        self.refuse_unless_writable()?;
        let alias = ca.file_name();
        let list = self.list()?;
        for (a, f) in &list {
            if is_ours(a) && *a != alias && !ca.has_fingerprint(f) {
                self.delete(a)?;
            }
        }
        if list.iter().any(|(_, f)| ca.has_fingerprint(f)) {
            return Ok(());
        }
        let path = self.path.display().to_string();
        ca.with_file("pem", |file| {
            let file = file.display().to_string();
            cmd::run(
                &self.keytool,
                [
                    "-importcert",
                    "-noprompt",
                    "-trustcacerts",
                    "-alias",
                    &alias,
                    "-file",
                    &file,
                    "-keystore",
                    &path,
                    "-storepass",
                    STOREPASS,
                ],
            )
            .map(|_| ())
        })
    }

    fn remove_all(&self) -> Result<usize> {
        let ours: Vec<String> = self
            .list()?
            .into_iter()
            .map(|(a, _)| a)
            .filter(|a| is_ours(a))
            .collect();
        if ours.is_empty() {
            return Ok(0);
        }
        self.refuse_unless_writable()?;
        for a in &ours {
            self.delete(a)?;
        }
        Ok(ours.len())
    }

    fn airlock_entries(&self) -> Result<Vec<String>> {
        Ok(self
            .list()?
            .into_iter()
            .map(|(a, _)| a)
            .filter(|a| is_ours(a))
            .collect())
    }

    fn writable(&self) -> bool {
        self.writable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debians_copies_of_an_airlock_anchor_are_ours_and_others_are_not() {
        assert!(is_ours("airlock-5f2a990123456789"));
        assert!(is_ours("debian:airlock-5f2a990123456789.pem"));
        assert!(!is_ours("debian:corp-airlock-root.pem"));
        assert!(!is_ours("mykey"));
    }

    #[test]
    fn aliases_and_fingerprints_come_from_the_listing() {
        let listing = "Keystore type: JKS\nKeystore provider: SUN\n\nYour keystore contains 2 entries\n\n\
            debian:corp.pem, Dec 1, 2026, trustedCertEntry,\nCertificate fingerprint (SHA-256): AA:BB\n\
            airlock-5f2a990123456789, Dec 2, 2026, trustedCertEntry,\nCertificate fingerprint (SHA-256): CC:DD\n";
        assert_eq!(
            entries(listing),
            [
                ("debian:corp.pem".to_string(), "AA:BB".to_string()),
                ("airlock-5f2a990123456789".to_string(), "CC:DD".to_string())
            ]
        );
    }
}
