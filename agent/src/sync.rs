//! Locking that survives a panic elsewhere: a mutex whose holder panicked still guards data that is
//! whole (every critical section here leaves it consistent at each step), so the agent keeps
//! serving instead of cascading the panic. It owns nothing else.

use std::sync::{Mutex, MutexGuard};

/// Locks `m`, taking the data back from a poisoned lock.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
