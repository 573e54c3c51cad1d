//! `airlock requests [-f] [--json]`: recent requests from the agent's control API.

use std::process::ExitCode;

use anyhow::Result;

use crate::Session;

/// `airlock requests` flags.
#[derive(Debug, clap::Args)]
pub struct RequestsArgs {
    /// Keep printing requests as they finish.
    #[arg(short, long)]
    pub follow: bool,
    /// Machine-readable output (one JSON record per line).
    #[arg(long)]
    pub json: bool,
}

/// Runs `airlock requests`.
pub fn run(_ctx: &Session, _args: &RequestsArgs) -> Result<ExitCode> {
    anyhow::bail!("not built yet")
}
