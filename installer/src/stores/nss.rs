//! NSS databases: the one Chromium (and other NSS programs) read on Linux, `~/.pki/nssdb`, the snap
//! Chromium's, every Firefox profile that has a database, and the system-wide `/etc/pki/nssdb`.
//! Changed through `certutil` from libnss3-tools; the CA's nickname carries its serial. A database
//! that does not exist yet is created only where asked (the user's `~/.pki/nssdb`), and the plan
//! records that so uninstall can take it away again. It owns NSS only.

use std::fs;
use std::path::{Path, PathBuf};

use super::{Holding, Kind, Store};
use crate::ca::{Ca, NICK_PREFIX};
use crate::cmd;
use crate::error::Result;
use crate::fsutil;

const PACKAGE: &str = "libnss3-tools (`apt install libnss3-tools`, `dnf install nss-tools`)";

/// One NSS database.
#[derive(Debug, Clone)]
pub struct NssDb {
    dir: PathBuf,
    /// `sql:` (cert9.db) or `dbm:` (the old cert8.db).
    prefix: &'static str,
    /// What it belongs to, for people ("Chromium", "Firefox profile x").
    owner: String,
    /// It does not exist yet and will be created.
    missing: bool,
}

/// The databases under `home` (and, system-wide, `/etc/pki/nssdb`).
pub fn discover(system: bool, home: Option<&Path>, create_user_db: bool) -> Vec<NssDb> {
    let mut out = Vec::new();
    if system {
        out.extend(NssDb::existing(
            Path::new("/etc/pki/nssdb"),
            "system NSS database",
        ));
    }
    let Some(home) = home else {
        return out;
    };
    let user = home.join(".pki/nssdb");
    match NssDb::existing(&user, "Chromium and NSS programs") {
        Some(db) => out.push(db),
        None if create_user_db => out.push(NssDb {
            dir: user,
            prefix: "sql:",
            owner: "Chromium and NSS programs".into(),
            missing: true,
        }),
        None => {}
    }
    out.extend(NssDb::existing(
        &home.join("snap/chromium/current/.pki/nssdb"),
        "snap Chromium",
    ));
    for profiles in [
        home.join(".mozilla/firefox"),
        home.join("snap/firefox/common/.mozilla/firefox"),
        home.join("Library/Application Support/Firefox/Profiles"),
    ] {
        let Ok(entries) = fs::read_dir(&profiles) else {
            continue;
        };
        let mut dirs: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        dirs.sort();
        for d in dirs {
            let name = d
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.extend(NssDb::existing(&d, &format!("Firefox profile {name}")));
        }
    }
    out
}

impl NssDb {
    fn existing(dir: &Path, owner: &str) -> Option<NssDb> {
        let prefix = if dir.join("cert9.db").is_file() {
            "sql:"
        } else if dir.join("cert8.db").is_file() {
            "dbm:"
        } else {
            return None;
        };
        Some(NssDb {
            dir: dir.to_path_buf(),
            prefix,
            owner: owner.into(),
            missing: false,
        })
    }

    /// A database to be created at `dir` (`sql:` format).
    pub fn to_create(dir: PathBuf) -> NssDb {
        NssDb {
            dir,
            prefix: "sql:",
            owner: "Chromium and NSS programs".into(),
            missing: true,
        }
    }

    /// It has to be created before the CA can be added.
    pub fn missing(&self) -> bool {
        self.missing
    }

    /// Its folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates the (empty, password-less) database; returns the folders created, outermost first.
    pub fn create(&self) -> Result<Vec<PathBuf>> {
        let certutil = certutil()?;
        let created = fsutil::create_dirs(&self.dir, 0o700)?;
        cmd::run(&certutil, ["-N", "-d", &self.arg(), "--empty-password"])?;
        Ok(created)
    }

    /// Removes a database [`NssDb::create`] made (its files, then the folders it created).
    pub fn destroy(dir: &Path, created: &[PathBuf]) -> Result<()> {
        for f in [
            "cert9.db",
            "key4.db",
            "pkcs11.txt",
            "cert8.db",
            "key3.db",
            "secmod.db",
        ] {
            fsutil::remove_file(&dir.join(f))?;
        }
        fsutil::remove_created_dirs(created);
        Ok(())
    }

    fn arg(&self) -> String {
        format!("{}{}", self.prefix, self.dir.display())
    }

    /// The nicknames of Airlock CAs in the database.
    fn ours(&self, certutil: &Path) -> Result<Vec<String>> {
        let out = cmd::run(certutil, ["-L", "-d", &self.arg()])?;
        Ok(nicknames(&String::from_utf8_lossy(&out.stdout))
            .into_iter()
            .filter(|n| n.starts_with(NICK_PREFIX))
            .collect())
    }

    fn delete(&self, certutil: &Path, nick: &str) -> Result<()> {
        // A nickname can be there more than once; delete until it is gone (bounded).
        for _ in 0..8 {
            let (line, out) = cmd::output(certutil, ["-D", "-d", &self.arg(), "-n", nick])?;
            if !out.status.success() {
                if self.ours(certutil)?.iter().any(|n| n == nick) {
                    return Err(cmd::failed(&line, &out));
                }
                return Ok(());
            }
        }
        Ok(())
    }
}

fn certutil() -> Result<PathBuf> {
    cmd::require("certutil", "NSS databases (Chromium, Firefox)", PACKAGE)
}

/// The nicknames `certutil -L` lists: each line is the nickname, spaces, and trust flags without
/// spaces; the first lines are headers.
fn nicknames(listing: &str) -> Vec<String> {
    listing
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter(|l| !l.starts_with("Certificate Nickname") && !l.starts_with(' '))
        .filter_map(|l| {
            let l = l.trim_end();
            let (nick, flags) = l.rsplit_once(char::is_whitespace)?;
            (flags.contains(',')).then(|| nick.trim_end().to_string())
        })
        .collect()
}

impl Store for NssDb {
    fn kind(&self) -> Kind {
        Kind::Nss
    }

    fn describe(&self) -> String {
        format!(
            "NSS database ({}): {}{}",
            self.owner,
            self.dir.display(),
            if self.missing {
                " (will be created)"
            } else {
                ""
            }
        )
    }

    fn location(&self) -> PathBuf {
        self.dir.clone()
    }

    fn to_create(&self) -> Option<PathBuf> {
        self.missing.then(|| self.dir.clone())
    }

    fn check(&self, ca: &Ca) -> Result<Holding> {
        if !self.dir.join("cert9.db").is_file() && !self.dir.join("cert8.db").is_file() {
            return Ok(Holding::default());
        }
        let certutil = certutil()?;
        let ours = self.ours(&certutil)?;
        let nick = ca.nickname();
        let current = ours.contains(&nick) && {
            let out = cmd::run(&certutil, ["-L", "-d", &self.arg(), "-n", &nick, "-a"])?;
            ca.is_in(&String::from_utf8_lossy(&out.stdout))
        };
        Ok(Holding {
            current,
            stale: ours.into_iter().filter(|n| *n != nick).collect(),
        })
    }

    fn add(&self, ca: &Ca) -> Result<()> {
        let certutil = certutil()?;
        let nick = ca.nickname();
        for old in self.ours(&certutil)?.into_iter().filter(|n| *n != nick) {
            self.delete(&certutil, &old)?;
        }
        if self.check(ca)?.current {
            return Ok(());
        }
        self.delete(&certutil, &nick)?;
        // "C,,": a CA trusted to issue server certificates; nothing else.
        ca.with_file("pem", |file| {
            let file = file.display().to_string();
            cmd::run(
                &certutil,
                [
                    "-A",
                    "-d",
                    &self.arg(),
                    "-t",
                    "C,,",
                    "-n",
                    &nick,
                    "-i",
                    &file,
                ],
            )
            .map(|_| ())
        })
    }

    fn remove_all(&self) -> Result<usize> {
        if self.missing && !self.dir.join("cert9.db").is_file() {
            return Ok(0);
        }
        let certutil = certutil()?;
        let ours = self.ours(&certutil)?;
        for n in &ours {
            self.delete(&certutil, n)?;
        }
        Ok(ours.len())
    }

    fn airlock_entries(&self) -> Result<Vec<String>> {
        if !self.dir.join("cert9.db").is_file() && !self.dir.join("cert8.db").is_file() {
            return Ok(Vec::new());
        }
        self.ours(&certutil()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nicknames_are_read_from_a_listing_with_spaces_in_them() {
        let listing = "\nCertificate Nickname                                         Trust Attributes\n                                                             SSL,S/MIME,JAR/XPI\n\nAirlock device CA 5f2a990123456789                           C,,  \nCorp Root CA                                                 CT,C,C\n";
        assert_eq!(
            nicknames(listing),
            ["Airlock device CA 5f2a990123456789", "Corp Root CA"]
        );
    }

    #[test]
    fn profiles_with_a_database_are_found_and_a_missing_user_db_is_offered() {
        let home = tempfile::tempdir().unwrap();
        let p = home.path().join(".mozilla/firefox/abc.default-release");
        fs::create_dir_all(&p).unwrap();
        fs::write(p.join("cert9.db"), "").unwrap();
        fs::create_dir_all(home.path().join(".mozilla/firefox/never-opened")).unwrap();
        let found = discover(false, Some(home.path()), true);
        let dirs: Vec<_> = found.iter().map(|d| (d.dir.clone(), d.missing)).collect();
        assert_eq!(
            dirs,
            [(home.path().join(".pki/nssdb"), true), (p.clone(), false)]
        );
        assert!(discover(false, Some(home.path()), false)
            .iter()
            .all(|d| !d.missing));
    }
}
