//! Linux `sock_diag` over netlink: the owner uid and inode of one TCP socket, found by its exact
//! local and remote address in the kernel's socket hash (what `ss` uses), instead of reading all of
//! `/proc/net/tcp` — which costs the kernel milliseconds when the machine holds thousands of
//! sockets, and so loses the race against a short-lived client. Any local user may ask. It owns the
//! two fixed message layouts (`inet_diag_req_v2` and `inet_diag_msg`, linux/inet_diag.h), written by
//! hand: a crate for them would bring a netlink framework for one request and one reply. One lookup
//! is two system calls and microseconds. It never reads a socket's data and decides nothing.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::time::Duration;

use rustix::net::netlink::{self, SocketAddrNetlink};
use rustix::net::sockopt::{set_socket_timeout, Timeout};
use rustix::net::{
    recv, sendto, socket_with, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType,
};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 1;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const IPPROTO_TCP: u8 = 6;
const NLMSG_HEADER: usize = 16;
/// `inet_diag_req_v2`: family, protocol, ext, pad, states, then the 48-byte socket id.
const REQUEST: usize = 56;
/// `inet_diag_msg` up to and including `idiag_inode`.
const REPLY: usize = 72;
const NO_COOKIE: u32 = u32::MAX;
/// How long the kernel may take to answer (it answers at once; this only bounds a broken kernel).
const TIMEOUT: Duration = Duration::from_secs(1);

/// What the kernel says about one socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Socket {
    /// Its owner uid (0 for a socket in TIME_WAIT, which has no owner any more).
    pub uid: u32,
    /// Its inode (0 for a socket being torn down).
    pub inode: u64,
    /// Its TCP state.
    pub state: u8,
}

/// A netlink socket for `sock_diag` requests, reused for a batch of lookups.
#[derive(Debug)]
pub struct Diag {
    fd: OwnedFd,
    seq: u32,
}

impl Diag {
    /// Opens the netlink socket (fails where netlink is not allowed, e.g. some sandboxes). A
    /// blocking one waits for an answer at most a second; a non-blocking one never waits — the kernel
    /// answers inside the request's own system call, so an answer that is not there at once is an
    /// error ([`io::ErrorKind::WouldBlock`]) and the caller asks another way — and so may be used on
    /// an async worker.
    pub fn open(blocking: bool) -> io::Result<Diag> {
        let flags = if blocking {
            SocketFlags::CLOEXEC
        } else {
            SocketFlags::CLOEXEC | SocketFlags::NONBLOCK
        };
        let fd = socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            flags,
            Some(netlink::SOCK_DIAG),
        )?;
        if blocking {
            set_socket_timeout(&fd, Timeout::Recv, Some(TIMEOUT))?;
        }
        Ok(Diag { fd, seq: 0 })
    }

    /// The TCP socket whose local address is `local` and remote address `remote`, if there is one.
    /// An IPv4 pair is looked for among IPv4 sockets, then as IPv4-mapped among dual-stack ones.
    pub fn find(&mut self, local: SocketAddr, remote: SocketAddr) -> io::Result<Option<Socket>> {
        let (l, r) = (unmap(local.ip()), unmap(remote.ip()));
        match (l, r) {
            (IpAddr::V4(lv4), IpAddr::V4(rv4)) => {
                let mut src = [0u8; 16];
                let mut dst = [0u8; 16];
                src[..4].copy_from_slice(&lv4.octets());
                dst[..4].copy_from_slice(&rv4.octets());
                if let Some(s) = self.ask(AF_INET, local.port(), src, remote.port(), dst)? {
                    return Ok(Some(s));
                }
                let (src, dst) = (lv4.to_ipv6_mapped().octets(), rv4.to_ipv6_mapped().octets());
                self.ask(AF_INET6, local.port(), src, remote.port(), dst)
            }
            (IpAddr::V6(lv6), IpAddr::V6(rv6)) => self.ask(
                AF_INET6,
                local.port(),
                lv6.octets(),
                remote.port(),
                rv6.octets(),
            ),
            _ => Ok(None),
        }
    }

    fn ask(
        &mut self,
        family: u8,
        sport: u16,
        src: [u8; 16],
        dport: u16,
        dst: [u8; 16],
    ) -> io::Result<Option<Socket>> {
        self.seq = self.seq.wrapping_add(1);
        let msg = request(self.seq, family, sport, src, dport, dst);
        sendto(
            &self.fd,
            &msg,
            SendFlags::empty(),
            &SocketAddrNetlink::new(0, 0),
        )?;
        let mut buf = [0u8; 8192];
        loop {
            let (n, _) = recv(&self.fd, &mut buf[..], RecvFlags::empty())?;
            match parse(&buf[..n.min(buf.len())], self.seq)? {
                Parsed::Other => continue, // a late answer to an earlier request
                Parsed::Found(s) => return Ok(Some(s)),
                Parsed::NotFound => return Ok(None),
            }
        }
    }
}

fn unmap(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// `nlmsghdr` + `inet_diag_req_v2` for one exact socket.
fn request(seq: u32, family: u8, sport: u16, src: [u8; 16], dport: u16, dst: [u8; 16]) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HEADER + REQUEST);
    m.extend_from_slice(&((NLMSG_HEADER + REQUEST) as u32).to_ne_bytes());
    m.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    m.extend_from_slice(&NLM_F_REQUEST.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes()); // the kernel fills in our port id
    m.extend_from_slice(&[family, IPPROTO_TCP, 0, 0]);
    m.extend_from_slice(&u32::MAX.to_ne_bytes()); // every state
    m.extend_from_slice(&sport.to_be_bytes());
    m.extend_from_slice(&dport.to_be_bytes());
    m.extend_from_slice(&src);
    m.extend_from_slice(&dst);
    m.extend_from_slice(&0u32.to_ne_bytes()); // any interface
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    m.extend_from_slice(&NO_COOKIE.to_ne_bytes());
    m
}

enum Parsed {
    Found(Socket),
    NotFound,
    /// Not the answer to this request.
    Other,
}

fn word(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

fn parse(b: &[u8], seq: u32) -> io::Result<Parsed> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "a sock_diag answer too short");
    let kind = u16::from_ne_bytes(b.get(4..6).ok_or_else(bad)?.try_into().map_err(|_| bad())?);
    if word(b, 8) != Some(seq) {
        return Ok(Parsed::Other);
    }
    if kind == NLMSG_ERROR {
        let errno = word(b, NLMSG_HEADER).map(|e| e as i32).ok_or_else(bad)?;
        // ENOENT: no such socket (closed, or never existed).
        return match -errno {
            0 | 2 => Ok(Parsed::NotFound),
            e => Err(io::Error::from_raw_os_error(e)),
        };
    }
    if kind != SOCK_DIAG_BY_FAMILY || b.len() < NLMSG_HEADER + REPLY {
        return Err(bad());
    }
    let msg = &b[NLMSG_HEADER..];
    Ok(Parsed::Found(Socket {
        state: msg[1],
        uid: word(msg, 64).ok_or_else(bad)?,
        inode: u64::from(word(msg, 68).ok_or_else(bad)?),
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use std::net::Ipv6Addr;

    fn v6(ip: IpAddr) -> Ipv6Addr {
        match ip {
            IpAddr::V4(v4) => v4.to_ipv6_mapped(),
            IpAddr::V6(v6) => v6,
        }
    }

    #[test]
    fn the_kernel_names_the_owner_of_a_live_loopback_connection_and_no_other() {
        let Ok(mut diag) = Diag::open(false) else {
            eprintln!("netlink sock_diag is not allowed here; skipped");
            return;
        };
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(ours).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let s = diag.find(peer, ours).unwrap().expect("the client's socket");
        assert_eq!(Some(s.uid), crate::paths::current_uid());
        assert_ne!(s.inode, 0);
        assert_eq!(s.state, 1, "established");
        // The mapped spelling of the same pair finds the same socket.
        let mapped = SocketAddr::new(IpAddr::V6(v6(peer.ip())), peer.port());
        assert_eq!(diag.find(mapped, ours).unwrap(), Some(s));
        assert_eq!(
            diag.find("127.0.0.1:1".parse().unwrap(), ours).unwrap(),
            None
        );
        let v6: SocketAddr = "[::1]:1".parse().unwrap();
        assert_eq!(
            diag.find(v6, ours).unwrap(),
            None,
            "mixed families match nothing"
        );
    }

    #[test]
    fn answers_are_read_by_their_layout() {
        let mut reply = vec![0u8; NLMSG_HEADER + REPLY];
        reply[4..6].copy_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
        reply[8..12].copy_from_slice(&7u32.to_ne_bytes());
        reply[NLMSG_HEADER + 1] = 6;
        reply[NLMSG_HEADER + 64..NLMSG_HEADER + 68].copy_from_slice(&1000u32.to_ne_bytes());
        reply[NLMSG_HEADER + 68..NLMSG_HEADER + 72].copy_from_slice(&4242u32.to_ne_bytes());
        match parse(&reply, 7).unwrap() {
            Parsed::Found(s) => assert_eq!((s.uid, s.inode, s.state), (1000, 4242, 6)),
            _ => panic!("not found"),
        }
        assert!(matches!(parse(&reply, 8).unwrap(), Parsed::Other));
        let mut err = vec![0u8; NLMSG_HEADER + 4];
        err[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        err[8..12].copy_from_slice(&7u32.to_ne_bytes());
        err[16..20].copy_from_slice(&(-2i32).to_ne_bytes());
        assert!(matches!(parse(&err, 7).unwrap(), Parsed::NotFound));
        err[16..20].copy_from_slice(&(-13i32).to_ne_bytes());
        assert!(parse(&err, 7).is_err());
        assert!(parse(&reply[..20], 7).is_err());
        assert_eq!(request(1, AF_INET, 1, [0; 16], 2, [0; 16]).len(), 72);
    }
}
