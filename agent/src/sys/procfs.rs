//! Reading Linux's `/proc/net/tcp{,6}` socket tables and `/etc/passwd`: the rows (addresses, state,
//! owner uid, inode) and user names that the agent's inventory and the CLI's listener check both need.
//! Pure parsing plus bounded reads; it must not decide anything about the sockets it reports.
//! Hand-written rather than the `procfs` crate: these two formats take a few dozen lines, and that
//! crate brings far more than they need.

use std::fs;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// The `st` value of a socket in the LISTEN state.
pub const TCP_LISTEN: u8 = 0x0A;

/// One row of a socket table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketRow {
    /// Local address.
    pub local: SocketAddr,
    /// Remote address (`0.0.0.0:0` for a listener).
    pub remote: SocketAddr,
    /// TCP state (`st`), e.g. [`TCP_LISTEN`].
    pub state: u8,
    /// Owner uid.
    pub uid: u32,
    /// Socket inode (0 for a socket being torn down).
    pub inode: u64,
}

/// Every well-formed row of one `/proc/net/tcp` (`v6 = false`) or `/proc/net/tcp6` table; malformed
/// rows are skipped.
pub fn parse_tcp_table(text: &str, v6: bool) -> Vec<SocketRow> {
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
                state: u8::from_str_radix(f[3], 16).ok()?,
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

/// At most `max` bytes of a text file, `None` if it cannot be read.
pub fn read_bounded(path: &Path, max: u64) -> Option<String> {
    let mut text = String::new();
    fs::File::open(path)
        .ok()?
        .take(max)
        .read_to_string(&mut text)
        .ok()?;
    Some(text)
}

/// The user's name from `/etc/passwd`, for messages and reports only: users known only to NSS (LDAP,
/// sssd) show by uid alone, and nothing may be decided by name.
pub fn user_name(uid: u32) -> Option<String> {
    let text = read_bounded(Path::new("/etc/passwd"), 4 << 20)?;
    name_in_passwd(&text, uid)
}

/// The uid and primary gid of the account `name` from `/etc/passwd` (the service user `airlock
/// setup` hands the state directory to).
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let text = read_bounded(Path::new("/etc/passwd"), 4 << 20)?;
    ids_in_passwd(&text, name)
}

/// The uid and gid of `name` in passwd-format `text`.
pub fn ids_in_passwd(text: &str, name: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let _password = f.next()?;
        Some((f.next()?.parse().ok()?, f.next()?.parse().ok()?))
    })
}

/// The name of `uid` in passwd-format `text`.
pub fn name_in_passwd(text: &str, uid: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        let name = f.next()?;
        let _password = f.next()?;
        let id: u32 = f.next()?.parse().ok()?;
        (id == uid && !name.is_empty()).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_found_by_name_with_its_uid_and_gid() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nairlock:x:998:997:Airlock agent:/var/lib/airlock:/usr/sbin/nologin\nbroken:x:12\n";
        assert_eq!(ids_in_passwd(passwd, "airlock"), Some((998, 997)));
        assert_eq!(ids_in_passwd(passwd, "airloc"), None);
        assert_eq!(ids_in_passwd(passwd, "broken"), None);
        assert_eq!(name_in_passwd(passwd, 998).as_deref(), Some("airlock"));
    }

    fn v4(ip: [u8; 4], port: u16) -> String {
        format!("{:08X}:{port:04X}", u32::from_ne_bytes(ip))
    }

    const HEADER: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode";

    #[test]
    fn rows_are_read_in_this_machines_byte_order_and_junk_is_skipped() {
        let row = format!(
            "   7: {} {} 01 00000000:00000000 00:00000000 00000000  1000        0 4242 1 0000000000000000 20 4 30 10 -1",
            v4([127, 0, 0, 1], 51000),
            v4([127, 0, 0, 1], 8479)
        );
        let rows = parse_tcp_table(&format!("{HEADER}\n{row}\n   8: junk\n"), false);
        assert_eq!(
            rows,
            vec![SocketRow {
                local: "127.0.0.1:51000".parse().unwrap(),
                remote: "127.0.0.1:8479".parse().unwrap(),
                state: 1,
                uid: 1000,
                inode: 4242
            }]
        );
        assert!(
            parse_tcp_table(&format!("{HEADER}\n{row}\n"), true).is_empty(),
            "an IPv4-length address is refused in the IPv6 table"
        );
    }

    #[test]
    fn names_come_from_passwd_lines() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\n#c\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(name_in_passwd(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(name_in_passwd(passwd, 7), None);
    }
}
