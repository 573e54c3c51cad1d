//! Linux listener identity for [`super`]: the owner uid and inode of a listening socket come from
//! `/proc/net/tcp` and `/proc/net/tcp6` (readable by every user), a unix listener's inode from
//! `/proc/net/unix` by its path, and the processes holding one from the `socket:[inode]` links under
//! `/proc/<pid>/fd` (readable for our own processes, or all as root).

use std::fs;
use std::io;
use std::net::{IpAddr, SocketAddr};

use super::{Holding, Listener, Lookup, PidProof};
use crate::owner;
use airlock_agent::sys::procfs;

pub(super) fn lookup(target: SocketAddr) -> io::Result<Lookup> {
    let mut listeners = Vec::new();
    for (path, v6) in [("/proc/net/tcp", false), ("/proc/net/tcp6", true)] {
        match fs::read_to_string(path) {
            Ok(text) => listeners.extend(parse_table(&text, v6)),
            // No tcp6 table: IPv6 is disabled, so no IPv6 socket can take the connection either.
            Err(e) if v6 && e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot read {path} to see who listens on {target}: {e}"),
                ))
            }
        }
    }
    Ok(match reached_by(&listeners, target) {
        Some(l) => Lookup::Found(l),
        None => Lookup::Nobody,
    })
}

pub(super) fn check_pid(listener: &Listener, pid: u32) -> Result<PidProof, String> {
    let fd_dir = format!("/proc/{pid}/fd");
    match fs::read_dir(&fd_dir) {
        Ok(entries) => {
            let wanted = socket_link(listener.inode);
            let held = entries
                .flatten()
                .any(|e| fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()));
            if held {
                Ok(PidProof::HoldsSocket)
            } else {
                Err("that process does not hold the listening socket".into())
            }
        }
        // The agent runs as another user, and only that user and root may read its open files. The
        // socket's owner uid comes from /proc/net/tcp, which no other local user can fake, so the uid
        // match already says the listener is the agent's user's. What is left is to make sure the
        // runtime file's pid is alive under that uid: a stale file naming a dead or recycled pid must
        // not pass.
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => match process_uid(pid) {
            Some(uid) if uid == listener.uid => Ok(PidProof::RunsAsOwner),
            Some(uid) => Err(format!(
                "that pid now belongs to a process of {}",
                owner::who(uid)
            )),
            None => Err("that process is not running (the runtime file is stale)".into()),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err("that process is not running (the runtime file is stale)".into())
        }
        Err(e) => Err(format!("its open files cannot be read ({fd_dir}: {e})")),
    }
}

pub(super) fn holding(pid: u32, inode: u64) -> Holding {
    match fs::read_dir(format!("/proc/{pid}/fd")) {
        Ok(entries) => {
            let wanted = socket_link(inode);
            let held = entries
                .flatten()
                .any(|e| fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()));
            if held {
                Holding::Yes
            } else {
                Holding::No
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Holding::Gone,
        Err(_) => Holding::Hidden,
    }
}

pub(super) fn unix_listeners(path: &std::path::Path) -> Vec<u64> {
    let Ok(text) = fs::read_to_string("/proc/net/unix") else {
        return Vec::new();
    };
    // The kernel lists the path the socket was bound with; the CLI may have reached it another way.
    let real = fs::canonicalize(path).ok();
    parse_unix_table(&text)
        .into_iter()
        .filter(|(p, _)| {
            let p = std::path::Path::new(p);
            p == path
                || real
                    .as_deref()
                    .is_some_and(|r| fs::canonicalize(p).is_ok_and(|q| q == r))
        })
        .map(|(_, inode)| inode)
        .collect()
}

/// `__SO_ACCEPTCON` in `/proc/net/unix`'s Flags column: the socket is listening.
const UNIX_LISTENING: u32 = 0x0001_0000;
/// `SOCK_STREAM` in its Type column.
const UNIX_STREAM: u32 = 1;

/// The listening stream sockets of `/proc/net/unix` that are bound to a path: (path, inode).
pub(crate) fn parse_unix_table(text: &str) -> Vec<(String, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            // Num RefCount Protocol Flags Type St Inode Path — the path is the rest of the line.
            let mut rest = line.trim_start();
            let mut fields = [""; 7];
            for f in &mut fields {
                let end = rest.find(char::is_whitespace)?;
                *f = &rest[..end];
                rest = rest[end..].trim_start();
            }
            let flags = u32::from_str_radix(fields[3], 16).ok()?;
            let kind = u32::from_str_radix(fields[4], 16).ok()?;
            let inode = fields[6].parse().ok()?;
            let path = rest.trim_end();
            (flags & UNIX_LISTENING != 0 && kind == UNIX_STREAM && path.starts_with('/'))
                .then(|| (path.to_string(), inode))
        })
        .collect()
}

pub(super) fn holders(listener: &Listener) -> Vec<(u32, Option<String>)> {
    let wanted = socket_link(listener.inode);
    let Ok(procs) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = fs::read_dir(p.path().join("fd")) else {
            continue; // another user's process, or gone
        };
        let held = fds
            .flatten()
            .any(|e| fs::read_link(e.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str()));
        if held {
            let comm = fs::read_to_string(p.path().join("comm"))
                .ok()
                .map(|c| c.trim().to_string());
            found.push((pid, comm));
        }
    }
    found
}

pub(super) fn command_name(pid: u32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let comm = comm.trim();
    (!comm.is_empty()).then(|| comm.to_string())
}

fn socket_link(inode: u64) -> String {
    format!("socket:[{inode}]")
}

/// The effective uid of `pid`, from the `Uid:` line of `/proc/<pid>/status`.
fn process_uid(pid: u32) -> Option<u32> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The LISTEN sockets of one `/proc/net/tcp` (`v6 = false`) or `/proc/net/tcp6` table.
pub(crate) fn parse_table(text: &str, v6: bool) -> Vec<Listener> {
    procfs::parse_tcp_table(text, v6)
        .into_iter()
        .filter(|r| r.state == procfs::TCP_LISTEN)
        .map(|r| Listener {
            bound: r.local,
            uid: r.uid,
            inode: r.inode,
        })
        .collect()
}

/// Of the listeners that would accept a connection to `target`, the one the kernel hands it to: a
/// socket bound to the exact address beats a wildcard, and an IPv4 socket beats an IPv6 one. Sockets
/// tie only inside an SO_REUSEPORT group, which the kernel allows only under one uid.
pub(crate) fn reached_by(listeners: &[Listener], target: SocketAddr) -> Option<Listener> {
    listeners
        .iter()
        .filter_map(|l| score(l.bound, target).map(|s| (s, *l)))
        .max_by_key(|(s, _)| *s)
        .map(|(_, l)| l)
}

/// How specifically a socket bound to `bound` matches a connection to `target`; `None` if it does not
/// accept it at all.
fn score(bound: SocketAddr, target: SocketAddr) -> Option<u8> {
    if bound.port() != target.port() {
        return None;
    }
    let family_v4 = bound.is_ipv4();
    let b = unmap(bound.ip());
    let t = unmap(target.ip());
    let exact = b == t;
    let wildcard = match (b, t) {
        (IpAddr::V4(b), IpAddr::V4(_)) => b.is_unspecified(),
        // A dual-stack IPv6 wildcard takes IPv4 connections too; whether it is IPV6_ONLY does not show
        // in the table, so assume it is not (a stricter answer, never a looser one).
        (IpAddr::V6(b), _) => b.is_unspecified(),
        (IpAddr::V4(_), IpAddr::V6(_)) => false,
    };
    match (exact, wildcard) {
        (true, _) => Some(if family_v4 { 4 } else { 3 }),
        (false, true) => Some(if family_v4 { 2 } else { 1 }),
        (false, false) => None,
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:127.0.0.1`) as the IPv4 address it is.
fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An address word as the kernel prints it on this machine.
    fn word(b: [u8; 4]) -> String {
        format!("{:08X}", u32::from_ne_bytes(b))
    }

    fn row(local: &str, st: &str, uid: u32, inode: u64) -> String {
        // The remote address is as wide as the local one, as the kernel prints it.
        let zeros = "0".repeat(local.split(':').next().map_or(8, str::len));
        format!(
            "   3: {local} {zeros}:0000 {st} 00000000:00000000 00:00000000 00000000 {uid:>5}        0 {inode} 1 0000000000000000 100 0 0 10 0"
        )
    }

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

    #[cfg(target_endian = "little")]
    #[test]
    fn reads_a_real_ipv4_table() {
        let table = format!(
            "{HEADER}\n   0: 0100007F:211F 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 48213 1 ffff8881 100 0 0 10 0\n   1: 0100007F:211F 0100007F:B0A2 01 00000000:00000000 00:00000000 00000000  1000        0 48999 1 ffff8882 20 4 30 10 -1\n"
        );
        let l = parse_table(&table, false);
        assert_eq!(
            l,
            vec![Listener {
                bound: "127.0.0.1:8479".parse().unwrap(),
                uid: 1000,
                inode: 48213
            }],
            "the ESTABLISHED row is not a listener"
        );
    }

    #[cfg(target_endian = "little")]
    #[test]
    fn reads_real_ipv6_rows() {
        let loopback = row("00000000000000000000000001000000:211F", "0A", 0, 7);
        let mapped = row("0000000000000000FFFF00000100007F:211F", "0A", 65534, 8);
        let l = parse_table(&format!("{HEADER}\n{loopback}\n{mapped}\n"), true);
        assert_eq!(l[0].bound, "[::1]:8479".parse().unwrap());
        assert_eq!(l[1].bound, "[::ffff:127.0.0.1]:8479".parse().unwrap());
        assert_eq!((l[1].uid, l[1].inode), (65534, 8));
    }

    #[test]
    fn ipv4_rows_in_this_machines_byte_order() {
        let local = format!("{}:{:04X}", word([127, 0, 0, 1]), 8479);
        let l = parse_table(&format!("{HEADER}\n{}\n", row(&local, "0A", 42, 99)), false);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].bound, "127.0.0.1:8479".parse().unwrap());
        assert_eq!((l[0].uid, l[0].inode), (42, 99));
    }

    #[test]
    fn ipv6_and_v4_mapped_rows_in_this_machines_byte_order() {
        let one = format!(
            "{}{}{}{}",
            word([0; 4]),
            word([0; 4]),
            word([0; 4]),
            word([0, 0, 0, 1])
        );
        let mapped = format!(
            "{}{}{}{}",
            word([0; 4]),
            word([0; 4]),
            word([0, 0, 0xff, 0xff]),
            word([127, 0, 0, 1])
        );
        let text = format!(
            "{HEADER}\n{}\n{}\n",
            row(&format!("{one}:2120"), "0A", 1, 10),
            row(&format!("{mapped}:2120"), "0A", 2, 11)
        );
        let l = parse_table(&text, true);
        assert_eq!(l[0].bound, "[::1]:8480".parse().unwrap());
        assert_eq!(l[1].bound, "[::ffff:127.0.0.1]:8480".parse().unwrap());
        // The mapped socket is the one an IPv4 connection to 127.0.0.1 reaches.
        let target: SocketAddr = "127.0.0.1:8480".parse().unwrap();
        assert_eq!(reached_by(&l, target).map(|x| x.inode), Some(11));
    }

    #[test]
    fn malformed_and_non_listening_rows_are_skipped() {
        let text = format!(
            "{HEADER}\n   0: zz:1 00000000:0000 0A\n{}\n\n",
            row("0100007F:211F", "06", 0, 1)
        );
        assert!(parse_table(&text, false).is_empty());
        assert!(
            parse_table(
                &format!("{HEADER}\n{}\n", row("0100007F:211F", "0A", 0, 1)),
                true
            )
            .is_empty(),
            "an IPv4-length address in the IPv6 table is refused"
        );
    }

    fn l(bound: &str, uid: u32, inode: u64) -> Listener {
        Listener {
            bound: bound.parse().unwrap(),
            uid,
            inode,
        }
    }

    #[test]
    fn the_kernel_choice_exact_beats_wildcard_and_v4_beats_v6() {
        let target: SocketAddr = "127.0.0.1:8479".parse().unwrap();
        let exact = l("127.0.0.1:8479", 1, 1);
        let any4 = l("0.0.0.0:8479", 2, 2);
        let any6 = l("[::]:8479", 3, 3);
        let other_port = l("127.0.0.1:8480", 4, 4);
        let other_ip = l("127.0.0.2:8479", 5, 5);
        assert_eq!(
            reached_by(&[any6, any4, exact, other_port], target),
            Some(exact)
        );
        assert_eq!(reached_by(&[any6, any4], target), Some(any4));
        assert_eq!(
            reached_by(&[any6, other_ip], target),
            Some(any6),
            "dual-stack wildcard"
        );
        assert_eq!(reached_by(&[other_port, other_ip], target), None);
        // An IPv6 target is never reached by an IPv4 socket.
        let v6: SocketAddr = "[::1]:8479".parse().unwrap();
        assert_eq!(reached_by(&[any4, exact], v6), None);
        assert_eq!(reached_by(&[any4, any6], v6), Some(any6));
    }

    #[test]
    fn reads_the_unix_table() {
        let text = "Num       RefCount Protocol Flags    Type St Inode Path\n\
            0000000000000000: 00000002 00000000 00010000 0001 01 23456 /var/lib/airlock/airlock.sock\n\
            0000000000000000: 00000003 00000000 00000000 0001 03 23457 /var/lib/airlock/airlock.sock\n\
            0000000000000000: 00000002 00000000 00010000 0002 01  3458 /run/dgram\n\
            0000000000000000: 00000002 00000000 00010000 0001 01  3459 @abstract\n\
            0000000000000000: 00000002 00000000 00010000 0001 01  3460 /tmp/with space.sock\n\
            0000000000000000: 00000002 00000000 00010000 0001 01  3461\n";
        assert_eq!(
            parse_unix_table(text),
            vec![
                ("/var/lib/airlock/airlock.sock".to_string(), 23456),
                ("/tmp/with space.sock".to_string(), 3460)
            ],
            "only listening stream sockets bound to a path"
        );
    }

    #[test]
    fn this_process_is_seen_holding_its_own_unix_listener() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let sock = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let inodes = unix_listeners(&path);
        assert_eq!(inodes.len(), 1, "{inodes:?}");
        assert_eq!(holding(std::process::id(), inodes[0]), Holding::Yes);
        assert_eq!(
            holding(std::process::id(), inodes[0] + 1_000_000),
            Holding::No
        );
        drop(sock);
    }

    #[test]
    fn this_process_is_seen_holding_its_own_listener() {
        let sock = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        let Lookup::Found(found) = lookup(addr).unwrap() else {
            panic!("our own listener on {addr} was not found");
        };
        assert_eq!(Some(found.uid), owner::current_uid());
        assert_eq!(
            check_pid(&found, std::process::id()),
            Ok(PidProof::HoldsSocket)
        );
        assert!(holders(&found)
            .iter()
            .any(|(p, _)| *p == std::process::id()));
        drop(sock);
        assert_eq!(lookup(addr).unwrap(), Lookup::Nobody);
    }
}
