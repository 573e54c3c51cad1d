//! Process-level resources the operating system bounds — how many file descriptors the agent may hold
//! open (each client connection needs one, a tunnel or an upstream leg another) —, the listening
//! sockets a service manager hands over (`activation`), and the OS's readers of socket facts
//! (`procfs`, and on Linux `sockdiag`). It owns asking the OS; it must not decide how many
//! connections to serve (the agent wiring does, from these numbers).

pub mod activation;
pub mod procfs;
#[cfg(target_os = "linux")]
pub mod sockdiag;
#[cfg(unix)]
mod unix;
#[cfg(unix)]
use unix as os;
#[cfg(not(unix))]
mod other;
#[cfg(not(unix))]
use other as os;

/// Raises the soft limit on open files to the hard limit and returns the limit now in force
/// (`None` where the OS has no such limit or it cannot be read).
pub fn raise_open_files_limit() -> Option<u64> {
    os::raise_open_files_limit()
}
