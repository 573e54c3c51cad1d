//! The control API where there are no unix sockets (Windows) for [`super`]: the agent's named pipe is
//! not implemented yet, so every connection fails saying so.

use std::io::{self, Read, Write};
use std::path::Path;
use std::time::Duration;

use super::PeerCred;

/// A connected control socket: none can exist on this OS.
pub(super) enum Stream {}

pub(super) fn connect(_path: &Path) -> io::Result<Stream> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "the control API (a named pipe) is not implemented on this OS yet",
    ))
}

/// What this OS adds to a stream.
pub(super) trait StreamExt {
    fn set_timeouts(&self, t: Duration) -> io::Result<()>;
    fn peer(&self) -> Option<PeerCred>;
    fn read_answer(&mut self, limit: u64) -> io::Result<(Vec<u8>, Option<PeerCred>)>;
}

impl StreamExt for Stream {
    fn set_timeouts(&self, _t: Duration) -> io::Result<()> {
        match *self {}
    }

    fn peer(&self) -> Option<PeerCred> {
        match *self {}
    }

    fn read_answer(&mut self, _limit: u64) -> io::Result<(Vec<u8>, Option<PeerCred>)> {
        match *self {}
    }
}

impl Read for Stream {
    fn read(&mut self, _buf: &mut [u8]) -> io::Result<usize> {
        match *self {}
    }
}

impl Write for Stream {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        match *self {}
    }

    fn flush(&mut self) -> io::Result<()> {
        match *self {}
    }
}
