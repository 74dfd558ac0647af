//! Restore: a tenant created from a backup gets its objects written back under its own prefix
//! before its apiserver first starts, and adopts the encryption keys they were written with.

use super::*;

impl<R: Records, I: Isolation, T: Runtime, O: TenantObjects> Lifecycle<R, I, T, O> {
    pub(super) async fn restore(
        &self,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let Some(backup) = spec.restore_from.as_deref() else {
            return Ok(Outcome::Converged);
        };
        let ds = self.datastore(&rec).await?;
        let restored = self.isolation.restore(&ds, &rec.uid, backup).await?;
        let mut pki = self.pki(&rec)?;
        adopt(&mut pki, &mut rec, &restored.secrets);
        seal_pki(&self.kek, &mut rec, &pki)?;
        rec.set_condition(
            COND_RESTORED,
            true,
            "Restored",
            format!(
                "{} keys ({} bytes) written back from backup {backup}",
                restored.keys, restored.bytes
            ),
            now,
        );
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(Step::Restore))
    }
}

/// Makes `pki` read what the backup's objects were encrypted with: the backup's keys, in their
/// order (the one that encrypted last first), replace the fresh tenant's (which encrypted
/// nothing yet). The record then says what the objects are written with, so that when the spec
/// asks another key or other resources the re-encryption runs as after any rotation.
pub(super) fn adopt(
    pki: &mut TenantPki,
    rec: &mut TenantRecord,
    secrets: &crate::backup::archive::Secrets,
) {
    if secrets.encryption_keys.is_empty() {
        return; // a backup of a tenant that never encrypted: the fresh keys stay.
    }
    pki.encryption_keys = secrets.encryption_keys.clone();
    pki.encrypted_resources = secrets.encrypted_resources.clone();
    rec.encrypted = Some(EncryptedWith {
        rotation: secrets.encryption_keys[0].rotation,
        resources: secrets.encrypted_resources.clone(),
    });
}
