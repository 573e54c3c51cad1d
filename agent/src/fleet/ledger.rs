//! What `airlock status` says about the policy: the bundle in force (fleet, version, key, digest,
//! times, where it came from), the last refusal with its reason code, whether the agent is refusing
//! AI hosts for want of a valid policy, and counters of the sources' work (fetches, 304s,
//! verifications). Sources and the governor write it; the status report reads it. It decides
//! nothing.

use crate::sync::lock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{json, Value};

/// The bundle in force.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BundleFacts {
    /// Fleet id.
    pub fleet: String,
    /// Version.
    pub version: u64,
    /// The key that signed it.
    pub key_id: String,
    /// Hex SHA-256 of the envelope.
    pub digest: String,
    /// When it was built.
    pub issued_at: String,
    /// When it expires, if ever.
    pub expires_at: Option<String>,
    /// Where it came from (`https://…`, `policy.d/NAME`, `airlock policy apply`, `last good bundle`).
    pub source: String,
    /// When this agent put it in force.
    pub applied_at: String,
}

/// A refused bundle.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RefusalFacts {
    /// The stable reason code (`bad_signature`, `rollback`, …).
    pub reason: String,
    /// What was wrong and what to do.
    pub message: String,
    /// Where the bundle came from.
    pub source: String,
    /// When.
    pub at: String,
}

/// The policy's side of the status report.
#[derive(Debug, Default)]
pub struct Ledger {
    current: Mutex<Option<BundleFacts>>,
    last_refusal: Mutex<Option<RefusalFacts>>,
    unavailable: Mutex<Option<String>>,
    expired: Mutex<bool>,
    enrolled: Mutex<Option<Value>>,
    enrollment_error: Mutex<Option<String>>,
    /// Bundle downloads that returned a body.
    pub fetches: AtomicU64,
    /// Pulls answered 304 Not Modified (no verification spent).
    pub not_modified: AtomicU64,
    /// Pulls that failed (network, TLS, HTTP errors).
    pub fetch_failures: AtomicU64,
    /// Bundles put through the verifier.
    pub verifications: AtomicU64,
    /// Bundles applied.
    pub applied: AtomicU64,
    /// Bundles refused.
    pub refused: AtomicU64,
}

impl Ledger {
    /// The bundle now in force.
    pub fn set_current(&self, facts: BundleFacts) {
        *lock(&self.current) = Some(facts);
        *lock(&self.expired) = false;
    }

    /// The bundle in force, if any.
    pub fn current(&self) -> Option<BundleFacts> {
        lock(&self.current).clone()
    }

    /// A bundle was refused.
    pub fn refuse(&self, facts: RefusalFacts) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        *lock(&self.last_refusal) = Some(facts);
    }

    /// The last refusal.
    pub fn last_refusal(&self) -> Option<RefusalFacts> {
        lock(&self.last_refusal).clone()
    }

    /// AI hosts are refused for want of a policy (`Some(why)`), or no longer (`None`).
    pub fn set_unavailable(&self, why: Option<String>) {
        *lock(&self.unavailable) = why;
    }

    /// The bundle in force has expired with no newer one.
    pub fn set_expired(&self, expired: bool) {
        *lock(&self.expired) = expired;
    }

    /// Whether the bundle in force has expired.
    pub fn expired(&self) -> bool {
        *lock(&self.expired)
    }

    /// The enrollment, as status shows it (fleet, url, key ids, interval, fail mode).
    pub fn set_enrolled(&self, e: Option<Value>) {
        *lock(&self.enrolled) = e;
    }

    /// The enrollment file changed but cannot be used (`Some(why)`), or is fine (`None`).
    pub fn set_enrollment_error(&self, why: Option<String>) {
        *lock(&self.enrollment_error) = why;
    }

    /// Why the enrollment file in place is not followed, if it is not.
    pub fn enrollment_error(&self) -> Option<String> {
        lock(&self.enrollment_error).clone()
    }

    /// The device leaves its enrollment (to another one, or none): nothing is in force from a
    /// fleet any more. The counters and the last refusal stay, as history.
    pub fn leave(&self) {
        *lock(&self.current) = None;
        *lock(&self.unavailable) = None;
        *lock(&self.expired) = false;
        *lock(&self.enrolled) = None;
    }

    /// The fields merged into the status report's `policy` object.
    pub fn status(&self) -> Value {
        let c = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let current = self.current();
        json!({
            "fleet": current.as_ref().map(|b| b.fleet.clone()),
            "version": current.as_ref().map(|b| b.version),
            "bundle": current,
            "expired": self.expired(),
            "unavailable": lock(&self.unavailable).clone(),
            "last_refusal": self.last_refusal(),
            "enrollment": lock(&self.enrolled).clone(),
            "enrollment_error": self.enrollment_error(),
            "counters": {
                "fetches": c(&self.fetches),
                "not_modified": c(&self.not_modified),
                "fetch_failures": c(&self.fetch_failures),
                "verifications": c(&self.verifications),
                "applied": c(&self.applied),
                "refused": c(&self.refused),
            },
        })
    }
}
