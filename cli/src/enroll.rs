//! `airlock enroll`, `airlock enroll --show` and `airlock unenroll`: the fleet enrollment file in the
//! daemon's configuration directory (`/etc/airlock/enrollment.toml` for the system daemon). Writing
//! it needs the right to write that directory (root, or the daemon's own user for a per-user
//! daemon); an MDM may install the same file instead. A running daemon follows the file within a
//! second (and this command waits to say so); one that is not running reads it when it starts.
//! This module only writes and shows the file; the daemon verifies bundles.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use airlock_agent::bundle;
use airlock_agent::fleet::enrollment::{Enrollment, DEFAULT_INTERVAL_SECS};
use airlock_agent::paths::ConfigDir;
use airlock_agent::policy::FailMode;
use anyhow::{bail, Context, Result};

use crate::trust::{self, Agent};

/// `airlock enroll` flags.
#[derive(Debug, clap::Args)]
pub struct EnrollArgs {
    /// Show the enrollment instead of writing one.
    #[arg(long, conflicts_with_all = ["fleet", "url", "pubkey", "ca_file", "interval", "fail_mode"])]
    show: bool,
    /// The fleet id bundles are built for.
    #[arg(long, required_unless_present = "show")]
    fleet: Option<String>,
    /// HTTPS URL of the fleet's bundle (omit to take bundles only from the drop folder and
    /// `airlock policy apply`).
    #[arg(long)]
    url: Option<String>,
    /// A signing key's public key file (KEYFILE.pub); repeat to pin several.
    #[arg(long, required_unless_present = "show")]
    pubkey: Vec<PathBuf>,
    /// A root CA (PEM) trusted for the URL besides the system roots.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Seconds between pulls.
    #[arg(long, default_value_t = DEFAULT_INTERVAL_SECS)]
    interval: u64,
    /// With no valid policy at all: open forwards and records, closed refuses AI hosts.
    #[arg(long, value_parser = ["open", "closed"], default_value = "open")]
    fail_mode: String,
    /// The daemon's configuration directory (default: $AIRLOCK_CONFIG_DIR, /etc/airlock for root,
    /// else ~/.config/airlock).
    #[arg(long)]
    config_dir: Option<PathBuf>,
    /// Machine-readable output (with --show).
    #[arg(long)]
    json: bool,
}

/// `airlock unenroll` flags.
#[derive(Debug, clap::Args)]
pub struct UnenrollArgs {
    /// The daemon's configuration directory.
    #[arg(long)]
    config_dir: Option<PathBuf>,
}

fn permission_hint(path: &Path, e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::PermissionDenied {
        format!(
            "you may not write {}: enrolling changes who may set this device's policy, so it takes root or the \
             daemon's own user (run it with sudo)",
            path.display()
        )
    } else {
        format!("cannot write {}: {e}", path.display())
    }
}

/// `airlock enroll`.
pub fn enroll(args: &EnrollArgs, daemon: &Daemon<'_>) -> Result<ExitCode> {
    let config = ConfigDir::resolve(args.config_dir.as_deref())?;
    let path = config.enrollment_file();
    if args.show {
        return show(&path, args.json);
    }
    let fleet = args.fleet.clone().unwrap_or_default();
    let mut pubkeys = Vec::new();
    for p in &args.pubkey {
        let key = bundle::read_public_key(p)?;
        pubkeys.push(key.to_text());
    }
    let e = Enrollment {
        fleet,
        url: args.url.clone(),
        pubkeys,
        ca_file: match &args.ca_file {
            Some(p) => Some(
                std::fs::canonicalize(p)
                    .with_context(|| format!("cannot find the CA file {}", p.display()))?,
            ),
            None => None,
        },
        interval_secs: args.interval,
        fail_mode: if args.fail_mode == "closed" {
            FailMode::Closed
        } else {
            FailMode::Open
        },
    };
    if let Err(err) = e.save(&path) {
        if let airlock_agent::AgentError::Io { source, .. } = &err {
            bail!("{}", permission_hint(&path, source));
        }
        return Err(err.into());
    }
    println!(
        "enrolled in fleet {:?}: {} pinned key(s) ({}), {}, fail mode {}\nwrote {}",
        e.fleet,
        e.pubkeys.len(),
        e.public_keys()
            .iter()
            .map(|k| k.id().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        match &e.url {
            Some(u) => format!("pulling {u} every {}s", e.interval_secs),
            None => "no URL (drop folder and `airlock policy apply` only)".into(),
        },
        e.fail_mode.as_str(),
        path.display()
    );
    confirm(daemon, Some(&e.fleet));
    Ok(ExitCode::SUCCESS)
}

/// Where to find the running daemon to confirm a change (the global `--state-dir`, `--socket`).
#[derive(Debug, Clone, Copy)]
pub struct Daemon<'a> {
    /// The address it is expected on (`--addr`).
    pub addr: Option<&'a str>,
    /// Its state directory.
    pub state_dir: Option<&'a Path>,
    /// Its control socket.
    pub socket: Option<&'a Path>,
}

/// How long to wait for a running daemon to follow a changed enrollment (it checks every second).
const FOLLOW_WAIT: Duration = Duration::from_secs(5);

/// Says whether the running daemon follows the enrollment now (`fleet`, or none), waiting a few
/// seconds for it. Never an error: the file is written either way.
fn confirm(daemon: &Daemon<'_>, fleet: Option<&str>) {
    let found = crate::client::named_addr(daemon.addr).and_then(|named| {
        let state = trust::state_dir(daemon.state_dir)?;
        trust::find_agent(&state, named.as_ref(), daemon.socket)
    });
    let agent = match found {
        Ok(Agent::Verified(v)) => v,
        Ok(Agent::NotRunning(_)) => {
            println!("airlockd is not running; it follows the enrollment when it starts");
            return;
        }
        Err(e) => {
            println!("cannot ask airlockd whether it follows the enrollment ({e:#}); see `airlock status`");
            return;
        }
    };
    let deadline = Instant::now() + FOLLOW_WAIT;
    let last = loop {
        let last = match agent.get("/airlock/v1/status") {
            Ok(s) => {
                let policy = &s["policy"];
                let following = policy["enrollment"]["fleet"].as_str();
                if following == fleet {
                    let governs = policy["source"].as_str().unwrap_or("?");
                    match fleet {
                        Some(f) => println!(
                            "airlockd follows fleet {f:?} now (policy in force: {governs})"
                        ),
                        None => println!("airlockd left the fleet (policy in force: {governs})"),
                    }
                    return;
                }
                policy["enrollment_error"].as_str().map(str::to_string)
            }
            Err(e) => Some(format!("{e:#}")),
        };
        if Instant::now() >= deadline {
            break last;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    match last {
        Some(why) => println!("airlockd has not followed the enrollment: {why}"),
        None => println!(
            "airlockd has not followed the enrollment within {}s: is it using this configuration directory \
             (airlockd --config-dir, $AIRLOCK_CONFIG_DIR)? See `airlock status`",
            FOLLOW_WAIT.as_secs()
        ),
    }
}

fn show(path: &Path, json: bool) -> Result<ExitCode> {
    match Enrollment::load(path)? {
        None => {
            if json {
                println!("{}", serde_json::json!({"enrolled": false, "file": path}));
            } else {
                println!("not enrolled ({} does not exist)", path.display());
            }
            Ok(ExitCode::from(1))
        }
        Some(e) => {
            let keys: Vec<String> = e.public_keys().iter().map(|k| k.id().to_string()).collect();
            if json {
                println!(
                    "{}",
                    serde_json::json!({"enrolled": true, "file": path, "fleet": e.fleet, "url": e.url,
                        "pinned_keys": keys, "ca_file": e.ca_file, "interval_secs": e.interval_secs,
                        "fail_mode": e.fail_mode.as_str()})
                );
            } else {
                println!("fleet:     {}", e.fleet);
                println!("url:       {}", e.url.as_deref().unwrap_or("(none)"));
                println!("keys:      {}", keys.join(", "));
                println!("interval:  {}s", e.interval_secs);
                println!("fail mode: {}", e.fail_mode.as_str());
                println!("file:      {}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `airlock unenroll`.
pub fn unenroll(args: &UnenrollArgs, daemon: &Daemon<'_>) -> Result<ExitCode> {
    let config = ConfigDir::resolve(args.config_dir.as_deref())?;
    let path = config.enrollment_file();
    match std::fs::remove_file(&path) {
        Ok(()) => {
            println!(
                "left the fleet: removed {}\nairlockd goes back to the policy it was started with (its embedded default, or --policy FILE)",
                path.display()
            );
            confirm(daemon, None);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("not enrolled ({} does not exist)", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => bail!("{}", permission_hint(&path, &e)),
    }
}
