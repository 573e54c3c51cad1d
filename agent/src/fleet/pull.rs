//! The HTTPS pull: fetches the enrollment's URL every interval (jittered, so a fleet does not
//! arrive at once), with `If-None-Match` so an unchanged bundle costs a 304 and no verification,
//! exponential backoff while the server fails, TLS verified against the system roots plus the
//! enrollment's CA file. Whatever it downloads goes to the [`Governor`]; a server that is down
//! leaves the last good policy governing. It owns the schedule and the HTTP exchange; it decides
//! nothing about bundles.

use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::Governor;
use crate::bundle::MAX_BUNDLE_BYTES;
use crate::{AgentError, Result};

/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Backoff stops doubling at this many intervals.
const MAX_BACKOFF_FACTOR: u32 = 16;

type HttpsClient = Client<
    hyper_rustls::HttpsConnector<hyper_util::client::legacy::connect::HttpConnector>,
    Empty<Bytes>,
>;

/// What one fetch brought.
#[derive(Debug)]
enum Fetched {
    /// 304: the bundle is unchanged.
    NotModified,
    /// A body (at most one byte past the size bound, so the verifier can say `too_large`).
    Body {
        bytes: Vec<u8>,
        etag: Option<String>,
    },
}

/// A client trusting the system roots plus `ca_file`.
pub fn client(ca_file: Option<&Path>) -> Result<HttpsClient> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for cert in native.certs {
        let _ = roots.add(cert);
    }
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| AgentError::io("cannot read the enrollment's CA file", path, e))?;
        let mut added = 0;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()).flatten() {
            if roots.add(cert).is_ok() {
                added += 1;
            }
        }
        if added == 0 {
            return Err(AgentError::Policy {
                origin: format!("enrollment CA file {}", path.display()),
                message: "holds no PEM certificate; give the CA that signed the policy server's certificate".into(),
            });
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| AgentError::Ca(format!("TLS setup for the policy server: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new()).build(https))
}

async fn fetch(
    client: &HttpsClient,
    url: &str,
    etag: Option<&str>,
) -> std::result::Result<Fetched, String> {
    let mut req = Request::get(url).header(
        header::USER_AGENT,
        concat!("airlockd/", env!("CARGO_PKG_VERSION")),
    );
    if let Some(e) = etag {
        req = req.header(header::IF_NONE_MATCH, e);
    }
    let req = req
        .body(Empty::new())
        .map_err(|e| format!("bad URL {url}: {e}"))?;
    let resp = tokio::time::timeout(FETCH_TIMEOUT, client.request(req))
        .await
        .map_err(|_| format!("no answer from {url} in {}s", FETCH_TIMEOUT.as_secs()))?
        .map_err(|e| format!("cannot fetch {url}: {}", crate::upstream::error_chain(&e)))?;
    match resp.status() {
        StatusCode::NOT_MODIFIED => return Ok(Fetched::NotModified),
        StatusCode::OK => {}
        s => return Err(format!("{url} answered {s}")),
    }
    let etag = resp
        .headers()
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    while let Some(frame) = tokio::time::timeout(FETCH_TIMEOUT, body.frame())
        .await
        .map_err(|_| format!("{url} stalled while sending the bundle"))?
    {
        let frame = frame.map_err(|e| format!("the download from {url} broke: {e}"))?;
        if let Some(data) = frame.data_ref() {
            bytes.extend_from_slice(data);
            if bytes.len() > MAX_BUNDLE_BYTES {
                // Enough to be refused as too large; the rest is not read.
                break;
            }
        }
    }
    Ok(Fetched::Body { bytes, etag })
}

/// `base` ± 10 %.
fn jittered(base: Duration) -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(0);
    let spread = base.as_millis() as u64 / 5;
    let offset = if spread == 0 { 0 } else { h.finish() % spread };
    base.saturating_sub(Duration::from_millis(spread / 2)) + Duration::from_millis(offset)
}

/// Pulls until the task is dropped.
pub async fn run(gov: Arc<Governor>, url: String, client: HttpsClient, interval: Duration) {
    let ledger = gov.ledger().clone();
    let mut etag: Option<String> = None;
    let mut failures: u32 = 0;
    loop {
        match fetch(&client, &url, etag.as_deref()).await {
            Ok(Fetched::NotModified) => {
                ledger.not_modified.fetch_add(1, Ordering::Relaxed);
                failures = 0;
            }
            Ok(Fetched::Body { bytes, etag: tag }) => {
                ledger.fetches.fetch_add(1, Ordering::Relaxed);
                failures = 0;
                // A refused bundle keeps its ETag too: the same bytes would be refused again, and
                // a new publication changes it.
                let _ = gov.offer(&bytes, &url);
                etag = tag;
            }
            Err(e) => {
                ledger.fetch_failures.fetch_add(1, Ordering::Relaxed);
                failures = failures.saturating_add(1);
                if failures == 1 || failures % 10 == 0 {
                    tracing::warn!(%url, error = %e, failures, "cannot fetch the fleet policy; the policy in force stays");
                }
            }
        }
        gov.check_expiry();
        let factor = 2u32.saturating_pow(failures.min(5)).min(MAX_BACKOFF_FACTOR);
        let wait = interval.saturating_mul(if failures == 0 { 1 } else { factor });
        tokio::time::sleep(jittered(wait.min(Duration::from_secs(3600)))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_tenth() {
        for _ in 0..100 {
            let d = jittered(Duration::from_secs(10));
            assert!(
                d >= Duration::from_secs(9) && d <= Duration::from_secs(11),
                "{d:?}"
            );
        }
        assert_eq!(jittered(Duration::ZERO), Duration::ZERO);
    }
}
