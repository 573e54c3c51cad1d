//! Non-unix fallbacks for [`super`]: permissions are governed by ACLs set by the installer.

use std::fs::{File, OpenOptions};
use std::path::Path;

pub(super) fn is_superuser() -> bool {
    false
}

pub(super) fn current_uid() -> Option<u32> {
    None
}

pub(super) fn set_mode(_path: &Path, _mode: u32) -> std::io::Result<()> {
    Ok(())
}

pub(super) fn create_with_mode(path: &Path, _mode: u32) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

pub(super) fn create_new_with_mode(path: &Path, _mode: u32) -> std::io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

pub(super) fn mode_of(_path: &Path) -> Option<u32> {
    None
}

pub(super) fn open_append(path: &Path, _mode: u32) -> std::io::Result<File> {
    OpenOptions::new().append(true).create(true).open(path)
}

pub(super) fn create_dir_with_mode(path: &Path, _mode: u32) -> std::io::Result<()> {
    std::fs::create_dir(path)
}

pub(super) fn check_private(
    _path: &Path,
    _meta: &std::fs::Metadata,
) -> Result<(), (String, String)> {
    // ACLs set by the installer govern access on this OS.
    Ok(())
}
