//! The mock's TLS identity: a fresh P-256 root CA and a server leaf for the provider hosts
//! (including the OpenAI-compatible services and a `*.openai.azure.com` wildcard),
//! `localhost` and 127.0.0.1, generated at every start. It writes the CA certificate (never a key) to
//! `<cert-dir>/mock-ca.pem` for tests to trust, and builds the rustls server config (ALPN h2 and
//! http/1.1). It must not be mistaken for Airlock's own device CA, and is never installed anywhere.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::ServerConfig;
use time::{Duration, OffsetDateTime};

/// The hosts the server leaf is valid for (`*.openai.azure.com` covers any one-label Azure
/// resource name; `mockres.openai.azure.com` is listed too for clients that mishandle wildcards).
pub const HOSTS: &[&str] = &[
    "api.openai.com",
    "api.anthropic.com",
    "generativelanguage.googleapis.com",
    "api.groq.com",
    "api.x.ai",
    "openrouter.ai",
    "api.mistral.ai",
    "api.deepseek.com",
    "api.together.xyz",
    "*.openai.azure.com",
    "mockres.openai.azure.com",
    "chatgpt.com",
    "cloudcode-pa.googleapis.com",
    "api.githubcopilot.com",
    "api.individual.githubcopilot.com",
    "api.business.githubcopilot.com",
    "api.enterprise.githubcopilot.com",
    "proxy.individual.githubcopilot.com",
    "proxy.business.githubcopilot.com",
    "proxy.enterprise.githubcopilot.com",
    "copilot-proxy.githubusercontent.com",
    "localhost",
];

/// File name of the CA certificate inside the cert dir.
pub const CA_FILE_NAME: &str = "mock-ca.pem";

/// Why the TLS identity could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    /// Key or certificate generation failed.
    #[error("could not generate the mock CA or server certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// rustls refused the generated certificate.
    #[error("rustls rejected the mock server certificate: {0}")]
    Rustls(#[from] rustls::Error),
    /// The CA file could not be written.
    #[error(
        "could not write the mock CA to {path}: {source}; check that the --cert-dir is writable"
    )]
    Write {
        /// The file that failed.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// The generated identity.
pub struct Identity {
    /// Path of the written CA PEM.
    pub ca_file: PathBuf,
    /// CA certificate PEM.
    pub ca_pem: String,
    /// Server config with the leaf.
    pub server_config: Arc<ServerConfig>,
}

/// Generates the CA and leaf, writes `<dir>/mock-ca.pem` atomically, and builds the server config.
pub fn generate(dir: &Path) -> Result<Identity, CertError> {
    let now = OffsetDateTime::now_utc();

    let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "Airlock Mock Provider CA (tests only)");
    dn.push(DnType::OrganizationName, "Airlock tests");
    ca_params.distinguished_name = dn;
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = now - Duration::days(1);
    ca_params.not_after = now + Duration::days(30);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let ca_pem = ca_cert.pem();
    let issuer = Issuer::new(ca_params, ca_key);

    let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut leaf_params =
        CertificateParams::new(HOSTS.iter().map(|h| (*h).to_owned()).collect::<Vec<_>>())?;
    leaf_params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "airlock-mock");
    leaf_params.distinguished_name = dn;
    leaf_params.is_ca = IsCa::ExplicitNoCa;
    leaf_params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    leaf_params.not_before = now - Duration::days(1);
    leaf_params.not_after = now + Duration::days(30);
    let leaf = leaf_params.signed_by(&leaf_key, &issuer)?;

    let ca_file = dir.join(CA_FILE_NAME);
    write_atomic(&ca_file, ca_pem.as_bytes()).map_err(|source| CertError::Write {
        path: ca_file.clone(),
        source,
    })?;

    let chain = vec![CertificateDer::from(leaf.der().to_vec())];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Identity {
        ca_file,
        ca_pem,
        server_config: Arc::new(config),
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, creating
/// the directory if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".to_owned());
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}
