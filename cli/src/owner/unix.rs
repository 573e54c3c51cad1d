//! Unix ownership for [`super`]: owner and mode from `stat`, user names from `/etc/passwd`.

use std::fs;
use std::os::unix::fs::MetadataExt;

/// The owner uid and permission bits of `meta`.
pub(super) fn owner_and_mode(meta: &fs::Metadata) -> (Option<u32>, Option<u32>) {
    (Some(meta.uid()), Some(meta.mode() & 0o7777))
}

/// The uid and gid of the account `name` in `/etc/passwd`.
pub(super) fn account(name: &str) -> Option<(u32, u32)> {
    airlock_agent::sys::procfs::user_ids(name)
}

/// `dir`, 0711, owned by `uid`:`gid`.
pub(super) fn create_owned_dir(dir: &std::path::Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(dir)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o711))?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
}

/// The user's name, for messages only (see [`airlock_agent::sys::procfs::user_name`]).
pub(super) fn user_name(uid: u32) -> Option<String> {
    airlock_agent::sys::procfs::user_name(uid)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::{facts, Kind};

    #[test]
    fn facts_report_owner_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
        let f = facts(dir.path(), true).unwrap();
        assert_eq!(f.kind, Kind::Dir);
        assert_eq!(f.uid, super::super::current_uid());
        assert!(f.writable_by_others());
        assert_eq!(f.mode_text(), "0777");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o711)).unwrap();
        assert!(!facts(dir.path(), true).unwrap().writable_by_others());
    }
}
