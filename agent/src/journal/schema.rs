//! The journal's SQLite file: opening it with the settings the journal depends on (WAL, the chosen
//! `synchronous`, a busy timeout for readers), creating its tables, and reading where the chain
//! ends. It owns the schema; it must not decide what is written.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension};

use super::row::GENESIS;
use super::{JournalError, SyncMode};

/// The schema version this agent writes (`PRAGMA user_version`).
pub const VERSION: i64 = 1;

const CREATE: &str = "
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    at TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    uid INTEGER,
    provider TEXT,
    model TEXT,
    outcome TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    cost_usd REAL,
    body TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS journal_by_id ON journal(id);
CREATE INDEX IF NOT EXISTS journal_by_time ON journal(at_ms);
";

/// How long a reader waits for the writer's lock before giving up.
const BUSY: Duration = Duration::from_secs(5);

/// Opens (creating if needed) the journal for writing.
pub fn open_writer(path: &Path, sync: SyncMode) -> Result<Connection, JournalError> {
    let conn = Connection::open(path).map_err(|e| JournalError::open(path, e))?;
    conn.busy_timeout(BUSY)
        .map_err(|e| JournalError::open(path, e))?;
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(|e| JournalError::open(path, e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(JournalError::Setup {
            path: path.to_path_buf(),
            message: format!("the file system refused WAL mode (got {mode}); keep the state directory on a local disk"),
        });
    }
    conn.execute_batch(&format!(
        "PRAGMA synchronous={};",
        match sync {
            SyncMode::Normal => "NORMAL",
            SyncMode::Full => "FULL",
        }
    ))
    .map_err(|e| JournalError::open(path, e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| JournalError::open(path, e))?;
    if version > VERSION {
        return Err(JournalError::Setup {
            path: path.to_path_buf(),
            message: format!(
                "it was written by a newer airlockd (schema {version}, this one knows {VERSION}); upgrade airlockd"
            ),
        });
    }
    // Only takes effect on a new file, before its first table: pruned rows' pages can then be
    // handed back to the file system without rewriting the whole file.
    conn.execute_batch("PRAGMA auto_vacuum=INCREMENTAL;")
        .map_err(|e| JournalError::open(path, e))?;
    conn.execute_batch(CREATE)
        .map_err(|e| JournalError::open(path, e))?;
    conn.execute_batch(&format!("PRAGMA user_version={VERSION};"))
        .map_err(|e| JournalError::open(path, e))?;
    Ok(conn)
}

/// Opens the journal read-only (the CLI, the control API's readers).
pub fn open_reader(path: &Path) -> Result<Connection, JournalError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| JournalError::open(path, e))?;
    conn.busy_timeout(BUSY)
        .map_err(|e| JournalError::open(path, e))?;
    Ok(conn)
}

/// Where the chain ends: the last row's `seq` and hash (`0` and the genesis hash when empty).
pub fn head(conn: &Connection) -> Result<(i64, String), rusqlite::Error> {
    Ok(conn
        .query_row(
            "SELECT seq, hash FROM journal ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )
        .optional()?
        .unwrap_or((0, GENESIS.to_string())))
}
