//! The journal: the durable, hash-chained record of every request and every policy decision, in
//! SQLite (WAL mode) in the state directory (`journal.db`, private to the daemon). A request's
//! `begin` row is committed before the request is forwarded — the request waits for its group
//! commit — and its `end` row when it finishes; policy decisions that are not requests are `event`
//! rows. Every row carries the hash of the one before ([`row`]), so `airlock journal verify` finds
//! an edited, deleted or reordered row. It owns the file and its one writer thread; it must not
//! decide what is recorded (the pipeline and the governor do).

mod batch;
pub mod read;
pub mod row;
mod schema;
mod store;
mod writer;

use crate::sync::lock;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

pub use read::{Exported, Problem, Verification};
pub use row::{Kind, Row};

use crate::record::Record;

/// Rows waiting for the writer before senders wait for room.
const QUEUE: usize = 65_536;

/// How hard a commit tries to survive.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Survives the agent being killed (every commit is in the WAL before the request goes on);
    /// a power cut may lose the last commits.
    #[default]
    Normal,
    /// Also survives a power cut: every commit is flushed to the disk (slower: one fsync each).
    Full,
}

/// What went wrong with the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// The file cannot be opened or set up.
    #[error("cannot open the journal {path}: {source}; check the state directory's permissions and free space")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        source: rusqlite::Error,
    },
    /// The file is not usable as a journal.
    #[error("cannot use the journal {path}: {message}")]
    Setup {
        /// The file.
        path: PathBuf,
        /// Why, and what to do.
        message: String,
    },
    /// A commit failed.
    #[error("cannot write the journal: {0}; free disk space in the state directory")]
    Write(String),
    /// The writer has stopped (the agent is shutting down).
    #[error("the journal is closed (airlockd is stopping)")]
    Closed,
    /// A read failed.
    #[error("cannot read the journal: {0}")]
    Read(#[from] rusqlite::Error),
}

impl JournalError {
    fn open(path: &Path, source: rusqlite::Error) -> JournalError {
        JournalError::Open {
            path: path.to_path_buf(),
            source,
        }
    }
}

struct Inner {
    path: PathBuf,
    /// The connection, shared with the writer thread.
    store: Arc<store::SharedStore>,
    tx: Mutex<Option<mpsc::Sender<writer::Op>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    stats: Arc<store::Stats>,
    /// Rows handed over that are waiting for room in the queue.
    waiting: Arc<std::sync::atomic::AtomicU64>,
    /// `begin`s under way (waiting for their commit).
    begins: std::sync::atomic::AtomicU64,
    sync: SyncMode,
}

/// A handle on the journal (cheap to clone).
#[derive(Clone)]
pub struct Journal {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Journal {
    /// Opens (or creates, mode 0600) the journal at `path` and starts its writer.
    pub fn open(path: &Path, sync: SyncMode) -> Result<Journal, JournalError> {
        Self::open_with(path, sync, "")
    }

    /// [`Journal::open`], running `sql` on the writing connection first (tests: a size cap that
    /// makes commits fail as a full disk does).
    fn open_with(path: &Path, sync: SyncMode, sql: &str) -> Result<Journal, JournalError> {
        // Before SQLite opens it: its -wal and -shm files take the database file's mode.
        crate::paths::restrict_file(path).map_err(|e| JournalError::Setup {
            path: path.to_path_buf(),
            message: format!("cannot create it private to the daemon ({e})"),
        })?;
        let conn = schema::open_writer(path, sync)?;
        conn.execute_batch(sql)
            .map_err(|e| JournalError::open(path, e))?;
        let head = schema::head(&conn).map_err(|e| JournalError::open(path, e))?;
        let stats = Arc::new(store::Stats::default());
        stats
            .head_seq
            .store(u64::try_from(head.0).unwrap_or(0), Ordering::Relaxed);
        let store = Arc::new(Mutex::new(Some(store::Store::new(conn, head))));
        let (tx, rx) = mpsc::channel(QUEUE);
        let (st, shared) = (stats.clone(), store.clone());
        let thread = std::thread::Builder::new()
            .name("airlock-journal".into())
            .spawn(move || writer::run(shared, rx, st))
            .map_err(|e| JournalError::Setup {
                path: path.to_path_buf(),
                message: format!("cannot start its writer thread ({e})"),
            })?;
        Ok(Journal {
            inner: Arc::new(Inner {
                path: path.to_path_buf(),
                store,
                tx: Mutex::new(Some(tx)),
                thread: Mutex::new(Some(thread)),
                stats,
                waiting: Arc::default(),
                begins: Default::default(),
                sync,
            }),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    fn sender(&self) -> Option<mpsc::Sender<writer::Op>> {
        lock(&self.inner.tx).clone()
    }

    /// Commits `record`'s `begin` row and returns once it is durable: call it right before the
    /// request is forwarded, and do not forward on an error.
    ///
    /// A lone request (no other `begin` under way, nothing queued, the writer not committing)
    /// commits its row here, with the rows waiting for company, instead of handing it to the writer
    /// thread and waiting to be woken: two thread hand-offs are most of what a lone commit costs.
    /// Requests that overlap go to the writer, which commits them together without holding an
    /// async worker. Only with `sync = "normal"`, where a commit writes the WAL without a disk
    /// flush; with `full` a commit waits for the disk and must not hold an async worker.
    pub async fn begin(&self, record: &Record) -> Result<i64, JournalError> {
        let _under_way = UnderWay::new(&self.inner.begins);
        let row = Box::new(Row::request(Kind::Begin, record));
        let tx = self.sender().ok_or(JournalError::Closed)?;
        let row = match self.begin_here(row, &tx) {
            Ok(result) => return result,
            Err(row) => row,
        };
        let (ack, done) = oneshot::channel();
        tx.send(writer::Op::Row {
            row,
            ack: Some(ack),
        })
        .await
        .map_err(|_| JournalError::Closed)?;
        match done.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(message)) => Err(JournalError::Write(message)),
            Err(_) => Err(JournalError::Closed),
        }
    }

    /// Commits `row` on this thread when no other `begin` is under way, nothing is queued and the
    /// connection is free; gives the row back otherwise.
    fn begin_here(
        &self,
        row: Box<Row>,
        tx: &mpsc::Sender<writer::Op>,
    ) -> Result<Result<i64, JournalError>, Box<Row>> {
        if self.inner.sync != SyncMode::Normal
            || self.inner.begins.load(Ordering::Relaxed) > 1
            || tx.capacity() < tx.max_capacity()
        {
            return Err(row);
        }
        let Ok(mut guard) = self.inner.store.try_lock() else {
            return Err(row);
        };
        // A retry after a failed commit, or a large group, is the writer thread's to commit.
        let Some(store) = guard
            .as_mut()
            .filter(|s| !s.retrying() && s.group.rows.len() <= 64)
        else {
            return Err(row);
        };
        let result = store.commit_waiting(Some(*row), &self.inner.stats, false);
        let retrying = store.retrying();
        drop(guard);
        Ok(match result {
            Ok(Some(seq)) => {
                self.inner
                    .stats
                    .direct_commits
                    .fetch_add(1, Ordering::Relaxed);
                Ok(seq)
            }
            Ok(None) => Err(JournalError::Closed),
            Err(message) => {
                // The rows nobody waits for are kept for a retry: the writer makes it.
                if retrying {
                    let _ = tx.try_send(writer::Op::Nudge);
                }
                Err(JournalError::Write(message))
            }
        })
    }

    /// Hands `record`'s `end` row to the writer. Never blocks an async worker: when the queue is
    /// full the row waits in a task of its own for room, so a slow disk slows completion down
    /// instead of losing rows.
    pub fn end(&self, record: &Record) {
        self.append(Row::request(Kind::End, record));
    }

    /// Records an event (`policy_refused`, `policy_applied` …); `details` must hold no secret and no
    /// prompt text.
    pub fn event(&self, name: &str, uid: Option<u32>, details: serde_json::Value) {
        self.append(Row::event(name, uid, details));
    }

    fn append(&self, row: Row) {
        let Some(tx) = self.sender() else {
            self.inner.stats.lost.fetch_add(1, Ordering::Relaxed);
            tracing::error!(id = %row.id, "the journal is closed; a row was not written");
            return;
        };
        match tx.try_send(writer::Op::Row {
            row: Box::new(row),
            ack: None,
        }) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(op)) => {
                let waiting = self.inner.waiting.clone();
                let stats = self.inner.stats.clone();
                waiting.fetch_add(1, Ordering::Relaxed);
                let send = async move {
                    if tx.send(op).await.is_err() {
                        stats.lost.fetch_add(1, Ordering::Relaxed);
                    }
                    waiting.fetch_sub(1, Ordering::Relaxed);
                };
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        rt.spawn(send);
                    }
                    // Outside the runtime (shutdown): wait here, there is nothing else to block.
                    Err(_) => match tokio::runtime::Builder::new_current_thread().build() {
                        Ok(rt) => rt.block_on(send),
                        Err(e) => {
                            tracing::error!(error = %e, "cannot wait for the journal writer; a row was not written");
                            self.inner.stats.lost.fetch_add(1, Ordering::Relaxed);
                            self.inner.waiting.fetch_sub(1, Ordering::Relaxed);
                        }
                    },
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.inner.stats.lost.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Returns once every row handed over before is committed (or failed).
    pub async fn flush(&self) {
        let Some(tx) = self.sender() else { return };
        let (ack, done) = oneshot::channel();
        if tx
            .send(writer::Op::Flush(writer::Flusher::Async(ack)))
            .await
            .is_ok()
        {
            let _ = done.await;
        }
    }

    /// [`Journal::flush`] for a thread that may block (never an async worker), waiting at most
    /// `limit`: the control API's journal readers call it first, so they see every row handed over
    /// before, rows still waiting for company included.
    pub fn flush_blocking(&self, limit: Duration) {
        let Some(tx) = self.sender() else { return };
        let deadline = std::time::Instant::now() + limit;
        let (ack, done) = std::sync::mpsc::channel();
        let mut op = writer::Op::Flush(writer::Flusher::Blocking(ack));
        loop {
            match tx.try_send(op) {
                Ok(()) => break,
                Err(mpsc::error::TrySendError::Full(again)) => {
                    if std::time::Instant::now() >= deadline {
                        return;
                    }
                    op = again;
                    std::thread::sleep(Duration::from_millis(1));
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
            }
        }
        let _ = done.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()));
    }

    /// Removes rows older than `retention_days` and, while the journal is past `max_mib`, the
    /// oldest rows older than the longest budget window; the chain stays verifiable (a
    /// `journal_pruned` event anchors the first row kept). The number of rows removed.
    pub async fn prune(&self, policy: &crate::policy::JournalPolicy) -> Result<u64, JournalError> {
        let now = crate::record::now_ms();
        let day = 86_400_000i64;
        let rule = store::Retention {
            older_than_ms: now - i64::from(policy.retention_days) * day,
            max_bytes: policy.max_mib.saturating_mul(1 << 20),
            floor_ms: now - i64::from(crate::policy::journal::MIN_RETENTION_DAYS) * day,
        };
        self.prune_with(rule).await
    }

    async fn prune_with(&self, rule: store::Retention) -> Result<u64, JournalError> {
        let tx = self.sender().ok_or(JournalError::Closed)?;
        let (ack, done) = oneshot::channel();
        tx.send(writer::Op::Prune { rule, ack })
            .await
            .map_err(|_| JournalError::Closed)?;
        match done.await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(message)) => Err(JournalError::Write(message)),
            Err(_) => Err(JournalError::Closed),
        }
    }

    /// Stops the writer after it has committed every row it was given, waiting at most `grace`
    /// (a stuck disk must not hang shutdown forever). Blocking: call it off the async workers.
    pub fn close(&self, grace: Duration) {
        let deadline = std::time::Instant::now() + grace;
        while self.inner.waiting.load(Ordering::Relaxed) > 0 && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        lock(&self.inner.tx).take();
        let handle = lock(&self.inner.thread).take();
        if let Some(h) = handle {
            while !h.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            if h.is_finished() {
                let _ = h.join();
            } else {
                tracing::error!(
                    "the journal writer did not finish in time; the last rows may be missing"
                );
            }
        }
    }

    /// A read-only connection of its own.
    pub fn reader(&self) -> Result<rusqlite::Connection, JournalError> {
        schema::open_reader(&self.inner.path)
    }

    /// The journal's side of `airlock status`.
    pub fn status(&self) -> serde_json::Value {
        let s = &self.inner.stats;
        let c = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        let bytes = std::fs::metadata(&self.inner.path)
            .map(|m| m.len())
            .unwrap_or(0)
            + std::fs::metadata(wal_path(&self.inner.path))
                .map(|m| m.len())
                .unwrap_or(0);
        serde_json::json!({
            "path": self.inner.path,
            "sync": self.inner.sync,
            "bytes": bytes,
            "rows_written": c(&s.rows),
            "commits": c(&s.commits),
            "direct_commits": c(&s.direct_commits),
            "head_seq": c(&s.head_seq),
            "failed_commits": c(&s.failed_commits),
            "retrying": c(&s.retrying),
            "lost": c(&s.lost),
            "waiting": c(&self.inner.waiting),
            "last_error": lock(&s.last_error).clone(),
        })
    }
}

/// Counts a `begin` under way for as long as it lives (its future may be dropped mid-wait).
struct UnderWay<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> UnderWay<'a> {
    fn new(n: &'a std::sync::atomic::AtomicU64) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        UnderWay(n)
    }
}

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

fn wal_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push("-wal");
    PathBuf::from(s)
}

/// Opens `path` read-only (for the CLI on a stopped agent's journal).
pub fn open_reader(path: &Path) -> Result<rusqlite::Connection, JournalError> {
    schema::open_reader(path)
}

/// Opens `path` read-only and checks its chain (for `airlock journal verify` on a stopped agent).
pub fn verify_file(path: &Path) -> Result<Verification, JournalError> {
    let conn = schema::open_reader(path)?;
    Ok(read::verify(&conn)?)
}

#[cfg(test)]
mod tests;
