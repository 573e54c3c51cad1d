//! The writing connection and where the chain ends, shared by the writer thread and a `begin`
//! that finds it free: committing a group of rows in one transaction (each row getting the next
//! `seq` and its hash, in commit order), keeping the rows of a failed commit for the next one, and
//! retention. It owns the chain's head; it must not decide when to commit (the writer thread and
//! [`super::Journal::begin`] do).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use rusqlite::{params, Connection, OptionalExtension};

use super::batch::{Group, Pending};
use super::row::{Kind, Row};

/// Rows kept for a retry after a failed commit; past this the oldest are counted lost.
const MAX_RETRY: usize = 100_000;

const INSERT: &str =
    "INSERT INTO journal (seq, kind, id, at, at_ms, uid, provider, model, outcome, \
     input_tokens, output_tokens, cost_usd, body, prev_hash, hash) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

/// The connection, the chain's head, and the rows waiting for a commit.
pub(super) struct Store {
    conn: Connection,
    head: (i64, String),
    /// Rows of failed commits, committed first next time.
    retry: VecDeque<Row>,
    /// Rows the writer thread took from the queue, waiting for company.
    pub(super) group: Group,
}

/// The writer thread's and `begin`'s handle: `None` once the writer has stopped.
pub(super) type SharedStore = Mutex<Option<Store>>;

impl Store {
    pub(super) fn new(conn: Connection, head: (i64, String)) -> Store {
        Store {
            conn,
            head,
            retry: VecDeque::new(),
            group: Group::default(),
        }
    }

    /// Rows are waiting for a retry.
    pub(super) fn retrying(&self) -> bool {
        !self.retry.is_empty()
    }

    /// Commits the rows waiting for a retry, the group, and `own` (last, nobody's ack: its `seq`
    /// is the result) in one transaction. `Ok(None)` when there was nothing to commit; on `Err`
    /// every waiting sender has been told, and `own` is not kept.
    pub(super) fn commit_waiting(
        &mut self,
        own: Option<Row>,
        stats: &Stats,
        closed: bool,
    ) -> Result<Option<i64>, String> {
        let all: Vec<Pending> = self
            .retry
            .drain(..)
            .map(|row| Pending { row, ack: None })
            .chain(self.group.take())
            .chain(own.map(|row| Pending { row, ack: None }))
            .collect();
        if all.is_empty() {
            return Ok(None);
        }
        self.committed(all, stats, closed).map(Some)
    }

    /// Applies `rule` (see [`prune`]).
    pub(super) fn prune(&mut self, rule: Retention, stats: &Stats) -> Result<u64, String> {
        let n = prune(&mut self.conn, &mut self.head, rule).map_err(|e| e.to_string())?;
        stats
            .head_seq
            .store(u64::try_from(self.head.0).unwrap_or(0), Ordering::Relaxed);
        Ok(n)
    }
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
    /// Commits a lone `begin` made on its own thread (of `commits`).
    pub direct_commits: AtomicU64,
    pub failed_commits: AtomicU64,
    /// Rows waiting for a retry after a failed commit.
    pub retrying: AtomicU64,
    /// Rows given up on (the retry queue overflowed, or the writer stopped with them).
    pub lost: AtomicU64,
    pub last_error: Mutex<Option<String>>,
    /// The last committed row's seq.
    pub head_seq: AtomicU64,
}

impl Store {
    /// Commits `all` in one transaction and tells every waiting sender how it went: the new head's
    /// `seq`, or why not (rows nobody waits for are then kept for a retry).
    fn committed(&mut self, all: Vec<Pending>, stats: &Stats, closed: bool) -> Result<i64, String> {
        let started = Instant::now();
        match commit(&mut self.conn, &all, &self.head) {
            Ok(new_head) => {
                self.head = new_head;
                stats.rows.fetch_add(all.len() as u64, Ordering::Relaxed);
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats
                    .head_seq
                    .store(u64::try_from(self.head.0).unwrap_or(0), Ordering::Relaxed);
                stats.retrying.store(0, Ordering::Relaxed);
                let first = self.head.0 - all.len() as i64 + 1;
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
                Ok(self.head.0)
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
                            if self.retry.len() >= MAX_RETRY {
                                self.retry.pop_front();
                                stats.lost.fetch_add(1, Ordering::Relaxed);
                            }
                            self.retry.push_back(p.row);
                        }
                    }
                }
                stats
                    .retrying
                    .store(self.retry.len() as u64, Ordering::Relaxed);
                if closed {
                    // Stopping: nothing will free the disk in time.
                    stats
                        .lost
                        .fetch_add(self.retry.len() as u64, Ordering::Relaxed);
                    self.retry.clear();
                }
                Err(message)
            }
        }
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
