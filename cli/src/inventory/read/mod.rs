//! Reading another program's config file as the invoking user, safely: never through a symbolic
//! link (checked with `symlink_metadata`, and the open itself refuses one where the OS can), only a
//! regular file, at most [`MAX_FILE`] bytes, never blocking on a FIFO. It owns those checks; it must
//! not parse (`configs` does) and never writes.

use std::io::Read;
use std::path::Path;

#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as os;
#[cfg(not(unix))]
mod other;
#[cfg(not(unix))]
use other as os;

/// Largest config file read. Claude Code's `~/.claude.json` keeps per-project state and grows to a
/// few MiB on busy machines; anything past this is not a config someone wrote.
pub const MAX_FILE: u64 = 16 << 20;

/// What reading a config file gave.
#[derive(Debug, PartialEq, Eq)]
pub enum Contents {
    /// The file is not there.
    Missing,
    /// Its text.
    Text(String),
    /// It cannot be read, and why (a sentence fragment: "is a symbolic link (not followed)").
    Unreadable(String),
}

/// Reads `path` if it is a regular file of at most `max` bytes, never following a symbolic link.
pub fn read_config(path: &Path, max: u64) -> Contents {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Contents::Missing,
        Err(e) => return Contents::Unreadable(format!("cannot be inspected ({e})")),
        Ok(m) if m.file_type().is_symlink() => {
            return Contents::Unreadable("is a symbolic link (not followed)".into())
        }
        Ok(m) if !m.is_file() => return Contents::Unreadable("is not a regular file".into()),
        Ok(_) => {}
    }
    let file = match os::open_no_follow(path) {
        Ok(f) => f,
        Err(e) => return Contents::Unreadable(e),
    };
    // The checks again on what was opened, in case the path changed in between.
    match file.metadata() {
        Ok(m) if !m.is_file() => return Contents::Unreadable("is not a regular file".into()),
        Ok(m) if m.len() > max => {
            return Contents::Unreadable(format!(
                "is {} bytes, more than the {} MiB a config file may have",
                m.len(),
                max >> 20
            ))
        }
        Ok(_) => {}
        Err(e) => return Contents::Unreadable(format!("cannot be inspected ({e})")),
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.take(max + 1).read_to_end(&mut bytes) {
        return Contents::Unreadable(format!("cannot be read ({e})"));
    }
    if bytes.len() as u64 > max {
        return Contents::Unreadable(format!(
            "grew past the {} MiB a config file may have while being read",
            max >> 20
        ));
    }
    match String::from_utf8(bytes) {
        Ok(t) => Contents::Text(t),
        Err(_) => Contents::Unreadable("is not UTF-8 text".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_regular_file_and_reports_a_missing_one() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.json");
        std::fs::write(&p, "{}").unwrap();
        assert_eq!(read_config(&p, MAX_FILE), Contents::Text("{}".into()));
        assert_eq!(
            read_config(&d.path().join("nope"), MAX_FILE),
            Contents::Missing
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_is_not_followed() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("secret.json");
        std::fs::write(&target, "{\"mcpServers\": {}}").unwrap();
        let link = d.path().join("link.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        match read_config(&link, MAX_FILE) {
            Contents::Unreadable(why) => assert!(why.contains("symbolic link"), "{why}"),
            other => panic!("followed the link: {other:?}"),
        }
        // The open refuses a link too, for a path swapped after the first check.
        let e = os::open_no_follow(&link).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
    }

    #[test]
    fn a_file_over_the_cap_is_refused_unread() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("big.json");
        std::fs::write(&p, vec![b' '; 4096]).unwrap();
        match read_config(&p, 1024) {
            Contents::Unreadable(why) => assert!(why.contains("4096 bytes"), "{why}"),
            other => panic!("read a file over the cap: {other:?}"),
        }
        assert!(
            matches!(read_config(d.path(), 1024), Contents::Unreadable(w) if w.contains("regular"))
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_not_waited_on() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fifo.json");
        let ok = std::process::Command::new("mkfifo")
            .arg(&p)
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            assert!(
                matches!(read_config(&p, MAX_FILE), Contents::Unreadable(w) if w.contains("regular"))
            );
        }
    }
}
