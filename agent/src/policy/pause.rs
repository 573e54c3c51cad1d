//! The policy's `[pause]` section: whether a person at the machine may pause interception for a
//! while (the tray's "Pause interception for 15 minutes", `airlock pause`), and for how long at most.
//! It owns the section's keys and their checks; it must not pause anything (the agent's
//! [`crate::pause`] state does, when the control API asks).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest pause a policy may allow, in minutes (a working day).
pub const MAX_PAUSE_MINUTES: u32 = 8 * 60;

/// Whether users may pause interception.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct PausePolicy {
    /// Any local user may pause interception of AI hosts (they are tunnelled uninspected and
    /// unrecorded until the pause ends; base-URL calls stay governed). Every pause and resume is
    /// journaled with who asked. Default: false.
    pub allow: bool,
    /// The longest pause, in minutes (1 to 480). Default: 15.
    pub max_minutes: u32,
}

impl Default for PausePolicy {
    fn default() -> Self {
        PausePolicy {
            allow: false,
            max_minutes: 15,
        }
    }
}

impl PausePolicy {
    /// Checks the numbers; the error names the key.
    pub fn check(&self) -> Result<(), String> {
        if self.max_minutes == 0 || self.max_minutes > MAX_PAUSE_MINUTES {
            return Err(format!(
                "pause.max_minutes must be between 1 and {MAX_PAUSE_MINUTES}, not {}",
                self.max_minutes
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pausing_is_off_unless_the_policy_allows_it_and_bounded() {
        let p = PausePolicy::default();
        assert!(!p.allow);
        assert_eq!(p.max_minutes, 15);
        assert!(p.check().is_ok());
        let zero = PausePolicy {
            allow: true,
            max_minutes: 0,
        };
        assert!(zero.check().unwrap_err().contains("pause.max_minutes"));
        let long = PausePolicy {
            allow: true,
            max_minutes: MAX_PAUSE_MINUTES + 1,
        };
        assert!(long.check().is_err());
    }
}
