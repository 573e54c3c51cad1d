//! What the engine found in the long texts it has seen, so a text sent again is not scanned again:
//! a coding agent resends its whole conversation every turn, and only the newest message is new.
//! Keyed by the SHA-256 of the text, bounded in entries (the oldest go first), one per engine, so a
//! policy change starts empty. Texts under [`MIN_BYTES`] are not remembered (scanning them costs
//! less than hashing and looking up). It holds no text — a hash and the findings' rule ids and
//! offsets — and it must not decide anything about them.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::Finding;

/// The shortest text remembered.
pub(crate) const MIN_BYTES: usize = 2048;
/// Most texts remembered.
const ENTRIES: usize = 4096;

type Key = [u8; 32];

#[derive(Default)]
struct Seen {
    found: HashMap<Key, Arc<[Finding]>>,
    order: VecDeque<Key>,
}

/// The findings of texts already scanned.
#[derive(Default)]
pub(crate) struct Memo {
    seen: Mutex<Seen>,
}

impl Memo {
    /// What `scan` finds in `text`: remembered if `text` was scanned before, else scanned now (and
    /// remembered when it is long enough).
    pub(crate) fn findings(
        &self,
        text: &str,
        scan: impl FnOnce(&str) -> Vec<Finding>,
    ) -> Vec<Finding> {
        if text.len() < MIN_BYTES {
            return scan(text);
        }
        let key: Key = Sha256::digest(text.as_bytes()).into();
        if let Some(found) = self
            .seen
            .lock()
            .ok()
            .and_then(|s| s.found.get(&key).cloned())
        {
            return found.to_vec();
        }
        let found = scan(text);
        if let Ok(mut s) = self.seen.lock() {
            if !s.found.contains_key(&key) {
                if s.order.len() >= ENTRIES {
                    if let Some(old) = s.order.pop_front() {
                        s.found.remove(&old);
                    }
                }
                s.order.push_back(key);
                s.found.insert(key, found.clone().into());
            }
        }
        found
    }

    /// Texts remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.lock().map(|s| s.found.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::guardrails::Category;
    use std::cell::Cell;

    fn finding(at: usize) -> Finding {
        Finding::new(&"email".into(), Category::Pii, at, at + 5, 2)
    }

    #[test]
    fn a_long_text_sent_again_is_not_scanned_again() {
        let memo = Memo::default();
        let text = "hello world ".repeat(400);
        let scans = Cell::new(0);
        let scan = |_: &str| {
            scans.set(scans.get() + 1);
            vec![finding(3)]
        };
        assert_eq!(memo.findings(&text, scan), vec![finding(3)]);
        assert_eq!(memo.findings(&text, scan), vec![finding(3)]);
        assert_eq!(scans.get(), 1, "the second time comes from memory");
        // One byte different is another text.
        let other = format!("{text}!");
        memo.findings(&other, scan);
        assert_eq!(scans.get(), 2);
    }

    #[test]
    fn short_texts_are_scanned_every_time_and_memory_stays_bounded() {
        let memo = Memo::default();
        let scans = Cell::new(0);
        let scan = |_: &str| {
            scans.set(scans.get() + 1);
            Vec::new()
        };
        memo.findings("short", scan);
        memo.findings("short", scan);
        assert_eq!((scans.get(), memo.len()), (2, 0));
        let pad = "x".repeat(MIN_BYTES);
        for i in 0..ENTRIES + 10 {
            memo.findings(&format!("{pad}{i}"), scan);
        }
        assert_eq!(memo.len(), ENTRIES);
        // The oldest went first: the newest is still remembered, the first is not.
        let before = scans.get();
        memo.findings(&format!("{pad}{}", ENTRIES + 9), scan);
        assert_eq!(scans.get(), before);
        memo.findings(&format!("{pad}0"), scan);
        assert_eq!(scans.get(), before + 1);
    }
}
