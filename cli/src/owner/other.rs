//! Non-unix fallbacks for [`super`]: there are no unix owners or modes (the installer protects the
//! state directory with ACLs), so ownership is unknown and only the kind of path is reported.

use std::fs;
use std::io;
use std::path::Path;

use super::{Facts, Kind};

pub(super) fn facts(path: &Path, follow: bool) -> io::Result<Facts> {
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
    Ok(Facts {
        kind,
        uid: None,
        mode: None,
    })
}

pub(super) fn user_name(_uid: u32) -> Option<String> {
    None
}
