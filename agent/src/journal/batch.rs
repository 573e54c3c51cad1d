//! What the journal's writer waits for: the rows of its next commit and when to stop waiting for
//! more. Rows nobody waits for (`end`, `event`) ride along with the next commit that has to happen
//! anyway, waiting at most [`LINGER`]; when requests arrive faster than one commit each (the last
//! commit carried more than one `begin`), a `begin` waits up to [`GATHER`] for company — a commit
//! costs mostly itself (the WAL frames it writes), little per row. It must not touch the database.

use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::row::Row;
use super::writer::Op;

/// Most rows in one commit.
pub(super) const MAX_GROUP: usize = 2048;
/// How long rows nobody waits for (`end`, `event`) may wait for a commit that happens anyway. An
/// agent killed in that window loses them: their requests keep their `begin` rows (and so their
/// reservations) and show as unfinished. A flush and shutdown commit at once.
pub(super) const LINGER: Duration = Duration::from_millis(2);
/// How long a `begin` waits for others when the last commit carried more than one (requests are
/// arriving faster than a commit each): the price of a commit is paid once for the group. A lone
/// request on a quiet machine never waits.
pub(super) const GATHER: Duration = Duration::from_micros(250);

/// A row and who waits for its commit.
pub(super) struct Pending {
    pub(super) row: Row,
    pub(super) ack: Option<oneshot::Sender<Result<i64, String>>>,
}

/// The rows of the next commit, and when they started waiting.
#[derive(Default)]
pub(super) struct Group {
    pub(super) rows: Vec<Pending>,
    /// When the first row came.
    since: Option<Instant>,
    /// When the first row someone waits for came.
    first_begin: Option<Instant>,
    /// Rows someone waits for.
    pub(super) begins: usize,
}

impl Group {
    pub(super) fn push(&mut self, p: Pending) {
        let now = Instant::now();
        self.since.get_or_insert(now);
        if p.ack.is_some() {
            self.first_begin.get_or_insert(now);
            self.begins += 1;
        }
        self.rows.push(p);
    }

    pub(super) fn take(&mut self) -> Vec<Pending> {
        self.since = None;
        self.first_begin = None;
        self.begins = 0;
        std::mem::take(&mut self.rows)
    }

    /// Until when the group may wait for more rows (`None`: commit now). `last_begins`: how many
    /// begins the last commit carried — when more than one, requests are arriving faster than a
    /// commit each, and a begin waits (at most [`GATHER`]) until as many have come again.
    pub(super) fn wait_until(&self, last_begins: usize) -> Option<Instant> {
        if self.rows.len() >= MAX_GROUP {
            return None;
        }
        match self.first_begin {
            Some(t) => (last_begins > 1 && self.begins < last_begins).then(|| t + GATHER),
            None => self.since.map(|t| t + LINGER),
        }
    }
}

/// Wakes the writer's thread when the queue has something.
struct Unpark(std::thread::Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// The writer's end of the queue. Waiting with a deadline parks the thread (tokio's timers are
/// too coarse for [`GATHER`]: a millisecond).
pub(super) struct Inbox {
    rx: mpsc::Receiver<Op>,
    waker: Waker,
    /// Every sender is gone.
    pub(super) closed: bool,
}

impl Inbox {
    /// The receiving end, read from the current thread.
    pub(super) fn new(rx: mpsc::Receiver<Op>) -> Self {
        Inbox {
            rx,
            waker: Waker::from(Arc::new(Unpark(std::thread::current()))),
            closed: false,
        }
    }

    /// The next op, waiting at most until `until` (for ever with `None`); `None` when the time is up
    /// or every sender is gone (then `closed`).
    pub(super) fn next(&mut self, until: Option<Instant>) -> Option<Op> {
        if self.closed {
            return None;
        }
        let Some(until) = until else {
            let got = self.rx.blocking_recv();
            self.closed = got.is_none();
            return got;
        };
        let mut cx = Context::from_waker(&self.waker);
        loop {
            match self.rx.poll_recv(&mut cx) {
                Poll::Ready(Some(op)) => return Some(op),
                Poll::Ready(None) => {
                    self.closed = true;
                    return None;
                }
                Poll::Pending => {}
            }
            let now = Instant::now();
            if now >= until {
                return None;
            }
            // Woken by a send, by the deadline, or spuriously: the loop polls again either way.
            std::thread::park_timeout(until - now);
        }
    }

    /// An op already waiting.
    pub(super) fn try_next(&mut self) -> Option<Op> {
        match self.rx.try_recv() {
            Ok(op) => Some(op),
            Err(mpsc::error::TryRecvError::Empty) => None,
            Err(mpsc::error::TryRecvError::Disconnected) => {
                self.closed = true;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::row::Row;

    fn row() -> Pending {
        Pending {
            row: Row::event("test", None, serde_json::json!({})),
            ack: None,
        }
    }

    fn begin() -> Pending {
        let (ack, _) = oneshot::channel();
        Pending {
            ack: Some(ack),
            ..row()
        }
    }

    #[test]
    fn rows_nobody_waits_for_wait_for_company_but_not_for_long() {
        let mut g = Group::default();
        assert_eq!(
            g.wait_until(0),
            None,
            "an empty group has nothing to wait for"
        );
        g.push(row());
        let until = g.wait_until(0).unwrap();
        assert!(until <= Instant::now() + LINGER);
        assert_eq!(g.wait_until(8), Some(until), "gathering is for begins");
    }

    #[test]
    fn a_begin_is_committed_at_once_unless_requests_are_arriving_faster_than_commits() {
        let mut g = Group::default();
        g.push(row());
        g.push(begin());
        assert_eq!(g.wait_until(0), None, "a lone request does not wait");
        assert_eq!(g.wait_until(1), None, "nor one after a commit of one");
        let until = g.wait_until(3).unwrap();
        assert!(
            until <= Instant::now() + GATHER,
            "a begin waits far less than an end"
        );
        g.push(begin());
        g.push(begin());
        assert_eq!(
            g.wait_until(3),
            None,
            "as many begins as last time: commit now"
        );
        assert_eq!(g.take().len(), 4);
        assert_eq!(g.wait_until(3), None, "taken: empty again");
    }

    #[test]
    fn a_full_group_is_committed_at_once() {
        let mut g = Group::default();
        for _ in 0..MAX_GROUP {
            g.push(row());
        }
        assert_eq!(g.wait_until(0), None);
    }
}
