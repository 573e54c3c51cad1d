//! The device certificate authority: a per-device ECDSA P-256 root, name-constrained to the interception
//! domains and excluding every IP range, whose key stays in a 0700 directory readable only by the daemon's
//! user; and the short-lived per-host leaves (each with its own key) that the proxy presents when it
//! terminates TLS for an AI host, served as cached rustls server configs. It owns creating, loading,
//! rotating and describing the CA, the merged trust bundle and the Java trust store; it must not install the CA into trust
//! stores, decide which hosts are intercepted (policy does), or ever sign for a host its constraints do
//! not permit.

mod bundle;
mod cache;
mod issue;
mod names;
mod store;
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests;
mod truststore;

use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rcgen::{Issuer, KeyPair};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::paths::StateDir;
use crate::{AgentError, Result};

pub use bundle::write_merged_bundle;
use cache::LeafCache;
pub use truststore::{trust_store_holds, CA_ALIAS, TRUST_STORE_PASSWORD, TRUST_STORE_TYPE};

/// ALPN protocols the leaves offer, in preference order.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Public facts about a CA, readable without its key.
#[derive(Debug, Clone, Serialize)]
pub struct CaInfo {
    /// PEM of the CA certificate.
    #[serde(skip)]
    pub cert_pem: String,
    /// SHA-256 fingerprint of the certificate DER, upper-case hex pairs joined by ':'.
    pub fingerprint_sha256: String,
    /// Subject common name.
    pub subject: String,
    /// Per-device serial (hex) that names this CA.
    pub serial: String,
    /// DNS domains the name constraints permit.
    pub permitted_domains: Vec<String>,
    /// Not-after, RFC 3339.
    pub not_after: String,
    /// Where the certificate is on disk.
    pub cert_path: PathBuf,
}

impl CaInfo {
    /// Reads the public certificate of the CA in `state` (no key needed).
    pub fn read(state: &StateDir) -> Result<CaInfo> {
        Ok(store::read_cert(state)?.info)
    }

    /// The domains (from `domains`) that this CA's constraints do not permit.
    pub fn uncovered(&self, domains: &[String]) -> Vec<String> {
        domains
            .iter()
            .filter(|d| !names::domain_covered(&self.permitted_domains, d))
            .cloned()
            .collect()
    }
}

/// The device CA with its key.
pub struct CertificateAuthority {
    info: CaInfo,
    der: CertificateDer<'static>,
    subject_raw: Vec<u8>,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
    provider: Arc<CryptoProvider>,
    leaves: Mutex<LeafCache<rustls::ServerConfig>>,
}

// The proxy shares one CA behind an Arc across tokio tasks.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<CertificateAuthority>();
};

impl fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("info", &self.info)
            .field("key", &"[elided]")
            .finish_non_exhaustive()
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl CertificateAuthority {
    /// Loads the CA from `state`, or creates one permitting `domains` if none exists.
    pub fn load_or_create(state: &StateDir, domains: &[String]) -> Result<Self> {
        if store::exists(&state.ca_cert())? {
            let ca = Self::load(state)?;
            let missing = ca.info.uncovered(domains);
            if !missing.is_empty() {
                tracing::warn!(
                    uncovered = ?missing,
                    "the device CA does not cover every interception domain; those hosts cannot be \
                     intercepted until `airlock ca rotate`"
                );
            }
            return Ok(ca);
        }
        if store::exists(&state.ca_key())? {
            // Keys are written before certificates, so this is an interrupted creation: nothing can
            // trust a certificate that was never written.
            tracing::warn!(
                key = %state.ca_key().display(),
                "found a CA key without its certificate; creating a new CA"
            );
        }
        Self::create(state, domains)
    }

    /// Replaces the CA in `state` with a new one permitting `domains`.
    pub fn rotate(state: &StateDir, domains: &[String]) -> Result<Self> {
        let domains = names::normalize_domains(domains)?;
        let provider = provider();
        let new = issue::new_ca(&provider, &domains)?;
        if let Some(retired) = store::retire_current(state)? {
            tracing::info!(retired = %retired.display(), "retired the previous device CA certificate");
        }
        Self::write_and_load(state, &new, "rotated the device CA")
    }

    fn create(state: &StateDir, domains: &[String]) -> Result<Self> {
        let domains = names::normalize_domains(domains)?;
        let new = issue::new_ca(&provider(), &domains)?;
        Self::write_and_load(state, &new, "created a new device CA")
    }

    /// Writes a new CA and loads it back, so a new CA passes the same checks as a loaded one.
    fn write_and_load(state: &StateDir, new: &issue::NewCa, what: &'static str) -> Result<Self> {
        store::write_new(state, new)?;
        let ca = Self::load(state)?;
        tracing::info!(
            serial = %ca.info.serial,
            fingerprint = %ca.info.fingerprint_sha256,
            domains = ?ca.info.permitted_domains,
            "{what}"
        );
        Ok(ca)
    }

    /// Loads certificate and key, checking the key's permissions and that it matches the certificate.
    fn load(state: &StateDir) -> Result<Self> {
        let parsed = store::read_cert(state)?;
        let key = store::read_key(state)?;
        if key.public_key_raw() != parsed.public_key.as_slice() {
            return Err(AgentError::Ca(format!(
                "the CA key at {} does not belong to the certificate at {}: restore the matching pair \
                 or run `airlock ca rotate`",
                state.ca_key().display(),
                state.ca_cert().display()
            )));
        }
        let issuer = Issuer::from_ca_cert_der(&parsed.der, key).map_err(|e| {
            AgentError::Ca(format!(
                "cannot use the CA certificate at {} for signing ({e}): run `airlock ca rotate`",
                state.ca_cert().display()
            ))
        })?;
        if parsed.not_after <= OffsetDateTime::now_utc() + time::Duration::days(30) {
            tracing::warn!(
                not_after = %parsed.info.not_after,
                "the device CA expires within 30 days; run `airlock ca rotate`"
            );
        }
        Ok(CertificateAuthority {
            info: parsed.info,
            der: parsed.der,
            subject_raw: parsed.subject_raw,
            not_after: parsed.not_after,
            issuer,
            provider: provider(),
            leaves: Mutex::new(LeafCache::new(cache::DEFAULT_CAPACITY, cache::DEFAULT_TTL)),
        })
    }

    /// Replaces the leaf cache with one of `capacity` entries kept for `ttl` (tests).
    #[cfg(test)]
    pub(crate) fn with_cache_limits(mut self, capacity: usize, ttl: std::time::Duration) -> Self {
        self.leaves = Mutex::new(LeafCache::new(capacity, ttl));
        self
    }

    /// Public facts.
    pub fn info(&self) -> &CaInfo {
        &self.info
    }

    /// Whether the constraints permit `host`.
    pub fn covers(&self, host: &str) -> bool {
        names::host_covered(&self.info.permitted_domains, host)
    }

    /// A TLS server config presenting a leaf for `host` (cached).
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>> {
        let Some(name) = names::normalize_host(host).filter(|n| self.covers(n)) else {
            return Err(AgentError::Ca(format!(
                "refusing to issue a certificate for {host:?}: the device CA only permits {:?}. If this \
                 host should be intercepted, add it to the policy and run `airlock ca rotate`",
                self.info.permitted_domains
            )));
        };
        let mut leaves = self.leaves.lock().unwrap_or_else(|p| p.into_inner());
        leaves.get_or_insert_with(&name, || self.build_server_config(&name))
    }

    fn build_server_config(&self, host: &str) -> Result<rustls::ServerConfig> {
        let leaf = issue::new_leaf(&self.issuer, self.not_after, host)?;
        let tls_err = |e: rustls::Error| {
            AgentError::Ca(format!(
                "cannot build a TLS server configuration for {host}: {e}; please report this"
            ))
        };
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_err)?
            .with_no_client_auth()
            .with_single_cert(vec![leaf.cert], leaf.key)
            .map_err(tls_err)?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        tracing::debug!(host, "issued a leaf certificate");
        Ok(config)
    }

    /// Issues a leaf for any DNS name, skipping the name-constraint check (tests only: it shows that
    /// clients refuse what the constraints do not permit).
    #[cfg(test)]
    pub(crate) fn issue_leaf_unchecked(&self, host: &str) -> Result<issue::Leaf> {
        issue::new_leaf(&self.issuer, self.not_after, host)
    }

    /// Whether `cert` is this CA or was issued by it.
    pub fn is_ours(&self, cert: &CertificateDer<'_>) -> bool {
        if cert.as_ref() == self.der.as_ref() {
            return true;
        }
        match X509Certificate::from_der(cert.as_ref()) {
            Ok((_, x509)) => {
                x509.issuer().as_raw() == self.subject_raw.as_slice()
                    || x509.subject().as_raw() == self.subject_raw.as_slice()
            }
            Err(_) => false,
        }
    }
}
