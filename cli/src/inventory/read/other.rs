//! Systems without `O_NOFOLLOW` for [`super`]: the `symlink_metadata` check before opening is what
//! keeps links from being followed.

use std::fs::File;
use std::path::Path;

pub(super) fn open_no_follow(path: &Path) -> Result<File, String> {
    File::open(path).map_err(|e| format!("cannot be opened ({e})"))
}
