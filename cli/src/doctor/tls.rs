//! The self-test's certificate verifier: checks the presented chain against a root store holding only
//! the device CA, records the outcome for the check to judge, and lets the handshake finish either
//! way (a tunnelled site's own certificate is the expected answer there). Only the self-test uses
//! it; it must never be used for a connection that carries data.

use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Checks the chain with the device-CA-only verifier, records the outcome, and lets the handshake
/// finish either way (a site's own certificate is the expected answer for a tunnel).
#[derive(Debug)]
pub struct Recording {
    /// The device-CA-only verifier.
    pub inner: Arc<WebPkiServerVerifier>,
    /// `Ok(issuer)` when the chain verified, `Err(why)` when not; `None` before a certificate came.
    pub seen: Arc<Mutex<Option<Result<String, String>>>>,
}

impl ServerCertVerifier for Recording {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let issuer = x509_parser::parse_x509_certificate(end_entity)
            .map(|(_, c)| c.issuer().to_string())
            .unwrap_or_default();
        let r = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map(|_| format!("issued by {issuer}"))
            .map_err(|e| format!("{e}; issued by {issuer}"));
        if let Ok(mut s) = self.seen.lock() {
            *s = Some(r);
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
