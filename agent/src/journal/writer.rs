//! The journal's writer thread: it takes every row handed to it and commits them in groups — all
//! rows waiting when a commit starts go into one transaction, so a thousand requests arriving
//! together cost one commit, not a thousand. A `begin` row's sender is told when its commit is
//! durable (the request is forwarded only then); `end` and `event` rows nobody waits for ride along
//! with the next commit that has to happen anyway, and when requests arrive faster than one commit
//! each a `begin` waits a little for company ([`super::batch`]). A lone `begin` that finds the
//! queue empty and the connection free commits itself, on its own thread, and takes the waiting
//! rows along ([`super::Journal::begin`]). Rows that fail to commit (a full disk) are kept and
//! retried with the next group, up to a bound. It must not decide what to write.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::batch::{Inbox, Pending, MAX_GROUP};
use super::row::Row;
use super::store::{Retention, SharedStore, Stats, Store};
use crate::sync::lock;

/// How long a failed commit waits before the next try, so a full disk is not spun on.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

/// What the writer is asked to do.
pub(super) enum Op {
    /// Append a row; `ack` hears when it is committed (with its `seq`) or why not.
    Row {
        row: Box<Row>,
        ack: Option<oneshot::Sender<Result<i64, String>>>,
    },
    /// Answer once everything sent before is committed.
    Flush(Flusher),
    /// Look again: rows are waiting for a retry (a `begin` committed on its own thread failed).
    Nudge,
    /// Remove old rows (see [`super::store::prune`]) and say how many went.
    Prune {
        rule: Retention,
        ack: oneshot::Sender<Result<u64, String>>,
    },
}

/// Runs until every sender is gone and the queue is drained, then closes the connection.
pub(super) fn run(store: Arc<SharedStore>, rx: mpsc::Receiver<Op>, stats: Arc<Stats>) {
    let mut inbox = Inbox::new(rx);
    let mut waiting = Waiting::default();
    let mut last_begins = 0;
    loop {
        // Wait for work, unless rows are waiting for a retry.
        let idle = match lock(&store).as_ref() {
            Some(c) => !c.retrying() && c.group.rows.is_empty(),
            None => return,
        };
        if idle {
            if inbox.closed {
                break;
            }
            match inbox.next(None) {
                Some(op) => take(op, &store, &mut waiting),
                None => break,
            }
        }
        loop {
            let mut guard = lock(&store);
            let Some(c) = guard.as_mut() else { return };
            while c.group.rows.len() < MAX_GROUP {
                match inbox.try_next() {
                    Some(op) => take_into(op, c, &mut waiting),
                    None => break,
                }
            }
            // Company for the group, unless something wants it committed now.
            let urgent = inbox.closed || c.retrying() || waiting.any();
            let Some(until) = c.group.wait_until(last_begins).filter(|_| !urgent) else {
                break;
            };
            drop(guard);
            if Instant::now() >= until {
                break;
            }
            match inbox.next(Some(until)) {
                Some(op) => take(op, &store, &mut waiting),
                None => break,
            }
        }
        let failed = {
            let mut guard = lock(&store);
            let Some(c) = guard.as_mut() else { return };
            let begins = c.group.begins;
            let result = c.commit_waiting(None, &stats, inbox.closed);
            if let Ok(Some(_)) = result {
                last_begins = begins;
            }
            // A flush waits for an attempt, not for a disk that may never free up.
            waiting.answer_flushes();
            for (rule, ack) in waiting.prunes.drain(..) {
                let result = c.prune(rule, &stats);
                if let Ok(n) = &result {
                    if *n > 0 {
                        tracing::info!(rows = n, "journal retention removed old rows");
                    }
                }
                let _ = ack.send(result);
            }
            result.is_err() && !inbox.closed
        };
        if failed {
            std::thread::sleep(RETRY_PAUSE);
        }
    }
    waiting.answer_flushes();
    // The connection closes here (SQLite folds the WAL into the file as it does), not when the
    // last handle on the journal goes.
    drop(lock(&store).take());
}

/// Who waits for a flush: an async task, or a thread that may block.
pub(super) enum Flusher {
    Async(oneshot::Sender<()>),
    Blocking(std::sync::mpsc::Sender<()>),
}

/// What one pass of the loop collected besides rows.
#[derive(Default)]
struct Waiting {
    flushes: Vec<Flusher>,
    prunes: Vec<(Retention, oneshot::Sender<Result<u64, String>>)>,
}

impl Waiting {
    fn any(&self) -> bool {
        !self.flushes.is_empty() || !self.prunes.is_empty()
    }

    fn answer_flushes(&mut self) {
        self.flushes.drain(..).for_each(|f| match f {
            Flusher::Async(f) => {
                let _ = f.send(());
            }
            Flusher::Blocking(f) => {
                let _ = f.send(());
            }
        });
    }
}

/// Files `op`: a row into the group, anything else for after the next commit.
fn take(op: Op, store: &SharedStore, waiting: &mut Waiting) {
    if let Some(c) = lock(store).as_mut() {
        take_into(op, c, waiting);
    }
}

fn take_into(op: Op, c: &mut Store, waiting: &mut Waiting) {
    match op {
        Op::Row { row, ack } => c.group.push(Pending { row: *row, ack }),
        Op::Flush(f) => waiting.flushes.push(f),
        Op::Prune { rule, ack } => waiting.prunes.push((rule, ack)),
        Op::Nudge => {}
    }
}
