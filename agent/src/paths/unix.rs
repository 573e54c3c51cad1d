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

pub(super) fn create_new_with_mode(path: &Path, mode: u32) -> std::io::Result<File> {
    let f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    // The umask may have removed bits we asked for.
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

pub(super) fn create_dir_with_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new().mode(mode).create(path)?;
    // The umask may have removed bits we asked for.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

pub(super) fn check_private(path: &Path, meta: &fs::Metadata) -> Result<(), (String, String)> {
    use std::os::unix::fs::MetadataExt;
    let me = rustix::process::geteuid().as_raw();
    if meta.uid() != me {
        return Err((
            format!("is owned by uid {}, not by this user (uid {me})", meta.uid()),
            "run airlockd as the directory's owner, or pass --state-dir with a directory of your own".into(),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err((
            format!(
                "is writable by others (mode {mode:o}), so another user could replace what the agent keeps there"
            ),
            format!(
                "pass --state-dir with a directory only you can write, or remove the group/other write bits yourself (chmod go-w {})",
                path.display()
            ),
        ));
    }
    Ok(())
}
