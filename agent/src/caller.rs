//! Who is on the other end of a proxy client connection: the local user (uid) owning the client's
//! socket, so that a request's record says whose it was and the control API can show each user only
//! their own. The listener asks [`Callers::lookup`] once per accepted connection and gets a
//! [`Caller`] at once; the answer is found off the request path by one background task — an exact,
//! non-blocking lookup in the kernel's socket hash (Linux `sock_diag`, microseconds), else one read of
//! the kernel's socket tables on the blocking pool for every connection waiting. A request never
//! waits for it: the record stage takes the answer when the record finishes, and only a record
//! finishing before its lookup waits, in a task of its own. It must not decide what a user may see (the control API does), and it never reads a
//! connection's bytes.

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

/// What is known about the process behind a client connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallerFacts {
    /// The uid owning the client's socket, when the OS tells and the socket was still open.
    pub uid: Option<u32>,
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
        let value = *rx.borrow();
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
            Ok(Ok(value)) => value.unwrap_or_default(),
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
    while queue.recv_many(&mut batch, BATCH).await > 0 {
        let began = Instant::now();
        // Exact lookups right here, in microseconds and without blocking: the answer is in before a
        // short-lived client can have gone. Whatever they cannot answer goes to the blocking pool.
        let mut rest = Vec::new();
        for p in batch.drain(..) {
            match quick.as_mut().map(|q| q.owner(p.peer, p.ours)) {
                Some(Ok(uid)) => answer(p, uid),
                Some(Err(_)) | None => rest.push(p),
            }
        }
        let micros = |t: Instant| u64::try_from(t.elapsed().as_micros()).unwrap_or(u64::MAX);
        if rest.is_empty() {
            tracing::trace!(
                lookup_micros = micros(began),
                "looked up the owners of client connections"
            );
            continue;
        }
        let conns: Vec<(SocketAddr, SocketAddr)> = rest.iter().map(|p| (p.peer, p.ours)).collect();
        let uids = tokio::task::spawn_blocking(move || process::owners(&conns))
            .await
            .unwrap_or_default();
        tracing::trace!(
            slow = rest.len(),
            lookup_micros = micros(began),
            oldest_waited_micros = rest.first().map(|p| micros(p.queued)),
            "looked up the owners of client connections on the blocking pool"
        );
        for (i, p) in rest.into_iter().enumerate() {
            let uid = uids.get(i).copied().flatten();
            answer(p, uid);
        }
    }
}

fn answer(p: Pending, uid: Option<u32>) {
    let _ = p.answer.send(Some(CallerFacts { uid }));
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
        assert_eq!(caller.now(), Some(facts));
        let gone = callers.lookup("127.0.0.1:1".parse().unwrap(), ours);
        assert_eq!(gone.wait(Duration::from_secs(5)).await.uid, None);
    }

    #[tokio::test]
    async fn unknown_and_known_callers_answer_at_once() {
        assert_eq!(Caller::unknown().now(), Some(CallerFacts::default()));
        let known = CallerFacts { uid: Some(7) };
        assert_eq!(Caller::known(known).now(), Some(known));
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
