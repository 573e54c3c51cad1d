//! Who owns a file and who else may change it: the owner uid, the permission bits, and the names of
//! users for messages; and, for `airlock setup`, finding a service account and making a folder it
//! owns. It owns the OS-specific ways of doing those; it must not decide what is safe (that is
//! `trust`'s job). On systems without unix ownership (Windows, where the installer
//! sets ACLs) the facts are unknown and every ownership check is skipped.

use std::fs;
use std::io;
use std::path::Path;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as os;
#[cfg(not(unix))]
mod other;
#[cfg(not(unix))]
use other as os;

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file.
    File,
    /// A symbolic link (only seen when links are not followed).
    Symlink,
    /// Anything else (socket, device, fifo).
    Other,
}

/// Ownership facts of one path.
#[derive(Debug, Clone, Copy)]
pub struct Facts {
    /// What it is.
    pub kind: Kind,
    /// Owner uid; `None` where the OS has no unix owners.
    pub uid: Option<u32>,
    /// Permission bits (including setuid/setgid/sticky); `None` where the OS has none.
    pub mode: Option<u32>,
}

impl Facts {
    /// Whether users other than the owner may write it (group- or world-writable).
    pub fn writable_by_others(&self) -> bool {
        self.mode.is_some_and(|m| m & 0o022 != 0)
    }

    /// "group", "others" or "group and others", for messages.
    pub fn who_else_writes(&self) -> &'static str {
        match self.mode.map(|m| (m & 0o020 != 0, m & 0o002 != 0)) {
            Some((true, true)) => "its group and every other user",
            Some((true, false)) => "its group",
            Some((false, true)) => "every other user",
            _ => "nobody else",
        }
    }

    /// The permission bits as octal text ("0711"), or "unknown".
    pub fn mode_text(&self) -> String {
        self.mode
            .map(|m| format!("{:04o}", m & 0o7777))
            .unwrap_or_else(|| "unknown".into())
    }
}

/// The facts of `path`, following symbolic links if `follow`.
pub fn facts(path: &Path, follow: bool) -> io::Result<Facts> {
    let meta = if follow {
        fs::metadata(path)?
    } else {
        fs::symlink_metadata(path)?
    };
    let t = meta.file_type();
    let kind = if t.is_dir() {
        Kind::Dir
    } else if t.is_file() {
        Kind::File
    } else if t.is_symlink() {
        Kind::Symlink
    } else {
        Kind::Other
    };
    let (uid, mode) = os::owner_and_mode(&meta);
    Ok(Facts { kind, uid, mode })
}

/// The uid and gid of the account `name`, `None` if there is none (or the OS has no uids).
pub fn account(name: &str) -> Option<(u32, u32)> {
    os::account(name)
}

/// Creates `dir` (and its parents) as a 0711 folder owned by `uid`:`gid`.
pub fn create_owned_dir(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    os::create_owned_dir(dir, uid, gid)
}

/// The effective uid of this process, `None` where the OS has no uids.
pub fn current_uid() -> Option<u32> {
    airlock_agent::paths::current_uid()
}

/// "uid 65534 (nobody)", or "uid 65534" when the name is unknown.
pub fn who(uid: u32) -> String {
    match os::user_name(uid) {
        Some(name) => format!("uid {uid} ({name})"),
        None => format!("uid {uid}"),
    }
}
