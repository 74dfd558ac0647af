//! A tenant cluster as kamajid records it: the desired spec (encoded by the store, see
//! [`WireSpec`]) with a generation that moves on every change, the immutable id, the datastore
//! it was placed on and the reservation it holds there, its PKI (private keys sealed), and what
//! the lifecycle last observed: phase, conditions, endpoint, version.

use serde::{Deserialize, Serialize};

use crate::ids::{DatastoreName, TenantId, TenantName};

/// Reservation a tenant holds on its datastore by default, until measured usage says more.
pub const DEFAULT_RESERVATION_BYTES: i64 = 64 * 1024 * 1024;

pub const COND_PLACED: &str = "DatastoreAssigned";
pub const COND_ISOLATED: &str = "EtcdIsolated";
pub const COND_APPLIED: &str = "ControlPlaneApplied";
pub const COND_READY: &str = "ControlPlaneReady";
/// The reason of `ControlPlaneReady` false when a component keeps failing right after it starts:
/// clients waiting for Ready stop waiting (the spec must change first).
pub const REASON_STALLED: &str = "FailsToStart";
pub const COND_BOOTSTRAPPED: &str = "TenantBootstrapped";
pub const COND_RECONCILED: &str = "Reconciled";
pub const COND_REMOVED: &str = "ControlPlaneRemoved";
pub const COND_RELEASED: &str = "EtcdReleased";
pub const COND_ENCRYPTED: &str = "EncryptedAtRest";
pub const COND_CREDENTIALS: &str = "CredentialsRotated";
/// How the last (or the running) move between datastores went.
pub const COND_MOVED: &str = "Moved";
/// A tenant created from a backup has its objects written back (before its first Apply).
pub const COND_RESTORED: &str = "Restored";
/// False while the tenant's datastore refuses every write (an etcd alarm such as `NOSPACE`): the
/// tenant is not Ready then, whatever else holds.
pub const COND_WRITABLE: &str = "DatastoreWritable";
/// True while the tenant keeps more than its storage quota and its writes are refused.
pub const COND_STORAGE_QUOTA: &str = "StorageQuotaExceeded";
/// True while the tenant writes more than its write budget and its writes are refused.
pub const COND_WRITE_BUDGET: &str = "WriteBudgetExceeded";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Provisioning,
    Ready,
    Upgrading,
    Deleting,
    Degraded,
    /// Could not be placed: terminal, holds no capacity, waits for its deletion.
    Failed,
    /// Moving to another datastore ([`Move`]).
    Moving,
    /// The spec asks `hibernated`: the control plane is stopped, everything else kept.
    Hibernated,
    /// Rolled back in place to a backup ([`InPlaceRestore`]): writes held, control plane
    /// stopped, its prefix replaced, then started again.
    Restoring,
}

/// An in-place restore in flight: the tenant's prefix replaced by a backup's keys. Each stage
/// is recorded once its effect is done, so a kamajid killed anywhere resumes from it; the
/// tenant never serves half its objects (its control plane is stopped from `Stopped` until the
/// write is whole).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct InPlaceRestore {
    pub backup: String,
    pub stage: RestoreStage,
    pub requested_at: i64,
    /// When writes were held (0: not yet).
    pub held_at: i64,
    pub keys: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum RestoreStage {
    /// Asked for; nothing done yet.
    Requested,
    /// The tenant's role is read-only: nothing it runs can write any more.
    Held,
    /// Its control plane is stopped.
    Stopped,
    /// Its prefix holds exactly the backup's keys.
    Written,
}

/// The last in-place restore, once done.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RestoreRecord {
    pub backup: String,
    pub requested_at: i64,
    /// When its writes were held again (the control plane is then starting).
    pub released_at: i64,
    /// Seconds its writes were held.
    pub held_seconds: i64,
    pub keys: i64,
}

/// A move of the tenant's keys from one datastore to another, in flight. Each stage is
/// recorded once its effects are done, so a kamajid killed anywhere resumes (or, before
/// `Switched`, rolls back) from what is recorded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Move {
    pub from: DatastoreName,
    pub to: DatastoreName,
    pub stage: MoveStage,
    /// When the move started and when writes were held (unix seconds; 0: not yet).
    pub started_at: i64,
    pub held_at: i64,
    /// What was copied and checked: keys and bytes.
    pub copied_keys: i64,
    pub copied_bytes: i64,
}

/// How far a move got. Until `Switched` the source holds the tenant's data of record (the
/// target holds at most a copy); from `Switched` on the target does.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum MoveStage {
    /// The target's capacity is reserved.
    Reserved,
    /// The tenant's etcd user and role exist on the target, whose revision is raised past the
    /// source's.
    Prepared,
    /// The tenant's role on the source is read-only: its data no longer changes.
    Held,
    /// The prefix is copied to the target and checked (key count and digest).
    Copied,
    /// The record points at the target; the control plane is rolled out to it.
    Switched,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Condition {
    pub kind: String,
    pub ok: bool,
    pub reason: String,
    pub message: String,
    pub since: i64,
}

/// The PKI a tenant keeps across reconciles: the whole set sealed as one value with the KEK,
/// and the CA certificate in clear (it is public, and every read of the tenant shows it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredPki {
    pub sealed: String,
    pub ca_certificate: String,
    /// When the first leaf certificate of the sealed set expires (unix seconds); 0 when unknown
    /// (sealed before this was recorded).
    #[serde(default)]
    pub certificates_expire_at: i64,
    /// The digest of `sealed` as the store keeps it under the tenant's own key, as last read or
    /// written; only the store sets it. The sealed set (about 20 KiB) changes only when the PKI
    /// is issued, renewed, rotated or re-sealed, so the store rewrites it only when `sealed` no
    /// longer has this digest, and lists records without it (`sealed` empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_as: Option<String>,
}

impl StoredPki {
    /// Whether `sealed` was read: a record listed without its sealed set has only the digest.
    pub fn sealed_read(&self) -> bool {
        !self.sealed.is_empty() || self.stored_as.is_none()
    }
}

/// What every object of the encrypted resources is written with: the key rotation, and the
/// resources besides Secrets (sorted).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EncryptedWith {
    pub rotation: u32,
    pub resources: Vec<String>,
}

impl EncryptedWith {
    /// What `spec` asks every encrypted object to be written with.
    pub fn of(spec: &crate::spec::Encryption) -> Self {
        let mut resources: Vec<String> = spec
            .resources
            .iter()
            .filter(|r| r.as_str() != "secrets")
            .cloned()
            .collect();
        resources.sort();
        resources.dedup();
        Self {
            rotation: spec.key_rotation,
            resources,
        }
    }

    /// Every resource to rewrite, Secrets first.
    pub fn all_resources(&self) -> Vec<String> {
        let mut all = vec!["secrets".to_owned()];
        all.extend(self.resources.iter().cloned());
        all
    }
}

/// The desired spec as the API received it, in the store's encoding (base64 protobuf of the
/// wire spec: lossless, and it reads back across schema additions). Only the store decodes it
/// into a [`crate::spec::TenantSpec`]; the core never reads it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(transparent)]
pub struct WireSpec(pub String);

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TenantRecord {
    pub name: TenantName,
    pub uid: TenantId,
    pub spec: WireSpec,
    pub generation: i64,
    pub datastore: Option<DatastoreName>,
    pub reservation_bytes: i64,
    pub pki: Option<StoredPki>,
    pub phase: Phase,
    pub conditions: Vec<Condition>,
    pub endpoint: Option<String>,
    pub current_version: Option<String>,
    pub observed_generation: i64,
    pub deleting: bool,
    pub create_time: i64,
    pub delete_time: i64,
    /// When the bootstrap objects were last applied inside the tenant (unix seconds).
    #[serde(default)]
    pub bootstrapped_at: i64,
    /// What every encrypted object is written with; `None` until the first rewrite (records
    /// from before encryption at rest).
    #[serde(default)]
    pub encrypted: Option<EncryptedWith>,
    /// The credential rotation the PKI is at (generation 0, none started, before any).
    #[serde(default)]
    pub credentials: crate::spec::CredentialRotation,
    /// A move between datastores in flight.
    #[serde(default)]
    pub moving: Option<Move>,
    /// An in-place restore in flight.
    #[serde(default)]
    pub restoring: Option<InPlaceRestore>,
    /// The last in-place restore, once its writes were released.
    #[serde(default)]
    pub last_restore: Option<RestoreRecord>,
    /// Move off the current datastore: it no longer matches the selector, or it is drained.
    #[serde(default)]
    pub evict: bool,
    /// The service-account issuer the control plane was last applied with (None: never
    /// applied, or applied by a kamajid that did not record it: the in-cluster one).
    #[serde(default)]
    pub service_account_issuer: Option<String>,
    /// The version kamajid moved the tenant to by its release channel; the spec's
    /// `kubernetes_version` is then a floor ([`crate::maintenance::desired`]).
    #[serde(default)]
    pub auto_version: Option<String>,
    /// The last version change of the control plane, automatic or not.
    #[serde(default)]
    pub last_upgrade: Option<UpgradeRecord>,
    /// The last backup its schedule took (or tried to).
    #[serde(default)]
    pub last_backup: Option<crate::backup::schedule::ScheduledRun>,
    /// `host:port` where the Konnectivity agents inside the tenant dial its server, as the
    /// runtime last reported it.
    #[serde(default)]
    pub tunnel: Option<String>,
}

/// A version change of a tenant's control plane: recorded when the apply that rolls it out
/// runs, finished when the tenant is Ready on the new version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpgradeRecord {
    pub from: String,
    pub to: String,
    /// Started by the release channel, not by a change of the spec.
    pub automatic: bool,
    /// Unix seconds; `finished_at` 0 while it runs.
    pub started_at: i64,
    pub finished_at: i64,
}

impl TenantRecord {
    /// A new record: the spec, a fresh immutable id, nothing observed yet.
    pub fn new(name: TenantName, spec: WireSpec, reservation_bytes: i64, now: i64) -> Self {
        Self {
            uid: TenantId::mint(&name),
            name,
            spec,
            generation: 1,
            datastore: None,
            reservation_bytes,
            pki: None,
            phase: Phase::Provisioning,
            conditions: Vec::new(),
            endpoint: None,
            current_version: None,
            observed_generation: 0,
            deleting: false,
            create_time: now,
            delete_time: 0,
            bootstrapped_at: 0,
            encrypted: None,
            credentials: Default::default(),
            moving: None,
            restoring: None,
            last_restore: None,
            evict: false,
            service_account_issuer: None,
            auto_version: None,
            last_upgrade: None,
            last_backup: None,
            tunnel: None,
        }
    }

    /// Records a condition, keeping its transition time when its truth did not change.
    pub fn set_condition(
        &mut self,
        kind: &str,
        ok: bool,
        reason: &str,
        message: impl Into<String>,
        now: i64,
    ) {
        let message = message.into();
        match self.conditions.iter_mut().find(|c| c.kind == kind) {
            Some(c) => {
                if c.ok != ok {
                    c.since = now;
                }
                c.ok = ok;
                c.reason = reason.to_owned();
                c.message = message;
            }
            None => self.conditions.push(Condition {
                kind: kind.to_owned(),
                ok,
                reason: reason.to_owned(),
                message,
                since: now,
            }),
        }
    }

    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    /// Whether condition `kind` holds.
    pub fn done(&self, kind: &str) -> bool {
        self.condition(kind).is_some_and(|c| c.ok)
    }

    /// Whether new objects are refused for keeping more than the storage quota.
    pub fn over_quota(&self) -> bool {
        self.done(COND_STORAGE_QUOTA)
    }

    /// The limits the tenant's writes are refused for, as recorded.
    pub fn walled(&self) -> crate::limits::Breach {
        crate::limits::Breach {
            quota: self.done(COND_STORAGE_QUOTA),
            budget: self.done(COND_WRITE_BUDGET),
        }
    }

    /// The storage quota in effect: the spec's, else the reservation.
    pub fn storage_quota(&self, spec: &crate::spec::TenantSpec) -> i64 {
        spec.storage_quota_bytes.unwrap_or(self.reservation_bytes)
    }

    /// What the tenant may keep and write on its datastore.
    pub fn limits(&self, spec: &crate::spec::TenantSpec) -> crate::limits::Limits {
        crate::limits::Limits::new(
            self.storage_quota(spec),
            self.reservation_bytes,
            spec.write_budget_bytes_per_second,
        )
    }

    /// Flags the record for teardown; the lifecycle does the rest.
    pub fn mark_deleting(&mut self, now: i64) {
        self.deleting = true;
        self.phase = Phase::Deleting;
        self.delete_time = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_keep_their_transition_time_until_their_truth_changes() {
        let mut r = TenantRecord::new(TenantName::parse("a").unwrap(), WireSpec::default(), 1, 5);
        r.set_condition("Ready", false, "Waiting", "x", 10);
        r.set_condition("Ready", false, "Waiting", "y", 20);
        assert_eq!(r.condition("Ready").unwrap().since, 10);
        assert_eq!(r.condition("Ready").unwrap().message, "y");
        r.set_condition("Ready", true, "Ready", "", 30);
        assert!(r.done("Ready"));
        assert_eq!(r.condition("Ready").unwrap().since, 30);
        assert_eq!(r.conditions.len(), 1);
    }

    #[test]
    fn a_record_written_before_typed_ids_reads_back() {
        let old = r#"{"name":"acme","uid":"acme-1a2b3","spec":"CgY=","generation":2,"datastore":"shard-a",
            "reservation_bytes":1,"pki":null,"phase":"Ready","conditions":[],"endpoint":null,
            "current_version":null,"observed_generation":2,"deleting":false,"create_time":1,"delete_time":0}"#;
        let r: TenantRecord = serde_json::from_str(old).unwrap();
        assert_eq!(r.uid.as_str(), "acme-1a2b3");
        assert_eq!(r.bootstrapped_at, 0);
        let bad = old.replace("\"acme-1a2b3\"", "\"Not An Id\"");
        assert!(serde_json::from_str::<TenantRecord>(&bad).is_err());
    }
}
