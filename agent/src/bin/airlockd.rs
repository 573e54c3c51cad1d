//! `airlockd`: the Airlock agent daemon. Parses flags, sets up logging, loads the policy, starts the agent
//! and waits for Ctrl-C or SIGTERM. Everything else lives in the `airlock_agent` library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use airlock_agent::agent::{self, AgentConfig};
use airlock_agent::fleet::{Enrollment, Governor, Ledger, Supervisor};
use airlock_agent::paths::{ConfigDir, StateDir, DEFAULT_LISTEN};
use airlock_agent::policy::Policy;
use anyhow::Context;
use clap::Parser;

/// Airlock agent: governs this machine's AI API traffic through a local proxy.
#[derive(Debug, Parser)]
#[command(name = "airlockd", version, about)]
struct Args {
    /// Loopback address to listen on.
    #[arg(long, env = "AIRLOCK_LISTEN", default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Policy file (TOML). Without it the embedded default policy is used.
    #[arg(long, env = "AIRLOCK_POLICY")]
    policy: Option<PathBuf>,
    /// State directory (CA, records). Default: $AIRLOCK_STATE_DIR, /var/lib/airlock for root,
    /// else ~/.local/state/airlock.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Worker threads (default: number of CPUs, at most 4).
    #[arg(long)]
    threads: Option<usize>,
    /// Log format.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    log_format: String,
    /// Finished requests kept in memory for `airlock status` and the requests API.
    #[arg(long, default_value_t = 1000)]
    records_in_memory: usize,
    /// Check the policy and exit.
    #[arg(long)]
    check: bool,
    /// Prepare the state directory (device id, device CA, merged trust bundle) and exit, without
    /// listening: what `airlock setup` runs as the service's user before it trusts the CA.
    #[arg(long, conflicts_with = "check")]
    init: bool,
    /// Configuration directory: the fleet enrollment (enrollment.toml) and the policy drop folder
    /// (policy.d/). Default: $AIRLOCK_CONFIG_DIR, /etc/airlock for root, else ~/.config/airlock.
    #[arg(long)]
    config_dir: Option<PathBuf>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(&args.log_format);

    if args.check {
        let policy = match &args.policy {
            Some(p) => Policy::from_file(p)?,
            None => Policy::embedded()?,
        };
        println!(
            "policy {:?} from {} is valid: {}",
            policy.name,
            policy.source,
            host_counts(&policy)
        );
        return Ok(());
    }
    let state = StateDir::resolve(args.state_dir.as_deref())?;
    if args.init {
        let policy = match &args.policy {
            Some(p) => Policy::from_file(p)?,
            None => Policy::embedded()?,
        };
        return init_state(&state, &policy);
    }
    // A user without a home (a service account) has no per-user config dir: not enrolled. An
    // enrollment that exists but cannot be read is an error, never a silent unenrolled start.
    let config = ConfigDir::resolve(args.config_dir.as_deref()).ok();
    let chosen = args.config_dir.is_some()
        || std::env::var_os(airlock_agent::paths::config::CONFIG_DIR_ENV).is_some();
    let enrollment = match &config {
        Some(c) => match Enrollment::load(&c.enrollment_file()) {
            Ok(e) => e,
            // A per-user default under a HOME this user may not read (a service account started
            // with another user's environment) is not this user's configuration.
            Err(airlock_agent::AgentError::Io { source, path, .. })
                if !chosen
                    && c.root()
                        != std::path::Path::new(
                            airlock_agent::paths::config::SYSTEM_CONFIG_DIR,
                        )
                    && source.kind() == std::io::ErrorKind::PermissionDenied =>
            {
                tracing::warn!(path = %path.display(), "cannot read the per-user enrollment (not this user's home?); running unenrolled");
                None
            }
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    if let (Some(e), Some(p)) = (&enrollment, &args.policy) {
        anyhow::bail!(
            "this device is enrolled in fleet {:?} ({}), so its policy comes only from the fleet's signed bundles; \
             --policy {} is refused. Remove --policy (and AIRLOCK_POLICY), or leave the fleet with `airlock unenroll`",
            e.fleet,
            config
                .as_ref()
                .map(|c| c.enrollment_file().display().to_string())
                .unwrap_or_default(),
            p.display()
        );
    }
    let policy = match &args.policy {
        Some(p) => Policy::from_file(p)?,
        None => Policy::embedded()?,
    };
    // The service manager's listening sockets are taken before any other thread runs, since taking
    // them clears LISTEN_* from the environment.
    let inherited = airlock_agent::sys::activation::take_from_env()?;
    let threads = args
        .threads
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2)
                .min(4)
        })
        .max(1);
    // One thread asked for: a current-thread runtime, so every task runs on the thread that polls the
    // listener and no wake-up ever crosses to another thread.
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("airlockd")
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .thread_name("airlockd")
            .build()
    }
    .context("cannot start the async runtime")?;
    runtime.block_on(run(args, policy, state, config, enrollment, inherited))
}

/// "22 intercepted hosts, 3 local servers": what the policy covers, in words.
fn host_counts(policy: &Policy) -> String {
    let entries = policy.hosts.entries();
    let local = entries.iter().filter(|e| e.local.is_some()).count();
    let hosts = entries.len() - local;
    match local {
        0 => format!("{hosts} intercepted hosts"),
        1 => format!("{hosts} intercepted hosts, 1 local server"),
        n => format!("{hosts} intercepted hosts, {n} local servers"),
    }
}

async fn run(
    args: Args,
    policy: Policy,
    state: StateDir,
    config: Option<ConfigDir>,
    enrollment: Option<Enrollment>,
    inherited: agent::Inherited,
) -> anyhow::Result<()> {
    // Listening for a stop from the start, so none is missed however early it comes.
    let stop = wait_for_signal();
    // An enrolled device starts under its last good bundle (or its fail mode) before any network.
    let ledger = Arc::new(Ledger::default());
    // What governs if the device leaves its fleet while running: what it was started with.
    let unenrolled = policy.clone();
    let (governor, policy, unavailable) = match enrollment {
        Some(e) => {
            let (gov, boot) = Governor::boot(e, state.clone(), ledger.clone())?;
            (Some(Arc::new(gov)), boot.policy, boot.unavailable)
        }
        None => (None, policy, None),
    };
    let hosts = host_counts(&policy);
    let source = policy.source.to_string();
    let state_dir = state.clone();
    let running = agent::start_with_listeners(
        AgentConfig {
            listen: args.listen,
            state,
            policy,
            records_in_memory: args.records_in_memory,
            unavailable,
            ledger: Some(ledger.clone()),
        },
        inherited,
        Vec::new(),
        Vec::new(),
    )
    .await?;
    // Enrolling, re-enrolling and leaving take effect while running.
    let _fleet = config.map(|config| {
        let supervisor = Supervisor::new(
            running.shared.clone(),
            config,
            state_dir,
            ledger,
            unenrolled,
            governor,
        );
        AbortOnDrop(tokio::spawn(supervisor.run()))
    });
    let addr = running.addr;
    let status = running.shared.status();
    let cli = cli_command();
    eprintln!(
        "airlockd {} listening on {addr} (policy: {source}, {hosts})\n\
         Device CA: {} (SHA-256 {})\n\
         Point a shell at it:  eval \"$({cli} env)\"\n\
         Run one command:      {cli} run -- curl https://api.openai.com/v1/models\n\
         Base-URL mode:        OPENAI_BASE_URL=http://{addr}/openai/v1  ANTHROPIC_BASE_URL=http://{addr}/anthropic\n\
         Status:               {cli} status   (control API: unix socket {control})",
        env!("CARGO_PKG_VERSION"),
        status["ca"]["cert_path"].as_str().unwrap_or("?"),
        status["ca"]["fingerprint_sha256"].as_str().unwrap_or("?"),
        control = running
            .control_socket()
            .map_or_else(|| "not available on this OS".into(), |p| p.display().to_string()),
    );
    tracing::info!(%addr, policy = %source, "airlockd started");
    // Type=notify: the listeners are serving and the runtime file is written.
    airlock_agent::sys::activation::notify_ready();
    stop.await;
    tracing::info!("shutting down");
    airlock_agent::sys::activation::notify_stopping();
    running.shutdown(Duration::from_secs(5)).await;
    Ok(())
}

/// `--init`: the state directory, device id, CA and merged bundle the agent would make at start,
/// made now; prints the CA certificate's path and fingerprint.
fn init_state(state: &StateDir, policy: &Policy) -> anyhow::Result<()> {
    airlock_agent::paths::ensure_private_dir(state.root())?;
    let ca =
        airlock_agent::ca::CertificateAuthority::load_or_create(state, &policy.hosts.ca_domains())?;
    airlock_agent::device::id(state)?;
    let info = ca.info();
    if let Err(e) = airlock_agent::ca::write_merged_bundle(state, info) {
        tracing::warn!(error = %e, "cannot write the merged trust bundle yet; the agent retries at start");
    }
    println!(
        "state directory {} ready; device CA {} (SHA-256 {})",
        state.root().display(),
        info.cert_path.display(),
        info.fingerprint_sha256
    );
    Ok(())
}

/// Stops a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How to invoke the `airlock` CLI: by name if it is on PATH, else by the path of the one built
/// beside this binary.
fn cli_command() -> String {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("airlock").is_file()))
        .unwrap_or(false);
    if on_path {
        return "airlock".into();
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("airlock")))
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "airlock".into())
}

/// Resolves at SIGTERM or Ctrl-C, listening from the moment it is called (not from its first poll):
/// a service manager may stop the agent right after READY=1, and a signal with no handler yet would
/// kill it before it could say STOPPING=1 and flush its journal.
#[cfg(unix)]
fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => {
                tokio::select! {
                    _ = term.recv() => {},
                    _ = interrupt.recv() => {},
                }
            }
            (Ok(mut term), Err(_)) => {
                term.recv().await;
            }
            (Err(_), _) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Resolves at Ctrl-C.
#[cfg(not(unix))]
fn wait_for_signal() -> impl std::future::Future<Output = ()> {
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
