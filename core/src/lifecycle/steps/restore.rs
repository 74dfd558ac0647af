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
        if spec.restore_keep_identity {
            pki = keep_identity(pki, &restored.secrets).map_err(|detail| {
                crate::lifecycle::ports::PortError {
                    op: format!("restoring the identity of backup {backup}"),
                    detail,
                }
            })?;
        }
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

/// The backed-up cluster's PKI in place of `own` (CA, front-proxy CA, service-account keys and
/// the certificates they signed), but for the datastore client certificate, which must stay the
/// one the new cluster's datastore trusts for its own etcd user. The serving certificate is
/// re-issued for the new address by the Apply that follows.
pub(super) fn keep_identity(
    own: TenantPki,
    secrets: &crate::backup::archive::Secrets,
) -> Result<TenantPki, String> {
    let identity = secrets.identity.as_ref().ok_or(
        "the backup carries no identity (it was taken by an older kamajid): restore it without \
         restore_keep_identity",
    )?;
    let mut kept: TenantPki = serde_json::from_str(&identity.0)
        .map_err(|e| format!("the backup's identity does not decode: {e}"))?;
    kept.etcd_client = own.etcd_client;
    Ok(kept)
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

impl<R: Records, I: Isolation, T: Runtime, O: TenantObjects> Lifecycle<R, I, T, O> {
    /// One stage of an in-place restore: hold the tenant's writes, stop its control plane,
    /// replace its prefix with the backup's keys, release the writes (the control plane then
    /// starts through Apply, AwaitReady and Bootstrap on the restored objects).
    pub(super) async fn restore_in_place(
        &self,
        step: Step,
        mut rec: TenantRecord,
        rev: i64,
        spec: &TenantSpec,
        now: i64,
    ) -> Result<Outcome, LifecycleError> {
        let Some(mut r) = rec.restoring.clone() else {
            return Ok(Outcome::Converged);
        };
        let ds = self.datastore(&rec).await?;
        match step {
            Step::RestoreHold => {
                self.isolation.hold_writes(&ds, &rec.uid, true).await?;
                r.stage = RestoreStage::Held;
                r.held_at = now;
                rec.phase = Phase::Restoring;
                rec.set_condition(
                    COND_RESTORED,
                    false,
                    "Restoring",
                    format!("writes held; restoring backup {} in place", r.backup),
                    now,
                );
            }
            Step::RestoreStop => {
                let pki = self.pki(&rec)?;
                let mut stopped = spec.clone();
                stopped.hibernated = true;
                self.runtime
                    .apply(&self.render_input(&rec, &stopped, &ds), &pki)
                    .await?;
                r.stage = RestoreStage::Stopped;
                rec.set_condition(
                    COND_READY,
                    false,
                    "Restoring",
                    format!("stopped while backup {} is written back", r.backup),
                    now,
                );
            }
            Step::RestoreWrite => {
                let restored = self.isolation.restore(&ds, &rec.uid, &r.backup).await?;
                let mut pki = self.pki(&rec)?;
                merge(&mut pki, &mut rec, &restored.secrets).map_err(|detail| {
                    crate::lifecycle::ports::PortError {
                        op: format!("restoring backup {}", r.backup),
                        detail,
                    }
                })?;
                seal_pki(&self.kek, &mut rec, &pki)?;
                r.stage = RestoreStage::Written;
                r.keys = restored.keys;
            }
            _ => {
                self.isolation.hold_writes(&ds, &rec.uid, false).await?;
                rec.last_restore = Some(RestoreRecord {
                    backup: r.backup.clone(),
                    requested_at: r.requested_at,
                    released_at: now,
                    held_seconds: now - r.held_at,
                    keys: r.keys,
                });
                rec.restoring = None;
                rec.set_condition(
                    COND_RESTORED,
                    true,
                    "Restored",
                    format!(
                        "{} keys written back from backup {} in place; writes held {} s",
                        r.keys,
                        r.backup,
                        now - r.held_at
                    ),
                    now,
                );
                // Started again on the restored objects, then bootstrapped (what kamajid keeps
                // inside the tenant is put back as it is now).
                for c in [COND_APPLIED, COND_BOOTSTRAPPED] {
                    rec.set_condition(c, false, "Restored", "after an in-place restore", now);
                }
                self.save(&rec, rev).await?;
                return Ok(Outcome::Ran(step));
            }
        }
        rec.restoring = Some(r);
        self.save(&rec, rev).await?;
        Ok(Outcome::Ran(step))
    }
}

/// Adds to `pki` the keys the backup's objects were encrypted with that it no longer has (a key
/// retired since the backup), behind the one that encrypts; the record then says the objects
/// are written with the backup's key, so the re-encryption that follows rewrites them with the
/// tenant's own and retires the backup's. A key of the same rotation but other material (a
/// backup of another cluster) cannot be told apart inside the objects: refused.
pub(super) fn merge(
    pki: &mut TenantPki,
    rec: &mut TenantRecord,
    secrets: &crate::backup::archive::Secrets,
) -> Result<(), String> {
    for k in &secrets.encryption_keys {
        match pki
            .encryption_keys
            .iter()
            .find(|o| o.rotation == k.rotation)
        {
            Some(o) if o.secret != k.secret => {
                return Err(format!(
                    "the backup's objects were encrypted with a {} other than this cluster's; \
                     restore it into a new cluster instead",
                    k.name()
                ))
            }
            Some(_) => {}
            None => pki.encryption_keys.push(k.clone()),
        }
    }
    let now_written = EncryptedWith {
        rotation: secrets.encryption_keys.first().map_or(0, |k| k.rotation),
        resources: secrets.encrypted_resources.clone(),
    };
    pki.note_encrypted_resources(&secrets.encrypted_resources);
    if !secrets.encryption_keys.is_empty() && rec.encrypted.as_ref() != Some(&now_written) {
        rec.encrypted = Some(now_written);
    }
    Ok(())
}
