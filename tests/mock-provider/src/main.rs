//! The `airlock-mock` binary: parses the command line, starts the mock provider on a tokio runtime
//! with the requested number of worker threads, writes the ready file and the "listening" line, and
//! runs until interrupted. All behaviour lives in the library.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use airlock_mock::encoding::Compress;
use airlock_mock::fault::{Fault, VALID_FAULTS};
use airlock_mock::{cert, start, Config};

/// Wire-faithful mock of the OpenAI, Anthropic and Gemini APIs for Airlock's tests and benchmarks.
#[derive(Debug, Parser)]
#[command(name = "airlock-mock", version, about)]
struct Cli {
    /// TLS listen address (loopback only; port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Optional second listener serving the same API over plain HTTP (loopback only).
    #[arg(long)]
    plain_listen: Option<SocketAddr>,
    /// Directory where the generated mock root CA is written as mock-ca.pem.
    #[arg(long)]
    cert_dir: PathBuf,
    /// Once listening, write {"port","plain_port","ca_file"} JSON here (atomically).
    #[arg(long)]
    ready_file: Option<PathBuf>,
    /// Default pacing between stream chunks, in milliseconds (x-mock-chunk-delay-ms overrides it).
    #[arg(long, default_value_t = 0)]
    chunk_delay_ms: u64,
    /// Fault applied to every request without an x-mock-fault header.
    #[arg(long, help = format!("Fault applied to every request without an x-mock-fault header: {VALID_FAULTS}"))]
    fault: Option<Fault>,
    /// Tokio worker threads (1 runs everything on one thread).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    workers: u16,
    /// How many requests GET /__mock/requests keeps (0 disables recording).
    #[arg(long, default_value_t = 200)]
    record_limit: usize,
    /// Response compression: auto (the best coding the request's Accept-Encoding allows among br,
    /// zstd, gzip, deflate) or off. x-mock-compress overrides it per request.
    #[arg(long, default_value = "auto", value_parser = parse_compress)]
    compress: Compress,
}

fn parse_compress(v: &str) -> Result<Compress, String> {
    match v.parse::<Compress>() {
        Ok(c @ (Compress::Off | Compress::Auto)) => Ok(c),
        _ => Err(format!("invalid --compress '{v}': expected off or auto")),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = if cli.workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(cli.workers))
            .enable_all()
            .build()
    }
    .context("could not start the tokio runtime")?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = Config {
        listen: cli.listen,
        plain_listen: cli.plain_listen,
        cert_dir: cli.cert_dir,
        chunk_delay: Duration::from_millis(cli.chunk_delay_ms),
        fault: cli.fault.unwrap_or_default(),
        record_limit: cli.record_limit,
        compress: cli.compress,
    };
    let running = start(config)
        .await
        .context("airlock-mock could not start")?;
    if let Some(path) = &cli.ready_file {
        cert::write_atomic(path, running.ready_json().as_bytes())
            .with_context(|| format!("could not write the ready file {}", path.display()))?;
    }
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "airlock-mock listening on {}", running.addr)?;
        out.flush()?;
    }
    tokio::select! {
        _ = running.wait() => {}
        r = tokio::signal::ctrl_c() => r.context("could not wait for ctrl-c")?,
    }
    Ok(())
}
