//! Per-tenant backups out of a shared etcd: what a backup records, the archive it is written as
//! ([`archive`]), and which backups a tenant may be restored from.
//!
//! A backup is one tenant's prefix read at one revision (no write hold: etcd serves a range at a
//! past revision consistently), so it never touches a neighbour, and a restore writes only under
//! the prefix of the tenant it restores.

pub mod archive;
pub mod schedule;
#[cfg(test)]
mod tests;

pub use kamaji_model::backup::BackupSchedule;
use kamaji_model::version::Version;

/// A backup as kamajid records it (the archive holds the data; this says what and where it is).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupRecord {
    /// `<tenant>-<created_at as YYYYMMDDhhmmss>-<4 random hex>`: sorts by tenant, then time.
    pub id: String,
    pub tenant: String,
    pub tenant_id: String,
    #[serde(default)]
    pub labels: std::collections::BTreeMap<String, String>,
    pub revision: i64,
    pub keys: i64,
    /// Keys and values, before encryption.
    pub bytes: i64,
    /// The archive's size in the store.
    pub size_bytes: i64,
    /// SHA-256 of the archive as stored, hex.
    pub digest: String,
    pub kubernetes_version: String,
    pub created_at: i64,
    /// The archive's location in the backup store (`<tenant>/<id>.kbak`).
    pub location: String,
    /// Taken by the tenant's schedule (pruned by its retention) rather than asked for.
    #[serde(default)]
    pub scheduled: bool,
}

/// Where backup `id` of `tenant` is kept in the store.
pub fn location(tenant: &str, id: &str) -> String {
    format!("{tenant}/{id}.kbak")
}

/// A new backup id for `tenant` at `now` (unix seconds), with `salt` (random) so two taken in
/// the same second differ.
pub fn new_id(tenant: &str, now: i64, salt: u16) -> String {
    let t =
        time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{tenant}-{:04}{:02}{:02}{:02}{:02}{:02}-{salt:04x}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Why a tenant at `tenant` cannot be restored from a backup taken at `backup`, if it cannot:
/// an apiserver reads what its own minor and the one before wrote (an upgrade moves one minor at
/// a time), never what a newer one wrote.
pub fn restorable(backup: &str, tenant: Version) -> Result<(), String> {
    let Some(b) = Version::parse(backup) else {
        return Err(format!(
            "the backup records Kubernetes version {backup:?}, which is not a release"
        ));
    };
    if b.minor > tenant.minor {
        return Err(format!(
            "the backup was taken at Kubernetes {b}; a cluster at {tenant} cannot read what a newer \
             minor wrote: set kubernetes_version to 1.{}.x or later",
            b.minor
        ));
    }
    if tenant.minor > b.minor + 1 {
        return Err(format!(
            "the backup was taken at Kubernetes {b}; a cluster at {tenant} is more than one minor \
             newer (versions move one minor at a time): restore at 1.{}.x or 1.{}.x, then upgrade",
            b.minor,
            b.minor + 1
        ));
    }
    Ok(())
}
