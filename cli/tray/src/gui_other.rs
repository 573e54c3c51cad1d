//! The tray on macOS and Windows needs the platform's own event loop on the main thread (AppKit,
//! Win32), which this build does not have yet: say so plainly instead of showing nothing.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::snapshot::Cli;

/// Refuses: not implemented on this OS yet.
pub fn run(_cli: Cli, _every: Duration) -> Result<()> {
    bail!(
        "the tray icon is not implemented on this OS yet; `airlock status` and `airlock dashboard` \
         show the same information"
    )
}
