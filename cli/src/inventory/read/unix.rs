//! Unix open for [`super`]: `O_NOFOLLOW` (a symbolic link fails with `ELOOP`), `O_NONBLOCK` (a FIFO
//! never blocks), `O_NOCTTY` and close-on-exec.

use std::fs::File;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

pub(super) fn open_no_follow(path: &Path) -> Result<File, String> {
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => Ok(File::from(fd)),
        Err(Errno::LOOP) => Err("is a symbolic link (not followed)".into()),
        Err(Errno::ACCESS) => Err("is not readable by this user".into()),
        Err(e) => Err(format!("cannot be opened ({e})")),
    }
}
