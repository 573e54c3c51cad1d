//! The device certificate authority (interface stub; the implementation lands with the CA work).

use std::sync::Arc;

use rustls_pki_types::CertificateDer;
use serde::Serialize;

use crate::paths::StateDir;
use crate::{AgentError, Result};

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
    pub cert_path: std::path::PathBuf,
}

impl CaInfo {
    /// Reads the public certificate of the CA in `state` (no key needed).
    pub fn read(state: &StateDir) -> Result<CaInfo> {
        let _ = state;
        Err(AgentError::Ca("not implemented".into()))
    }

    /// The domains (from `domains`) that this CA's constraints do not permit.
    pub fn uncovered(&self, domains: &[String]) -> Vec<String> {
        let _ = domains;
        Vec::new()
    }
}

/// The device CA with its key.
pub struct CertificateAuthority {
    info: CaInfo,
}

impl CertificateAuthority {
    /// Loads the CA from `state`, or creates one permitting `domains` if none exists.
    pub fn load_or_create(state: &StateDir, domains: &[String]) -> Result<Self> {
        let _ = (state, domains);
        Err(AgentError::Ca("not implemented".into()))
    }

    /// Replaces the CA in `state` with a new one permitting `domains`.
    pub fn rotate(state: &StateDir, domains: &[String]) -> Result<Self> {
        let _ = (state, domains);
        Err(AgentError::Ca("not implemented".into()))
    }

    /// Public facts.
    pub fn info(&self) -> &CaInfo {
        &self.info
    }

    /// Whether the constraints permit `host`.
    pub fn covers(&self, host: &str) -> bool {
        let _ = host;
        false
    }

    /// A TLS server config presenting a leaf for `host` (cached).
    pub fn server_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>> {
        let _ = host;
        Err(AgentError::Ca("not implemented".into()))
    }

    /// Whether `cert` is this CA or was issued by it.
    pub fn is_ours(&self, cert: &CertificateDer<'_>) -> bool {
        let _ = cert;
        false
    }
}
