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
