//! How a tenant's spec may change in place: what is fixed at creation, and the transitions of
//! its version, encryption key and credentials. The provider judges a plan with these and
//! kamajid every update, so both reach the same verdict.

use crate::error::{Check, FieldError};
pub use crate::version::upgrade;

/// Fields fixed at creation: the network plan, baked into the PKI and every Service, and the
/// backup a cluster was created from. Changing
/// one replaces the cluster (Terraform plans the replacement; kamajid refuses the update).
pub const IMMUTABLE: [&str; 5] = [
    "network.service_cidr",
    "network.pod_cidr",
    "network.dns_service_ip",
    "restore_from",
    "restore_keep_identity",
];

/// What a field fixed at creation says when an update changes it.
pub fn immutable(field: &str) -> FieldError {
    FieldError::new(
        field,
        "cannot change in place; the tenant cluster must be replaced",
    )
}

/// A change of the key rotation: forward only, since an older key may already be retired.
pub fn key_rotation_change(field: &str, from: u32, to: u32) -> Check {
    if to >= from {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{to} is below {from}, the rotation in effect: keys only move forward (raise it to rotate again)"
            ),
        ))
    }
}

/// Phases of a credential rotation.
pub const ROTATION_PHASES: [&str; 2] = ["started", "completed"];

/// A change of the credential rotation: one generation at a time, started before completed.
pub fn credential_rotation_change(from: (u32, bool), to: (u32, bool)) -> Check {
    let generation = "credential_rotation.generation";
    let phase = "credential_rotation.phase";
    let ((f, f_started), (t, t_started)) = (from, to);
    let err = |field: &str, m: String| Err(FieldError::new(field, m));
    if t < f {
        return err(
            generation,
            format!("{t} is below {f}, the rotation in effect: generations only move forward"),
        );
    }
    if t > f + 1 {
        return err(
            generation,
            format!(
                "{t} skips ahead of {f}: one rotation at a time, raise it to {}",
                f + 1
            ),
        );
    }
    if t == f + 1 && f_started {
        return err(generation, format!(
            "rotation {f} is still started: complete it (phase = \"completed\") before starting rotation {t}"
        ));
    }
    if t == f + 1 && !t_started {
        return err(phase, format!(
            "rotation {t} must be started first (phase = \"started\"): move clients and nodes to the new credentials, then complete it"
        ));
    }
    if t == f && !f_started && t_started {
        return err(phase, format!(
            "rotation {f} is completed and cannot start again: raise generation to {} to rotate again",
            f + 1
        ));
    }
    Ok(())
}

/// Fields that cannot change while the tenant is to be hibernated: what needs its control plane
/// answering (a key rotation or a change of the encrypted resources rewrites every object
/// through it; a credential rotation re-issues what its clients and nodes hold) and a move of
/// its data. Waking it in the same change is allowed: the change then runs awake.
pub const FIXED_WHILE_HIBERNATED: [&str; 4] = [
    "encryption.key_rotation",
    "encryption.resources",
    "credential_rotation.generation",
    "datastore",
];

/// What a field of [`FIXED_WHILE_HIBERNATED`] says when a change to a hibernated tenant
/// touches it.
pub fn fixed_while_hibernated(field: &str) -> FieldError {
    FieldError::new(
        field,
        "cannot change while hibernated = true: the control plane is stopped; wake the cluster \
         (hibernated = false), in this apply or before it",
    )
}
