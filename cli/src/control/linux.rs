//! Who serves the control socket, on Linux: its pid and uid from `SO_PEERCRED` (through rustix: no
//! unsafe code), which the kernel recorded when the server bound the socket and no process can fake.

use std::os::unix::net::UnixStream;

use super::PeerCred;

/// The server's credentials, as the kernel recorded them.
pub(super) fn peer(s: &UnixStream) -> Option<PeerCred> {
    let c = rustix::net::sockopt::socket_peercred(s).ok()?;
    Some(PeerCred {
        pid: u32::try_from(c.pid.as_raw_nonzero().get()).ok()?,
        uid: c.uid.as_raw(),
    })
}
