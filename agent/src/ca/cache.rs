//! The bounded per-host cache of TLS server configs (each holding one leaf): insertion-ordered, evicting
//! the oldest entry when full and replacing entries older than their time to live. It owns only the
//! bookkeeping; it must not issue certificates or decide which hosts may have one (the caller passes a
//! generator and holds the lock while it runs, which makes generation single-flight).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Result;

/// Default number of hosts kept.
pub(crate) const DEFAULT_CAPACITY: usize = 256;
/// Default age after which an entry is regenerated (well below the leaf validity).
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(7 * 24 * 60 * 60);

struct Entry<T> {
    value: Arc<T>,
    created: Instant,
}

/// A FIFO cache keyed by host.
pub(crate) struct LeafCache<T> {
    capacity: usize,
    ttl: Duration,
    entries: HashMap<String, Entry<T>>,
    order: VecDeque<String>,
}

impl<T> LeafCache<T> {
    /// A cache of at most `capacity` (at least 1) entries, each kept for at most `ttl`.
    pub(crate) fn new(capacity: usize, ttl: Duration) -> Self {
        LeafCache {
            capacity: capacity.max(1),
            ttl,
            entries: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// The cached value for `host` if fresh, else the result of `make`, cached.
    pub(crate) fn get_or_insert_with(
        &mut self,
        host: &str,
        make: impl FnOnce() -> Result<T>,
    ) -> Result<Arc<T>> {
        if let Some(e) = self.entries.get(host) {
            if e.created.elapsed() < self.ttl {
                return Ok(e.value.clone());
            }
            self.entries.remove(host);
            self.order.retain(|h| h != host);
        }
        let value = Arc::new(make()?);
        while self.entries.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        self.entries.insert(
            host.to_string(),
            Entry {
                value: value.clone(),
                created: Instant::now(),
            },
        );
        self.order.push_back(host.to_string());
        Ok(value)
    }

    /// Number of cached hosts.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `host` is cached (fresh or not).
    #[cfg(test)]
    pub(crate) fn contains(&self, host: &str) -> bool {
        self.entries.contains_key(host)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn oldest_entry_is_evicted_when_full() {
        let mut c = LeafCache::new(2, DEFAULT_TTL);
        for h in ["a", "b", "c"] {
            c.get_or_insert_with(h, || Ok(h.to_string())).unwrap();
        }
        assert_eq!(c.len(), 2);
        assert!(!c.contains("a"));
        assert!(c.contains("b") && c.contains("c"));
    }

    #[test]
    fn stale_entry_is_regenerated() {
        let mut c = LeafCache::new(4, Duration::ZERO);
        let one = c.get_or_insert_with("a", || Ok(1)).unwrap();
        let two = c.get_or_insert_with("a", || Ok(2)).unwrap();
        assert_eq!((*one, *two), (1, 2));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn failed_generation_caches_nothing() {
        let mut c: LeafCache<u8> = LeafCache::new(4, DEFAULT_TTL);
        assert!(c
            .get_or_insert_with("a", || Err(crate::AgentError::Ca("x".into())))
            .is_err());
        assert_eq!(c.len(), 0);
    }
}
