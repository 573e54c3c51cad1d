//! Who listens on a loopback address: the uid that owns the listening socket and, where the OS lets us
//! see it, which processes hold it — and the same for the listening unix sockets bound at a path. It
//! owns the OS-specific ways of finding that out (on Linux, `/proc/net/tcp{,6}`, `/proc/net/unix` and
//! `/proc/<pid>/fd`); elsewhere it reports that it cannot tell, and `trust`
//! falls back to the pid and CA fingerprint checks alone. It must not decide whether a listener is
//! trusted, and it never connects to anything.

use std::net::SocketAddr;

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
use linux as os;
#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
use other as os;

/// A listening TCP socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listener {
    /// The address it is bound to (may be a wildcard that also accepts the target).
    pub bound: SocketAddr,
    /// The uid that owns it.
    pub uid: u32,
    /// Its socket inode: the identity that stays the same for as long as the socket exists.
    pub inode: u64,
}

/// What listens on an address.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(dead_code)] // which variants are built depends on the OS: linux.rs never says Unsupported, other.rs only that
pub enum Lookup {
    /// Nothing listens there.
    Nobody,
    /// The socket a connection to the address reaches.
    Found(Listener),
    /// This OS gives no way to see socket owners (only `other.rs` says this).
    Unsupported,
}

/// How a pid was tied to a listening socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // only linux.rs ties pids to sockets
pub enum PidProof {
    /// The pid holds the socket among its open files.
    HoldsSocket,
    /// The pid's open files are not readable by us (it runs as another user), but it runs as the
    /// socket's owner.
    RunsAsOwner,
    /// The socket belongs to root (a service manager made it) and the pid's open files are not
    /// readable by us, but the verified agent reports serving that very socket (its inode).
    ReportedByAgent,
}

/// Whether a process holds a socket among its open files, as far as we can see.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code)] // which variants are built depends on the OS
pub enum Holding {
    /// It does.
    Yes,
    /// Its open files are readable, and the socket is not among them.
    No,
    /// Its open files are not readable by us (another user's process), or the OS does not show them.
    Hidden,
    /// No such process.
    Gone,
}

/// Whether `pid` holds the socket with inode `inode`.
pub fn holding(pid: u32, inode: u64) -> Holding {
    os::holding(pid, inode)
}

/// The inodes of the listening unix stream sockets bound at `path` (empty where the OS does not
/// show them).
pub fn unix_listeners(path: &std::path::Path) -> Vec<u64> {
    os::unix_listeners(path)
}

/// Finds the listening socket that a TCP connection to `target` would reach.
pub fn lookup(target: SocketAddr) -> std::io::Result<Lookup> {
    os::lookup(target)
}

/// Checks that `pid` is the process behind `listener`. `Err` says why not, as a clause that follows
/// "the runtime file names pid N, but …".
pub fn check_pid(listener: &Listener, pid: u32) -> Result<PidProof, String> {
    os::check_pid(listener, pid)
}

/// The pids we can see holding `listener`, each with its command name when known.
pub fn holders(listener: &Listener) -> Vec<(u32, Option<String>)> {
    os::holders(listener)
}

/// The command name of `pid`, where the OS shows it (for messages only).
pub fn command_name(pid: u32) -> Option<String> {
    os::command_name(pid)
}
