//! The policy's `[journal]` section: how durable a commit is and how long rows are kept. It owns
//! the section's keys and their checks; it must not touch the journal (the journal module does).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use crate::journal::SyncMode;

/// The journal's settings.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct JournalPolicy {
    /// `normal`: a commit survives the agent being killed (a power cut may lose the last ones);
    /// `full`: it also survives a power cut, at one disk flush per group commit. Read at start.
    pub sync: SyncMode,
    /// Rows older than this many days are removed (at least 32, so month budgets can be rebuilt
    /// from the journal after a restart).
    pub retention_days: u32,
    /// Past this size (MiB) the oldest rows beyond the last 32 days are removed too.
    pub max_mib: u64,
}

/// Fewest days rows are kept: the longest budget window (a calendar month) plus a day.
pub const MIN_RETENTION_DAYS: u32 = 32;

impl Default for JournalPolicy {
    fn default() -> Self {
        JournalPolicy {
            sync: SyncMode::Normal,
            retention_days: 90,
            max_mib: 1024,
        }
    }
}

impl JournalPolicy {
    /// Checks the numbers; the error names the key.
    pub fn check(&self) -> Result<(), String> {
        if self.retention_days < MIN_RETENTION_DAYS {
            return Err(format!(
                "journal.retention_days must be at least {MIN_RETENTION_DAYS}: spend over a month is rebuilt from the journal after a restart"
            ));
        }
        if self.max_mib < 16 {
            return Err("journal.max_mib must be at least 16".into());
        }
        Ok(())
    }
}
