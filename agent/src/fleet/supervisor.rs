//! Enrollment while the daemon runs: `airlock enroll`, `airlock unenroll` or an MDM changing
//! `enrollment.toml` takes effect within a second, with no restart. The [`Supervisor`] checks the
//! file's metadata every [`CHECK_EVERY`] and, when what it says changed, retires the running
//! [`Governor`] and its [`Sources`] and boots the next one exactly as a start would (last good
//! bundle, else the fail mode) — or, when the file is gone, puts the policy the daemon was started
//! with back in force. A file that does not parse leaves everything as it is and is shown in
//! `airlock status` (`policy.enrollment_error`). It owns that transition; it must not verify
//! bundles or serve requests.
//!
//! Why a metadata poll and not a `notify` watch: the configuration directory may not exist yet (a
//! per-user `~/.config/airlock`), may be replaced whole by an MDM, or be a mount; one `stat` a
//! second follows all of those with no watcher to re-arm, and costs nothing measurable.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::{Enrollment, Governor, Ledger, PolicySink, Sources};
use crate::paths::{ConfigDir, StateDir};
use crate::policy::Policy;
use crate::Result;

/// How often the enrollment file's metadata is checked.
pub const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Every this many checks the file is read even with unchanged metadata: an in-place edit of the
/// same length within a coarse filesystem's timestamp granularity is still noticed.
const READ_ANYWAY_EVERY: u32 = 30;

/// The running agent, as the supervisor changes it.
pub trait FleetHost: PolicySink {
    /// The governor `airlock policy apply` feeds (`None`: not enrolled).
    fn set_governor(&self, gov: Option<Arc<Governor>>);
}

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stamp {
    /// Not checked yet: the first check reads the file.
    Unknown,
    Absent,
    Present {
        modified: Option<SystemTime>,
        len: u64,
        inode: u64,
    },
}

fn stamp(path: &std::path::Path) -> Stamp {
    match std::fs::metadata(path) {
        Ok(m) => Stamp::Present {
            modified: m.modified().ok(),
            len: m.len(),
            inode: inode(&m),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stamp::Absent,
        // Unreadable metadata: read the file every time, so the error is reported.
        Err(_) => Stamp::Unknown,
    }
}

#[cfg(unix)]
fn inode(m: &std::fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::ino(m)
}

#[cfg(not(unix))]
fn inode(_m: &std::fs::Metadata) -> u64 {
    0
}

/// An enrollment in force, with its governor and sources.
struct Active {
    enrollment: Enrollment,
    gov: Arc<Governor>,
    _sources: Option<Sources>,
}

/// Follows the enrollment file and keeps the agent's fleet machinery in line with it.
pub struct Supervisor<H: FleetHost + 'static> {
    host: Arc<H>,
    config: ConfigDir,
    state: StateDir,
    ledger: Arc<Ledger>,
    /// What governs while not enrolled: the embedded default or `--policy FILE`.
    unenrolled: Policy,
    active: Option<Active>,
    seen: Stamp,
    checks: u32,
}

impl<H: FleetHost + 'static> std::fmt::Debug for Supervisor<H> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("file", &self.file())
            .field("fleet", &self.active.as_ref().map(|a| &a.enrollment.fleet))
            .finish()
    }
}

impl<H: FleetHost + 'static> Supervisor<H> {
    /// Takes over from the start: `booted` is the governor [`Governor::boot`] made before the agent
    /// started (its policy already governs); its sources start now (call within the runtime).
    pub fn new(
        host: Arc<H>,
        config: ConfigDir,
        state: StateDir,
        ledger: Arc<Ledger>,
        unenrolled: Policy,
        booted: Option<Arc<Governor>>,
    ) -> Supervisor<H> {
        let mut s = Supervisor {
            host,
            config,
            state,
            ledger,
            unenrolled,
            active: None,
            seen: Stamp::Unknown,
            checks: 0,
        };
        if let Some(gov) = booted {
            s.activate(gov);
        }
        s
    }

    fn file(&self) -> PathBuf {
        self.config.enrollment_file()
    }

    /// The fleet followed now.
    pub fn fleet(&self) -> Option<&str> {
        self.active.as_ref().map(|a| a.enrollment.fleet.as_str())
    }

    /// Wires a booted governor into the agent and starts its sources.
    fn activate(&mut self, gov: Arc<Governor>) {
        gov.attach(self.host.clone());
        self.host.set_governor(Some(gov.clone()));
        let sources = match Sources::start(gov.clone(), &self.config) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the fleet's bundle pull; the drop folder and `airlock policy apply` are not watched either");
                self.ledger.set_enrollment_error(Some(format!(
                    "the enrollment's bundle sources cannot start: {e}"
                )));
                None
            }
        };
        self.active = Some(Active {
            enrollment: gov.enrollment().clone(),
            gov,
            _sources: sources,
        });
    }

    /// Stops the running governor: its sources end, and an offer still verifying finishes
    /// without putting its policy in force or persisting it.
    fn retire(&mut self) {
        if let Some(a) = self.active.take() {
            drop(a._sources);
            a.gov.retire();
        }
        self.host.set_governor(None);
    }

    /// Looks at the file once; acts when what it says changed. Returns whether it switched.
    pub fn check(&mut self) -> bool {
        let path = self.file();
        let now = stamp(&path);
        self.checks = self.checks.wrapping_add(1);
        let read_anyway = self.checks % READ_ANYWAY_EVERY == 0;
        if now == self.seen && now != Stamp::Unknown && !read_anyway {
            return false;
        }
        self.seen = now;
        let next = match Enrollment::load(&path) {
            Ok(next) => next,
            Err(e) => {
                let msg = e.to_string();
                if self.ledger.enrollment_error().as_deref() != Some(msg.as_str()) {
                    tracing::error!(path = %path.display(), error = %msg, "the enrollment file changed but cannot be used; the enrollment in force stays");
                }
                self.ledger.set_enrollment_error(Some(msg));
                return false;
            }
        };
        self.ledger.set_enrollment_error(None);
        let current = self.active.as_ref().map(|a| &a.enrollment);
        if current == next.as_ref() {
            return false;
        }
        if let Err(e) = self.switch(next) {
            tracing::error!(error = %e, "cannot follow the new enrollment");
            self.ledger
                .set_enrollment_error(Some(format!("cannot follow the new enrollment: {e}")));
        }
        true
    }

    fn switch(&mut self, next: Option<Enrollment>) -> Result<()> {
        self.retire();
        self.ledger.leave();
        self.host.event(
            "enrollment_changed",
            serde_json::json!({
                "fleet": next.as_ref().map(|e| e.fleet.clone()),
                "url": next.as_ref().and_then(|e| e.url.clone()),
                "pinned_keys": next.as_ref().map(|e| e.public_keys().iter().map(|k| k.id().to_string()).collect::<Vec<_>>()),
            }),
        );
        match next {
            None => {
                tracing::info!(policy = %self.unenrolled.source, "left the fleet: the policy the daemon was started with governs again");
                self.host.put(self.unenrolled.clone(), None)
            }
            Some(e) => {
                tracing::info!(fleet = %e.fleet, "enrollment changed: following fleet");
                let (gov, boot) = Governor::boot(e, self.state.clone(), self.ledger.clone())?;
                self.host.put(boot.policy, boot.unavailable)?;
                self.activate(Arc::new(gov));
                Ok(())
            }
        }
    }

    /// Checks every [`CHECK_EVERY`] until the task is dropped.
    pub async fn run(mut self) {
        let mut tick = tokio::time::interval(CHECK_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.check();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::bundle::{self, BuildOptions, SigningKey};
    use crate::fleet::Offered;
    use crate::policy::{FailMode, PolicySource};

    /// The agent as the supervisor sees it: what was put in force, and the governor attached.
    #[derive(Default)]
    struct Host {
        put: Mutex<Vec<(String, bool)>>,
        governor: Mutex<Option<Arc<Governor>>>,
    }

    impl PolicySink for Host {
        fn put(&self, policy: Policy, unavailable: Option<String>) -> Result<()> {
            self.put
                .lock()
                .unwrap()
                .push((policy.name.clone(), unavailable.is_some()));
            Ok(())
        }
    }

    impl FleetHost for Host {
        fn set_governor(&self, gov: Option<Arc<Governor>>) {
            *self.governor.lock().unwrap() = gov;
        }
    }

    impl Host {
        fn last(&self) -> (String, bool) {
            self.put.lock().unwrap().last().cloned().unwrap()
        }
        fn governor(&self) -> Option<Arc<Governor>> {
            self.governor.lock().unwrap().clone()
        }
    }

    fn enrollment(fleet: &str, key: &SigningKey, fail_mode: FailMode) -> Enrollment {
        Enrollment {
            fleet: fleet.into(),
            url: None,
            pubkeys: vec![key.public_key().to_text()],
            ca_file: None,
            interval_secs: 1,
            fail_mode,
        }
    }

    fn bundle(key: &SigningKey, fleet: &str, version: u64, name: &str) -> Vec<u8> {
        let opts = BuildOptions {
            fleet: fleet.into(),
            version,
            expires_in: None,
            min_agent_version: None,
            next_keys: Vec::new(),
            now: time::OffsetDateTime::now_utc(),
        };
        let text = format!("schema = 1\nname = \"{name}\"\n");
        bundle::build(&text, std::path::Path::new("p.toml"), key, &opts).unwrap()
    }

    #[tokio::test]
    async fn the_enrollment_file_is_followed_without_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let config = ConfigDir::new(dir.path().join("config"));
        let state = StateDir::new(dir.path().join("state"));
        let host = Arc::new(Host::default());
        let mut started_with = Policy::embedded().unwrap();
        started_with.name = "started-with".into();
        let mut sup = Supervisor::new(
            host.clone(),
            config.clone(),
            state,
            Arc::new(Ledger::default()),
            started_with,
            None,
        );
        // No file, no directory: nothing happens.
        assert!(!sup.check());
        assert!(host.governor().is_none());

        let (a, b) = (
            SigningKey::generate().unwrap(),
            SigningKey::generate().unwrap(),
        );
        std::fs::create_dir_all(config.root()).unwrap();
        enrollment("fleet-a", &a, FailMode::Closed)
            .save(&config.enrollment_file())
            .unwrap();
        assert!(sup.check());
        assert_eq!(sup.fleet(), Some("fleet-a"));
        assert_eq!(
            host.last(),
            ("airlock-default".into(), true),
            "fails closed with no bundle"
        );
        let gov_a = host.governor().unwrap();
        let applied = gov_a.offer(&bundle(&a, "fleet-a", 1, "a-1"), "test");
        assert_eq!(applied, Ok(Offered::Applied { version: 1 }));
        assert_eq!(host.last(), ("a-1".into(), false));
        // Unchanged metadata: not even read again.
        assert!(!sup.check());

        // Another fleet: the old governor is retired and applies nothing any more.
        enrollment("fleet-b", &b, FailMode::Open)
            .save(&config.enrollment_file())
            .unwrap();
        assert!(sup.check());
        assert_eq!(sup.fleet(), Some("fleet-b"));
        assert_eq!(host.last(), ("airlock-default".into(), false));
        let late = gov_a.offer(&bundle(&a, "fleet-a", 2, "a-2"), "late");
        assert!(late.is_err(), "{late:?}");
        assert_eq!(
            host.last().0,
            "airlock-default",
            "a retired governor put a policy in force"
        );
        let gov_b = host.governor().unwrap();
        assert!(!Arc::ptr_eq(&gov_a, &gov_b));

        // A file that does not parse changes nothing and is reported.
        std::fs::write(config.enrollment_file(), "fleet = \n").unwrap();
        assert!(!sup.check());
        assert!(sup.ledger.enrollment_error().is_some());
        assert_eq!(sup.fleet(), Some("fleet-b"));

        // Gone: the policy it was started with governs again, and nothing is enrolled.
        std::fs::remove_file(config.enrollment_file()).unwrap();
        assert!(sup.check());
        assert_eq!(sup.fleet(), None);
        assert!(sup.ledger.enrollment_error().is_none());
        assert_eq!(host.last(), ("started-with".into(), false));
        assert!(host.governor().is_none());
        assert_eq!(
            Policy::embedded().unwrap().source,
            PolicySource::Embedded,
            "the embedded policy is untouched"
        );
    }
}
