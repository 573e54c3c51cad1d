//! The control socket on Linux for [`super`]: a `std` unix stream, and its server's pid and uid from
//! `SO_PEERCRED` (through rustix: no unsafe code), which the kernel recorded when the server bound
//! the socket and no process can fake.

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
        let c = rustix::net::sockopt::socket_peercred(self).ok()?;
        Some(PeerCred {
            pid: u32::try_from(c.pid.as_raw_nonzero().get()).ok()?,
            uid: c.uid.as_raw(),
        })
    }
}
