//! Unix file permissions and identity for [`super`].

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub(super) fn is_superuser() -> bool {
    // The effective uid decides file access, so it decides where the daemon's state belongs.
    rustix::process::geteuid().is_root()
}

pub(super) fn current_uid() -> Option<u32> {
    Some(rustix::process::geteuid().as_raw())
}

pub(super) fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

pub(super) fn create_with_mode(path: &Path, mode: u32) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)?;
    // The umask may have removed bits we asked for, or the file may have existed with wider bits.
    f.set_permissions(fs::Permissions::from_mode(mode))?;
    Ok(f)
}

pub(super) fn mode_of(path: &Path) -> Option<u32> {
    fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777)
}

pub(super) fn open_append(path: &Path, mode: u32) -> std::io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(mode)
        .open(path)
}
