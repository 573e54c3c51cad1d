//! The agent-wide budget for bodies held in memory: request bodies the identify stage reads whole, and
//! the copy of a non-streamed response the parser keeps to read its usage. Each holder takes a share
//! ([`BodyPermit`]) as bytes arrive and gives it back when dropped, so all buffered bodies together stay
//! under `limits.max_buffered_mib` however many requests run at once. It owns the accounting; it must
//! not decide what to do when the budget is spent (the holder does: 503 for a request, an estimate
//! for a response).

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The agent-wide budget for request bodies held in memory, in KiB.
#[derive(Debug, Clone)]
pub struct BodyBudget {
    sem: Arc<Semaphore>,
    total_kib: usize,
}

/// A share of the budget, returned when dropped.
#[derive(Debug, Default)]
pub struct BodyPermit {
    permit: Option<OwnedSemaphorePermit>,
}

impl BodyPermit {
    /// A permit holding nothing yet.
    pub fn none() -> Self {
        Self::default()
    }
}

fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024)
}

impl BodyBudget {
    /// A budget of `bytes`.
    pub fn new(bytes: usize) -> Self {
        let total_kib = kib(bytes).clamp(1, Semaphore::MAX_PERMITS);
        BodyBudget {
            sem: Arc::new(Semaphore::new(total_kib)),
            total_kib,
        }
    }

    /// Bytes in use now.
    pub fn in_use(&self) -> usize {
        self.total_kib
            .saturating_sub(self.sem.available_permits())
            .saturating_mul(1024)
    }

    /// The budget in bytes.
    pub fn total(&self) -> usize {
        self.total_kib.saturating_mul(1024)
    }

    /// Takes `bytes` more for `permit`; `false` if the budget is spent (nothing is taken then).
    pub fn take(&self, permit: &mut BodyPermit, bytes: usize) -> bool {
        let Ok(n) = u32::try_from(kib(bytes)) else {
            return false;
        };
        if n == 0 {
            return true;
        }
        let Ok(more) = self.sem.clone().try_acquire_many_owned(n) else {
            return false;
        };
        match permit.permit.as_mut() {
            Some(p) => p.merge(more),
            None => permit.permit = Some(more),
        }
        true
    }
}
