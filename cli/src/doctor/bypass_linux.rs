//! Linux's side of the `bypass` check: the TCP socket tables and which of this user's processes own
//! which socket inode (from `/proc/<pid>/fd`). Bounded reads of `/proc` only; it decides nothing.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use airlock_agent::sys::procfs::{parse_tcp_table, read_bounded, SocketRow};

use super::bypass::Owner;

/// At most this many processes and descriptors per process are looked at.
const MAX_PROCS: usize = 4096;
const MAX_FDS: usize = 4096;

/// Every row of `/proc/net/tcp` and `/proc/net/tcp6`.
pub fn sockets() -> Vec<SocketRow> {
    let mut rows = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if let Some(t) = read_bounded(Path::new(path), 16 << 20) {
            rows.extend(parse_tcp_table(&t, v6));
        }
    }
    rows
}

/// The inode in a descriptor's link text, `socket:[12345]`.
pub fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// Socket inode → owning process, for the processes of `uid`.
pub fn owners(uid: u32) -> HashMap<u64, Owner> {
    let mut out = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in procs.flatten().take(MAX_PROCS) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if entry.metadata().map(|m| m.uid()).ok() != Some(uid) {
            continue;
        }
        let name = read_bounded(&entry.path().join("comm"), 256)
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten().take(MAX_FDS) {
            let inode = std::fs::read_link(fd.path())
                .ok()
                .and_then(|l| l.to_str().and_then(socket_inode));
            if let Some(i) = inode {
                out.insert(
                    i,
                    Owner {
                        pid,
                        name: name.clone(),
                    },
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_links_give_their_inode() {
        assert_eq!(socket_inode("socket:[4242]"), Some(4242));
        assert_eq!(socket_inode("pipe:[4242]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
    }

    #[test]
    fn this_process_owns_a_socket_it_opened() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let uid = crate::owner::current_uid().unwrap();
        let me = std::process::id();
        let port = l.local_addr().unwrap().port();
        let row = sockets()
            .into_iter()
            .find(|r| r.local.port() == port)
            .unwrap();
        assert_eq!(owners(uid).get(&row.inode).map(|o| o.pid), Some(me));
    }
}
