//! Folding the WAL back into the database file, on a thread of its own. SQLite would otherwise do
//! it on the writer's thread, inside the commit that pushes the WAL past 1,000 pages: copying the
//! pages back and two disk flushes, ~40 % of the writer's time under load, paid by whichever
//! requests were waiting for that commit. Here the writer only counts the rows it commits; every
//! [`ROWS`] rows (or [`IDLE`] after the last commit, so a quiet laptop's WAL is folded too) this
//! thread runs a passive checkpoint on its own connection, which never blocks the writer.
//!
//! A passive checkpoint cannot start the WAL over while the writer keeps appending (and a
//! restarting one from here would wait on the writer for as long as the load lasts), so the writer
//! keeps SQLite's own checkpoint at [`WRITER_PAGES`]: under steady load it then copies only what
//! this thread has not folded yet, and its next commit writes the WAL from the start, cut back to
//! [`WAL_LIMIT_BYTES`]. On a machine that is not saturated this thread's checkpoint catches up and
//! the WAL starts over at the next commit. It owns nothing but its connection; it must not write
//! rows.

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::sync::lock;

/// Rows committed between two checkpoints. Larger folds more commits of the same pages (the
/// table's last leaf, the indexes' right edges) into one copy; the WAL stays a few MB.
pub(super) const ROWS: u64 = 4096;
/// After this long without a commit, whatever the WAL holds is folded.
pub(super) const IDLE: Duration = Duration::from_secs(1);
/// The WAL size (pages, ~64 MB) at which the writer checkpoints itself, finishing what this
/// thread folded and starting the WAL over; also the bound if this thread falls behind or fails.
pub(super) const WRITER_PAGES: u32 = 16_384;
/// What the WAL file is cut back to when it starts over.
pub(super) const WAL_LIMIT_BYTES: u64 = 16 << 20;

#[derive(Default)]
struct State {
    /// Rows committed since the last checkpoint started.
    rows: u64,
    stop: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

/// The writer's handle on the checkpoint thread.
pub(super) struct Checkpoints {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpoints {
    /// Opens a connection of its own to `path` and starts the thread; `None` (logged) when either
    /// fails, and the writer then keeps SQLite's default checkpoint.
    pub(super) fn start(path: &Path) -> Option<Checkpoints> {
        let conn = match Connection::open(path) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot open the journal for checkpoints; the writer folds its WAL itself");
                return None;
            }
        };
        let _ = conn.busy_timeout(Duration::from_secs(5));
        let shared = Arc::new(Shared::default());
        let s = shared.clone();
        match std::thread::Builder::new()
            .name("airlock-checkpoint".into())
            .spawn(move || run(&conn, &s))
        {
            Ok(thread) => Some(Checkpoints {
                shared,
                thread: Some(thread),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start the journal's checkpoint thread; the writer folds its WAL itself");
                None
            }
        }
    }

    /// `rows` were just committed.
    pub(super) fn committed(&self, rows: usize) {
        let mut st = lock(&self.shared.state);
        let before = st.rows;
        st.rows += rows as u64;
        // Wake the thread when the count crosses the mark, and on the first rows after a
        // checkpoint (it then waits for the idle fold with a deadline instead of for ever).
        if before == 0 || (before < ROWS && st.rows >= ROWS) {
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Checkpoints {
    /// Stops the thread (after the checkpoint it may be running) and waits for it, so the writer's
    /// connection is the last one and SQLite folds the WAL when it closes.
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(conn: &Connection, shared: &Shared) {
    let mut failures = 0u64;
    loop {
        {
            let mut st = lock(&shared.state);
            loop {
                if st.stop {
                    return;
                }
                if st.rows >= ROWS {
                    break;
                }
                if st.rows == 0 {
                    st = match shared.wake.wait(st) {
                        Ok(g) => g,
                        Err(p) => p.into_inner(),
                    };
                    continue;
                }
                // Some rows, fewer than the mark: fold them once commits stop for IDLE.
                let seen = st.rows;
                let (g, timeout) = match shared.wake.wait_timeout(st, IDLE) {
                    Ok(r) => r,
                    Err(p) => p.into_inner(),
                };
                st = g;
                if timeout.timed_out() && st.rows == seen && !st.stop {
                    break;
                }
            }
            st.rows = 0;
        }
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get::<_, i64>(1)?, r.get::<_, i64>(2)?))
        }) {
            Ok((wal_frames, folded)) => {
                failures = 0;
                tracing::trace!(wal_frames, folded, "journal checkpoint");
            }
            Err(e) => {
                failures += 1;
                if failures == 1 || failures % 100 == 0 {
                    tracing::warn!(error = %e, failures, "journal checkpoint failed; the WAL keeps growing until one succeeds");
                }
            }
        }
    }
}
