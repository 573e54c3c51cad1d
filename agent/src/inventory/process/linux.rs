//! Linux process lookup for [`super`]: the client socket's owner uid and inode from the kernel's
//! `sock_diag` (an exact lookup by address, in microseconds; where netlink is not allowed, from
//! `/proc/net/tcp` and `/proc/net/tcp6`, readable by every user, whose one read answers a whole batch
//! of connections), the pid from the `socket:[inode]` links under `/proc/<pid>/fd` (readable for the
//! agent's own user's processes, or all as root), the executable from `/proc/<pid>/exe` (else
//! `comm`), and the user name from `/etc/passwd`.

use std::collections::HashMap;
use std::fs;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{PeerProcess, SocketOwner};
use crate::sys::procfs::{parse_tcp_table, read_bounded, user_name, SocketRow};
use crate::sys::sockdiag::Diag;

/// Most bytes read from one socket table (about 100,000 sockets).
const MAX_TABLE_BYTES: u64 = 16 << 20;
/// Most processes looked at in one walk of `/proc`.
const MAX_PROCESSES: usize = 8192;
/// Most descriptor links read in one lookup, over all processes.
const MAX_LINKS: usize = 200_000;

pub(super) fn lookup(peer: SocketAddr, ours: SocketAddr, hints: &[u32]) -> PeerProcess {
    let Some(row) = find_socket(peer, ours) else {
        return PeerProcess::unknown("the client's socket was already closed");
    };
    if row.inode == 0 {
        // A socket being torn down has no inode any more.
        return PeerProcess {
            uid: Some(row.uid),
            user: user_name(row.uid),
            note: Some("the client's socket was already closing".into()),
            ..PeerProcess::default()
        };
    }
    holder(
        SocketOwner {
            uid: row.uid,
            inode: row.inode,
        },
        hints,
    )
}

pub(super) fn holder(socket: SocketOwner, hints: &[u32]) -> PeerProcess {
    let (pid, note) = match find_holder(socket.inode, socket.uid, hints) {
        Holder::Found(pid) => (Some(pid), None),
        Holder::NotFound if !can_see(socket.uid) => (
            None,
            Some("its process runs as another user, whose open files the agent cannot read".into()),
        ),
        Holder::NotFound => (
            None,
            Some("no process holds the client's socket any more (it closed)".into()),
        ),
        Holder::OverBudget => (
            None,
            Some("too many processes to look through; lookup stopped".into()),
        ),
    };
    let exe_path = pid.and_then(|p| fs::read_link(format!("/proc/{p}/exe")).ok());
    PeerProcess {
        pid,
        exe: pid.and_then(exe_name),
        exe_path: exe_path.map(|p| {
            let p = p.to_string_lossy();
            p.trim_end_matches(" (deleted)").to_string()
        }),
        uid: Some(socket.uid),
        user: user_name(socket.uid),
        note,
    }
}

pub(super) fn owners(conns: &[(SocketAddr, SocketAddr)]) -> Vec<Option<u32>> {
    // The kernel's socket hash answers each exactly; the tables are read only where netlink is not
    // allowed.
    if let Ok(diag) = Diag::open(true) {
        let mut quick = Quick(diag);
        let found: std::io::Result<Vec<Option<u32>>> = conns
            .iter()
            .map(|(p, o)| Ok(quick.socket(*p, *o)?.map(|s| s.uid)))
            .collect();
        if let Ok(found) = found {
            return found;
        }
    }
    owners_from_tables(conns)
}

/// Exact owner lookups through `sock_diag`.
pub(super) struct Quick(Diag);

impl Quick {
    pub(super) fn open() -> Option<Quick> {
        Diag::open(false).ok().map(Quick)
    }

    /// The owner and inode of a live socket; `Err` when the kernel could not be asked.
    pub(super) fn socket(
        &mut self,
        peer: SocketAddr,
        ours: SocketAddr,
    ) -> std::io::Result<Option<SocketOwner>> {
        // A socket being torn down (TIME_WAIT, or orphaned) has no inode, and its uid reads 0.
        Ok(self
            .0
            .find(peer, ours)?
            .filter(|s| s.inode != 0)
            .map(|s| SocketOwner {
                uid: s.uid,
                inode: s.inode,
            }))
    }
}

fn owners_from_tables(conns: &[(SocketAddr, SocketAddr)]) -> Vec<Option<u32>> {
    let mut found: Vec<Option<u32>> = vec![None; conns.len()];
    // Client port and our port name a loopback connection; the addresses are checked on a match.
    let mut wanted: HashMap<(u16, u16), Vec<usize>> = HashMap::with_capacity(conns.len());
    for (i, (peer, ours)) in conns.iter().enumerate() {
        wanted
            .entry((peer.port(), ours.port()))
            .or_default()
            .push(i);
    }
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        if found.iter().all(Option::is_some) {
            break;
        }
        let Some(text) = read_bounded(Path::new(path), MAX_TABLE_BYTES) else {
            continue;
        };
        for row in parse_tcp_table(&text, v6) {
            // A socket being torn down (TIME_WAIT) has no inode, and its uid reads 0: not an owner.
            if row.inode == 0 {
                continue;
            }
            let Some(indexes) = wanted.get(&(row.local.port(), row.remote.port())) else {
                continue;
            };
            for &i in indexes {
                let (peer, ours) = conns[i];
                if found[i].is_none() && same(row.local, peer) && same(row.remote, ours) {
                    found[i] = Some(row.uid);
                }
            }
        }
    }
    found
}

fn find_socket(peer: SocketAddr, ours: SocketAddr) -> Option<SocketRow> {
    if let Ok(found) = Diag::open(true).and_then(|mut d| d.find(peer, ours)) {
        return found.map(|s| SocketRow {
            local: peer,
            remote: ours,
            state: s.state,
            uid: s.uid,
            inode: s.inode,
        });
    }
    // A client's IPv4 connection shows in tcp; a dual-stack IPv6 socket's (mapped) one in tcp6.
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .zip([false, true])
        .find_map(|(path, v6)| {
            let text = read_bounded(Path::new(path), MAX_TABLE_BYTES)?;
            parse_tcp_table(&text, v6)
                .into_iter()
                .find(|r| same(r.local, peer) && same(r.remote, ours))
        })
}

/// Whether two socket addresses are the same endpoint, an IPv4-mapped IPv6 address being the IPv4
/// address it maps.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && unmap(a.ip()) == unmap(b.ip())
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

enum Holder {
    Found(u32),
    NotFound,
    OverBudget,
}

/// Whether the agent may read the open files of `uid`'s processes.
fn can_see(uid: u32) -> bool {
    matches!(crate::paths::current_uid(), Some(0)) || crate::paths::current_uid() == Some(uid)
}

/// The pid holding socket `inode`: the hinted pids first, then every process of `uid` (a socket is
/// held by a process of its owner, save for descriptors passed across users, which are rare), newest
/// first — a short-lived client (curl, a script) is a recent pid, and must be found before it exits.
fn find_holder(inode: u64, uid: u32, hints: &[u32]) -> Holder {
    let wanted = format!("socket:[{inode}]");
    let mut links = 0usize;
    for &pid in hints {
        if holds(pid, &wanted, &mut links) {
            return Holder::Found(pid);
        }
    }
    let Ok(procs) = fs::read_dir("/proc") else {
        return Holder::NotFound;
    };
    let mut pids: Vec<u32> = Vec::new();
    for entry in procs.flatten() {
        if pids.len() >= MAX_PROCESSES {
            return Holder::OverBudget;
        }
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        // /proc/<pid> belongs to the process's effective uid.
        if !hints.contains(&pid) && entry.metadata().is_ok_and(|m| m.uid() == uid) {
            pids.push(pid);
        }
    }
    pids.sort_unstable_by(|a, b| b.cmp(a));
    for pid in pids {
        if links >= MAX_LINKS {
            return Holder::OverBudget;
        }
        if holds(pid, &wanted, &mut links) {
            return Holder::Found(pid);
        }
    }
    Holder::NotFound
}

/// Whether `pid` holds the socket link `wanted` (false when its open files cannot be read: another
/// user's, or gone).
fn holds(pid: u32, wanted: &str, links: &mut usize) -> bool {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        *links += 1;
        fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted)
    })
}

/// The executable's file name, else the command name (which a process may change, and which the
/// kernel cuts at 15 bytes).
fn exe_name(pid: u32) -> Option<String> {
    if let Ok(path) = fs::read_link(format!("/proc/{pid}/exe")) {
        if let Some(name) = path.file_name().and_then(|n| n.to_str()) {
            // A binary replaced while running shows as "name (deleted)".
            return Some(name.trim_end_matches(" (deleted)").to_string());
        }
    }
    let comm = read_bounded(Path::new(&format!("/proc/{pid}/comm")), 256)?;
    let comm = comm.trim();
    (!comm.is_empty()).then(|| comm.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_addresses_are_the_ipv4_endpoint() {
        let a: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(same(a, b));
        assert!(!same(a, "127.0.0.1:5001".parse().unwrap()));
    }

    #[test]
    fn finds_this_process_behind_a_real_loopback_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(ours).unwrap();
        let (_server_side, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let found = lookup(peer, ours, &[]);
        assert_eq!(found.pid, Some(std::process::id()), "{found:?}");
        assert_eq!(found.uid, crate::paths::current_uid());
        assert!(found.exe.is_some(), "{found:?}");
        // The hint path finds it too, and an unknown connection finds nothing.
        assert_eq!(
            lookup(peer, ours, &[std::process::id()]).pid,
            Some(std::process::id())
        );
        // The batch lookup reads the owner uid alone (from the kernel's socket hash, or the tables),
        // for this connection and not for a closed one.
        let gone: SocketAddr = "127.0.0.1:1".parse().unwrap();
        for read in [owners, owners_from_tables] {
            assert_eq!(
                read(&[(gone, ours), (peer, ours)]),
                vec![None, crate::paths::current_uid()]
            );
        }
        let nobody = lookup("127.0.0.1:1".parse().unwrap(), ours, &[]);
        assert_eq!(nobody.pid, None);
        assert!(nobody.note.is_some());
    }
}
