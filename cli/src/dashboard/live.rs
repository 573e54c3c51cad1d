//! The live view's feed: one poller asks the agent for new records every second (deduped by record
//! id, since `after` may be ignored), and server-sent events push each new record, and whether the
//! agent is up, to every open page. New pages get the recent records first. The number of event
//! streams is bounded. It must not fetch anything but requests and must not hold a page's stream
//! open after the page went away.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};

use super::data::Link;

/// How often the agent is asked for new records.
const POLL: Duration = std::time::Duration::from_secs(1);
/// Records kept for pages that open later.
const BACKLOG: usize = 500;
/// Record ids remembered for deduplication.
const SEEN: usize = 5_000;
/// Most event streams open at once.
pub const MAX_CLIENTS: usize = 16;
/// A comment sent on a quiet stream, so proxies and the browser keep it open.
const KEEPALIVE: Duration = Duration::from_secs(15);

#[derive(Default)]
struct State {
    backlog: VecDeque<Bytes>,
    seen: HashSet<String>,
    order: VecDeque<String>,
    agent: Option<Bytes>,
}

/// The records seen and the pages listening.
pub struct Hub {
    state: Mutex<State>,
    tx: broadcast::Sender<Bytes>,
    clients: Arc<AtomicUsize>,
}

fn frame(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

impl Hub {
    /// An empty hub.
    pub fn new() -> Hub {
        Hub {
            state: Mutex::new(State::default()),
            tx: broadcast::channel(1024).0,
            clients: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// Takes a record; true if it had not been seen before (then it is sent to every page).
    fn record(&self, r: &Value) -> bool {
        let Some(id) = r["id"].as_str() else {
            return false;
        };
        let Ok(mut s) = self.state.lock() else {
            return false;
        };
        if !s.seen.insert(id.to_string()) {
            return false;
        }
        s.order.push_back(id.to_string());
        if s.order.len() > SEEN {
            if let Some(old) = s.order.pop_front() {
                s.seen.remove(&old);
            }
        }
        let f = frame("record", r);
        s.backlog.push_back(f.clone());
        if s.backlog.len() > BACKLOG {
            s.backlog.pop_front();
        }
        let _ = self.tx.send(f);
        true
    }

    /// Notes whether the agent answers; a change is sent to every page.
    fn agent(&self, up: bool, message: Option<&str>) {
        let f = frame("agent", &json!({"up": up, "message": message}));
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        if s.agent.as_ref() != Some(&f) {
            s.agent = Some(f.clone());
            let _ = self.tx.send(f);
        }
    }

    /// Opens an event stream for one page, or `None` when too many are open.
    pub fn subscribe(self: &Arc<Self>) -> Option<EventStream> {
        if self.clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            self.clients.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        let guard = ClientGuard(self.clients.clone());
        let mut sub = self.tx.subscribe();
        let first: Vec<Bytes> = match self.state.lock() {
            Ok(s) => s.agent.iter().chain(s.backlog.iter()).cloned().collect(),
            Err(_) => Vec::new(),
        };
        let (tx, rx) = mpsc::channel::<Bytes>(64);
        tokio::spawn(async move {
            // Tell the page to reset: it dedupes what it already has by id.
            if tx
                .send(Bytes::from_static(b"retry: 2000\n\n"))
                .await
                .is_err()
            {
                return;
            }
            for f in first {
                if tx.send(f).await.is_err() {
                    return;
                }
            }
            loop {
                let next = tokio::select! {
                    m = sub.recv() => match m {
                        Ok(f) => f,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    () = tokio::time::sleep(KEEPALIVE) => Bytes::from_static(b": keepalive\n\n"),
                };
                if tx.send(next).await.is_err() {
                    return;
                }
            }
        });
        Some(EventStream { rx, _guard: guard })
    }
}

/// Counts an open stream until it is dropped.
struct ClientGuard(Arc<AtomicUsize>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A `text/event-stream` body fed by the hub.
pub struct EventStream {
    rx: mpsc::Receiver<Bytes>,
    _guard: ClientGuard,
}

impl http_body::Body for EventStream {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|f| f.map(|b| Ok(Frame::data(b))))
    }
}

/// Asks the agent for new records every second, forever.
pub async fn poll(hub: Arc<Hub>, link: Arc<Link>) {
    let mut last: Option<String> = None;
    loop {
        let (l, after) = (link.clone(), last.clone());
        match tokio::task::spawn_blocking(move || l.requests(after.as_deref())).await {
            Ok(Ok(records)) => {
                hub.agent(true, None);
                for r in &records {
                    if hub.record(r) {
                        last = r["id"].as_str().map(str::to_string);
                    }
                }
            }
            Ok(Err(message)) => {
                hub.agent(false, Some(&message));
                // A restarted agent numbers its records anew.
                last = None;
            }
            Err(_) => {}
        }
        tokio::time::sleep(POLL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_are_deduped_by_id_and_streams_are_bounded() {
        let hub = Arc::new(Hub::new());
        assert!(hub.record(&json!({"id": "a", "model": "m"})));
        assert!(!hub.record(&json!({"id": "a", "model": "m"})));
        assert!(!hub.record(&json!({"model": "no id"})));
        hub.agent(true, None);
        let streams: Vec<EventStream> = (0..MAX_CLIENTS).map_while(|_| hub.subscribe()).collect();
        assert_eq!(streams.len(), MAX_CLIENTS);
        assert!(hub.subscribe().is_none());
        drop(streams);
        let mut s = hub.subscribe().unwrap();
        let mut got = String::new();
        for _ in 0..3 {
            got.push_str(&String::from_utf8_lossy(&s.rx.recv().await.unwrap()));
        }
        assert!(got.contains("event: agent\ndata: {\"up\":true"), "{got}");
        assert!(got.contains("event: record\ndata: {\"id\":\"a\""), "{got}");
        assert!(hub.record(&json!({"id": "b"})));
        let next = s.rx.recv().await.unwrap();
        assert!(String::from_utf8_lossy(&next).contains("\"b\""));
    }
}
