//! The shadow-AI inventory: which AI apps this machine talks to, by host, and whether the agent read
//! that traffic. A tunnelled connection to a host on the AI app list (policy `ai_domains`) becomes a
//! [`Sighting`] — *seen, not inspected* — with the app, its category, the local process and user
//! behind it, bytes each way and duration; intercepted AI traffic is counted as inspected. Sightings
//! are logged, kept in a bounded ring, and summed per host for `GET /airlock/v1/inventory`. A
//! sighting is an event of its own, not a request record: it has no provider, operation or model,
//! and when the journal lands it becomes a journal event of kind `seen`. The process lookup runs on
//! the blocking pool, at most [`MAX_LOOKUPS`] at once, and never delays the tunnel's bytes. It must
//! not read or hold the bytes of any connection.

pub mod process;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::policy::ai_domains::{AiApp, AiDomains, Category};
use crate::record::now_rfc3339;
pub use process::PeerProcess;

/// Process lookups running at once; a connection arriving while all are busy is recorded without
/// its process rather than waiting.
pub const MAX_LOOKUPS: usize = 2;
/// Hosts summed (seen and inspected each); past this, sightings are still logged and kept in the
/// ring, but not summed.
const MAX_ROWS: usize = 4096;
/// Distinct processes kept per host.
const MAX_PROCESSES_PER_ROW: usize = 8;
/// Recent sightings kept for the API.
const RECENT: usize = 256;
/// Recent client pids checked first by the next lookup.
const HINTS: usize = 16;
/// How long the end of a connection waits for its process lookup.
const LOOKUP_WAIT: Duration = Duration::from_secs(5);

/// One connection to an AI app, as the inventory records it.
#[derive(Debug, Clone, Serialize)]
pub struct Sighting {
    /// When the connection was opened, RFC 3339 UTC.
    pub started_at: String,
    /// The host the client asked for.
    pub host: String,
    /// The port it asked for.
    pub port: u16,
    /// The app the host belongs to.
    pub app: String,
    /// The app's category.
    pub category: Category,
    /// Whether the agent read the traffic (intercepted) or only passed it on (tunnelled).
    pub inspected: bool,
    /// The local process and user that opened it.
    pub process: PeerProcess,
    /// Bytes from the client to the host (tunnels).
    pub bytes_up: Option<u64>,
    /// Bytes from the host to the client (tunnels).
    pub bytes_down: Option<u64>,
    /// Requests the agent served on it (intercepted connections).
    pub requests: Option<u64>,
    /// How long it was open, milliseconds.
    pub duration_ms: u64,
}

/// A process seen using a host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
struct ProcessSeen {
    pid: Option<u32>,
    exe: Option<String>,
    uid: Option<u32>,
    user: Option<String>,
    connections: u64,
}

/// The sums for one host, seen or inspected.
#[derive(Debug, Clone)]
struct Row {
    app: String,
    category: Category,
    host: String,
    inspected: bool,
    connections: u64,
    requests: u64,
    bytes_up: u64,
    bytes_down: u64,
    first_seen: SystemTime,
    last_seen: SystemTime,
    processes: Vec<ProcessSeen>,
    /// Processes past the per-host cap.
    more_processes: u64,
}

impl Row {
    fn new(app: &AiApp, host: &str, inspected: bool, now: SystemTime) -> Row {
        Row {
            app: app.name.clone(),
            category: app.category,
            host: host.to_string(),
            inspected,
            connections: 0,
            requests: 0,
            bytes_up: 0,
            bytes_down: 0,
            first_seen: now,
            last_seen: now,
            processes: Vec::new(),
            more_processes: 0,
        }
    }

    fn to_json(&self) -> serde_json::Value {
        json!({
            "app": self.app,
            "category": self.category,
            "host": self.host,
            "inspected": self.inspected,
            "connections": self.connections,
            "requests": self.requests,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "first_seen": rfc3339(self.first_seen),
            "last_seen": rfc3339(self.last_seen),
            "processes": self.processes,
            "more_processes": self.more_processes,
        })
    }

    fn add_process(&mut self, p: &PeerProcess) {
        // The same executable of the same user is one entry, whatever its pid (a tool that restarts).
        let same = |s: &ProcessSeen| s.exe == p.exe && s.uid == p.uid;
        if let Some(s) = self.processes.iter_mut().find(|s| same(s)) {
            s.connections += 1;
            s.pid = p.pid.or(s.pid);
        } else if self.processes.len() < MAX_PROCESSES_PER_ROW {
            self.processes.push(ProcessSeen {
                pid: p.pid,
                exe: p.exe.clone(),
                uid: p.uid,
                user: p.user.clone(),
                connections: 1,
            });
        } else {
            self.more_processes += 1;
        }
    }
}

/// A connection being watched: opened, its process being looked up, to be finished when it ends.
#[derive(Debug)]
pub struct Watch {
    host: String,
    port: u16,
    app: AiApp,
    inspected: bool,
    started: Instant,
    started_at: String,
    lookup: Option<tokio::task::JoinHandle<PeerProcess>>,
}

/// What a watched connection carried.
#[derive(Debug, Clone, Copy, Default)]
pub struct Carried {
    /// Bytes client → host.
    pub bytes_up: Option<u64>,
    /// Bytes host → client.
    pub bytes_down: Option<u64>,
    /// Requests served.
    pub requests: Option<u64>,
}

#[derive(Debug, Default)]
struct Rows {
    seen: HashMap<String, Row>,
    inspected: HashMap<String, Row>,
}

/// The inventory.
#[derive(Debug)]
pub struct Inventory {
    /// The AI app list of the policy in force (replaced when a new policy is applied).
    domains: arc_swap::ArcSwap<AiDomains>,
    rows: Mutex<Rows>,
    recent: Mutex<VecDeque<Arc<Sighting>>>,
    rows_dropped: AtomicU64,
    lookups_skipped: AtomicU64,
    lookups: Arc<Semaphore>,
    hints: Arc<Mutex<VecDeque<u32>>>,
}

impl Inventory {
    /// Matches hosts against a new policy's list from now on; what was seen is kept.
    pub fn set_domains(&self, domains: AiDomains) {
        self.domains.store(std::sync::Arc::new(domains));
    }

    /// An empty inventory matching hosts against `domains`.
    pub fn new(domains: AiDomains) -> Inventory {
        Inventory {
            domains: arc_swap::ArcSwap::from_pointee(domains),
            rows: Mutex::new(Rows::default()),
            recent: Mutex::new(VecDeque::new()),
            rows_dropped: AtomicU64::new(0),
            lookups_skipped: AtomicU64::new(0),
            lookups: Arc::new(Semaphore::new(MAX_LOOKUPS)),
            hints: Arc::new(Mutex::new(VecDeque::new())),
        }
    }

    /// The app a tunnelled host belongs to, if it is listed and the inventory is on.
    pub fn app_for_tunnel(&self, host: &str) -> Option<AiApp> {
        let domains = self.domains.load();
        if !domains.enabled() {
            return None;
        }
        domains.lookup(host).map(|m| m.app.clone())
    }

    /// The app an intercepted host belongs to: its listed app, else its provider's API.
    pub fn app_for_intercepted(&self, host: &str, provider: &str) -> AiApp {
        match self.domains.load().lookup(host) {
            Some(m) => m.app.clone(),
            None => AiApp {
                name: provider.to_string(),
                category: Category::ModelApi,
            },
        }
    }

    /// Starts watching a connection from `peer` to our address `ours`. A tunnel's process is looked
    /// up on the blocking pool now, while its socket is surely open; an intercepted connection's is
    /// not (its requests have records of their own, and the lookup's cost would ride on every
    /// intercepted connection). Must be called inside the runtime.
    pub fn watch(
        &self,
        host: &str,
        port: u16,
        app: AiApp,
        inspected: bool,
        peer: SocketAddr,
        ours: SocketAddr,
    ) -> Watch {
        let permit = if inspected {
            Err(None)
        } else {
            self.lookups.clone().try_acquire_owned().map_err(Some)
        };
        let lookup = match permit {
            Ok(permit) => {
                let hints: Vec<u32> = self
                    .hints
                    .lock()
                    .map(|h| h.iter().copied().collect())
                    .unwrap_or_default();
                let remember = self.hints.clone();
                Some(tokio::task::spawn_blocking(move || {
                    let _permit = permit;
                    let began = Instant::now();
                    let found = process::lookup(peer, ours, &hints);
                    tracing::debug!(%peer, pid = ?found.pid, note = ?found.note,
                        micros = u64::try_from(began.elapsed().as_micros()).unwrap_or(u64::MAX),
                        "looked up the process behind a connection");
                    if let (Some(pid), Ok(mut h)) = (found.pid, remember.lock()) {
                        h.retain(|p| *p != pid);
                        h.push_front(pid);
                        h.truncate(HINTS);
                    }
                    found
                }))
            }
            Err(None) => None,
            Err(Some(_busy)) => {
                self.lookups_skipped.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        Watch {
            host: host.to_string(),
            port,
            app,
            inspected,
            started: Instant::now(),
            started_at: now_rfc3339(),
            lookup,
        }
    }

    /// Finishes a watched connection: records its sighting.
    pub async fn finish(&self, watch: Watch, carried: Carried) {
        let process = match watch.lookup {
            Some(handle) => match tokio::time::timeout(LOOKUP_WAIT, handle).await {
                Ok(Ok(p)) => p,
                Ok(Err(_)) => PeerProcess::unknown("the process lookup failed"),
                Err(_) => PeerProcess::unknown("the process lookup took too long"),
            },
            None if watch.inspected => {
                PeerProcess::unknown("not looked up for inspected connections")
            }
            None => PeerProcess::unknown("too many process lookups at once; skipped"),
        };
        let sighting = Sighting {
            started_at: watch.started_at,
            host: watch.host,
            port: watch.port,
            app: watch.app.name.clone(),
            category: watch.app.category,
            inspected: watch.inspected,
            process,
            bytes_up: carried.bytes_up,
            bytes_down: carried.bytes_down,
            requests: carried.requests,
            duration_ms: u64::try_from(watch.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        };
        self.record(sighting, &watch.app);
    }

    /// Adds a finished sighting.
    pub fn record(&self, s: Sighting, app: &AiApp) {
        let known = s.process.pid.is_some() || s.process.uid.is_some();
        let p = &s.process;
        if s.inspected {
            tracing::debug!(host = %s.host, app = %s.app, pid = ?p.pid, exe = ?p.exe, user = ?p.user,
                requests = ?s.requests, duration_ms = s.duration_ms, "AI app connection inspected");
        } else {
            tracing::info!(host = %s.host, port = s.port, app = %s.app, category = s.category.as_str(),
                pid = ?p.pid, exe = ?p.exe, uid = ?p.uid, user = ?p.user,
                bytes_up = ?s.bytes_up, bytes_down = ?s.bytes_down, duration_ms = s.duration_ms,
                "AI app seen in a tunnel, not inspected");
        }
        let now = SystemTime::now();
        if let Ok(mut rows) = self.rows.lock() {
            let map = if s.inspected {
                &mut rows.inspected
            } else {
                &mut rows.seen
            };
            let room = map.len() < MAX_ROWS || map.contains_key(&s.host);
            let row = room.then(|| {
                map.entry(s.host.clone())
                    .or_insert_with(|| Row::new(app, &s.host, s.inspected, now))
            });
            match row {
                Some(row) => {
                    row.connections += 1;
                    row.requests += s.requests.unwrap_or(0);
                    row.bytes_up += s.bytes_up.unwrap_or(0);
                    row.bytes_down += s.bytes_down.unwrap_or(0);
                    row.last_seen = now;
                    if known {
                        row.add_process(&s.process);
                    }
                }
                None => {
                    self.rows_dropped.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        if let Ok(mut recent) = self.recent.lock() {
            if recent.len() == RECENT {
                recent.pop_front();
            }
            recent.push_back(Arc::new(s));
        }
    }

    /// Counts one request to an intercepted `host` as the pipeline takes it (`inspected`), or as it
    /// is passed through unread because its path is outside the host's scope (seen, not inspected).
    /// Requests on an intercepted CONNECT are counted here too; only its connection is a sighting.
    pub fn count_request(&self, host: &str, provider: &str, inspected: bool) {
        let Ok(mut rows) = self.rows.lock() else {
            return;
        };
        let map = if inspected {
            &mut rows.inspected
        } else {
            &mut rows.seen
        };
        if let Some(row) = map.get_mut(host) {
            row.requests += 1;
            row.last_seen = SystemTime::now();
            return;
        }
        if map.len() >= MAX_ROWS {
            self.rows_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let app = self.app_for_intercepted(host, provider);
        let mut row = Row::new(&app, host, inspected, SystemTime::now());
        row.requests = 1;
        map.insert(host.to_string(), row);
    }

    /// The inventory as `GET /airlock/v1/inventory` serves it: one row per host and inspected-ness,
    /// sorted by app then host, and the latest sightings, newest last.
    pub fn snapshot(&self, recent_limit: usize) -> serde_json::Value {
        let mut rows: Vec<Row> = match self.rows.lock() {
            Ok(r) => r
                .seen
                .values()
                .chain(r.inspected.values())
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        rows.sort_by(|a, b| {
            (a.app.to_lowercase(), &a.host, a.inspected).cmp(&(
                b.app.to_lowercase(),
                &b.host,
                b.inspected,
            ))
        });
        let recent: Vec<Arc<Sighting>> = match self.recent.lock() {
            Ok(r) => r
                .iter()
                .skip(r.len().saturating_sub(recent_limit))
                .cloned()
                .collect(),
            Err(_) => Vec::new(),
        };
        json!({
            "enabled": self.domains.load().enabled(),
            "domains_listed": self.domains.load().len(),
            "apps": rows.iter().map(Row::to_json).collect::<Vec<_>>(),
            "recent": recent.iter().map(|s| &**s).collect::<Vec<_>>(),
            "rows_dropped": self.rows_dropped.load(Ordering::Relaxed),
            "process_lookups_skipped": self.lookups_skipped.load(Ordering::Relaxed),
        })
    }
}

/// A time as RFC 3339 UTC, to the millisecond.
fn rfc3339(t: SystemTime) -> String {
    let t = time::OffsetDateTime::from(t);
    let t = t
        .replace_nanosecond(t.nanosecond() / 1_000_000 * 1_000_000)
        .unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::InventoryPolicy;

    fn inventory() -> Inventory {
        Inventory::new(AiDomains::compile(&InventoryPolicy::default()).unwrap())
    }

    fn sighting(host: &str, app: &AiApp, inspected: bool, exe: &str, pid: u32) -> Sighting {
        Sighting {
            started_at: now_rfc3339(),
            host: host.into(),
            port: 443,
            app: app.name.clone(),
            category: app.category,
            inspected,
            process: PeerProcess {
                pid: Some(pid),
                exe: Some(exe.into()),
                uid: Some(1000),
                user: Some("alice".into()),
                exe_path: None,
                note: None,
            },
            bytes_up: (!inspected).then_some(100),
            bytes_down: (!inspected).then_some(2000),
            requests: inspected.then_some(3),
            duration_ms: 5,
        }
    }

    #[test]
    fn sightings_sum_per_host_and_keep_seen_apart_from_inspected() {
        let inv = inventory();
        let claude = inv.app_for_tunnel("claude.ai").unwrap();
        inv.record(sighting("claude.ai", &claude, false, "curl", 10), &claude);
        inv.record(sighting("claude.ai", &claude, false, "curl", 11), &claude);
        inv.record(
            sighting("claude.ai", &claude, false, "python3", 12),
            &claude,
        );
        let api = inv.app_for_intercepted("api.openai.com", "openai");
        inv.record(sighting("api.openai.com", &api, true, "node", 13), &api);
        inv.count_request("api.openai.com", "openai", true);
        inv.count_request("llm.corp.example", "corp", true);
        inv.count_request("chatgpt.com", "openai", false);

        let snap = inv.snapshot(10);
        let apps = snap["apps"].as_array().unwrap();
        assert_eq!(apps.len(), 4, "{snap:#}");
        let row = |host: &str| apps.iter().find(|r| r["host"] == host).unwrap();
        let c = row("claude.ai");
        assert_eq!(
            (c["app"].as_str(), c["inspected"].as_bool()),
            (Some("Claude"), Some(false))
        );
        assert_eq!(
            (c["connections"].as_u64(), c["bytes_down"].as_u64()),
            (Some(3), Some(6000))
        );
        let procs = c["processes"].as_array().unwrap();
        assert_eq!(procs.len(), 2, "curl twice is one entry: {procs:?}");
        assert_eq!(procs[0]["exe"], "curl");
        assert_eq!(procs[0]["connections"], 2);
        assert_eq!(procs[0]["user"], "alice");
        let o = row("api.openai.com");
        assert_eq!(
            (o["inspected"].as_bool(), o["requests"].as_u64()),
            (Some(true), Some(4))
        );
        let corp = row("llm.corp.example");
        assert_eq!(
            corp["app"], "corp",
            "an intercepted host off the list is named by its provider"
        );
        assert_eq!(corp["category"], "model_api");
        let passed = row("chatgpt.com");
        assert_eq!(
            (
                passed["app"].as_str(),
                passed["inspected"].as_bool(),
                passed["requests"].as_u64()
            ),
            (Some("ChatGPT"), Some(false), Some(1)),
            "a request passed through outside a host's path scope is seen, not inspected"
        );
        assert_eq!(snap["recent"].as_array().unwrap().len(), 4);
        assert_eq!(
            snap["domains_listed"].as_u64(),
            Some(inv.domains.load().len() as u64)
        );
    }

    #[test]
    fn unlisted_hosts_and_a_disabled_inventory_are_not_tunnel_apps() {
        let inv = inventory();
        assert!(inv.app_for_tunnel("example.com").is_none());
        assert!(inv.app_for_tunnel("notclaude.ai").is_none());
        let off = Inventory::new(
            AiDomains::compile(&toml::from_str::<InventoryPolicy>("enabled = false").unwrap())
                .unwrap(),
        );
        assert!(off.app_for_tunnel("claude.ai").is_none());
    }

    #[test]
    fn rows_are_bounded_and_overflow_is_counted() {
        let inv = inventory();
        let app = inv.app_for_tunnel("claude.ai").unwrap();
        for i in 0..MAX_ROWS + 5 {
            let host = format!("h{i}.claude.ai");
            inv.record(sighting(&host, &app, false, "curl", 1), &app);
        }
        let snap = inv.snapshot(0);
        assert_eq!(snap["apps"].as_array().unwrap().len(), MAX_ROWS);
        assert_eq!(snap["rows_dropped"], 5);
        assert_eq!(snap["recent"].as_array().unwrap().len(), 0);
        assert_eq!(
            inv.recent.lock().unwrap().len(),
            RECENT,
            "the ring is bounded too"
        );
    }

    #[tokio::test]
    async fn a_watched_connection_names_its_process() {
        let inv = inventory();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let ours = listener.local_addr().unwrap();
        let _client = std::net::TcpStream::connect(ours).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        let app = inv.app_for_tunnel("chatgpt.com").unwrap();
        let w = inv.watch("chatgpt.com", 443, app, false, peer, ours);
        inv.finish(
            w,
            Carried {
                bytes_up: Some(1),
                bytes_down: Some(2),
                requests: None,
            },
        )
        .await;
        let snap = inv.snapshot(1);
        let s = &snap["recent"][0];
        assert_eq!(s["app"], "ChatGPT");
        assert_eq!(s["category"], "chat");
        assert_eq!(
            (s["bytes_up"].as_u64(), s["bytes_down"].as_u64()),
            (Some(1), Some(2))
        );
        if cfg!(target_os = "linux") {
            assert_eq!(
                s["process"]["pid"].as_u64(),
                Some(u64::from(std::process::id()))
            );
        }
    }
}
