//! What an agent trusts: the fleet it was enrolled in, the public keys pinned at enrollment, and a
//! version ratchet per key, advanced by every accepted bundle and rotated by `next_keys`. It owns
//! the rules for advancing trust; it must not read or write files (the agent persists it as JSON in
//! its state directory) and never loosens trust on its own.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{PublicKey, Verified};

/// What the agent trusts: the enrollment's fleet and pinned keys, advanced by accepted bundles.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TrustState {
    /// The fleet id; bundles for another fleet are refused.
    pub fleet: String,
    /// Public keys (KEYFILE.pub text) whose signatures are accepted.
    pub keys: Vec<String>,
    /// Per key id, the highest version accepted from that key. One ratchet per key, so a leaked
    /// old key that signed a huge version cannot block the bundles of its successor.
    #[serde(default)]
    pub ratchets: BTreeMap<String, u64>,
}

impl TrustState {
    /// A fresh enrollment: `fleet`, these pinned keys, no bundle accepted yet.
    pub fn new(fleet: String, keys: Vec<PublicKey>) -> Self {
        TrustState {
            fleet,
            keys: keys.iter().map(PublicKey::to_text).collect(),
            ratchets: BTreeMap::new(),
        }
    }

    /// The pinned keys that parse. A key text that does not parse (a hand-edited state file) trusts
    /// nothing; bundles then report `unknown_key` with the ids that are trusted.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.keys
            .iter()
            .filter_map(|k| PublicKey::from_text(k).ok())
            .collect()
    }

    /// Records an accepted bundle: the ratchet of its signing key becomes its version (never lower);
    /// when it names `next_keys`, those replace `keys`, and the signing key stays trusted only if
    /// listed. Ratchets of keys no longer trusted are kept, so a key rotated back in cannot replay
    /// its old bundles.
    pub fn accept(&mut self, v: &Verified) {
        let r = self
            .ratchets
            .entry(v.key_id.as_str().to_string())
            .or_insert(0);
        *r = (*r).max(v.payload.version);
        if !v.payload.next_keys.is_empty() {
            // Normalised through a parse, so the state holds one canonical text per key; entries
            // were checked by verify, one that still fails to parse is dropped rather than trusted.
            let mut keys: Vec<String> = v
                .payload
                .next_keys
                .iter()
                .filter_map(|k| PublicKey::from_text(k).ok())
                .map(|k| k.to_text())
                .collect();
            keys.dedup();
            self.keys = keys;
        }
    }
}
