//! Unix ownership for [`super`]: owner and mode from `stat`, user names from `/etc/passwd`.

use std::fs;
use std::os::unix::fs::MetadataExt;

/// The owner uid and permission bits of `meta`.
pub(super) fn owner_and_mode(meta: &fs::Metadata) -> (Option<u32>, Option<u32>) {
    (Some(meta.uid()), Some(meta.mode() & 0o7777))
}

/// The user's name from `/etc/passwd`, for messages only. Users known only to NSS (LDAP, sssd) are
/// shown by uid alone, which is all a message needs; nothing is decided by name.
pub(super) fn user_name(uid: u32) -> Option<String> {
    let text = fs::read_to_string("/etc/passwd").ok()?;
    name_in_passwd(&text, uid)
}

fn name_in_passwd(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let id: u32 = f.next()?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::owner::{facts, Kind};

    #[test]
    fn names_come_from_passwd_lines() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n#comment\nnobody:x:65534:65534::/:/usr/sbin/nologin\n";
        assert_eq!(name_in_passwd(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_in_passwd(passwd, 65534).as_deref(), Some("nobody"));
        assert_eq!(name_in_passwd(passwd, 1000), None);
    }

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
