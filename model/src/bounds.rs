//! The ranges numbers a user writes must fall in, judged as written (a client may hold `-1`, so
//! the message shows what the user wrote).

use crate::error::{Check, FieldError};

/// Longest tenant name: leaves room in the namespace (`tenant-<name>`) and generated names.
pub const MAX_NAME_LEN: usize = crate::ids::TenantName::MAX_LEN;
pub const MAX_REPLICAS: u32 = 9;

/// A datastore's quota when its registration names none: etcd's default backend quota.
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;
/// etcd's recommended maximum backend quota (8 GiB): larger quotas work but degrade.
pub const RECOMMENDED_MAX_QUOTA_BYTES: i64 = 8 * 1024 * 1024 * 1024;

/// Control-plane replicas: 1 to [`MAX_REPLICAS`]. Takes the number as written (a client may
/// hold `-1`), so the message shows what the user wrote.
pub fn replicas(field: &str, n: i64) -> Check {
    if (1..=i64::from(MAX_REPLICAS)).contains(&n) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{n} is not between 1 and {MAX_REPLICAS}"),
        ))
    }
}

/// Smallest storage quota a tenant may set: a fresh cluster alone keeps about half a MiB.
pub const MIN_STORAGE_QUOTA_BYTES: i64 = 1024 * 1024;

/// A tenant's storage quota, as written (0, on the wire, means the reservation).
pub fn storage_quota(field: &str, n: i64) -> Check {
    if (MIN_STORAGE_QUOTA_BYTES..=RECOMMENDED_MAX_QUOTA_BYTES).contains(&n) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{n} is not between {MIN_STORAGE_QUOTA_BYTES} (1 MiB) and {} (8 GiB, etcd's \
                 recommended maximum for a whole datastore)",
                RECOMMENDED_MAX_QUOTA_BYTES
            ),
        ))
    }
}

/// Smallest and largest write budget a tenant may set, bytes per second.
pub const MIN_WRITE_BUDGET: i64 = 1024;
pub const MAX_WRITE_BUDGET: i64 = 1 << 30;

/// A tenant's write budget, as written (0, on the wire, means the default).
pub fn write_budget(field: &str, n: i64) -> Check {
    if (MIN_WRITE_BUDGET..=MAX_WRITE_BUDGET).contains(&n) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{n} is not between {MIN_WRITE_BUDGET} (1 KiB/s) and {MAX_WRITE_BUDGET} (1 GiB/s); \
                 leave it out for the default, the reservation written again every 5 minutes"
            ),
        ))
    }
}

/// A TCP port, as written.
pub fn port(field: &str, n: i64) -> Check {
    if (1..=65535).contains(&n) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{n} is not a TCP port (1 to 65535)"),
        ))
    }
}

/// Days audit logs are kept, as written: 1 to 3650.
pub fn audit_max_age(field: &str, n: i64) -> Check {
    if (1..=3650).contains(&n) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{n} is not between 1 and 3650 days"),
        ))
    }
}

/// An encryption key rotation, as written: a whole number from 0.
pub fn key_rotation(field: &str, n: i64) -> Check {
    if (0..=i64::from(u32::MAX)).contains(&n) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{n} is not a rotation number: a whole number from 0 (raise it by one to rotate)"
            ),
        ))
    }
}
