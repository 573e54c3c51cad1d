//! The journal's one writer: a thread that owns the writing connection, takes every row handed to
//! it, and commits them in groups — all rows waiting when a commit starts go into one transaction,
//! so a thousand requests arriving together cost one commit, not a thousand. Each row gets the next
//! `seq` and its hash in the chain here, in commit order. A `begin` row's sender is told when its
//! commit is durable (the request is forwarded only then); `end` and `event` rows nobody waits for
//! ride along with the next commit that has to happen anyway, and when requests arrive faster than
//! one commit each a `begin` waits a little for company ([`super::batch`]). Rows that fail to commit
//! (a full disk) are kept and retried with the next group, up to a bound. It owns the chain's head;
//! it must not decide what to write.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::{mpsc, oneshot};

use super::batch::{Group, Inbox, Pending, MAX_GROUP};
use super::checkpoint::Checkpoints;
use super::row::{Kind, Row};

/// Rows kept for a retry after a failed commit; past this the oldest are counted lost.
const MAX_RETRY: usize = 100_000;
/// How long a failed commit waits before the next try, so a full disk is not spun on.
const RETRY_PAUSE: Duration = Duration::from_millis(200);

const INSERT: &str =
    "INSERT INTO journal (seq, kind, id, at, at_ms, uid, provider, model, outcome, \
     input_tokens, output_tokens, cost_usd, body, prev_hash, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

/// What the writer is asked to do.
pub(super) enum Op {
    /// Append a row; `ack` hears when it is committed (with its `seq`) or why not.
    Row {
        row: Box<Row>,
        ack: Option<oneshot::Sender<Result<i64, String>>>,
    },
    /// Answer once everything sent before is committed.
    Flush(Flusher),
    /// Remove old rows (see [`prune`]) and say how many went.
    Prune {
        rule: Retention,
        ack: oneshot::Sender<Result<u64, String>>,
    },
}

/// Which rows retention removes.
#[derive(Debug, Clone, Copy)]
pub(super) struct Retention {
    /// Rows written before this (ms since the epoch) go.
    pub older_than_ms: i64,
    /// While the rows take more than this many bytes, the oldest half of those written before
    /// `floor_ms` go too.
    pub max_bytes: u64,
    /// Rows written after this are never removed for size.
    pub floor_ms: i64,
}

/// What the writer has done, for `airlock status`.
#[derive(Debug, Default)]
pub(super) struct Stats {
    pub rows: AtomicU64,
    pub commits: AtomicU64,
    pub failed_commits: AtomicU64,
    /// Rows waiting for a retry after a failed commit.
    pub retrying: AtomicU64,
    /// Rows given up on (the retry queue overflowed, or the writer stopped with them).
    pub lost: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// The last committed row's seq.
    pub head_seq: AtomicU64,
}

/// Runs until every sender is gone and the queue is drained. `checkpoints` hears of every commit
/// (`None`: SQLite folds the WAL on this thread).
pub(super) fn run(
    mut conn: Connection,
    rx: mpsc::Receiver<Op>,
    stats: Arc<Stats>,
    mut head: (i64, String),
    checkpoints: Option<Checkpoints>,
) {
    let mut inbox = Inbox::new(rx);
    let mut retry: VecDeque<Row> = VecDeque::new();
    let mut group = Group::default();
    let mut waiting = Waiting::default();
    let mut last_begins = 0;
    while !inbox.closed || !retry.is_empty() || !group.rows.is_empty() {
        // Wait for work, unless rows are waiting for a retry.
        if retry.is_empty() && group.rows.is_empty() {
            match inbox.next(None) {
                Some(op) => take(op, &mut group, &mut waiting),
                None => break,
            }
        }
        loop {
            while group.rows.len() < MAX_GROUP {
                match inbox.try_next() {
                    Some(op) => take(op, &mut group, &mut waiting),
                    None => break,
                }
            }
            // Company for the group, unless something wants it committed now.
            let urgent = inbox.closed || !retry.is_empty() || waiting.any();
            let Some(until) = group.wait_until(last_begins).filter(|_| !urgent) else {
                break;
            };
            if Instant::now() >= until {
                break;
            }
            match inbox.next(Some(until)) {
                Some(op) => take(op, &mut group, &mut waiting),
                None => break,
            }
        }
        let begins = group.begins;
        let rows = group.take();
        let all: Vec<Pending> = retry
            .drain(..)
            .map(|row| Pending { row, ack: None })
            .chain(rows)
            .collect();
        let n = all.len();
        if n > 0 && committed(&mut conn, all, &mut head, &stats, &mut retry, inbox.closed) {
            last_begins = begins;
            if let Some(c) = &checkpoints {
                c.committed(n);
            }
        }
        // A flush waits for an attempt, not for a disk that may never free up.
        waiting.answer_flushes();
        for (rule, ack) in waiting.prunes.drain(..) {
            let result = prune(&mut conn, &mut head, rule).map_err(|e| e.to_string());
            if let Ok(n) = &result {
                stats
                    .head_seq
                    .store(u64::try_from(head.0).unwrap_or(0), Ordering::Relaxed);
                if *n > 0 {
                    tracing::info!(rows = n, "journal retention removed old rows");
                }
            }
            let _ = ack.send(result);
        }
    }
    waiting.answer_flushes();
    // The checkpoint thread's connection closes first, so this one is the last and SQLite folds
    // the WAL into the file as it closes.
    drop(checkpoints);
    drop(conn);
}

/// Commits one group (retried rows first) and tells every waiting sender how it went.
fn committed(
    conn: &mut Connection,
    all: Vec<Pending>,
    head: &mut (i64, String),
    stats: &Stats,
    retry: &mut VecDeque<Row>,
    closed: bool,
) -> bool {
    let started = Instant::now();
    match commit(conn, &all, head) {
        Ok(new_head) => {
            *head = new_head;
            stats.rows.fetch_add(all.len() as u64, Ordering::Relaxed);
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats
                .head_seq
                .store(u64::try_from(head.0).unwrap_or(0), Ordering::Relaxed);
            stats.retrying.store(0, Ordering::Relaxed);
            let first = head.0 - all.len() as i64 + 1;
            tracing::trace!(
                rows = all.len(),
                micros = started.elapsed().as_micros() as u64,
                "journal commit"
            );
            for (i, p) in all.into_iter().enumerate() {
                if let Some(ack) = p.ack {
                    let _ = ack.send(Ok(first + i as i64));
                }
            }
            true
        }
        Err(e) => {
            let message = e.to_string();
            let failures = stats.failed_commits.fetch_add(1, Ordering::Relaxed) + 1;
            if failures == 1 || failures % 100 == 0 {
                tracing::error!(error = %message, failures, "cannot write the journal; requests are refused until it can (free disk space?)");
            }
            if let Ok(mut last) = stats.last_error.lock() {
                *last = Some(message.clone());
            }
            for p in all {
                match p.ack {
                    // A request waiting to be forwarded is told, and refused: it has no record.
                    Some(ack) => {
                        let _ = ack.send(Err(message.clone()));
                    }
                    // A begin row nobody waits for any more is dropped: its end row follows.
                    None if p.row.kind == Kind::Begin => {}
                    None => {
                        if retry.len() >= MAX_RETRY {
                            retry.pop_front();
                            stats.lost.fetch_add(1, Ordering::Relaxed);
                        }
                        retry.push_back(p.row);
                    }
                }
            }
            stats.retrying.store(retry.len() as u64, Ordering::Relaxed);
            if closed {
                // Stopping: nothing will free the disk in time.
                stats.lost.fetch_add(retry.len() as u64, Ordering::Relaxed);
                retry.clear();
            } else {
                std::thread::sleep(RETRY_PAUSE);
            }
            false
        }
    }
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

fn take(op: Op, group: &mut Group, waiting: &mut Waiting) {
    match op {
        Op::Row { row, ack } => group.push(Pending { row: *row, ack }),
        Op::Flush(f) => waiting.flushes.push(f),
        Op::Prune { rule, ack } => waiting.prunes.push((rule, ack)),
    }
}

/// Removes the rows `rule` says go — always a run from the start of the chain — and appends a
/// `journal_pruned` event naming the last removed row and its hash, which `verify` takes as the
/// anchor of the first row kept. The number of rows removed.
fn prune(
    conn: &mut Connection,
    head: &mut (i64, String),
    rule: Retention,
) -> Result<u64, rusqlite::Error> {
    let by_age: Option<i64> = conn.query_row(
        "SELECT MAX(seq) FROM journal WHERE at_ms < ?1",
        params![rule.older_than_ms],
        |r| r.get(0),
    )?;
    let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let free: i64 = conn.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let used = u64::try_from((pages - free).max(0) * page_size).unwrap_or(0);
    let by_size: Option<i64> = if used > rule.max_bytes {
        // The oldest half of the rows old enough to go for size.
        conn.query_row(
            "SELECT seq FROM journal WHERE at_ms < ?1 ORDER BY seq \
             LIMIT 1 OFFSET (SELECT COUNT(*) / 2 FROM journal WHERE at_ms < ?1)",
            params![rule.floor_ms],
            |r| r.get(0),
        )
        .optional()?
    } else {
        None
    };
    let Some(through) = by_age.max(by_size) else {
        return Ok(0);
    };
    let (anchor, first): (String, i64) = conn.query_row(
        "SELECT (SELECT hash FROM journal WHERE seq = ?1), (SELECT MIN(seq) FROM journal)",
        params![through],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let removed = u64::try_from(through - first + 1).unwrap_or(0);
    let event = Row::event(
        "journal_pruned",
        None,
        serde_json::json!({
            "through_seq": through,
            "anchor_hash": anchor,
            "rows": removed,
            "reason": if by_size.is_some_and(|s| Some(s) >= by_age) { "size" } else { "age" },
        }),
    );
    let tx = conn.transaction()?;
    tx.execute("DELETE FROM journal WHERE seq <= ?1", params![through])?;
    let seq = head.0 + 1;
    let hash = event.hash(seq, &head.1);
    insert(&tx, seq, &event, &head.1, &hash)?;
    tx.commit()?;
    *head = (seq, hash);
    // Give the freed pages back to the file system (the file was made with incremental vacuum).
    conn.execute_batch("PRAGMA incremental_vacuum;")?;
    Ok(removed)
}

/// Appends `rows` after `head` in one transaction; the new head on success.
fn commit(
    conn: &mut Connection,
    rows: &[Pending],
    head: &(i64, String),
) -> Result<(i64, String), rusqlite::Error> {
    let tx = conn.transaction()?;
    let (mut seq, mut prev) = head.clone();
    {
        let mut stmt = tx.prepare_cached(INSERT)?;
        for p in rows {
            let r = &p.row;
            seq += 1;
            let hash = r.hash(seq, &prev);
            stmt.execute(values(seq, r, &prev, &hash))?;
            prev = hash;
        }
    }
    tx.commit()?;
    Ok((seq, prev))
}

fn values<'a>(seq: i64, r: &'a Row, prev: &'a str, hash: &'a str) -> impl rusqlite::Params + 'a {
    (
        seq,
        r.kind.as_str(),
        r.id.as_str(),
        r.at.as_str(),
        r.at_ms,
        r.uid,
        r.provider.as_deref(),
        r.model.as_deref(),
        r.outcome.as_deref(),
        r.input_tokens,
        r.output_tokens,
        r.cost_usd,
        r.body.as_str(),
        prev,
        hash,
    )
}

fn insert(
    conn: &Connection,
    seq: i64,
    r: &Row,
    prev: &str,
    hash: &str,
) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(INSERT)?
        .execute(values(seq, r, prev, hash))
        .map(|_| ())
}
