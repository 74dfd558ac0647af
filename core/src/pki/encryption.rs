//! The keys that encrypt a tenant's objects at rest, kept in its PKI: generated per rotation, the
//! newest encrypting, older ones readable until every object is written again.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;

use super::TenantPki;

/// A 32-byte secretbox key, base64, named by the rotation it belongs to. Debug never shows it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncryptionKey {
    pub rotation: u32,
    pub secret: String,
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

impl EncryptionKey {
    /// A new random key for `rotation`.
    pub fn generate(rotation: u32) -> Self {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Self {
            rotation,
            secret: B64.encode(key),
        }
    }

    /// Its name in the encryption configuration (and in each value it encrypts).
    pub fn name(&self) -> String {
        format!("key-{}", self.rotation)
    }
}

impl TenantPki {
    /// Makes the key of `rotation` the one that encrypts, generating it when it is new; older
    /// keys stay behind it. Whether anything changed.
    pub fn ensure_encryption_key(&mut self, rotation: u32) -> bool {
        if self
            .encryption_keys
            .first()
            .is_some_and(|k| k.rotation == rotation)
        {
            return false;
        }
        self.encryption_keys.retain(|k| k.rotation != rotation);
        self.encryption_keys
            .insert(0, EncryptionKey::generate(rotation));
        true
    }

    /// Adds `resources` to those that may hold encrypted objects. Whether anything changed.
    pub fn note_encrypted_resources(&mut self, resources: &[String]) -> bool {
        let before = self.encrypted_resources.len();
        for r in resources {
            if !self.encrypted_resources.contains(r) {
                self.encrypted_resources.push(r.clone());
            }
        }
        self.encrypted_resources.sort();
        before != self.encrypted_resources.len()
    }

    /// Once every object is written again: drops every key but the one that encrypts, and the
    /// resources no longer encrypted. Whether anything changed.
    pub fn retire_after_rewrite(&mut self, resources: &[String]) -> bool {
        let before = (self.encryption_keys.len(), self.encrypted_resources.clone());
        self.encryption_keys.truncate(1);
        self.encrypted_resources.retain(|r| resources.contains(r));
        before != (self.encryption_keys.len(), self.encrypted_resources.clone())
    }
}
