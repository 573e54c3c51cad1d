//! Who serves the control socket, on macOS and the BSDs: reading it (`getpeereid`, and
//! `LOCAL_PEERPID` on macOS) is not implemented yet, nor who wrote the answer, so `trust` rests on the
//! socket file's owner, the answer's pid and the CA fingerprint there.

use std::io::{self, Read};
use std::os::unix::net::UnixStream;

use super::PeerCred;

/// Not known on this OS yet.
pub(super) fn peer(_s: &UnixStream) -> Option<PeerCred> {
    None
}

/// Nothing to ask for on this OS yet.
pub(super) fn attest(_s: &UnixStream) -> io::Result<()> {
    Ok(())
}

/// Reads to the end (at most `limit` bytes); who wrote it is not known here.
pub(super) fn read_attested(s: &UnixStream, limit: u64) -> io::Result<(Vec<u8>, Option<PeerCred>)> {
    let mut raw = Vec::new();
    s.take(limit).read_to_end(&mut raw)?;
    Ok((raw, None))
}
