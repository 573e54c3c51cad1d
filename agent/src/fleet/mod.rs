//! Signed policy for an enrolled device: every source (the HTTPS pull, the drop folder,
//! `airlock policy apply`) hands bundle bytes to one [`Governor`], which verifies them against the
//! fleet's trust (pinned keys, per-key version ratchets), applies the policy live through a
//! [`PolicySink`], advances and persists the trust and the last good bundle, and keeps the
//! [`Ledger`] `airlock status` reads. At start, [`Governor::boot`] picks what governs before any
//! network is up: the last good bundle, else the enrollment's fail mode. It owns the rules of
//! acceptance and persistence; it must not parse bundles (the `bundle` module does) or serve
//! requests.

pub mod dropdir;
pub mod enrollment;
pub mod ledger;
pub mod pull;
pub mod sources;
pub mod supervisor;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub use enrollment::Enrollment;
pub use ledger::{BundleFacts, Ledger, RefusalFacts};
pub use sources::Sources;
pub use supervisor::{FleetHost, Supervisor};

use crate::sync::lock;

use crate::bundle::{self, Reason, Refusal, TrustState, Verified};
use crate::paths::StateDir;
use crate::policy::{FailMode, Policy, PolicySource};
use crate::record::now_rfc3339;
use crate::Result;

/// This agent's version, checked against bundles' `min_agent_version`.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Where a policy is put in force: the running agent.
pub trait PolicySink: Send + Sync {
    /// Puts `policy` in force; with `unavailable`, AI hosts are refused with that explanation
    /// (`policy_unavailable`) while the policy's hosts still decide what is an AI host.
    fn put(&self, policy: Policy, unavailable: Option<String>) -> Result<()>;
    /// Records a policy decision in the journal (`policy_applied`, `policy_refused` …); `details`
    /// hold no secret.
    fn event(&self, _name: &str, _details: serde_json::Value) {}
}

/// What the state directory keeps between runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Persisted {
    /// The enrollment's pinned keys when this trust was set up: a re-enrollment with other keys
    /// starts the key list again (ratchets of the same fleet are kept).
    enrolled_keys: Vec<String>,
    trust: TrustState,
}

/// What a source's bundle came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offered {
    /// Verified and in force.
    Applied {
        /// Its version.
        version: u64,
    },
    /// The version in force already: nothing to do.
    Unchanged {
        /// Its version.
        version: u64,
    },
}

/// What governs at start.
#[derive(Debug)]
pub struct Boot {
    /// The policy to start with.
    pub policy: Policy,
    /// Why AI hosts are refused, when no policy may govern.
    pub unavailable: Option<String>,
}

/// The one verifier every source feeds.
pub struct Governor {
    enrollment: Enrollment,
    state: StateDir,
    trust: Mutex<Persisted>,
    ledger: Arc<Ledger>,
    sink: Mutex<Option<Arc<dyn PolicySink>>>,
    /// Replaced by another enrollment: offers are refused, nothing is put in force or persisted.
    retired: AtomicBool,
}

impl std::fmt::Debug for Governor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Governor")
            .field("fleet", &self.enrollment.fleet)
            .finish()
    }
}

impl Governor {
    /// Sets up trust for `enrollment` (from the state directory when it matches) and decides what
    /// governs at start: the last good bundle if it still verifies; an expired one by its own fail
    /// mode; with none, the enrollment's fail mode over the embedded default policy.
    pub fn boot(
        enrollment: Enrollment,
        state: StateDir,
        ledger: Arc<Ledger>,
    ) -> Result<(Governor, Boot)> {
        let persisted = load_trust(&state, &enrollment);
        let gov = Governor {
            enrollment,
            state,
            trust: Mutex::new(persisted),
            ledger,
            sink: Mutex::new(None),
            retired: AtomicBool::new(false),
        };
        gov.ledger.set_enrolled(Some(gov.enrollment_status()));
        let boot = match gov.last_good() {
            Ok(b) => b,
            Err(why) => gov.without_policy(why)?,
        };
        Ok((gov, boot))
    }

    /// The running agent to apply policies to (set once it is up).
    pub fn attach(&self, sink: Arc<dyn PolicySink>) {
        *lock(&self.sink) = Some(sink);
    }

    /// Another enrollment replaces this one: once this returns, no offer of this governor puts a
    /// policy in force or writes the state directory (an offer verifying now holds the trust lock,
    /// so this waits for it, and it then sees the flag).
    pub fn retire(&self) {
        let _trust = lock(&self.trust);
        self.retired.store(true, Ordering::SeqCst);
        *lock(&self.sink) = None;
    }

    /// The enrollment.
    pub fn enrollment(&self) -> &Enrollment {
        &self.enrollment
    }

    /// The ledger.
    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    fn enrollment_status(&self) -> serde_json::Value {
        let e = &self.enrollment;
        let trust = lock(&self.trust);
        serde_json::json!({
            "fleet": e.fleet,
            "url": e.url,
            "interval_secs": e.interval_secs,
            "fail_mode": e.fail_mode.as_str(),
            "pinned_keys": e.public_keys().iter().map(|k| k.id().to_string()).collect::<Vec<_>>(),
            "trusted_keys": trust.trust.public_keys().iter().map(|k| k.id().to_string()).collect::<Vec<_>>(),
        })
    }

    /// Verifies `bytes` from `source` and, when they carry a newer policy, puts it in force. A
    /// refusal leaves the policy in force, is logged with its reason code and kept in the ledger.
    pub fn offer(&self, bytes: &[u8], source: &str) -> std::result::Result<Offered, Refusal> {
        let result = self.offer_inner(bytes, source);
        if let Err(r) = &result {
            tracing::warn!(reason = r.reason.code(), %source, message = %r.message, "policy bundle refused; the policy in force stays");
            if let Some(sink) = lock(&self.sink).clone() {
                sink.event(
                    "policy_refused",
                    serde_json::json!({
                        "fleet": self.enrollment.fleet,
                        "reason": r.reason.code(),
                        "message": r.message,
                        "source": source,
                        "digest": bundle::digest(bytes),
                    }),
                );
            }
            self.ledger.refuse(RefusalFacts {
                reason: r.reason.code().to_string(),
                message: r.message.clone(),
                source: source.to_string(),
                at: now_rfc3339(),
            });
        }
        result
    }

    fn offer_inner(&self, bytes: &[u8], source: &str) -> std::result::Result<Offered, Refusal> {
        self.ledger.verifications.fetch_add(1, Ordering::Relaxed);
        // One bundle at a time: verification reads the ratchets the previous one advanced.
        let mut persisted = lock(&self.trust);
        let mut v = bundle::verify(
            bytes,
            &persisted.trust,
            OffsetDateTime::now_utc(),
            AGENT_VERSION,
            PolicySource::Bundle(source.to_string()),
        )?;
        if self.retired.load(Ordering::SeqCst) {
            return Err(Refusal::new(
                Reason::WrongFleet,
                format!(
                    "the device no longer follows fleet {:?}'s enrollment: it was changed while this bundle was verified",
                    self.enrollment.fleet
                ),
            ));
        }
        if v.unchanged {
            return Ok(Offered::Unchanged {
                version: v.payload.version,
            });
        }
        let Some(policy) = v.policy.take() else {
            return Err(Refusal::new(
                Reason::InvalidPolicy,
                "the bundle verified but carried no compiled policy",
            ));
        };
        let sink = lock(&self.sink).clone();
        if let Some(sink) = sink {
            sink.put(policy, None).map_err(|e| {
                Refusal::new(
                    Reason::InvalidPolicy,
                    format!("the policy verified but cannot be put in force: {e}"),
                )
            })?;
        }
        persisted.trust.accept(&v);
        if let Err(e) = save(&self.state, &persisted, bytes) {
            // In force now, but the next start would not know it: say so loudly.
            tracing::error!(error = %e, "cannot persist the accepted bundle; after a restart the previous one governs");
        }
        let version = v.payload.version;
        self.ledger.set_current(facts(&v, source));
        self.ledger.set_unavailable(None);
        self.ledger.applied.fetch_add(1, Ordering::Relaxed);
        drop(persisted);
        self.ledger.set_enrolled(Some(self.enrollment_status()));
        tracing::info!(fleet = %v.payload.fleet, version, key = %v.key_id, %source, "policy bundle applied");
        if let Some(sink) = lock(&self.sink).clone() {
            sink.event(
                "policy_applied",
                serde_json::json!({
                    "fleet": v.payload.fleet,
                    "version": version,
                    "key_id": v.key_id.to_string(),
                    "digest": v.digest,
                    "source": source,
                }),
            );
        }
        Ok(Offered::Applied { version })
    }

    /// The last good bundle, verified again (signature, fleet, expiry, agent version, compile).
    fn last_good(&self) -> std::result::Result<Boot, String> {
        let path = current_bundle(&self.state);
        let bytes = std::fs::read(&path).map_err(|_| {
            format!(
                "no valid policy has arrived yet for fleet {:?}",
                self.enrollment.fleet
            )
        })?;
        let keys = lock(&self.trust).trust.public_keys();
        let source = "last good bundle";
        let now = OffsetDateTime::now_utc();
        match bundle::verify_with_keys(
            &bytes,
            &keys,
            Some(&self.enrollment.fleet),
            now,
            AGENT_VERSION,
        ) {
            Ok(mut v) => {
                let policy = v
                    .policy
                    .take()
                    .ok_or("the last good bundle carried no policy")?;
                let policy = relabel(policy, source);
                self.ledger.set_current(facts(&v, source));
                tracing::info!(
                    version = v.payload.version,
                    "governing with the last good bundle"
                );
                Ok(Boot {
                    policy,
                    unavailable: None,
                })
            }
            Err(r) if r.reason == Reason::Expired => {
                // Still the newest good policy: its own fail mode says whether it may govern.
                let payload = bundle::inspect(&bytes).map_err(|r| r.to_string())?;
                let mut policy =
                    Policy::from_json(payload.policy.clone(), PolicySource::Bundle(source.into()))
                        .map_err(|e| e.to_string())?;
                policy.version = Some(payload.version);
                self.ledger.set_current(BundleFacts {
                    fleet: payload.fleet.clone(),
                    version: payload.version,
                    key_id: String::new(),
                    digest: bundle::digest(&bytes),
                    issued_at: payload.issued_at.clone(),
                    expires_at: payload.expires_at.clone(),
                    source: source.into(),
                    applied_at: now_rfc3339(),
                });
                self.ledger.set_expired(true);
                let unavailable = (policy.fail_mode == FailMode::Closed)
                    .then(|| expired_message(&payload.expires_at));
                Ok(Boot {
                    policy,
                    unavailable,
                })
            }
            Err(r) => Err(format!("the last good bundle no longer verifies ({r})")),
        }
    }

    /// No policy may govern: the enrollment's fail mode over the embedded default.
    fn without_policy(&self, why: String) -> Result<Boot> {
        tracing::warn!(fleet = %self.enrollment.fleet, fail_mode = self.enrollment.fail_mode.as_str(), reason = %why, "no valid policy; the enrollment's fail mode decides");
        let policy = Policy::embedded()?;
        let unavailable = match self.enrollment.fail_mode {
            FailMode::Open => None,
            FailMode::Closed => Some(format!(
                "{why}; this device fails closed until its administrators publish one"
            )),
        };
        self.ledger.set_unavailable(unavailable.clone());
        Ok(Boot {
            policy,
            unavailable,
        })
    }

    /// Checks whether the bundle in force has expired; the first time it has, its fail mode
    /// decides: `closed` puts the agent into refusing AI hosts.
    pub fn check_expiry(&self) {
        let Some(current) = self.ledger.current() else {
            return;
        };
        if self.ledger.expired() {
            return;
        }
        let Some(exp) = current
            .expires_at
            .as_deref()
            .and_then(|e| OffsetDateTime::parse(e, &Rfc3339).ok())
        else {
            return;
        };
        if OffsetDateTime::now_utc() < exp {
            return;
        }
        self.ledger.set_expired(true);
        tracing::warn!(version = current.version, expires_at = ?current.expires_at, "the policy in force has expired and no newer one arrived");
        let sink = lock(&self.sink).clone();
        let Some(sink) = sink else { return };
        let Ok(bytes) = std::fs::read(current_bundle(&self.state)) else {
            return;
        };
        let Ok(payload) = bundle::inspect(&bytes) else {
            return;
        };
        let Ok(mut policy) =
            Policy::from_json(payload.policy, PolicySource::Bundle(current.source.clone()))
        else {
            return;
        };
        policy.version = Some(payload.version);
        if policy.fail_mode == FailMode::Closed {
            let why = expired_message(&current.expires_at);
            self.ledger.set_unavailable(Some(why.clone()));
            if let Err(e) = sink.put(policy, Some(why)) {
                tracing::error!(error = %e, "cannot fail closed after the policy expired");
            }
        }
    }
}

fn expired_message(expires_at: &Option<String>) -> String {
    format!(
        "the policy in force expired at {} and no newer one has arrived; this device fails closed until one does",
        expires_at.as_deref().unwrap_or("?")
    )
}

/// The compiled policy, its source renamed (verification compiles it with the source it was given).
fn relabel(mut policy: Policy, source: &str) -> Policy {
    policy.source = PolicySource::Bundle(source.to_string());
    policy
}

fn facts(v: &Verified, source: &str) -> BundleFacts {
    BundleFacts {
        fleet: v.payload.fleet.clone(),
        version: v.payload.version,
        key_id: v.key_id.to_string(),
        digest: v.digest.clone(),
        issued_at: v.payload.issued_at.clone(),
        expires_at: v.payload.expires_at.clone(),
        source: source.to_string(),
        applied_at: now_rfc3339(),
    }
}

fn trust_file(state: &StateDir) -> PathBuf {
    state.policy_dir().join("trust.json")
}

fn current_bundle(state: &StateDir) -> PathBuf {
    state.policy_dir().join("current.bundle")
}

/// The persisted trust when it belongs to this enrollment; otherwise trust starts from the
/// enrollment (a new fleet starts from nothing; new keys for the same fleet keep the ratchets).
fn load_trust(state: &StateDir, e: &Enrollment) -> Persisted {
    let fresh = || Persisted {
        enrolled_keys: e.pubkeys.clone(),
        trust: TrustState::new(e.fleet.clone(), e.public_keys()),
    };
    let Ok(text) = std::fs::read(trust_file(state)) else {
        return fresh();
    };
    match serde_json::from_slice::<Persisted>(&text) {
        Ok(p) if p.trust.fleet == e.fleet && p.enrolled_keys == e.pubkeys => p,
        Ok(p) if p.trust.fleet == e.fleet => {
            tracing::info!(
                "the enrollment pins other keys than before; trusting those (ratchets kept)"
            );
            Persisted {
                enrolled_keys: e.pubkeys.clone(),
                trust: TrustState {
                    ratchets: p.trust.ratchets,
                    ..fresh().trust
                },
            }
        }
        Ok(_) => {
            tracing::info!(fleet = %e.fleet, "enrolled in another fleet; its trust starts fresh");
            let _ = std::fs::remove_file(current_bundle(state));
            fresh()
        }
        Err(err) => {
            tracing::warn!(error = %err, "the persisted policy trust is unreadable; starting from the enrollment");
            fresh()
        }
    }
}

/// Persists the bundle, then the trust it advanced (both atomically, private to the daemon). In
/// this order a crash between the two leaves the new bundle governing the next start and its
/// version still acceptable, never a ratchet past a bundle that was not kept.
fn save(state: &StateDir, p: &Persisted, bundle_bytes: &[u8]) -> Result<()> {
    crate::paths::create_dir_with_mode(&state.policy_dir(), 0o700)?;
    let json = serde_json::to_vec_pretty(p).map_err(|e| crate::AgentError::Policy {
        origin: "policy trust".into(),
        message: e.to_string(),
    })?;
    crate::paths::write_atomic(&current_bundle(state), bundle_bytes, 0o600)?;
    crate::paths::write_atomic(&trust_file(state), &json, 0o600)
}
