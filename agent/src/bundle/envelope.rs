//! The DSSE envelope a bundle travels in (<https://github.com/secure-systems-lab/dsse>): the JSON
//! shape, the pre-authentication encoding (PAE) that is what actually gets signed, sealing a payload
//! and opening an envelope back into its payload bytes and signatures. It owns the wire format only;
//! it must not decide which keys are trusted or what the payload means.

use base64::engine::general_purpose::{
    STANDARD, STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT,
};
use base64::Engine as _;
use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use super::{BundleError, Refusal, SigningKey, PAYLOAD_TYPE};

/// A DSSE envelope as JSON: `{"payloadType", "payload", "signatures": [{"keyid", "sig"}]}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Envelope {
    /// What the payload is: [`PAYLOAD_TYPE`] for a policy bundle.
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The payload bytes, base64 (standard alphabet, padded, when we write it; standard or URL-safe,
    /// padded or not, when we read it, as DSSE asks of verifiers).
    pub payload: String,
    /// One signature per signing key.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature of an envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    /// The signing key's [`super::KeyId`]: an unauthenticated hint that only narrows which trusted
    /// key is tried; absent or empty means every trusted key is tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keyid: Option<String>,
    /// The Ed25519 signature over [`pae`]`(payloadType, payload bytes)`, base64.
    pub sig: String,
}

/// DSSE's pre-authentication encoding: `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, LEN
/// being the byte length in ASCII decimal. Signatures are over these bytes, so the payload type is
/// authenticated along with the payload.
pub fn pae(payload_type: &str, body: &[u8]) -> Vec<u8> {
    let type_len = payload_type.len().to_string();
    let body_len = body.len().to_string();
    let mut out =
        Vec::with_capacity(10 + type_len.len() + payload_type.len() + body_len.len() + body.len());
    out.extend_from_slice(b"DSSEv1 ");
    out.extend_from_slice(type_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body_len.as_bytes());
    out.push(b' ');
    out.extend_from_slice(body);
    out
}

/// Whether `bytes` look like a DSSE envelope (a JSON object with `payloadType`) rather than, say, a
/// TOML policy source. Says nothing about validity.
pub fn looks_like_bundle(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(bytes)
        .is_ok_and(|m| m.contains_key("payloadType"))
}

/// Signs the exact `payload` bytes with `key` and returns the envelope as pretty JSON.
pub(crate) fn seal(payload: &[u8], key: &SigningKey) -> Result<Vec<u8>, BundleError> {
    let sig = key.sign(&pae(PAYLOAD_TYPE, payload));
    let envelope = Envelope {
        payload_type: PAYLOAD_TYPE.to_string(),
        payload: STANDARD.encode(payload),
        signatures: vec![EnvelopeSignature {
            keyid: Some(key.id().to_string()),
            sig: STANDARD.encode(sig.to_bytes()),
        }],
    };
    let mut out = serde_json::to_vec_pretty(&envelope)
        .map_err(|e| BundleError::Options(format!("cannot encode the envelope: {e}")))?;
    out.push(b'\n');
    Ok(out)
}

/// An envelope decoded but not yet verified.
pub(crate) struct Opened {
    /// The payload bytes, as signed.
    pub body: Vec<u8>,
    /// Each signature with its key id hint (`None` when absent or empty).
    pub signatures: Vec<(Option<String>, Signature)>,
}

impl Opened {
    /// The bytes every signature must cover.
    pub fn signed_bytes(&self) -> Vec<u8> {
        pae(PAYLOAD_TYPE, &self.body)
    }
}

fn decode_b64(text: &str) -> Option<Vec<u8>> {
    STANDARD_PAD_INDIFFERENT
        .decode(text)
        .or_else(|_| URL_SAFE_PAD_INDIFFERENT.decode(text))
        .ok()
}

/// Decodes an envelope: JSON shape, payload type, base64 of the payload and of every signature.
/// Every failure is `malformed`.
pub(crate) fn open(bytes: &[u8]) -> Result<Opened, Refusal> {
    const FIX: &str = "publish the file `airlock policy build` wrote, unmodified";
    let envelope: Envelope = serde_json::from_slice(bytes).map_err(|e| {
        Refusal::malformed(format!("the bundle is not a DSSE envelope ({e}); {FIX}"))
    })?;
    if envelope.payload_type != PAYLOAD_TYPE {
        return Err(Refusal::malformed(format!(
            "payloadType is {:?}, not {PAYLOAD_TYPE:?}: this envelope is not an Airlock policy bundle; {FIX}",
            envelope.payload_type
        )));
    }
    let body = decode_b64(&envelope.payload).ok_or_else(|| {
        Refusal::malformed(format!("the envelope's payload is not valid base64; {FIX}"))
    })?;
    if envelope.signatures.is_empty() {
        return Err(Refusal::malformed(format!(
            "the envelope carries no signature; {FIX}"
        )));
    }
    let mut signatures = Vec::with_capacity(envelope.signatures.len());
    for (i, s) in envelope.signatures.iter().enumerate() {
        let sig = decode_b64(&s.sig)
            .and_then(|raw| Signature::from_slice(&raw).ok())
            .ok_or_else(|| {
                Refusal::malformed(format!(
                    "signature {} is not base64 of a 64-byte Ed25519 signature; {FIX}",
                    i + 1
                ))
            })?;
        signatures.push((s.keyid.clone().filter(|k| !k.is_empty()), sig));
    }
    Ok(Opened { body, signatures })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_test_vector() {
        // protocol.md, "Test Vectors".
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
        );
        assert_eq!(pae("", b""), b"DSSEv1 0  0 ");
        let long = vec![b'x'; 1234];
        assert!(pae("t", &long).starts_with(b"DSSEv1 1 t 1234 xxx"));
    }

    #[test]
    fn the_spec_example_envelope_opens_except_for_its_type() {
        // The spec's example result (a P-256 signature, so not one we verify), with our type: base64
        // decodes and the signature has the right length.
        let json = br#"{"payload": "aGVsbG8gd29ybGQ=", "payloadType": "http://example.com/HelloWorld",
            "signatures": [{"sig": "A3JqsQGtVsJ2O2xqrI5IcnXip5GToJ3F+FnZ+O88SjtR6rDAajabZKciJTfUiHqJPcIAriEGAHTVeCUjW2JIZA=="}]}"#;
        let e = open(json).err().unwrap();
        assert!(e.message.contains("not an Airlock policy bundle"), "{e}");
        let ours =
            String::from_utf8_lossy(json).replace("http://example.com/HelloWorld", PAYLOAD_TYPE);
        let opened = open(ours.as_bytes()).ok().unwrap();
        assert_eq!(opened.body, b"hello world");
        assert_eq!(opened.signatures.len(), 1);
        assert_eq!(opened.signatures[0].0, None);
        assert!(looks_like_bundle(json));
        assert!(!looks_like_bundle(b"schema = 1\n"));
    }

    #[test]
    fn url_safe_and_unpadded_base64_are_accepted() {
        let key = SigningKey::generate().unwrap();
        let sealed = seal(b"\xfb\xff payload?", &key).unwrap();
        let mut env: Envelope = serde_json::from_slice(&sealed).unwrap();
        env.payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b"\xfb\xff payload?");
        let opened = open(&serde_json::to_vec(&env).unwrap()).ok().unwrap();
        assert_eq!(opened.body, b"\xfb\xff payload?");
        assert!(key
            .public_key()
            .verifies(&opened.signed_bytes(), &opened.signatures[0].1));
    }
}
