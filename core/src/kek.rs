//! The key-encryption key that seals secrets in kamajid's records.
//!
//! Datastore admin keys and client-CA keys are stored sealed (AES-256-GCM, random nonce), with
//! the record's key path as associated data so a sealed value cannot be moved to another record.
//! A dump of the state etcd alone therefore leaks no private key. The KEK itself is 32 random
//! bytes, base64-encoded; kamajid reads it from a file (a mounted Secret in production).

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;

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
    #[error("a key-encryption key is 32 bytes, base64-encoded (generate one with `head -c32 /dev/urandom | base64`)")]
    Format,
    #[error("sealed value for {aad} is malformed or was sealed with another key-encryption key")]
    Open { aad: String },
}

/// A loaded key-encryption key. Debug output never shows the key.
#[derive(Clone)]
pub struct Kek {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(..)")
    }
}

impl Kek {
    pub fn from_bytes(key: &[u8; 32]) -> Self {
        Self {
            cipher: Aes256Gcm::new(key.into()),
        }
    }

    /// The key written as [`Kek::generate_encoded`] writes it (surrounding whitespace ignored).
    pub fn from_encoded(text: &str) -> Result<Self, KekError> {
        let bytes = B64.decode(text.trim()).map_err(|_| KekError::Format)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| KekError::Format)?;
        Ok(Self::from_bytes(&key))
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
        let ct = self
            .cipher
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

    pub fn open(&self, aad: &str, sealed: &str) -> Result<String, KekError> {
        let err = || KekError::Open {
            aad: aad.to_owned(),
        };
        let raw = B64
            .decode(sealed.strip_prefix(PREFIX).ok_or_else(err)?)
            .map_err(|_| err())?;
        if raw.len() < 12 {
            return Err(err());
        }
        let (nonce, ct) = raw.split_at(12);
        let pt = self
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| err())?;
        String::from_utf8(pt).map_err(|_| err())
    }
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
    }
}
