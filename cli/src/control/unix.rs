//! The control socket on unix systems other than Linux (macOS, the BSDs) for [`super`]: a `std`
//! unix stream. Reading its server's credentials (`getpeereid`, and `LOCAL_PEERPID` on macOS) is not
//! implemented yet, so `trust` rests on the socket file's owner, the answer's pid and the CA
//! fingerprint there.

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::PeerCred;

/// A connected control socket.
pub(super) type Stream = UnixStream;

pub(super) fn connect(path: &Path) -> io::Result<Stream> {
    UnixStream::connect(path)
}

/// What this OS adds to a stream.
pub(super) trait StreamExt {
    fn set_timeouts(&self, t: Duration) -> io::Result<()>;
    fn peer(&self) -> Option<PeerCred>;
}

impl StreamExt for UnixStream {
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }

    fn peer(&self) -> Option<PeerCred> {
        None
    }
}
