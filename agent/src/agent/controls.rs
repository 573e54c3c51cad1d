//! What people at the machine ask of the running agent beyond reading it: a pause of interception
//! (when the policy allows one) and its end, each journaled with who asked; and the health verdict
//! the status report carries. It owns turning those requests into state changes and events; it
//! must not decide who is calling (the control API's peer credentials do) nor the health rules
//! ([`crate::health`] does).

use std::time::Duration;

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::Shared;
use crate::health;

/// Recent requests the health verdict looks at.
const HEALTH_SAMPLE: usize = 50;

/// Why a pause was not started: a reason code and a sentence saying what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PauseRefused {
    /// `pause_not_allowed` or `pause_too_long`.
    pub reason: &'static str,
    /// What happened and what to do.
    pub message: String,
}

impl Shared {
    /// `pause` in the status report: whether the policy allows one, for how long, and when the
    /// running one ends.
    pub fn pause_status(&self) -> Value {
        let policy = self.policy();
        json!({
            "allowed": policy.pause.allow,
            "max_minutes": policy.pause.max_minutes,
            "paused_until": self.pause.until(),
        })
    }

    /// Starts a pause of `minutes` (the policy's longest when `None`) for `uid`, journaled. While it
    /// runs, CONNECTs to AI hosts are tunnelled uninspected.
    pub fn start_pause(
        &self,
        uid: Option<u32>,
        minutes: Option<u32>,
    ) -> Result<Value, PauseRefused> {
        let rule = self.policy().pause.clone();
        if !rule.allow {
            return Err(PauseRefused {
                reason: "pause_not_allowed",
                message:
                    "the policy in force does not allow pausing interception ([pause] allow = \
                          false); ask your administrator if you need it"
                        .into(),
            });
        }
        let minutes = minutes.unwrap_or(rule.max_minutes);
        if minutes == 0 || minutes > rule.max_minutes {
            return Err(PauseRefused {
                reason: "pause_too_long",
                message: format!(
                    "a pause may last 1 to {} minutes under this policy, not {minutes}",
                    rule.max_minutes
                ),
            });
        }
        let until = self
            .pause
            .start(Duration::from_secs(u64::from(minutes) * 60));
        let until = crate::pause::rfc3339(until);
        tracing::warn!(?uid, minutes, "interception paused by a local user");
        if let Some(j) = self.recorder.journal() {
            j.event(
                "interception_paused",
                uid,
                json!({"minutes": minutes, "until": until}),
            );
        }
        Ok(json!({"paused": true, "minutes": minutes, "paused_until": until}))
    }

    /// Ends the running pause (if any) for `uid`, journaled when one ran.
    pub fn end_pause(&self, uid: Option<u32>, why: &str) -> Value {
        let was = self.pause.end();
        if was {
            tracing::info!(?uid, why, "interception resumed");
            if let Some(j) = self.recorder.journal() {
                j.event("interception_resumed", uid, json!({"why": why}));
            }
        }
        json!({"paused": false, "was_paused": was})
    }

    /// The health verdict for the status report, from its policy and journal sections.
    pub(super) fn health(&self, policy: &Value, journal: &Value) -> Value {
        let recent: Vec<(OffsetDateTime, crate::record::Outcome)> = self
            .recorder
            .recent(HEALTH_SAMPLE)
            .iter()
            .filter_map(|r| {
                let at = OffsetDateTime::parse(&r.started_at, &Rfc3339).ok()?;
                Some((at, r.outcome))
            })
            .collect();
        let mut v = health::assess(health::Facts {
            policy,
            journal,
            recent: &recent,
            now: OffsetDateTime::now_utc(),
        });
        if self.pause.active() {
            v["paused_until"] = json!(self.pause.until());
        }
        v
    }
}
