//! A deadline that moves with activity, for bodies that may stall (a request body trickling in, a
//! response stream that stops). It costs nothing until something actually waits: no timer exists for a
//! body that is ready when polled, and activity only records the time — the timer is moved when it
//! fires early, once per idle period, not once per chunk. It owns the deadline; the bodies decide what
//! a stall means.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// See the module docs.
pub(super) struct IdleTimer {
    idle: Duration,
    last: Instant,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl IdleTimer {
    /// A timer that expires after `idle` without activity, counted from now.
    pub(super) fn new(idle: Duration) -> Self {
        IdleTimer {
            idle,
            last: Instant::now(),
            sleep: None,
        }
    }

    /// The idle period.
    pub(super) fn idle(&self) -> Duration {
        self.idle
    }

    /// Something happened: the idle period starts again.
    pub(super) fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Called while waiting: `Ready` once nothing has happened for the whole idle period.
    pub(super) fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let deadline = self.last + self.idle;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        loop {
            match sleep.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if Instant::now() >= deadline => return Poll::Ready(()),
                // It fired for an older deadline; activity since then moved it.
                Poll::Ready(()) => sleep.as_mut().reset(deadline),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn expires_only_after_a_whole_idle_period_without_activity() {
        let mut t = IdleTimer::new(Duration::from_secs(10));
        let waker = futures_waker();
        let mut cx = Context::from_waker(&waker);
        assert!(t.poll_expired(&mut cx).is_pending());
        tokio::time::advance(Duration::from_secs(6)).await;
        t.touch();
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(
            t.poll_expired(&mut cx).is_pending(),
            "activity at 6 s moved the deadline to 16 s"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(t.poll_expired(&mut cx).is_ready());
    }

    fn futures_waker() -> std::task::Waker {
        struct Noop;
        impl std::task::Wake for Noop {
            fn wake(self: std::sync::Arc<Self>) {}
        }
        std::task::Waker::from(std::sync::Arc::new(Noop))
    }
}
