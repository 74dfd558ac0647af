//! The key-encryption key that seals secrets in kamajid's records.
//!
//! Datastore admin keys and client-CA keys are stored sealed (AES-256-GCM, random nonce), with
//! the record's key path as associated data so a sealed value cannot be moved to another record.
//! A dump of the state etcd alone therefore leaks no private key. The KEK itself comes from a
//! file (a mounted Secret in production): 32 random bytes, base64-encoded.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use std::path::{Path, PathBuf};

const PREFIX: &str = "kek1:";

#[derive(Debug, thiserror::Error)]
pub enum KekError {
    #[error("reading the key-encryption key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the key-encryption key file {path} must hold 32 bytes, base64-encoded (generate one with `head -c32 /dev/urandom | base64`)")]
    Format { path: PathBuf },
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

    pub fn load(path: &Path) -> Result<Self, KekError> {
        let text = std::fs::read_to_string(path).map_err(|source| KekError::Read {
            path: path.to_owned(),
            source,
        })?;
        let bytes = B64.decode(text.trim()).map_err(|_| KekError::Format {
            path: path.to_owned(),
        })?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| KekError::Format {
            path: path.to_owned(),
        })?;
        Ok(Self::from_bytes(&key))
    }

    /// A new random key, base64-encoded as [`Kek::load`] reads it.
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
    fn load_reads_a_base64_file_and_rejects_short_keys() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("kek");
        std::fs::write(&good, Kek::generate_encoded() + "\n").unwrap();
        assert!(Kek::load(&good).is_ok());
        let short = dir.path().join("short");
        std::fs::write(&short, B64.encode([1u8; 16])).unwrap();
        assert!(matches!(Kek::load(&short), Err(KekError::Format { .. })));
    }
}
