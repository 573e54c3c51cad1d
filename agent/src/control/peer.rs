//! Who is on the other end of a control connection, as the kernel says — never as the request says —
//! and who the agent itself runs as. A unix socket's peer credentials are read once per accepted
//! connection by the server (`tokio::net::UnixStream::peer_cred()`: `SO_PEERCRED` on Linux, with
//! uid, gid and pid; `getpeereid` on macOS and the BSDs, where the pid may be missing); a Windows named
//! pipe's client token is not read yet, so there is no control server there. It owns what a peer and
//! the daemon's user are, and how they are named in messages; it must not decide access (the control
//! API's routing does, from [`Peer::is_privileged`]).

use crate::sys::procfs::user_name;

/// The peer credentials of one control connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Peer {
    /// The peer process's effective uid (`None` where the OS did not tell).
    pub uid: Option<u32>,
    /// Its effective gid.
    pub gid: Option<u32>,
    /// Its pid, where the OS tells.
    pub pid: Option<u32>,
}

impl Peer {
    /// A peer from the credentials the kernel reported.
    pub fn new(uid: u32, gid: u32, pid: Option<i32>) -> Peer {
        Peer {
            uid: Some(uid),
            gid: Some(gid),
            pid: pid.and_then(|p| u32::try_from(p).ok()).filter(|p| *p != 0),
        }
    }

    /// Whether this peer may do what changes the agent: it is root, or the agent's own user. A peer
    /// whose uid is unknown never is.
    pub fn is_privileged(&self, daemon: &DaemonUser) -> bool {
        match self.uid {
            Some(0) => true,
            Some(uid) => daemon.uid == Some(uid),
            None => false,
        }
    }

    /// "alice (uid 1000)", "uid 1000", or "an unknown user".
    pub fn describe(&self) -> String {
        match self.uid {
            Some(uid) => named(uid, user_name(uid).as_deref()),
            None => "a user the OS did not name".into(),
        }
    }
}

/// The user the agent runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DaemonUser {
    /// Its uid (`None` on systems without uids).
    pub uid: Option<u32>,
    /// Its name, when the system knows it.
    pub name: Option<String>,
}

impl DaemonUser {
    /// The user this process runs as.
    pub fn current() -> DaemonUser {
        let uid = crate::paths::current_uid();
        DaemonUser {
            uid,
            name: uid.and_then(user_name),
        }
    }

    /// Who may write, for a refusal: "root (uid 0)", or "root or airlock (uid 998)".
    pub fn who_may_write(&self) -> String {
        match self.uid {
            Some(0) | None => "root (uid 0)".into(),
            Some(uid) => format!("root or {}", named(uid, self.name.as_deref())),
        }
    }

    /// The name to run a command as, for a refusal's advice.
    pub fn run_as(&self) -> Option<String> {
        match self.uid {
            Some(0) | None => None,
            Some(uid) => Some(self.name.clone().unwrap_or_else(|| format!("#{uid}"))),
        }
    }
}

/// "alice (uid 1000)", or "uid 1000" when there is no name.
fn named(uid: u32, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{n} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_and_the_daemons_user_are_privileged_and_nobody_else_is() {
        let daemon = DaemonUser {
            uid: Some(998),
            name: Some("airlock".into()),
        };
        assert!(Peer::new(0, 0, Some(1)).is_privileged(&daemon));
        assert!(Peer::new(998, 998, None).is_privileged(&daemon));
        assert!(!Peer::new(1000, 1000, Some(42)).is_privileged(&daemon));
        assert!(!Peer::default().is_privileged(&daemon), "unknown uid");
        let root_daemon = DaemonUser {
            uid: Some(0),
            name: Some("root".into()),
        };
        assert!(!Peer::new(998, 998, None).is_privileged(&root_daemon));
        assert_eq!(daemon.who_may_write(), "root or airlock (uid 998)");
        assert_eq!(root_daemon.who_may_write(), "root (uid 0)");
        assert_eq!(daemon.run_as().as_deref(), Some("airlock"));
        assert_eq!(root_daemon.run_as(), None);
        assert_eq!(Peer::new(5, 5, Some(0)).pid, None, "pid 0 is no pid");
    }
}
