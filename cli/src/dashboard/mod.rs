//! `airlock dashboard`: a local web page of this user's view of the agent — live requests (server-sent
//! events), usage charts drawn as SVG on the server, budgets and rate limits with their headroom,
//! guardrail events, the policy, and the CA and trust stores. It is served by this `airlock` process
//! on a random 127.0.0.1 port behind a one-time token ([`guard`]) and reads the control API with this
//! user's rights ([`data`]), so access control stays the agent's. It opens the browser (or, with
//! `--print-url`, prints the URL for scripts) and serves until Ctrl-C. It must not change the agent,
//! listen beyond loopback, fetch anything for the page from elsewhere, or log the token.

mod data;
mod guard;
mod live;
mod open;
mod server;
mod svg;
mod usage;

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};

use crate::Session;

/// `airlock dashboard` flags.
#[derive(Debug, clap::Args)]
pub struct DashboardArgs {
    /// Print the URL (with its token) and keep serving, without opening a browser.
    #[arg(long)]
    pub print_url: bool,
    /// The loopback port to serve on (0: a free one).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}

/// Runs `airlock dashboard`.
pub fn run(ctx: &Session, args: &DashboardArgs) -> Result<ExitCode> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the dashboard's runtime")?;
    let result = rt.block_on(serve(ctx, args));
    // A control API call may still be running on the blocking pool; it is not waited for.
    rt.shutdown_timeout(Duration::from_millis(500));
    result
}

async fn serve(ctx: &Session, args: &DashboardArgs) -> Result<ExitCode> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| {
            anyhow!(
                "cannot listen on 127.0.0.1:{}: {e}; pick another --port or leave it out for a free one",
                args.port
            )
        })?;
    let port = listener.local_addr()?.port();
    let gate = guard::Gate::new(port)
        .map_err(|e| anyhow!("cannot make a random token for the dashboard: {e}"))?;
    let url = gate.url();
    let link = Arc::new(data::Link::new(ctx));
    let hub = Arc::new(live::Hub::new());
    let app = Arc::new(server::App::new(gate, link.clone(), hub.clone()));
    let poller = tokio::spawn(live::poll(hub, link));
    if args.print_url {
        outln!("{url}");
        let _ = std::io::stdout().flush();
    } else {
        let shown = url.clone();
        let fallback = move |e: String| {
            eprintln!("airlock: could not open a browser ({e}); open this URL:");
            outln!("{shown}");
            let _ = std::io::stdout().flush();
        };
        match open::browser(&url, fallback.clone()) {
            Ok(()) => eprintln!(
                "airlock: opening the dashboard in your browser (http://127.0.0.1:{port}/); Ctrl-C stops it"
            ),
            Err(e) => fallback(e),
        }
    }
    tokio::select! {
        () = server::serve(listener, app) => {}
        r = tokio::signal::ctrl_c() => {
            r.context("cannot wait for Ctrl-C")?;
            eprintln!("airlock: dashboard stopped");
        }
    }
    poller.abort();
    Ok(ExitCode::SUCCESS)
}
