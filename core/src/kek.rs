//! The key-encryption key that seals secrets in kamajid's records.
//!
//! Datastore admin keys and client-CA keys are stored sealed (AES-256-GCM, random nonce), with
//! the record's key path as associated data so a sealed value cannot be moved to another record.
//! A dump of the state etcd alone therefore leaks no private key. The KEK itself is 32 random
//! bytes, base64-encoded; kamajid reads it from a file (a mounted Secret in production).
//!
//! Rotation: the file may hold several keys, one per line. The first seals; every one opens.
//! Clones share their keys, so [`Kek::replace`] (a reload of the file) applies everywhere at once;
//! kamajid then re-seals what older keys sealed, after which they can leave the file.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::sync::{Arc, RwLock};

use crate::ids::{DatastoreName, TenantName};

const PREFIX: &str = "kek1:";

/// What a tenant's sealed PKI is bound to. Sealed values carry it, so it never changes (it was
/// the tenant record's key in the state store when sealing began).
pub fn tenant_aad(name: &TenantName) -> String {
    format!("/kamajid/v1/tenants/{name}")
}

/// What a datastore's sealed keys are bound to (likewise fixed).
pub fn datastore_aad(name: &DatastoreName) -> String {
    format!("/kamajid/v1/datastores/{name}")
}

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("a key-encryption key is 32 bytes, base64-encoded, one per line, the first sealing (generate one with `head -c32 /dev/urandom | base64`)")]
    Format,
    #[error("sealed value for {aad} is malformed or was sealed with another key-encryption key")]
    Open { aad: String },
}

/// The keys of a [`Kek`]: the first seals, all open. `ids` name them in logs (a digest, which
/// says nothing of the key).
struct Keys {
    ciphers: Vec<Aes256Gcm>,
    ids: Vec<String>,
}

/// Loaded key-encryption keys. Debug output never shows a key.
#[derive(Clone)]
pub struct Kek {
    keys: Arc<RwLock<Arc<Keys>>>,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Kek({:?})", self.ids())
    }
}

impl Kek {
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        Self::from_keys(&[*key])
    }

    fn from_keys(keys: &[[u8; 32]]) -> Self {
        let keys = Keys {
            ciphers: keys.iter().map(|k| Aes256Gcm::new(k.into())).collect(),
            ids: keys
                .iter()
                .map(|k| hex::encode(&Sha256::digest(k)[..4]))
                .collect(),
        };
        Self {
            keys: Arc::new(RwLock::new(Arc::new(keys))),
        }
    }

    /// Keys written as [`Kek::generate_encoded`] writes them, one per line, the first sealing
    /// (blank lines and lines starting with '#' ignored).
    pub fn from_encoded(text: &str) -> Result<Self, KekError> {
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bytes = B64.decode(line).map_err(|_| KekError::Format)?;
            keys.push(<[u8; 32]>::try_from(bytes).map_err(|_| KekError::Format)?);
        }
        if keys.is_empty() {
            return Err(KekError::Format);
        }
        Ok(Self::from_keys(&keys))
    }

    fn current(&self) -> Arc<Keys> {
        match self.keys.read() {
            Ok(k) => k.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Seals and opens with `fresh`'s keys from now on, in this and every clone.
    pub fn replace(&self, fresh: &Kek) {
        let new = fresh.current();
        match self.keys.write() {
            Ok(mut k) => *k = new,
            Err(poisoned) => *poisoned.into_inner() = new,
        }
    }

    /// The keys' ids (a short digest of each), the sealing one first.
    pub fn ids(&self) -> Vec<String> {
        self.current().ids.clone()
    }

    /// Whether `sealed` was sealed by a key other than the sealing one (it opens, but not with
    /// that key): what a re-seal after a rotation rewrites.
    pub fn sealed_by_older_key(&self, aad: &str, sealed: &str) -> bool {
        let keys = self.current();
        let Some((first, rest)) = keys.ciphers.split_first() else {
            return false;
        };
        open_with(first, aad, sealed).is_none()
            && rest.iter().any(|c| open_with(c, aad, sealed).is_some())
    }

    /// `sealed` (a value sealed by any of the keys) sealed again by the sealing key.
    pub fn reseal(&self, aad: &str, sealed: &str) -> Result<String, KekError> {
        Ok(self.seal(aad, &self.open(aad, sealed)?))
    }

    /// A new random key, base64-encoded as [`Kek::from_encoded`] reads it.
    pub fn generate_encoded() -> String {
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        B64.encode(key)
    }

    /// Seals `plaintext`, bound to `aad` (the record it belongs to).
    pub fn seal(&self, aad: &str, plaintext: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let keys = self.current();
        let Some(cipher) = keys.ciphers.first() else {
            return String::new(); // never: a Kek is built with at least one key
        };
        let ct = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .unwrap_or_default(); // AES-GCM encryption cannot fail for inputs under 64 GiB.
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", B64.encode(out))
    }

    /// Opens `sealed` with whichever key sealed it.
    pub fn open(&self, aad: &str, sealed: &str) -> Result<String, KekError> {
        self.current()
            .ciphers
            .iter()
            .find_map(|c| open_with(c, aad, sealed))
            .ok_or_else(|| KekError::Open {
                aad: aad.to_owned(),
            })
    }
}

/// `sealed` opened with `cipher`, if that is the key that sealed it.
fn open_with(cipher: &Aes256Gcm, aad: &str, sealed: &str) -> Option<String> {
    let raw = B64.decode(sealed.strip_prefix(PREFIX)?).ok()?;
    if raw.len() < 12 {
        return None;
    }
    let (nonce, ct) = raw.split_at(12);
    let pt = cipher
        .decrypt(
            Nonce::from_slice(nonce),
            Payload {
                msg: ct,
                aad: aad.as_bytes(),
            },
        )
        .ok()?;
    String::from_utf8(pt).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_the_same_key_and_record() {
        let kek = Kek::from_bytes(&[7; 32]);
        let sealed = kek.seal("/kamajid/v1/datastores/a", "-----BEGIN PRIVATE KEY-----");
        assert!(!sealed.contains("PRIVATE"));
        assert_eq!(
            kek.open("/kamajid/v1/datastores/a", &sealed).unwrap(),
            "-----BEGIN PRIVATE KEY-----"
        );
        assert!(kek.open("/kamajid/v1/datastores/b", &sealed).is_err());
        assert!(Kek::from_bytes(&[8; 32])
            .open("/kamajid/v1/datastores/a", &sealed)
            .is_err());
        // Two seals of the same value differ (random nonce).
        assert_ne!(
            sealed,
            kek.seal("/kamajid/v1/datastores/a", "-----BEGIN PRIVATE KEY-----")
        );
    }

    #[test]
    fn after_a_rotation_the_new_key_seals_both_open_and_a_reseal_drops_the_old() {
        let (old, new) = (Kek::generate_encoded(), Kek::generate_encoded());
        let kek = Kek::from_encoded(&old).unwrap();
        let shared = kek.clone();
        let aad = "/kamajid/v1/datastores/a";
        let before = kek.seal(aad, "secret");
        kek.replace(&Kek::from_encoded(&format!("# rotated\n{new}\n{old}\n")).unwrap());
        assert_eq!(shared.ids().len(), 2, "clones share the keys");
        assert_eq!(shared.open(aad, &before).unwrap(), "secret");
        assert!(shared.sealed_by_older_key(aad, &before));
        let after = shared.reseal(aad, &before).unwrap();
        assert!(!shared.sealed_by_older_key(aad, &after));
        let only_new = Kek::from_encoded(&new).unwrap();
        assert_eq!(only_new.open(aad, &after).unwrap(), "secret");
        assert!(only_new.open(aad, &before).is_err());
        assert!(!format!("{kek:?}").contains(&new));
    }

    #[test]
    fn an_encoded_key_reads_back_and_short_keys_are_refused() {
        assert!(Kek::from_encoded(&(Kek::generate_encoded() + "\n")).is_ok());
        assert!(matches!(
            Kek::from_encoded(&B64.encode([1u8; 16])),
            Err(KekError::Format)
        ));
        assert!(matches!(
            Kek::from_encoded("not base64!"),
            Err(KekError::Format)
        ));
        assert!(matches!(
            Kek::from_encoded("# none\n"),
            Err(KekError::Format)
        ));
    }
}
