//! Socket activation on unix for [`super`]: the descriptors are adopted by `listenfd` (as `std`
//! listeners, marked close-on-exec), probed as TCP or unix stream sockets, checked to be listening
//! (`SO_ACCEPTCONN`, through rustix), made non-blocking, and the readiness notices go out through
//! `sd-notify`.

use std::net::TcpListener;
use std::os::unix::net::UnixListener;

use listenfd::ListenFd;
use rustix::io::{fcntl_setfd, FdFlags};

use super::{check_loopback, parse_env, role_of, ActivationError, Inherited, Kind, Role};

/// A listening control socket.
pub type ControlListener = UnixListener;

/// The first passed descriptor, as systemd's protocol fixes it.
const FIRST_FD: i32 = 3;

/// Variables of the protocol, removed once read.
const VARS: [&str; 4] = [
    "LISTEN_PID",
    "LISTEN_FDS",
    "LISTEN_FDNAMES",
    // listenfd's own extension (descriptors starting elsewhere), not systemd's: never honoured.
    "LISTEN_FDS_FIRST_FD",
];

/// Either listener, as probed.
enum Taken {
    Tcp(TcpListener),
    Unix(UnixListener),
}

pub(super) fn take_from_env() -> Result<Inherited, ActivationError> {
    let var = |k: &str| std::env::var(k).ok();
    let parsed = parse_env(
        var("LISTEN_PID").as_deref(),
        var("LISTEN_FDS").as_deref(),
        var("LISTEN_FDNAMES").as_deref(),
        std::process::id(),
    );
    std::env::remove_var("LISTEN_FDS_FIRST_FD");
    let names = match parsed {
        Ok(Some(names)) => names,
        Ok(None) => {
            clear_env();
            return Ok(Inherited::default());
        }
        Err(e) => {
            clear_env();
            return Err(e);
        }
    };
    // listenfd reads the same variables (its own pid check is looser than ours, which already passed).
    let mut fds = ListenFd::from_env();
    clear_env();
    if fds.len() != names.len() {
        return Err(ActivationError::Environment {
            var: "LISTEN_FDS",
            value: names.len().to_string(),
            why: format!("only {} descriptors could be taken", fds.len()),
        });
    }
    let mut inherited = Inherited::default();
    let mut seen: [Option<i32>; 2] = [None, None];
    for (idx, name) in names.iter().enumerate() {
        let fd = FIRST_FD + i32::try_from(idx).unwrap_or(i32::MAX - FIRST_FD);
        let taken = take(&mut fds, idx);
        let kind = match &taken {
            Some(Taken::Tcp(_)) => Kind::Tcp,
            Some(Taken::Unix(_)) => Kind::Unix,
            None => Kind::Other,
        };
        let role = role_of(fd, name.as_deref(), kind)?;
        let slot = &mut seen[role as usize];
        if let Some(first) = *slot {
            return Err(ActivationError::Twice {
                role: role.as_str(),
                first,
                second: fd,
            });
        }
        *slot = Some(fd);
        let io = |source| ActivationError::Io { fd, source };
        match (role, taken) {
            (Role::Proxy, Some(Taken::Tcp(l))) => {
                listening(fd, &l, name.as_deref())?;
                check_loopback(fd, l.local_addr().map_err(io)?)?;
                fcntl_setfd(&l, FdFlags::CLOEXEC).map_err(|e| io(e.into()))?;
                l.set_nonblocking(true).map_err(io)?;
                tracing::info!(fd, addr = ?l.local_addr().ok(), "proxy listener from the service manager");
                inherited.proxy = Some(l);
            }
            (Role::Control, Some(Taken::Unix(l))) => {
                listening(fd, &l, name.as_deref())?;
                fcntl_setfd(&l, FdFlags::CLOEXEC).map_err(|e| io(e.into()))?;
                l.set_nonblocking(true).map_err(io)?;
                tracing::info!(fd, path = ?l.local_addr().ok().and_then(|a| a.as_pathname().map(|p| p.to_path_buf())), "control socket from the service manager");
                inherited.control = Some(l);
            }
            // role_of only gives a role that fits the kind.
            _ => {
                return Err(ActivationError::Unfit {
                    fd,
                    name: name.clone().unwrap_or_else(|| "unnamed".into()),
                    problem: "changed kind while being taken".into(),
                    fix: "start airlockd again".into(),
                })
            }
        }
    }
    Ok(inherited)
}

fn clear_env() {
    for v in VARS {
        std::env::remove_var(v);
    }
}

/// The descriptor at `idx` as a TCP or unix stream listener, if it is either.
fn take(fds: &mut ListenFd, idx: usize) -> Option<Taken> {
    if let Ok(Some(l)) = fds.take_tcp_listener(idx) {
        return Some(Taken::Tcp(l));
    }
    if let Ok(Some(l)) = fds.take_unix_listener(idx) {
        return Some(Taken::Unix(l));
    }
    None
}

/// Refuses a socket nobody called `listen()` on (a `ListenStream=` socket always is listening).
fn listening<S: std::os::fd::AsFd>(
    fd: i32,
    s: &S,
    name: Option<&str>,
) -> Result<(), ActivationError> {
    match rustix::net::sockopt::socket_acceptconn(s) {
        Ok(true) => Ok(()),
        Ok(false) => Err(ActivationError::Unfit {
            fd,
            name: name.unwrap_or("unnamed").into(),
            problem: "is a stream socket that is not listening".into(),
            fix: "pass listening sockets (ListenStream= in a socket unit), not Accept=yes connections".into(),
        }),
        Err(e) => Err(ActivationError::Io {
            fd,
            source: e.into(),
        }),
    }
}

pub(super) fn socket_inode(listener: &tokio::net::TcpListener) -> Option<u64> {
    rustix::fs::fstat(listener).ok().map(|st| st.st_ino)
}

/// A readiness notice.
#[derive(Debug, Clone, Copy)]
pub(super) enum Notice {
    Ready,
    Stopping,
}

pub(super) fn notify(notice: Notice) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let (states, what) = match notice {
        Notice::Ready => (
            [
                sd_notify::NotifyState::Ready,
                sd_notify::NotifyState::Status("serving"),
            ],
            "READY=1",
        ),
        Notice::Stopping => (
            [
                sd_notify::NotifyState::Stopping,
                sd_notify::NotifyState::Status("stopping"),
            ],
            "STOPPING=1",
        ),
    };
    match sd_notify::notify(&states) {
        Ok(()) => tracing::debug!(notice = what, "told the service manager"),
        Err(e) => {
            tracing::warn!(notice = what, error = %e, "cannot tell the service manager (NOTIFY_SOCKET)")
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_that_is_not_listening_is_refused() {
        let bound = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        assert!(listening(3, &bound, Some("proxy")).is_ok());
        let conn = std::net::TcpStream::connect(bound.local_addr().unwrap()).unwrap();
        let e = listening(3, &conn, Some("proxy")).unwrap_err();
        assert!(e.to_string().contains("not listening"), "{e}");
    }
}
