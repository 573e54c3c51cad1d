//! Upstream certificate verification: the platform's verifier (with the policy's extra roots), per-host
//! extra roots for overridden hosts, and a hard refusal of any chain that contains a certificate of
//! Airlock's own CA — the agent must never trust itself, or a loop through it would look legitimate.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, Error as TlsError, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::{AgentError, Result};

/// Recognises certificates of Airlock's own (current) CA.
#[derive(Clone)]
pub struct OwnCaCheck(Arc<dyn Fn(&CertificateDer<'_>) -> bool + Send + Sync>);

impl OwnCaCheck {
    /// Wraps a predicate.
    pub fn new(f: impl Fn(&CertificateDer<'_>) -> bool + Send + Sync + 'static) -> Self {
        OwnCaCheck(Arc::new(f))
    }

    /// A check that recognises nothing (for clients with no CA, e.g. tests).
    pub fn none() -> Self {
        Self::new(|_| false)
    }

    fn is_ours(&self, c: &CertificateDer<'_>) -> bool {
        (self.0)(c)
    }
}

impl std::fmt::Debug for OwnCaCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnCaCheck")
    }
}

#[derive(Debug)]
pub(super) struct UpstreamVerifier {
    platform: Arc<dyn ServerCertVerifier>,
    per_host: HashMap<String, Arc<WebPkiServerVerifier>>,
    own_ca: OwnCaCheck,
}

impl UpstreamVerifier {
    pub(super) fn new(
        extra_roots: Vec<CertificateDer<'static>>,
        per_host_roots: HashMap<String, Vec<CertificateDer<'static>>>,
        own_ca: OwnCaCheck,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self> {
        let platform =
            rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
                .map_err(|e| {
                    AgentError::UpstreamTls(format!(
                        "cannot load the platform's root certificates: {e}"
                    ))
                })?;
        let mut per_host = HashMap::new();
        for (host, roots) in per_host_roots {
            let mut store = RootCertStore::empty();
            for r in roots {
                store.add(r).map_err(|e| {
                    AgentError::UpstreamTls(format!(
                        "the override CA file for {host} holds an unusable root: {e}"
                    ))
                })?;
            }
            let v = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                .build()
                .map_err(|e| AgentError::UpstreamTls(format!("override CA for {host}: {e}")))?;
            per_host.insert(host, v);
        }
        Ok(UpstreamVerifier {
            platform: Arc::new(platform),
            per_host,
            own_ca,
        })
    }
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, TlsError> {
        if self.own_ca.is_ours(end_entity) || intermediates.iter().any(|c| self.own_ca.is_ours(c)) {
            return Err(TlsError::General(
                "the upstream presented a certificate from this device's own Airlock CA; refusing, \
                 because the request would loop through Airlock"
                    .into(),
            ));
        }
        if let ServerName::DnsName(name) = server_name {
            if let Some(v) = self.per_host.get(&name.as_ref().to_ascii_lowercase()) {
                let first = v.verify_server_cert(
                    end_entity,
                    intermediates,
                    server_name,
                    ocsp_response,
                    now,
                );
                if first.is_ok() {
                    return first;
                }
                return self
                    .platform
                    .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
                    .or(first);
            }
        }
        self.platform
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, TlsError> {
        self.platform.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, TlsError> {
        self.platform.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.platform.supported_verify_schemes()
    }
}
