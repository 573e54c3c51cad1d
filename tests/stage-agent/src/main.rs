//! `airlock-stage-agent`: the Airlock agent with one extra authorize stage that refuses requests for
//! the models named in `--deny-models` (or `AIRLOCK_TEST_DENY_MODELS`, comma-separated), the way a
//! model allowlist will once governance lands. End-to-end tests start it instead of `airlockd` to check
//! that policy applies per message — over HTTP and on every `response.create` of a WebSocket — without
//! a test-only switch in the shipped daemon. With `--redact-word WORD` it also has a response stage
//! that replaces WORD in the response text (what a redacting guardrail does), to check that response
//! stages see and may rewrite every response, WebSocket events included. Flags it shares with
//! `airlockd` mean the same.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use airlock_agent::agent::{self, AgentConfig};
use airlock_agent::paths::{StateDir, DEFAULT_LISTEN};
use airlock_agent::pipeline::{
    Exchange, Flow, RequestSlot, RequestStage, ResponseHead, ResponseStage, StageFuture, StreamCut,
    StreamStage,
};
use airlock_agent::policy::Policy;
use airlock_agent::providers::dialect::AirlockError;
use airlock_agent::providers::response::TextDelta;
use bytes::{Bytes, BytesMut};
use clap::Parser;

/// Airlock agent with a model-denying test stage.
#[derive(Debug, Parser)]
#[command(name = "airlock-stage-agent", about)]
struct Args {
    /// Loopback address to listen on.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// Policy file (TOML). Without it the embedded default policy is used.
    #[arg(long)]
    policy: Option<PathBuf>,
    /// State directory (CA, records).
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Models to refuse, comma-separated.
    #[arg(
        long,
        env = "AIRLOCK_TEST_DENY_MODELS",
        value_delimiter = ',',
        default_value = ""
    )]
    deny_models: Vec<String>,
    /// A word to replace with `[redacted]` in response text (a response stage).
    #[arg(long, env = "AIRLOCK_TEST_REDACT_WORD")]
    redact_word: Option<String>,
}

/// Replaces a word in the response text of event streams.
#[derive(Debug)]
struct RedactWord(String);

/// One response's redaction.
struct RedactStream(String);

impl ResponseStage for RedactWord {
    fn name(&self) -> &'static str {
        "redact_word"
    }

    fn open(&self, head: &ResponseHead<'_>) -> Option<Box<dyn StreamStage>> {
        head.event_stream
            .then(|| Box::new(RedactStream(self.0.clone())) as Box<dyn StreamStage>)
    }
}

impl StreamStage for RedactStream {
    fn holdback_limit(&self) -> usize {
        0
    }

    fn held(&self) -> usize {
        0
    }

    /// A chunk whose text holds the word gets the word replaced wherever it occurs in the chunk (a
    /// test stage: the word is one the events carry nowhere else, and no delta splits it).
    fn on_data(
        &mut self,
        chunk: Bytes,
        deltas: &[TextDelta],
        out: &mut BytesMut,
    ) -> Result<(), StreamCut> {
        let word = self.0.as_str();
        match std::str::from_utf8(&chunk) {
            Ok(text) if deltas.iter().any(|d| d.text.contains(word)) => {
                out.extend_from_slice(text.replace(word, "[redacted]").as_bytes());
            }
            _ => out.extend_from_slice(&chunk),
        }
        Ok(())
    }

    fn on_end(&mut self, _out: &mut BytesMut) -> Result<(), StreamCut> {
        Ok(())
    }
}

/// Refuses requests for the listed models.
#[derive(Debug)]
struct DenyModels(Vec<String>);

impl RequestStage for DenyModels {
    fn name(&self) -> &'static str {
        "deny_models"
    }

    fn apply<'a>(&'a self, ex: &'a mut Exchange) -> StageFuture<'a> {
        Box::pin(async move {
            match ex.identity.model.as_deref() {
                Some(m) if self.0.iter().any(|d| d == m) => Err(AirlockError::new(
                    http::StatusCode::FORBIDDEN,
                    "model_not_allowed",
                    format!(
                        "the model {m} is not allowed by this machine's policy; use another model"
                    ),
                )),
                _ => Ok(Flow::Continue),
            }
        })
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("AIRLOCK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let policy = match &args.policy {
        Some(p) => Policy::from_file(p)?,
        None => Policy::embedded()?,
    };
    let state = StateDir::resolve(args.state_dir.as_deref())?;
    let deny: Vec<String> = args
        .deny_models
        .into_iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        tracing::info!(models = ?deny, "test stage denies these models");
        let stage: Box<dyn RequestStage> = Box::new(DenyModels(deny));
        let responses: Vec<Box<dyn ResponseStage>> = args
            .redact_word
            .filter(|w| !w.is_empty())
            .map(|w| Box::new(RedactWord(w)) as Box<dyn ResponseStage>)
            .into_iter()
            .collect();
        let running = agent::start_with_response_stages(
            AgentConfig {
                listen: args.listen,
                state,
                policy,
                records_in_memory: 1000,
                unavailable: None,
                ledger: None,
            },
            vec![(RequestSlot::Authorize, stage)],
            responses,
        )
        .await?;
        eprintln!("airlock-stage-agent listening on {}", running.addr);
        wait_for_signal().await;
        running.shutdown(Duration::from_secs(5)).await;
        anyhow::Ok(())
    })
}

/// Ctrl-C or SIGTERM (what test harnesses send).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {},
                _ = term.recv() => {},
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
