//! Who is on the other end of a proxy client connection: the local user (uid and name) owning the
//! client's socket and the process holding it (pid, executable name and path), so that a request's
//! record says whose it was and which app sent it, and the control API can show each user only their
//! own. The listener asks [`Callers::lookup`] once per accepted connection and gets a [`Caller`] at
//! once, shared by every request on that connection; the answer is found off the request path by one
//! background task — the socket's owner and inode by an exact, non-blocking lookup in the kernel's
//! socket hash (Linux `sock_diag`, microseconds; else one read of the kernel's socket tables), then
//! the process holding that inode on the blocking pool (recent clients' pids first). A request never
//! waits for it: the record stage takes the answer when the record finishes, and only a record
//! finishing before its lookup waits, in a task of its own. macOS and Windows report nothing yet
//! (`inventory::process` has their files). It must not decide what a user may see (the control API
//! does), and it never reads a connection's bytes.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use crate::inventory::process;

/// Connections waiting for a lookup; past this a connection's caller is unknown rather than queued.
const QUEUE: usize = 4096;
/// Most connections one read of the socket tables answers.
const BATCH: usize = 1024;
/// How long a finished record waits for a lookup still running.
pub const WAIT: Duration = Duration::from_secs(2);

/// Recent clients' pids kept as hints: a repeat client is found in a few reads.
const HINTS: usize = 32;

/// What is known about the process behind a client connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallerFacts {
    /// The uid owning the client's socket, when the OS tells and the socket was still open.
    pub uid: Option<u32>,
    /// That uid's name.
    pub user: Option<String>,
    /// The process holding the socket.
    pub pid: Option<u32>,
    /// Its executable's file name (`python3.11`, `curl`, `node`).
    pub app: Option<String>,
    /// Its executable's full path.
    pub app_path: Option<String>,
}

impl CallerFacts {
    fn from_process(p: process::PeerProcess) -> CallerFacts {
        CallerFacts {
            uid: p.uid,
            user: p.user,
            pid: p.pid,
            app: p.exe,
            app_path: p.exe_path,
        }
    }
}

/// One connection's lookup, shared by every request on it (cheap to clone): known, unknown, or still
/// running.
#[derive(Debug, Clone, Default)]
pub struct Caller(Option<watch::Receiver<Option<CallerFacts>>>);

impl Caller {
    /// A caller nothing is known about (the default: requests that came from no listener, tests).
    pub fn unknown() -> Caller {
        Caller(None)
    }

    /// A caller whose facts are known already.
    pub fn known(facts: CallerFacts) -> Caller {
        let (_tx, rx) = watch::channel(Some(facts));
        Caller(Some(rx))
    }

    /// The facts if the lookup is over (unknown ones if it found nothing or was never made), `None`
    /// while it runs.
    pub fn now(&self) -> Option<CallerFacts> {
        let Some(rx) = &self.0 else {
            return Some(CallerFacts::default());
        };
        let value = rx.borrow().clone();
        match value {
            Some(facts) => Some(facts),
            // The resolver is gone without answering: nothing will come.
            None if rx.has_changed().is_err() => Some(CallerFacts::default()),
            None => None,
        }
    }

    /// The facts, waiting at most `limit` for a lookup still running.
    pub async fn wait(self, limit: Duration) -> CallerFacts {
        if let Some(facts) = self.now() {
            return facts;
        }
        let Some(mut rx) = self.0 else {
            return CallerFacts::default();
        };
        let found = match tokio::time::timeout(limit, rx.wait_for(Option::is_some)).await {
            Ok(Ok(value)) => value.clone().unwrap_or_default(),
            _ => CallerFacts::default(),
        };
        found
    }
}

struct Pending {
    peer: SocketAddr,
    ours: SocketAddr,
    queued: Instant,
    answer: watch::Sender<Option<CallerFacts>>,
}

/// The lookups of the listener's connections.
#[derive(Debug, Clone)]
pub struct Callers {
    queue: Option<mpsc::Sender<Pending>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending").field("peer", &self.peer).finish()
    }
}

impl Callers {
    /// Starts the background resolver. Must be called inside the runtime; it ends when the last
    /// clone of the returned value is dropped.
    pub fn start() -> Callers {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(resolve(rx));
        Callers { queue: Some(tx) }
    }

    /// No lookups: every caller is unknown.
    pub fn disabled() -> Callers {
        Callers { queue: None }
    }

    /// Starts finding who owns the client connection from `peer` to our address `ours`; returns at
    /// once. When the queue is full the caller is unknown instead of waiting.
    pub fn lookup(&self, peer: SocketAddr, ours: SocketAddr) -> Caller {
        let Some(queue) = &self.queue else {
            return Caller::unknown();
        };
        let (answer, rx) = watch::channel(None);
        let queued = Instant::now();
        match queue.try_send(Pending {
            peer,
            ours,
            queued,
            answer,
        }) {
            Ok(()) => Caller(Some(rx)),
            Err(_) => Caller::unknown(),
        }
    }
}

async fn resolve(mut queue: mpsc::Receiver<Pending>) {
    let mut quick = process::QuickOwners::open();
    let mut batch = Vec::with_capacity(64);
    let mut hints: std::collections::VecDeque<u32> = std::collections::VecDeque::new();
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let began = Instant::now();
        // Each socket's owner and inode right here, in microseconds and without blocking: the
        // answer is in before a short-lived client can have gone. Whatever that cannot answer is
        // looked up whole on the blocking pool.
        let mut found = Vec::new();
        let mut rest = Vec::new();
        for p in batch.drain(..) {
            match quick.as_mut().map(|q| q.socket(p.peer, p.ours)) {
                Some(Ok(Some(socket))) => found.push((p, socket)),
                Some(Ok(None)) => answer(p, CallerFacts::default()),
                Some(Err(_)) | None => rest.push(p),
            }
        }
        let micros = |t: Instant| u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
        let oldest_waited = found
            .iter()
            .map(|(p, _)| p)
            .chain(rest.iter())
            .map(|p| micros(p.queued))
            .max();
        let sockets: Vec<process::SocketOwner> = found.iter().map(|(_, s)| *s).collect();
        let conns: Vec<(SocketAddr, SocketAddr)> = rest.iter().map(|p| (p.peer, p.ours)).collect();
        let h: Vec<u32> = hints.iter().copied().collect();
        let looked = tokio::task::spawn_blocking(move || {
            let held: Vec<process::PeerProcess> =
                sockets.iter().map(|s| process::holder(*s, &h)).collect();
            let whole: Vec<process::PeerProcess> = conns
                .iter()
                .map(|(peer, ours)| process::lookup(*peer, *ours, &h))
                .collect();
            (held, whole)
        })
        .await;
        let (held, whole) = looked.unwrap_or_default();
        tracing::trace!(
            exact = found.len(),
            slow = rest.len(),
            lookup_micros = micros(began),
            oldest_waited_micros = oldest_waited,
            "looked up the processes behind client connections"
        );
        let pending = found.into_iter().map(|(p, _)| p).chain(rest);
        for (p, proc) in pending.zip(held.into_iter().chain(whole)) {
            if let Some(pid) = proc.pid {
                hints.retain(|h| *h != pid);
                hints.push_front(pid);
                hints.truncate(HINTS);
            }
            answer(p, CallerFacts::from_process(proc));
        }
    }
}

fn answer(p: Pending, facts: CallerFacts) {
    let _ = p.answer.send(Some(facts));
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[tokio::test]
    async fn a_loopback_client_is_found_to_be_this_user_and_a_closed_one_unknown() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ours = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(ours).await.unwrap();
        let (_server, peer) = listener.accept().await.unwrap();
        let callers = Callers::start();
        let caller = callers.lookup(peer, ours);
        let facts = caller.clone().wait(Duration::from_secs(5)).await;
        if cfg!(target_os = "linux") {
            assert_eq!(facts.uid, crate::paths::current_uid());
        }
        if cfg!(target_os = "linux") {
            // This very process holds the client's socket.
            assert_eq!(facts.pid, Some(std::process::id()));
            assert!(facts.app.is_some() && facts.app_path.is_some(), "{facts:?}");
        }
        assert_eq!(caller.now(), Some(facts));
        let gone = callers.lookup("127.0.0.1:1".parse().unwrap(), ours);
        assert_eq!(gone.wait(Duration::from_secs(5)).await.uid, None);
    }

    #[tokio::test]
    async fn unknown_and_known_callers_answer_at_once() {
        assert_eq!(Caller::unknown().now(), Some(CallerFacts::default()));
        let known = CallerFacts {
            uid: Some(7),
            app: Some("node".into()),
            ..CallerFacts::default()
        };
        assert_eq!(Caller::known(known.clone()).now(), Some(known));
        let c = Callers::disabled().lookup(
            "127.0.0.1:2".parse().unwrap(),
            "127.0.0.1:3".parse().unwrap(),
        );
        assert_eq!(c.now(), Some(CallerFacts::default()));
        // A lookup whose resolver went away answers unknown instead of hanging.
        let (tx, rx) = watch::channel(None);
        let pending = Caller(Some(rx));
        assert_eq!(pending.now(), None);
        drop(tx);
        assert_eq!(
            pending.wait(Duration::from_secs(5)).await,
            CallerFacts::default()
        );
    }
}
