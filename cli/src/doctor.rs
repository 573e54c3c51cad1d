//! `airlock doctor` (being built).

use std::process::ExitCode;

use anyhow::Result;

use crate::Session;

/// `airlock doctor` flags.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

/// Runs `airlock doctor`.
pub fn run(_ctx: &Session, _args: &DoctorArgs) -> Result<ExitCode> {
    anyhow::bail!("not built yet")
}
