//! Linux process lookup for [`super`]: the client socket's owner uid and inode from
//! `/proc/net/tcp` and `/proc/net/tcp6` (readable by every user), the pid from the `socket:[inode]`
//! links under `/proc/<pid>/fd` (readable for the agent's own user's processes, or all as root), the
//! executable from `/proc/<pid>/exe` (else `comm`), and the user name from `/etc/passwd`.

use std::fs;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::PeerProcess;

/// Most bytes read from one socket table (about 100,000 sockets).
const MAX_TABLE_BYTES: u64 = 16 << 20;
/// Most processes looked at in one walk of `/proc`.
const MAX_PROCESSES: usize = 8192;
/// Most descriptor links read in one lookup, over all processes.
const MAX_LINKS: usize = 200_000;

/// One row of a socket table: the addresses, owner uid and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SocketRow {
    pub local: SocketAddr,
    pub remote: SocketAddr,
    pub uid: u32,
    pub inode: u64,
}

pub(super) fn lookup(peer: SocketAddr, ours: SocketAddr, hints: &[u32]) -> PeerProcess {
    let Some(row) = find_socket(peer, ours) else {
        return PeerProcess::unknown("the client's socket was already closed");
    };
    let user = user_name(row.uid);
    if row.inode == 0 {
        // A socket being torn down has no inode any more.
        return PeerProcess {
            uid: Some(row.uid),
            user,
            note: Some("the client's socket was already closing".into()),
            ..PeerProcess::default()
        };
    }
    let (pid, note) = match holder(row.inode, row.uid, hints) {
        Holder::Found(pid) => (Some(pid), None),
        Holder::NotFound if !can_see(row.uid) => (
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
    PeerProcess {
        pid,
        exe: pid.and_then(exe_name),
        uid: Some(row.uid),
        user,
        note,
    }
}

fn find_socket(peer: SocketAddr, ours: SocketAddr) -> Option<SocketRow> {
    // A client's IPv4 connection shows in tcp; a dual-stack IPv6 socket's (mapped) one in tcp6.
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .zip([false, true])
        .find_map(|(path, v6)| {
            let text = read_bounded(Path::new(path), MAX_TABLE_BYTES)?;
            parse_table(&text, v6)
                .into_iter()
                .find(|r| same(r.local, peer) && same(r.remote, ours))
        })
}

fn read_bounded(path: &Path, max: u64) -> Option<String> {
    let mut text = String::new();
    fs::File::open(path)
        .ok()?
        .take(max)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
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
fn holder(inode: u64, uid: u32, hints: &[u32]) -> Holder {
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

/// The user's name from `/etc/passwd`; users known only to NSS (LDAP, sssd) show by uid alone.
fn user_name(uid: u32) -> Option<String> {
    let text = read_bounded(Path::new("/etc/passwd"), 4 << 20)?;
    name_in_passwd(&text, uid)
}

fn name_in_passwd(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let id: u32 = f.next()?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

/// Every row of one `/proc/net/tcp` (`v6 = false`) or `/proc/net/tcp6` table, whatever its state.
pub(crate) fn parse_table(text: &str, v6: bool) -> Vec<SocketRow> {
    text.lines()
        .skip(1) // the header
        .filter_map(|line| {
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode …
            let f: Vec<&str> = line.split_whitespace().take(10).collect();
            if f.len() < 10 {
                return None;
            }
            Some(SocketRow {
                local: parse_addr(f[1], v6)?,
                remote: parse_addr(f[2], v6)?,
                uid: f[7].parse().ok()?,
                inode: f[9].parse().ok()?,
            })
        })
        .collect()
}

/// `0100007F:1F2F` → 127.0.0.1:7983. The kernel prints each 32-bit word of the address as the number
/// it is in memory (so byte order is the machine's own), and the port in host order.
fn parse_addr(text: &str, v6: bool) -> Option<SocketAddr> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let hex = ip.get(i * 8..i * 8 + 8)?;
        Some(u32::from_str_radix(hex, 16).ok()?.to_ne_bytes())
    };
    let ip = match (v6, ip.len()) {
        (true, 32) => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            IpAddr::V6(Ipv6Addr::from(b))
        }
        (false, 8) => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(b: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(b))
    }

    fn v4(ip: [u8; 4], port: u16) -> String {
        format!("{}:{port:04X}", word(ip))
    }

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

    #[test]
    fn reads_client_rows_in_this_machines_byte_order() {
        let row = format!(
            "   7: {} {} 01 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 20 4 30 10 -1",
            v4([127, 0, 0, 1], 51000),
            v4([127, 0, 0, 1], 8479)
        );
        let rows = parse_table(&format!("{HEADER}\n{row}\n   8: junk\n"), false);
        assert_eq!(
            rows,
            vec![SocketRow {
                local: "127.0.0.1:51000".parse().unwrap(),
                remote: "127.0.0.1:8479".parse().unwrap(),
                uid: 1000,
                inode: 4242
            }]
        );
        assert!(
            parse_table(&format!("{HEADER}\n{row}\n"), true).is_empty(),
            "an IPv4-length address is refused in the IPv6 table"
        );
    }

    #[test]
    fn mapped_addresses_are_the_ipv4_endpoint() {
        let a: SocketAddr = "[::ffff:127.0.0.1]:5000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        assert!(same(a, b));
        assert!(!same(a, "127.0.0.1:5001".parse().unwrap()));
    }

    #[test]
    fn names_come_from_passwd_lines() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\n#c\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(name_in_passwd(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(name_in_passwd(passwd, 7), None);
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
        let nobody = lookup("127.0.0.1:1".parse().unwrap(), ours, &[]);
        assert_eq!(nobody.pid, None);
        assert!(nobody.note.is_some());
    }
}
