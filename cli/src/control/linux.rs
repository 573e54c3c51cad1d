//! Who serves the control socket, on Linux, through rustix (no unsafe code): the pid and uid that made
//! it listen, from `SO_PEERCRED`, which the kernel recorded when the server bound the socket and no
//! process can fake; and who wrote each byte of the answer, from the `SCM_CREDENTIALS` the kernel
//! attaches to every message once the reader asks with `SO_PASSCRED` — the process that accepted the
//! connection, which is the agent itself even when a service manager made the socket.

use std::io::{self, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::unix::net::UnixStream;

use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags};

use super::PeerCred;

/// The server's credentials, as the kernel recorded them.
pub(super) fn peer(s: &UnixStream) -> Option<PeerCred> {
    let c = rustix::net::sockopt::socket_peercred(s).ok()?;
    Some(PeerCred {
        pid: u32::try_from(c.pid.as_raw_nonzero().get()).ok()?,
        uid: c.uid.as_raw(),
    })
}

/// Asks the kernel to attach the writer's credentials to everything the server sends from now on.
pub(super) fn attest(s: &UnixStream) -> io::Result<()> {
    rustix::net::sockopt::set_socket_passcred(s, true).map_err(io::Error::from)
}

/// Reads to the end (at most `limit` bytes) and says who wrote it: one process's credentials when
/// every message carried the same, `None` when any carried none or another's.
pub(super) fn read_attested(s: &UnixStream, limit: u64) -> io::Result<(Vec<u8>, Option<PeerCred>)> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut out = Vec::new();
    let mut writer = Writer::Unseen;
    let mut buf = vec![0u8; 16 << 10];
    while out.len() < limit {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmCredentials(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = match rustix::net::recvmsg(
            s,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        ) {
            Ok(r) => r.bytes,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        if got == 0 {
            break;
        }
        let mut cred = None;
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmCredentials(c) = m {
                cred = u32::try_from(c.pid.as_raw_nonzero().get())
                    .ok()
                    .map(|pid| PeerCred {
                        pid,
                        uid: c.uid.as_raw(),
                    });
            }
        }
        writer = writer.and(cred);
        let take = got.min(limit - out.len());
        out.extend_from_slice(&buf[..take]);
    }
    Ok((out, writer.one()))
}

/// Who wrote the messages read so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    Unseen,
    One(PeerCred),
    Several,
}

impl Writer {
    fn and(self, next: Option<PeerCred>) -> Writer {
        match (self, next) {
            (Writer::Unseen, Some(c)) => Writer::One(c),
            (Writer::One(a), Some(c)) if a == c => Writer::One(a),
            _ => Writer::Several,
        }
    }

    fn one(self) -> Option<PeerCred> {
        match self {
            Writer::One(c) => Some(c),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_writer_of_every_message_is_the_one_named() {
        let (a, mut b) = UnixStream::pair().unwrap();
        attest(&a).unwrap();
        b.write_all(b"hello ").unwrap();
        b.write_all(b"world").unwrap();
        drop(b);
        let (bytes, writer) = read_attested(&a, 1 << 20).unwrap();
        assert_eq!(bytes, b"hello world");
        let me = writer.unwrap();
        assert_eq!(me.pid, std::process::id());
        assert_eq!(Some(me.uid), crate::owner::current_uid());
    }

    #[test]
    fn a_message_without_credentials_or_from_another_leaves_no_writer() {
        let c = PeerCred { pid: 1, uid: 0 };
        let d = PeerCred { pid: 2, uid: 0 };
        assert_eq!(Writer::Unseen.and(Some(c)).one(), Some(c));
        assert_eq!(Writer::Unseen.and(Some(c)).and(Some(c)).one(), Some(c));
        assert_eq!(Writer::Unseen.and(Some(c)).and(Some(d)).one(), None);
        assert_eq!(Writer::Unseen.and(Some(c)).and(None).one(), None);
        assert_eq!(Writer::Unseen.one(), None);
    }

    #[test]
    fn reading_stops_at_the_limit() {
        let (a, mut b) = UnixStream::pair().unwrap();
        attest(&a).unwrap();
        b.write_all(&[7u8; 100]).unwrap();
        drop(b);
        let (bytes, _) = read_attested(&a, 10).unwrap();
        assert_eq!(bytes.len(), 10);
    }
}
