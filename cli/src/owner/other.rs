//! Non-unix fallbacks for [`super`]: there are no unix owners or modes (the installer protects the
//! state directory with ACLs), so ownership is unknown and only the kind of path is reported.

use std::fs;

/// The owner uid and permission bits of `meta`.
pub(super) fn owner_and_mode(_meta: &fs::Metadata) -> (Option<u32>, Option<u32>) {
    (None, None)
}

pub(super) fn user_name(_uid: u32) -> Option<String> {
    None
}

/// No unix accounts: the service runs as a Windows service account.
pub(super) fn account(_name: &str) -> Option<(u32, u32)> {
    None
}

/// The folder; its ACL is the installer's (the MSI) to set.
pub(super) fn create_owned_dir(dir: &std::path::Path, _uid: u32, _gid: u32) -> std::io::Result<()> {
    fs::create_dir_all(dir)
}
