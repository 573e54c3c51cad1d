//! Reading the journal: checking its hash chain row by row, the rows of a time range for
//! `airlock journal export` (a request once, as it ended, or as it began if it never ended), and
//! the newest finished records to fill the in-memory ring at start. Readers use their own
//! read-only connections (WAL lets them run beside the writer). It must not write.

use rusqlite::{params, Connection, Row as SqlRow};
use serde::{Deserialize, Serialize};

use super::row::{Kind, Row, GENESIS};
use crate::record::Record;

/// A row as stored, with its place in the chain.
#[derive(Debug, Clone)]
pub struct Stored {
    /// Position in the chain, from 1.
    pub seq: i64,
    /// The row.
    pub row: Row,
    /// The previous row's hash, as stored.
    pub prev_hash: String,
    /// This row's hash, as stored.
    pub hash: String,
}

pub(super) const COLUMNS: &str =
    "seq, kind, id, at, at_ms, uid, provider, model, outcome, input_tokens, \
                       output_tokens, cost_usd, body, prev_hash, hash";

pub(super) fn stored(r: &SqlRow<'_>) -> rusqlite::Result<Stored> {
    let kind: String = r.get(1)?;
    Ok(Stored {
        seq: r.get(0)?,
        row: Row {
            // An unknown kind hashes as written, so it shows as an edited row.
            kind: Kind::parse(&kind).unwrap_or(Kind::Event),
            id: r.get(2)?,
            at: r.get(3)?,
            at_ms: r.get(4)?,
            uid: r.get(5)?,
            provider: r.get(6)?,
            model: r.get(7)?,
            outcome: r.get(8)?,
            input_tokens: r.get(9)?,
            output_tokens: r.get(10)?,
            cost_usd: r.get(11)?,
            body: r.get(12)?,
        },
        prev_hash: r.get(13)?,
        hash: r.get(14)?,
    })
    .map(|mut s| {
        if Kind::parse(&kind).is_none() {
            s.row.body.push_str("\u{0}unknown kind");
        }
        s
    })
}

/// What `airlock journal verify` found.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Verification {
    /// Rows checked.
    pub rows: u64,
    /// The first and last `seq` checked.
    pub first_seq: Option<i64>,
    /// The last `seq` checked.
    pub last_seq: Option<i64>,
    /// The hash of the last row: compare it with one noted earlier to see that nothing was cut
    /// off the end.
    pub head_hash: String,
    /// The first break in the chain, if any.
    pub problem: Option<Problem>,
}

/// Where the chain breaks and how.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Problem {
    /// The row.
    pub seq: i64,
    /// Its id (a request id or an event id).
    pub id: String,
    /// What is wrong, in words.
    pub message: String,
}

/// Rows before the first one kept were removed by retention: the anchor a `journal_pruned`
/// event vouches for.
fn pruned_anchor(conn: &Connection, first_seq: i64) -> rusqlite::Result<Option<String>> {
    let mut stmt = conn.prepare(
        "SELECT body FROM journal WHERE kind = 'event' AND outcome = 'journal_pruned' ORDER BY seq DESC",
    )?;
    let bodies = stmt.query_map([], |r| r.get::<_, String>(0))?;
    for body in bodies {
        let v: serde_json::Value = serde_json::from_str(&body?).unwrap_or_default();
        let d = &v["details"];
        if d["through_seq"].as_i64() == Some(first_seq - 1) {
            return Ok(d["anchor_hash"].as_str().map(str::to_string));
        }
    }
    Ok(None)
}

/// Checks the whole chain: each row's hash over its columns, each row's link to the one before,
/// and no gap in `seq`. Stops at the first break.
pub fn verify(conn: &Connection) -> rusqlite::Result<Verification> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM journal ORDER BY seq"))?;
    let mut rows = stmt.query([])?;
    let mut v = Verification {
        rows: 0,
        first_seq: None,
        last_seq: None,
        head_hash: GENESIS.to_string(),
        problem: None,
    };
    let mut prev: Option<(i64, String)> = None;
    while let Some(r) = rows.next()? {
        let s = stored(r)?;
        let problem = |message: String| Problem {
            seq: s.seq,
            id: s.row.id.clone(),
            message,
        };
        let expected_prev = match &prev {
            Some((seq, hash)) => {
                if s.seq != seq + 1 {
                    v.problem = Some(problem(format!(
                        "rows {} to {} are missing: they were deleted",
                        seq + 1,
                        s.seq - 1
                    )));
                    break;
                }
                hash.clone()
            }
            None if s.seq == 1 => GENESIS.to_string(),
            None => match pruned_anchor(conn, s.seq)? {
                Some(anchor) => anchor,
                None => {
                    v.problem = Some(problem(format!(
                        "the journal starts at row {} and no retention event says rows before it were pruned: rows 1 to {} were deleted",
                        s.seq,
                        s.seq - 1
                    )));
                    break;
                }
            },
        };
        if s.prev_hash != expected_prev {
            v.problem = Some(problem(
                "its link to the row before does not match: the row before it was edited or replaced"
                    .into(),
            ));
            break;
        }
        if s.row.hash(s.seq, &s.prev_hash) != s.hash {
            v.problem = Some(problem(
                "its contents do not match its hash: the row was edited".into(),
            ));
            break;
        }
        v.rows += 1;
        v.first_seq.get_or_insert(s.seq);
        v.last_seq = Some(s.seq);
        v.head_hash = s.hash.clone();
        prev = Some((s.seq, s.hash));
    }
    Ok(v)
}

/// One exported row: a request as it ended (or began, if it never ended), or an event.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Exported {
    /// Position in the chain.
    pub seq: i64,
    /// `end`, `begin` (a request that never finished: the agent stopped while it ran) or `event`.
    pub kind: Kind,
    /// The local user, when known.
    pub uid: Option<u32>,
    /// The record or event, as written.
    pub body: serde_json::Value,
}

/// Rows written at or after `since_ms`, after `after_seq`, at most `limit`, in chain order; with
/// `uid`, only that user's rows and the machine's events (those with no user). A request appears once: its `end` row, or its `begin` row when it
/// has none.
pub fn export(
    conn: &Connection,
    since_ms: i64,
    after_seq: i64,
    limit: usize,
    uid: Option<u32>,
) -> rusqlite::Result<Vec<Exported>> {
    let mut stmt = conn.prepare_cached(
        "SELECT seq, kind, uid, body FROM journal j \
         WHERE at_ms >= ?1 AND seq > ?2 AND (?3 IS NULL OR uid = ?3 OR (kind = 'event' AND uid IS NULL)) \
           AND (kind != 'begin' OR NOT EXISTS \
                (SELECT 1 FROM journal e WHERE e.id = j.id AND e.kind = 'end')) \
         ORDER BY seq LIMIT ?4",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let rows = stmt.query_map(params![since_ms, after_seq, uid, limit], |r| {
        let kind: String = r.get(1)?;
        let body: String = r.get(3)?;
        Ok(Exported {
            seq: r.get(0)?,
            kind: Kind::parse(&kind).unwrap_or(Kind::Event),
            uid: r.get(2)?,
            body: serde_json::from_str(&body).unwrap_or(serde_json::Value::String(body)),
        })
    })?;
    rows.collect()
}

/// The `after_seq` of the page following `rows`, a page of at most `limit`: `None` when it was the
/// last.
pub fn next_page(rows: &[Exported], limit: usize) -> Option<i64> {
    (rows.len() == limit)
        .then(|| rows.last().map(|r| r.seq))
        .flatten()
}

/// The newest `limit` finished records, oldest first (to fill the in-memory ring at start).
pub fn recent_records(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<Record>> {
    let mut stmt = conn.prepare(
        "SELECT body FROM (SELECT seq, body FROM journal WHERE kind = 'end' ORDER BY seq DESC LIMIT ?1) ORDER BY seq",
    )?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let bodies = stmt.query_map(params![limit], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for b in bodies {
        if let Ok(r) = serde_json::from_str::<Record>(&b?) {
            out.push(r);
        }
    }
    Ok(out)
}
