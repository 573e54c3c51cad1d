//! `airlock tray` (being built).

use std::process::ExitCode;

use anyhow::Result;

/// `airlock tray` flags.
#[derive(Debug, clap::Args)]
pub struct TrayArgs {}

/// Runs `airlock tray`.
pub fn run(_args: &TrayArgs) -> Result<ExitCode> {
    anyhow::bail!("not built yet")
}
