//! The route stage: decides exactly what goes upstream. Plugged-in route stages (gateways, key
//! selection, fallbacks) run first; then the built-in metering adjustment: an OpenAI-style stream that
//! did not ask for usage gets `stream_options.include_usage` added (and the extra usage chunk is removed
//! on the way back), unless the host's policy says `stream_usage = "off"` or the host was seen to reject
//! the parameter ([`Capabilities`]: forward retries once without it and remembers the host). It must not
//! send anything (forward does).

use std::collections::HashSet;
use std::sync::Mutex;

use bytes::Bytes;

use super::exchange::Exchange;
use super::guard::RecordGuard;
use super::{Pipeline, Stop};
use crate::policy::{ApiKind, StreamUsage};
use crate::providers::request;

/// What the agent learned about upstream hosts while running: which ones reject `stream_options`.
#[derive(Debug, Default)]
pub struct Capabilities {
    no_stream_options: Mutex<HashSet<String>>,
}

/// Most hosts remembered (a hostile client cannot grow the set without bound).
const MAX_REMEMBERED: usize = 4096;

impl Capabilities {
    /// The key a capability is remembered under: the host, plus Azure's `api-version` (older versions
    /// reject the parameter, newer ones take it, on the same host).
    pub(super) fn key(ex: &Exchange) -> String {
        let version = (ex.target.api == ApiKind::Azure)
            .then(|| {
                ex.target.split_path().1.and_then(|q| {
                    q.split('&')
                        .find_map(|kv| kv.strip_prefix("api-version="))
                        .map(str::to_string)
                })
            })
            .flatten();
        match version {
            Some(v) => format!("{}?api-version={v}", ex.target.host),
            None => ex.target.host.clone(),
        }
    }

    /// Whether `key` is known to reject `stream_options`.
    pub fn rejects_stream_options(&self, key: &str) -> bool {
        self.no_stream_options
            .lock()
            .map(|s| s.contains(key))
            .unwrap_or(false)
    }

    /// Remembers that `key` rejects `stream_options`.
    pub(super) fn remember_no_stream_options(&self, key: String) {
        if let Ok(mut s) = self.no_stream_options.lock() {
            if s.len() < MAX_REMEMBERED {
                tracing::info!(host = %key, "upstream rejects stream_options; its streams are metered by estimate from now on");
                s.insert(key);
            }
        }
    }

    /// The hosts remembered, for the status report.
    pub fn hosts_without_stream_options(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .no_stream_options
            .lock()
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Pipeline {
    /// Route: the plugged-in route stages, then the stream usage request.
    pub(super) async fn route(
        &self,
        ex: &mut Exchange,
        guard: &mut RecordGuard,
    ) -> Result<(), Stop> {
        self.run_slot(&self.stages.route, "route", ex, guard)
            .await?;
        self.ask_for_stream_usage(ex, guard);
        Ok(())
    }

    /// Adds `stream_options.include_usage` to an OpenAI-style stream that did not ask for usage.
    fn ask_for_stream_usage(&self, ex: &mut Exchange, guard: &mut RecordGuard) {
        let id = &ex.identity;
        let wanted = ex.target.stream_usage == StreamUsage::Inject
            && id.stream
            && id.include_usage != Some(true)
            && matches!(ex.target.api, ApiKind::Openai | ApiKind::Azure)
            && matches!(id.operation.as_str(), "chat_completions" | "completions");
        if !wanted || ex.upgrade.is_some() {
            return;
        }
        if self
            .capabilities
            .rejects_stream_options(&Capabilities::key(ex))
        {
            return;
        }
        let Some(new) = ex.readable().and_then(|b| request::inject_stream_usage(b)) else {
            return;
        };
        ex.set_body(Bytes::from(new));
        ex.usage_injected = true;
        guard.note(|r| r.usage_injected = true);
    }
}
