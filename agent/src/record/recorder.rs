//! Where finished records go: the journal (durably, through its writer thread), an in-memory ring
//! of the newest ones for the status and requests API (filled from the journal at start, so a
//! restart does not empty `airlock status`), and counters. It owns the ring; it must not write the
//! journal itself (the journal's writer does) or decide what a record says.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Record;
use crate::journal::Journal;

/// Where completed records go.
pub struct Recorder {
    ring: Mutex<VecDeque<Arc<Record>>>,
    capacity: usize,
    seen: AtomicU64,
    in_flight: AtomicU64,
    next_id: AtomicU64,
    id_prefix: String,
    journal: Option<Journal>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("capacity", &self.capacity)
            .field("seen", &self.seen.load(Ordering::Relaxed))
            .finish()
    }
}

impl Recorder {
    /// A recorder keeping the last `capacity` records in memory, and every record in `journal` if
    /// given (its newest finished records fill the ring now).
    pub fn new(capacity: usize, journal: Option<Journal>) -> Recorder {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let capacity = capacity.max(1);
        let mut ring = VecDeque::with_capacity(capacity.min(4096));
        if let Some(j) = &journal {
            match j
                .reader()
                .and_then(|c| Ok(crate::journal::read::recent_records(&c, capacity)?))
            {
                Ok(records) => ring.extend(records.into_iter().map(Arc::new)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the newest records from the journal; the status starts empty")
                }
            }
        }
        Recorder {
            ring: Mutex::new(ring),
            capacity,
            seen: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            next_id: AtomicU64::new(1),
            id_prefix: format!(
                "{:08x}",
                ((nanos as u64) ^ u64::from(std::process::id())) & 0xffff_ffff
            ),
            journal,
        }
    }

    /// The journal records go to.
    pub fn journal(&self) -> Option<&Journal> {
        self.journal.as_ref()
    }

    /// A fresh request id.
    pub fn next_id(&self) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("req_{}{:08x}", self.id_prefix, n)
    }

    /// Notes a request has started.
    pub fn begin(&self) {
        self.seen.fetch_add(1, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// Stores a finished record: in the ring at once, and in the journal (never blocking an async
    /// worker; see [`Journal::end`]).
    pub fn finish(&self, record: Record) {
        if let Some(j) = &self.journal {
            j.end(&record);
        }
        let record = Arc::new(record);
        if let Ok(mut ring) = self.ring.lock() {
            if ring.len() == self.capacity {
                ring.pop_front();
            }
            ring.push_back(record);
        }
        // Last: once nothing is in flight, every finished record is stored (shutdown and tests
        // wait on this).
        self.in_flight.fetch_sub(1, Ordering::Release);
    }

    /// Stops the journal's writer after it has committed every row it was given, waiting at most
    /// `grace`.
    pub fn close(&self, grace: std::time::Duration) {
        if let Some(j) = &self.journal {
            j.close(grace);
        }
    }

    /// Requests seen since start.
    pub fn seen(&self) -> u64 {
        self.seen.load(Ordering::Relaxed)
    }

    /// Requests in flight now.
    pub fn in_flight(&self) -> u64 {
        self.in_flight.load(Ordering::Acquire)
    }

    /// The most recent `limit` finished records, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Arc<Record>> {
        self.recent_matching(limit, |_| true)
    }

    /// The most recent `limit` finished records that `keep` accepts, oldest first.
    pub fn recent_matching(
        &self,
        limit: usize,
        keep: impl Fn(&Record) -> bool,
    ) -> Vec<Arc<Record>> {
        let Ok(ring) = self.ring.lock() else {
            return Vec::new();
        };
        let mut newest_first: Vec<Arc<Record>> = ring
            .iter()
            .rev()
            .filter(|r| keep(r))
            .take(limit)
            .cloned()
            .collect();
        newest_first.reverse();
        newest_first
    }

    /// Finished records that `keep` accepts and that finished after the record `after`, oldest
    /// first, at most `limit` (the oldest of them, so a follower that asks again with the last one
    /// misses nothing). When `after` has left the ring (or never was in it), the most recent `limit`.
    pub fn after_matching(
        &self,
        after: &str,
        limit: usize,
        keep: impl Fn(&Record) -> bool,
    ) -> Vec<Arc<Record>> {
        let Ok(ring) = self.ring.lock() else {
            return Vec::new();
        };
        match ring.iter().rposition(|r| r.id == after) {
            Some(at) => ring
                .iter()
                .skip(at + 1)
                .filter(|r| keep(r))
                .take(limit)
                .cloned()
                .collect(),
            None => {
                drop(ring);
                self.recent_matching(limit, keep)
            }
        }
    }

    /// The journal, for `airlock status`.
    pub fn journal_status(&self) -> serde_json::Value {
        self.journal
            .as_ref()
            .map_or(serde_json::Value::Null, Journal::status)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::rec;
    use super::*;

    #[test]
    fn ring_is_bounded_and_counts() {
        let r = Recorder::new(2, None);
        for i in 0..3 {
            r.begin();
            r.finish(rec(&i.to_string()));
        }
        let ids: Vec<_> = r.recent(10).iter().map(|x| x.id.clone()).collect();
        assert_eq!(ids, ["1", "2"]);
        let ids: Vec<_> = r
            .recent_matching(1, |x| x.id != "2")
            .iter()
            .map(|x| x.id.clone())
            .collect();
        assert_eq!(ids, ["1"], "the newest that match, not the newest filtered");
        assert_eq!((r.seen(), r.in_flight()), (3, 0));
        let after: Vec<_> = r
            .after_matching("1", 10, |_| true)
            .iter()
            .map(|x| x.id.clone())
            .collect();
        assert_eq!(after, ["2"], "only what finished after the one named");
        assert!(
            r.after_matching("2", 10, |_| true).is_empty(),
            "nothing new"
        );
        let gone: Vec<_> = r
            .after_matching("0", 10, |_| true)
            .iter()
            .map(|x| x.id.clone())
            .collect();
        assert_eq!(
            gone,
            ["1", "2"],
            "a record that left the ring: the recent ones"
        );
        assert_ne!(r.next_id(), r.next_id());
    }

    #[test]
    fn records_reach_the_journal_even_from_outside_a_runtime_and_fill_the_ring_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("journal.db");
        let j = Journal::open(&path, crate::journal::SyncMode::Normal).unwrap();
        let r = Recorder::new(4, Some(j));
        for i in 0..10 {
            r.begin();
            r.finish(rec(&format!("r{i}")));
        }
        r.close(std::time::Duration::from_secs(10));
        let v = crate::journal::verify_file(&path).unwrap();
        assert_eq!((v.rows, v.problem), (10, None));
        // A new start: the newest records are back in the ring, in order.
        let again = Recorder::new(
            3,
            Some(Journal::open(&path, crate::journal::SyncMode::Normal).unwrap()),
        );
        let ids: Vec<_> = again.recent(10).iter().map(|x| x.id.clone()).collect();
        assert_eq!(ids, ["r7", "r8", "r9"]);
        assert_eq!(again.recent(10)[0].usage.as_ref().unwrap().output_tokens, 4);
        again.close(std::time::Duration::from_secs(5));
    }
}
