//! `airlock policy …`: the admin commands for signed policy bundles — `keygen`, `build`, `verify`,
//! `lint` and `diff`. They work on files only (keys, TOML sources, bundles) through
//! `airlock_agent::bundle`, so they run on an admin's machine with no agent installed. They must not
//! talk to the agent (`show` and `apply` live with the control API client), never print a private
//! key, and never hand-roll what the bundle library decides (formats, checks, reason codes).

mod build;
mod diff;
mod explain;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Subcommand;

/// The `airlock policy` subcommands.
#[derive(Debug, Subcommand)]
pub enum PolicyAction {
    /// Hand a signed bundle to the running agent (root or the agent's user): it goes through the same
    /// checks as the fleet's other sources; exit 0 applied or unchanged, 1 refused with its reason.
    Apply {
        /// The bundle file.
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
    },
    /// The policy in force: its source, fleet, version, age, signing key and the last refusal.
    Show {
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Generate a signing key pair: KEYFILE (private, mode 0600, PKCS#8 PEM) and KEYFILE.pub
    /// (public, SPKI PEM, the file agents pin). Refuses to overwrite either.
    Keygen {
        /// Where to write the private key; the public key goes to KEYFILE.pub.
        #[arg(value_name = "KEYFILE")]
        keyfile: PathBuf,
    },
    /// Compile and validate a TOML policy, then sign it into a bundle (a DSSE envelope).
    Build {
        /// The policy source (TOML).
        #[arg(value_name = "SRC.toml")]
        src: PathBuf,
        /// The private key to sign with (from `airlock policy keygen`).
        #[arg(long, value_name = "KEYFILE")]
        key: PathBuf,
        /// The fleet id agents were enrolled with.
        #[arg(long, value_name = "ID")]
        fleet: String,
        /// The bundle version: higher than any bundle this key signed before.
        #[arg(long, value_name = "N")]
        version: u64,
        /// How long the bundle stays valid: 30d, 12h, 90m or 3600s (default: no expiry).
        #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse)]
        expires_in: Option<std::time::Duration>,
        /// The oldest agent version that may apply it (default: this airlock's version).
        #[arg(long, value_name = "V")]
        min_agent_version: Option<String>,
        /// A public key file agents trust from this bundle on, replacing the keys they trust now
        /// (key rotation); repeat for several. List the signing key's .pub too to keep it trusted.
        #[arg(long = "next-key", value_name = "PUB")]
        next_keys: Vec<PathBuf>,
        /// Where to write the bundle (replaced atomically if it exists).
        #[arg(long, value_name = "BUNDLE")]
        out: PathBuf,
    },
    /// Check a bundle's signature, fleet, expiry, agent version and policy, as an agent would
    /// (without a version ratchet). Exit 0 valid, 1 refused.
    Verify {
        /// The bundle file.
        #[arg(value_name = "BUNDLE")]
        bundle: PathBuf,
        /// A trusted public key file (KEYFILE.pub); repeat for several.
        #[arg(long = "pubkey", value_name = "PUB", required = true)]
        pubkeys: Vec<PathBuf>,
        /// The fleet the bundle must be for (default: any).
        #[arg(long, value_name = "ID")]
        fleet: Option<String>,
        /// Machine-readable output (also for a refusal, on stdout).
        #[arg(long)]
        json: bool,
    },
    /// Compile and validate a TOML policy without signing it. Exit 0 valid, 1 invalid.
    Lint {
        /// The policy source (TOML).
        #[arg(value_name = "SRC.toml")]
        src: PathBuf,
        /// Machine-readable output (also for an invalid policy, on stdout).
        #[arg(long)]
        json: bool,
    },
    /// What a policy decides for a described request, and every rule that led there.
    Explain {
        /// The policy source (TOML).
        #[arg(long, value_name = "FILE.toml")]
        policy: PathBuf,
        /// The request.
        #[command(flatten)]
        request: explain::Request,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Run a file of cases (a request → the decision expected) against a policy; exit 1 on a
    /// mismatch, so a policy can be tested in CI before it is signed.
    Test {
        /// The case file (TOML: `policy = "FILE.toml"` and `[[case]]` entries).
        #[arg(value_name = "CASES.toml")]
        cases: PathBuf,
        /// The policy to test (default: the one the case file names).
        #[arg(long, value_name = "FILE.toml")]
        policy: Option<PathBuf>,
    },
    /// Compare two policies, each a TOML source or a bundle (told apart by content): one line per
    /// changed setting of the compiled policy, plus fleet, version, expiry, minimum agent version
    /// and next keys when both are bundles. Signatures are NOT verified: use `verify` for that.
    /// Exit 0 no differences, 1 different, 2 error.
    Diff {
        /// The old policy (TOML or bundle).
        #[arg(value_name = "A")]
        a: PathBuf,
        /// The new policy (TOML or bundle).
        #[arg(value_name = "B")]
        b: PathBuf,
        /// Machine-readable output: the list of changes.
        #[arg(long)]
        json: bool,
    },
}

/// Runs an `airlock policy` command.
pub fn run(action: &PolicyAction) -> Result<ExitCode> {
    match action {
        PolicyAction::Keygen { keyfile } => keygen(keyfile),
        PolicyAction::Build {
            src,
            key,
            fleet,
            version,
            expires_in,
            min_agent_version,
            next_keys,
            out,
        } => build::run(&build::Args {
            src,
            key,
            fleet,
            version: *version,
            expires_in: *expires_in,
            min_agent_version: min_agent_version.as_deref(),
            next_keys,
            out,
        }),
        PolicyAction::Verify {
            bundle,
            pubkeys,
            fleet,
            json,
        } => verify::verify(bundle, pubkeys, fleet.as_deref(), *json),
        PolicyAction::Lint { src, json } => verify::lint(src, *json),
        PolicyAction::Explain {
            policy,
            request,
            json,
        } => explain::run_explain(policy, request, *json),
        PolicyAction::Test { cases, policy } => explain::run_test(cases, policy.as_deref()),
        PolicyAction::Diff { a, b, json } => Ok(diff::run(a, b, *json)),
        // Dispatched by main with a verified agent.
        PolicyAction::Apply { .. } | PolicyAction::Show { .. } => {
            anyhow::bail!("this command talks to the running agent")
        }
    }
}

fn keygen(keyfile: &Path) -> Result<ExitCode> {
    let id = airlock_agent::bundle::keygen(keyfile)?;
    let public = airlock_agent::bundle::public_path(keyfile);
    outln!("key id:      {id}");
    outln!("public key:  {}", public.display());
    outln!(
        "private key: {} (mode 0600; keep it off shared machines, and back it up: a lost key means \
         re-enrolling every agent)",
        keyfile.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Reads a file the user named, saying which one when it cannot be read.
fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))
}

/// The version of this airlock, which is also the agent version it checks bundles against.
const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `airlock policy apply BUNDLE` against the verified agent.
pub fn apply(agent: &crate::trust::Verified, bundle: &Path) -> Result<ExitCode> {
    let bytes = std::fs::read(bundle)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", bundle.display()))?;
    let (status, v) = agent.send("POST", "/airlock/v1/policy/apply", &bytes)?;
    if (200..300).contains(&status) {
        outln!(
            "{}: version {}",
            v["result"].as_str().unwrap_or("applied"),
            v["version"]
        );
        return Ok(ExitCode::SUCCESS);
    }
    let reason = v["error"]["type"].as_str().unwrap_or("refused");
    let message = v["error"]["message"].as_str().unwrap_or_default();
    if status == 403 {
        anyhow::bail!("the agent refused: {message}");
    }
    eprintln!("refused: {reason}: {message}");
    Ok(ExitCode::from(1))
}

/// `airlock policy show [--json]`.
pub fn show(agent: &crate::trust::Verified, json: bool) -> Result<ExitCode> {
    let p = agent.get("/airlock/v1/policy")?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&p).unwrap_or_default());
        return Ok(ExitCode::SUCCESS);
    }
    let s = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "-".to_string(),
        serde_json::Value::String(t) => t.clone(),
        other => other.to_string(),
    };
    outln!("policy:       {}", s(&p["name"]));
    outln!("source:       {}", s(&p["source"]));
    outln!("fleet:        {}", s(&p["fleet"]));
    outln!("version:      {}", s(&p["version"]));
    outln!("signing key:  {}", s(&p["bundle"]["key_id"]));
    outln!("issued at:    {}", s(&p["bundle"]["issued_at"]));
    outln!("applied at:   {}", s(&p["bundle"]["applied_at"]));
    outln!("expires at:   {}", s(&p["bundle"]["expires_at"]));
    outln!("fail mode:    {}", s(&p["fail_mode"]));
    if let Some(why) = p["refusing_ai_hosts"].as_str() {
        outln!("REFUSING AI:  {why}");
    }
    match p["last_refusal"].as_object() {
        Some(r) => outln!(
            "last refusal: {} from {} at {}: {}",
            s(&r["reason"]),
            s(&r["source"]),
            s(&r["at"]),
            s(&r["message"])
        ),
        None => outln!("last refusal: none"),
    }
    Ok(ExitCode::SUCCESS)
}
