//! The control socket on unix systems for [`super`]: a `std` unix stream with timeouts. Only who
//! serves the socket and who wrote the answer are per OS: they come from `linux.rs` (`SO_PEERCRED`,
//! `SCM_CREDENTIALS`) or from `bsd.rs` (macOS and the BSDs, not read yet).

use std::io;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

#[cfg(target_os = "linux")]
#[path = "linux.rs"]
mod peer_os;
#[cfg(not(target_os = "linux"))]
#[path = "bsd.rs"]
mod peer_os;

use super::PeerCred;

/// A connected control socket.
pub(super) type Stream = UnixStream;

pub(super) fn connect(path: &Path) -> io::Result<Stream> {
    let s = UnixStream::connect(path)?;
    // Before a byte is sent, so every message of the answer carries its writer.
    peer_os::attest(&s)?;
    Ok(s)
}

/// What this OS adds to a stream.
pub(super) trait StreamExt {
    fn set_timeouts(&self, t: Duration) -> io::Result<()>;
    fn peer(&self) -> Option<PeerCred>;
    /// Reads the answer to its end (at most `limit` bytes), with the one process that wrote all of
    /// it where the OS tells.
    fn read_answer(&mut self, limit: u64) -> io::Result<(Vec<u8>, Option<PeerCred>)>;
}

impl StreamExt for UnixStream {
    fn set_timeouts(&self, t: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }

    fn peer(&self) -> Option<PeerCred> {
        peer_os::peer(self)
    }

    fn read_answer(&mut self, limit: u64) -> io::Result<(Vec<u8>, Option<PeerCred>)> {
        peer_os::read_attested(self, limit)
    }
}
