//! Fallback for [`super`] on systems where this CLI cannot yet see socket owners (macOS, BSDs,
//! Windows): every lookup says so, and verification rests on the runtime file's pid and the CA
//! fingerprint alone.

use std::net::SocketAddr;

use super::{Holding, Listener, Lookup, PidProof};

pub(super) fn lookup(_target: SocketAddr) -> std::io::Result<Lookup> {
    Ok(Lookup::Unsupported)
}

pub(super) fn check_pid(_listener: &Listener, _pid: u32) -> Result<PidProof, String> {
    Err("this system gives no way to see which process holds a socket".into())
}

pub(super) fn holders(_listener: &Listener) -> Vec<(u32, Option<String>)> {
    Vec::new()
}

pub(super) fn command_name(_pid: u32) -> Option<String> {
    None
}

pub(super) fn holding(_pid: u32, _inode: u64) -> Holding {
    Holding::Hidden
}

pub(super) fn unix_listeners(_path: &std::path::Path) -> Vec<u64> {
    Vec::new()
}
