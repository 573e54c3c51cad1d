//! Signed policy bundles: the format (a DSSE envelope whose payload is a JSON [`Payload`] carrying
//! the compiled policy), Ed25519 keys and their files, building and signing a bundle, verifying one
//! against what the agent trusts, and the [`TrustState`] that accepted bundles advance (version
//! ratchets, key rotation). It owns every decision about whether a bundle may be used and says why
//! not with a stable [`Reason`] code. It must not fetch bundles, persist trust state, swap the policy
//! in force or log: sources, the state directory and the policy swap are the agent's, and a refusal
//! is a value its caller reports.

mod envelope;
mod error;
mod keys;
mod payload;
mod trust;
mod verify;

#[cfg(test)]
mod tests;

pub use envelope::{looks_like_bundle, pae, Envelope, EnvelopeSignature};
pub use error::{BundleError, Reason, Refusal};
pub use keys::{
    keygen, public_path, read_public_key, read_signing_key, KeyId, PublicKey, SigningKey,
};
pub use payload::{build, BuildOptions, Payload};
pub use trust::TrustState;
pub use verify::{digest, inspect, verify, verify_with_keys, Verified};

/// The DSSE payload type of an Airlock policy bundle. An envelope with any other type is refused as
/// `malformed`: the signature covers the type, so a signature made for another kind of document
/// can never be replayed as a policy.
pub const PAYLOAD_TYPE: &str = "application/vnd.airlock.policy+json";

/// The largest bundle, in bytes, the verifier reads (the `too_large` bound): 4 MiB. Real policies
/// are a few KB to a few hundred KB; the bound keeps a hostile or mistaken source (a wrong URL
/// serving a video, a drop folder with a log file) from making the agent parse something huge. It
/// is checked before anything is parsed; sources should stop reading past it too.
pub const MAX_BUNDLE_BYTES: usize = 4 * 1024 * 1024;
