//! Which local process and user opened a client connection to the listener, found from the
//! connection's own socket: the client's end (source address, our address) is looked up in the
//! kernel's socket table for its owner uid and inode, then among processes' open files for the pid
//! holding that inode, and the pid's executable name. It owns the OS-specific ways of finding that
//! out (on Linux `/proc/net/tcp{,6}` and `/proc/<pid>/fd`); elsewhere it reports that it cannot tell.
//! Every lookup is bounded (bytes read, processes and descriptors looked at) and blocking, so callers
//! run it off the async workers; it never connects to anything and never reads a process's memory.

use std::net::SocketAddr;

use serde::Serialize;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;
#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
use other as os;

/// What was found about the process behind a client connection.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerProcess {
    /// The process id, when its open files could be read.
    pub pid: Option<u32>,
    /// Its executable's file name (`curl`, `python3`, `node`), or its command name.
    pub exe: Option<String>,
    /// Its executable's full path (`/usr/bin/python3.11`), when the OS shows it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exe_path: Option<String>,
    /// The uid that owns the client's socket.
    pub uid: Option<u32>,
    /// That uid's name, when the system knows it.
    pub user: Option<String>,
    /// Why something is missing, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl PeerProcess {
    /// Nothing known, and why.
    pub fn unknown(note: &str) -> PeerProcess {
        PeerProcess {
            note: Some(note.to_string()),
            ..PeerProcess::default()
        }
    }
}

/// Finds the process whose socket has local address `peer` and remote address `ours` (the address
/// the client connected to). `hints` are pids to check first (recent clients), which makes a
/// repeat client cost a few reads instead of a walk over every process.
pub fn lookup(peer: SocketAddr, ours: SocketAddr, hints: &[u32]) -> PeerProcess {
    os::lookup(peer, ours, hints)
}

/// The uid owning each client connection `(peer, ours)`, as [`lookup`] finds it but without the
/// walk for the pid: one read of the socket tables answers them all, so a batch costs what one does.
/// `None` where the connection is gone or the OS does not tell.
pub fn owners(conns: &[(SocketAddr, SocketAddr)]) -> Vec<Option<u32>> {
    os::owners(conns)
}

/// Exact lookups of a connection's owner that never block — microseconds each, so they may run on an
/// async worker — where the OS has them (Linux: `sock_diag`).
pub struct QuickOwners(os::Quick);

impl std::fmt::Debug for QuickOwners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("QuickOwners")
    }
}

impl QuickOwners {
    /// `None` where the OS has no such lookup (or it is not allowed here).
    pub fn open() -> Option<QuickOwners> {
        os::Quick::open().map(QuickOwners)
    }

    /// The uid owning the live client connection `(peer, ours)`, `Ok(None)` if there is none; `Err`
    /// when the OS could not be asked (then [`owners`] can).
    pub fn owner(&mut self, peer: SocketAddr, ours: SocketAddr) -> std::io::Result<Option<u32>> {
        Ok(self.socket(peer, ours)?.map(|s| s.uid))
    }

    /// The live client socket of `(peer, ours)`: its owner and inode, for [`holder`].
    pub fn socket(
        &mut self,
        peer: SocketAddr,
        ours: SocketAddr,
    ) -> std::io::Result<Option<SocketOwner>> {
        self.0.socket(peer, ours)
    }
}

/// A live client socket as the kernel's socket table shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketOwner {
    /// Its owner.
    pub uid: u32,
    /// Its inode, which the holding process's open files name.
    pub inode: u64,
}

/// The process holding `socket` (hinted pids first), with its executable and its owner's name:
/// [`lookup`] for a socket already found. Blocking (a walk of the owner's processes' open files).
pub fn holder(socket: SocketOwner, hints: &[u32]) -> PeerProcess {
    os::holder(socket, hints)
}
