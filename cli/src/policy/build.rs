//! `airlock policy build`: reads the TOML source, the signing key and any next keys, has
//! `airlock_agent::bundle::build` compile and sign, and writes the bundle atomically. It must not
//! print key material, and leaves every check to the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use airlock_agent::bundle::{self, BuildOptions};
use anyhow::{Context, Result};

/// What `build` was given.
pub struct Args<'a> {
    pub src: &'a Path,
    pub key: &'a Path,
    pub fleet: &'a str,
    pub version: u64,
    pub expires_in: Option<std::time::Duration>,
    pub min_agent_version: Option<&'a str>,
    pub next_keys: &'a [PathBuf],
    pub out: &'a Path,
}

pub fn run(args: &Args<'_>) -> Result<ExitCode> {
    let bytes = super::read(args.src, "policy source")?;
    let text = String::from_utf8(bytes).map_err(|_| {
        anyhow::anyhow!(
            "{} is not UTF-8 text: a policy source is TOML",
            args.src.display()
        )
    })?;
    let key = bundle::read_signing_key(args.key)?;
    let next_keys = args
        .next_keys
        .iter()
        .map(|p| bundle::read_public_key(p))
        .collect::<Result<Vec<_>, _>>()?;
    let opts = BuildOptions {
        fleet: args.fleet.to_string(),
        version: args.version,
        expires_in: args.expires_in,
        min_agent_version: args.min_agent_version.map(str::to_string),
        next_keys,
        now: time::OffsetDateTime::now_utc(),
    };
    let envelope = bundle::build(&text, args.src, &key, &opts)?;
    airlock_agent::paths::write_atomic(args.out, &envelope, 0o644)
        .with_context(|| format!("cannot write the bundle to {}", args.out.display()))?;
    // What was written, read back the way a reader of the file sees it.
    let payload = bundle::inspect(&envelope)?;
    outln!("wrote {}", args.out.display());
    outln!("  fleet:    {}", payload.fleet);
    outln!("  version:  {}", payload.version);
    outln!(
        "  expires:  {}",
        payload.expires_at.as_deref().unwrap_or("never")
    );
    outln!("  key id:   {}", key.id());
    outln!("  digest:   sha256:{}", bundle::digest(&envelope));
    for k in &opts.next_keys {
        outln!("  next key: {}", k.id());
    }
    Ok(ExitCode::SUCCESS)
}
