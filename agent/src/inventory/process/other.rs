//! Systems without `/proc` for [`super`]: the process behind a connection is not looked up.

use std::net::SocketAddr;

use super::{PeerProcess, SocketOwner};

pub(super) fn lookup(_peer: SocketAddr, _ours: SocketAddr, _hints: &[u32]) -> PeerProcess {
    PeerProcess::unknown("this OS does not show socket owners to the agent")
}

pub(super) fn owners(conns: &[(SocketAddr, SocketAddr)]) -> Vec<Option<u32>> {
    vec![None; conns.len()]
}

/// No exact lookups on this OS.
pub(super) struct Quick;

impl Quick {
    pub(super) fn open() -> Option<Quick> {
        None
    }

    pub(super) fn socket(
        &mut self,
        _peer: SocketAddr,
        _ours: SocketAddr,
    ) -> std::io::Result<Option<SocketOwner>> {
        Err(std::io::Error::new(
            std::io::ErrorKind::Unsupported,
            "no socket owner lookup on this OS",
        ))
    }
}

pub(super) fn holder(socket: SocketOwner, _hints: &[u32]) -> PeerProcess {
    PeerProcess {
        uid: Some(socket.uid),
        ..PeerProcess::unknown(
            "this OS does not show which process holds a socket (not implemented yet)",
        )
    }
}
