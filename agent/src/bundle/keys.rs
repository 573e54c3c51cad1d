//! Ed25519 keys for signing bundles: the public key text admins pin and rotate to (SPKI PEM), the
//! private key file (PKCS#8 PEM, mode 0600, never overwritten), and the short key id signatures are
//! labelled with. Both formats are the ones `openssl pkey` reads. It owns key generation and key file
//! handling; it must not print or log key material, and its types never show it in `Debug`.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{
    DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, KeypairBytes,
};
use ed25519_dalek::{Signature, Signer};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use super::BundleError;

/// What a key file should look like, for error messages.
const PUBLIC_FORMAT: &str =
    "expected an Ed25519 public key in SPKI PEM (\"-----BEGIN PUBLIC KEY-----\"), \
     as `airlock policy keygen` writes to KEYFILE.pub";
const PRIVATE_FORMAT: &str =
    "expected an Ed25519 private key in PKCS#8 PEM (\"-----BEGIN PRIVATE KEY-----\"), \
     as `airlock policy keygen` writes";

/// A key's stable short id: hex of the first 8 bytes of SHA-256 of the raw 32-byte public key
/// (16 hex digits). Signatures carry it as their DSSE `keyid`; ratchets are kept per key id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Ed25519 public (verifying) key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: ed25519_dalek::VerifyingKey,
}

impl PublicKey {
    /// Parses the text of a KEYFILE.pub (SPKI PEM); surrounding whitespace is ignored.
    pub fn from_text(text: &str) -> Result<PublicKey, BundleError> {
        parse_public(text, "public key text")
    }

    /// The key as KEYFILE.pub text (SPKI PEM, LF line endings, trailing newline): the form pinned in
    /// a [`super::TrustState`] and named in a payload's `next_keys`.
    pub fn to_text(&self) -> String {
        // Encoding a 32-byte key into a fixed-size document cannot fail; the fallback keeps the
        // signature panic-free all the same.
        self.key
            .to_public_key_pem(LineEnding::LF)
            .unwrap_or_default()
    }

    /// The key's id.
    pub fn id(&self) -> KeyId {
        let hash = Sha256::digest(self.key.as_bytes());
        KeyId(hex::encode(&hash[..8]))
    }

    /// Whether `sig` is this key's signature over `msg` (strict: no malleable signatures).
    pub(crate) fn verifies(&self, msg: &[u8], sig: &Signature) -> bool {
        self.key.verify_strict(msg, sig).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey").field("id", &self.id()).finish()
    }
}

impl std::str::FromStr for PublicKey {
    type Err = BundleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PublicKey::from_text(s)
    }
}

fn parse_public(text: &str, origin: &str) -> Result<PublicKey, BundleError> {
    let err = |message: String| BundleError::Key {
        origin: origin.to_string(),
        message,
    };
    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(text.trim())
        .map_err(|e| err(format!("not a usable public key ({e}); {PUBLIC_FORMAT}")))?;
    if key.is_weak() {
        return Err(err(
            "a weak (small-order) Ed25519 public key, which anyone could forge signatures for; \
             generate a real one with `airlock policy keygen`"
                .into(),
        ));
    }
    Ok(PublicKey { key })
}

/// An Ed25519 private (signing) key. Its `Debug` shows only the key id; its memory is wiped on drop.
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
}

impl SigningKey {
    /// A new key from the OS random number generator.
    pub fn generate() -> Result<SigningKey, BundleError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| BundleError::Random(e.to_string()))?;
        Ok(SigningKey {
            key: ed25519_dalek::SigningKey::from_bytes(&seed),
        })
    }

    /// Parses the text of a private key file (PKCS#8 PEM).
    pub fn from_pkcs8_pem(text: &str) -> Result<SigningKey, BundleError> {
        parse_private(text, "private key text")
    }

    /// Its public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey {
            key: self.key.verifying_key(),
        }
    }

    /// Its key id.
    pub fn id(&self) -> KeyId {
        self.public_key().id()
    }

    /// Signs `msg`.
    pub(crate) fn sign(&self, msg: &[u8]) -> Signature {
        self.key.sign(msg)
    }

    /// PKCS#8 v1 PEM: the seed alone, as `openssl genpkey -algorithm ed25519` writes it. (The v2
    /// form with the public key appended, which `ed25519-dalek` writes by default, is refused by
    /// OpenSSL 3.0 and Python's `cryptography`.)
    fn to_pem(&self) -> Result<Zeroizing<String>, BundleError> {
        let mut v1 = KeypairBytes {
            secret_key: self.key.to_bytes(),
            public_key: None,
        };
        let pem = v1.to_pkcs8_pem(LineEnding::LF);
        v1.secret_key.zeroize();
        pem.map_err(|e| BundleError::Key {
            origin: "new signing key".into(),
            message: format!("cannot encode it as PKCS#8 ({e})"),
        })
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("id", &self.id())
            .finish_non_exhaustive()
    }
}

fn parse_private(text: &str, origin: &str) -> Result<SigningKey, BundleError> {
    let key = ed25519_dalek::SigningKey::from_pkcs8_pem(text.trim()).map_err(|e| {
        // The error names the structure that failed, never the key's bytes.
        BundleError::Key {
            origin: origin.to_string(),
            message: format!("not a usable signing key ({e}); {PRIVATE_FORMAT}"),
        }
    })?;
    Ok(SigningKey { key })
}

/// The public key file next to a private key file: `path` + ".pub".
pub fn public_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_os_string();
    p.push(".pub");
    PathBuf::from(p)
}

/// Generates a key pair: the private key to `path` (PKCS#8 PEM, mode 0600) and the public key to
/// `path` + ".pub" (SPKI PEM, mode 0644). Neither file is ever overwritten: if either exists nothing
/// is written and the error names it.
pub fn keygen(path: &Path) -> Result<KeyId, BundleError> {
    let pub_path = public_path(path);
    for p in [path, pub_path.as_path()] {
        if p.symlink_metadata().is_ok() {
            return Err(BundleError::Exists { path: p.into() });
        }
    }
    let key = SigningKey::generate()?;
    let private = key.to_pem()?;
    write_new(path, private.as_bytes(), 0o600)?;
    if let Err(e) = write_new(&pub_path, key.public_key().to_text().as_bytes(), 0o644) {
        // No half key pair: the private key without its public half is removed again.
        let _ = std::fs::remove_file(path);
        return Err(e);
    }
    Ok(key.id())
}

fn write_new(path: &Path, contents: &[u8], mode: u32) -> Result<(), BundleError> {
    let mut f = match crate::paths::create_new_with_mode(path, mode) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(BundleError::Exists { path: path.into() })
        }
        Err(e) => return Err(BundleError::io("cannot create key file", path, e)),
    };
    if let Err(e) = f.write_all(contents).and_then(|()| f.sync_all()) {
        let _ = std::fs::remove_file(path);
        return Err(BundleError::io("cannot write key file", path, e));
    }
    Ok(())
}

/// Reads a private key file. On unix a file that group or others may access is refused, key or not.
pub fn read_signing_key(path: &Path) -> Result<SigningKey, BundleError> {
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| BundleError::io("cannot read signing key", path, e))?,
    );
    if let Some(mode) = crate::paths::mode_of(path).filter(|m| m & 0o077 != 0) {
        return Err(BundleError::KeyPermissions {
            path: path.into(),
            mode,
        });
    }
    parse_private(&text, &path.display().to_string())
}

/// Reads a public key file (KEYFILE.pub).
pub fn read_public_key(path: &Path) -> Result<PublicKey, BundleError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| BundleError::io("cannot read public key", path, e))?;
    parse_public(&text, &path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_private_0600_and_public_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fleet.key");
        let id = keygen(&path).unwrap();
        assert_eq!(id.as_str().len(), 16);
        let private = std::fs::read_to_string(&path).unwrap();
        assert!(
            private.starts_with("-----BEGIN PRIVATE KEY-----"),
            "{private}"
        );
        let public = std::fs::read_to_string(public_path(&path)).unwrap();
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
        #[cfg(unix)]
        {
            assert_eq!(crate::paths::mode_of(&path), Some(0o600));
            assert_eq!(crate::paths::mode_of(&public_path(&path)), Some(0o644));
        }
        let key = read_signing_key(&path).unwrap();
        assert_eq!(key.id(), id);
        assert_eq!(read_public_key(&public_path(&path)).unwrap().id(), id);

        let e = keygen(&path).unwrap_err();
        assert!(matches!(e, BundleError::Exists { .. }), "{e}");
        assert!(e.to_string().contains("never overwritten"), "{e}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            private,
            "untouched"
        );

        // A stray .pub alone also blocks keygen, and no private key is left behind.
        let other = dir.path().join("other.key");
        std::fs::write(public_path(&other), "x").unwrap();
        assert!(matches!(keygen(&other), Err(BundleError::Exists { .. })));
        assert!(!other.exists());
    }

    #[cfg(unix)]
    #[test]
    fn a_signing_key_others_can_read_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        keygen(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_signing_key(&path).unwrap_err();
        assert!(
            matches!(e, BundleError::KeyPermissions { mode: 0o644, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("chmod 600"), "{e}");
    }

    #[test]
    fn debug_never_shows_key_material_and_ids_are_stable() {
        let key = SigningKey::generate().unwrap();
        let pem = key.to_pem().unwrap();
        let body: String = pem.lines().nth(1).unwrap().chars().take(20).collect();
        let dbg = format!("{key:?}");
        assert!(!dbg.contains(&body), "{dbg}");
        assert!(dbg.contains(key.id().as_str()), "{dbg}");
        let again = SigningKey::from_pkcs8_pem(&pem).unwrap();
        assert_eq!(again.id(), key.id());
        let public = PublicKey::from_text(&key.public_key().to_text()).unwrap();
        assert_eq!(public, key.public_key());
    }

    #[test]
    fn key_id_is_the_first_8_bytes_of_sha256_of_the_raw_key() {
        // RFC 8032 test 1 public key.
        let raw: [u8; 32] = [
            0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64,
            0x07, 0x3a, 0x0e, 0xe1, 0x72, 0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68,
            0xf7, 0x07, 0x51, 0x1a,
        ];
        let key = PublicKey {
            key: ed25519_dalek::VerifyingKey::from_bytes(&raw).unwrap(),
        };
        let hash = Sha256::digest(raw);
        let expect: String = hash[..8].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(key.id().as_str(), expect);
    }

    #[test]
    fn private_keys_are_pkcs8_v1_like_openssls() {
        // `openssl genpkey -algorithm ed25519` output, and RFC 8410's example: both are read.
        let openssl = "-----BEGIN PRIVATE KEY-----\n\
            MC4CAQAwBQYDK2VwBCIEIGbVlqd8SuLb9VIhDa+xTGRp/97ZO9REvKsSOtnmSMYB\n\
            -----END PRIVATE KEY-----\n";
        SigningKey::from_pkcs8_pem(openssl).unwrap();
        let rfc8410 = "-----BEGIN PRIVATE KEY-----\n\
            MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC\n\
            -----END PRIVATE KEY-----\n";
        SigningKey::from_pkcs8_pem(rfc8410).unwrap();
        // What we write has the same shape: a 48-byte v1 structure, no public key appended.
        let pem = SigningKey::generate().unwrap().to_pem().unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        assert_eq!(body.len(), 64, "{}", pem.as_str());
        assert!(body.starts_with("MC4CAQAwBQYDK2Vw"), "{}", pem.as_str());
    }

    #[test]
    fn garbage_keys_are_explained() {
        let e = PublicKey::from_text("hello").unwrap_err().to_string();
        assert!(e.contains("BEGIN PUBLIC KEY"), "{e}");
        let e = SigningKey::from_pkcs8_pem("hello").unwrap_err().to_string();
        assert!(e.contains("BEGIN PRIVATE KEY"), "{e}");
    }
}
