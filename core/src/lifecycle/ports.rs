//! What the lifecycle asks of the world, as narrow traits. The daemon implements them over its
//! etcd state store, the datastores' etcd, the Kubernetes or process runtime and the client of a
//! tenant's own apiserver; the lifecycle tests implement them in memory with faults on demand.
//!
//! Contract shared by every port: calls are idempotent (the lifecycle may repeat one after a
//! crash), and an error says what failed without any secret in it.

use std::future::Future;

use crate::controlplane::Tenant;
use crate::datastore::{DatastoreRecord, Reservation};
use crate::ids::{DatastoreName, TenantId, TenantName};
use crate::limits::{Breach, Limits, Metered, Wall};
use crate::pki::TenantPki;
use crate::placement::Candidate;
use crate::spec::TenantSpec;
use crate::tenant::TenantRecord;
use crate::usage::StorageUsage;

/// A record and the revision it was read at, for compare-and-swap.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned<T> {
    pub value: T,
    pub revision: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("{what} was changed or removed concurrently; retry")]
    Conflict { what: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    /// A stored record (or a part of one) that does not decode: an error to report, never a
    /// reason to default, re-mint or re-create.
    #[error("{what} does not decode: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("kamajid's state store: {0}")]
    Unavailable(String),
}

/// A datastore as placement sees it, with the reservation record (and its revision) the placing
/// transaction guards.
#[derive(Debug, Clone)]
pub struct Candidacy {
    pub candidate: Candidate,
    pub reservation: Option<Versioned<Reservation>>,
}

/// kamajid's own records. Every write is a compare-and-swap on the revision read.
pub trait Records: Send + Sync + 'static {
    fn tenant(
        &self,
        name: &TenantName,
    ) -> impl Future<Output = Result<Option<Versioned<TenantRecord>>, RecordError>> + Send;

    /// The spec a record carries, decoded.
    fn spec(&self, rec: &TenantRecord) -> Result<TenantSpec, RecordError>;

    fn tenants(&self) -> impl Future<Output = Result<Vec<TenantRecord>, RecordError>> + Send;

    fn create_tenant(
        &self,
        rec: &TenantRecord,
    ) -> impl Future<Output = Result<(), RecordError>> + Send;

    fn update_tenant(
        &self,
        rec: &TenantRecord,
        revision: i64,
    ) -> impl Future<Output = Result<(), RecordError>> + Send;

    fn datastore(
        &self,
        name: &DatastoreName,
    ) -> impl Future<Output = Result<Option<DatastoreRecord>, RecordError>> + Send;

    /// Every registered datastore as placement sees it.
    fn candidates(&self) -> impl Future<Output = Result<Vec<Candidacy>, RecordError>> + Send;

    /// Records `rec` (which names its datastore) and adds `rec.reservation_bytes` to that
    /// datastore's reservation, in one transaction guarded by the tenant's revision, by the
    /// reservation's as placement saw it, and by the datastore still existing.
    fn place(
        &self,
        rec: &TenantRecord,
        revision: i64,
        reservation: Option<Versioned<Reservation>>,
    ) -> impl Future<Output = Result<(), RecordError>> + Send;

    /// Records `rec` (whose `moving` names the target) and adds `rec.reservation_bytes` to the
    /// target's reservation, in one transaction guarded as [`Records::place`] is.
    fn reserve_move(
        &self,
        rec: &TenantRecord,
        revision: i64,
        reservation: Option<Versioned<Reservation>>,
    ) -> impl Future<Output = Result<(), RecordError>> + Send;

    /// Records `rec`, now placed on its move's target (`rec.datastore`), moving its placement
    /// there and taking its reservation off the source (`moving.from`), in one transaction.
    fn switch_move(
        &self,
        rec: &TenantRecord,
        revision: i64,
    ) -> impl Future<Output = Result<(), RecordError>> + Send;

    /// Records `rec` with its move abandoned and takes its reservation off `target`, in one
    /// transaction.
    fn abort_move(
        &self,
        rec: &TenantRecord,
        revision: i64,
        target: &DatastoreName,
    ) -> impl Future<Output = Result<(), RecordError>> + Send;

    /// Removes the record and, when it was placed, its placement and reservation (and the
    /// reservation on the target of a move not yet switched), in one transaction.
    fn release(
        &self,
        rec: &TenantRecord,
        revision: i64,
    ) -> impl Future<Output = Result<(), RecordError>> + Send;
}

/// An error of the world outside kamajid's records: what was being done, and why it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op}: {detail}")]
pub struct PortError {
    pub op: String,
    pub detail: String,
}

/// Fencing a tenant into its own key prefix of a shared etcd: a role with read-write on
/// exactly its prefix, and a password-less user named by its id (the CN of its certificate);
/// and measuring what the prefix holds.
pub trait Isolation: Send + Sync + 'static {
    /// What tenant `id` keeps and writes on datastore `ds` as last measured (kept current from
    /// the shard's events, so cheap to ask), and how it is walled there; `None` until that
    /// datastore has been measured.
    fn metered(&self, ds: &DatastoreName, id: &TenantId) -> Option<Metered>;

    /// What tenant `id` keeps on datastore `ds`; `None` until measured.
    fn usage(&self, ds: &DatastoreName, id: &TenantId) -> Option<StorageUsage> {
        self.metered(ds, id).map(|m| m.usage)
    }

    /// Tells what to enforce on tenant `id` of `ds` from now on, at once, without waiting for
    /// the lifecycle: its limits, whether a move holds its writes there and what it is walled
    /// for (as its record says). In memory only, and cheap: the lifecycle says it every round.
    fn register(
        &self,
        ds: &DatastoreName,
        id: &TenantId,
        limits: Limits,
        held: bool,
        walled: Breach,
    );

    /// Sets tenant `id`'s hard wall on `ds` to `wall` and records whether its soft wall is
    /// proven in force (`soft`); its etcd role then reflects the wall and any move's hold.
    fn set_walls(
        &self,
        ds: &DatastoreName,
        id: &TenantId,
        wall: Wall,
        soft: bool,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Why datastore `ds` refuses every write now (an etcd alarm such as `NOSPACE`), as its last
    /// health round found; `None` while it takes writes.
    fn refusing_writes(&self, ds: &DatastoreName) -> Option<String>;

    /// Creates (or completes) tenant `id`'s role and user.
    fn ensure(
        &self,
        ds: &DatastoreRecord,
        id: &TenantId,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Removes tenant `id`: its role first (no user can read on after a crash), every key under
    /// its prefix, then its user.
    fn remove(
        &self,
        ds: &DatastoreRecord,
        id: &TenantId,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Makes tenant `id`'s role on `ds` read-only (`held`), or as its walls say again: while
    /// held its apiserver reads but cannot write, so its keys stay as they are.
    fn hold_writes(
        &self,
        ds: &DatastoreRecord,
        id: &TenantId,
        held: bool,
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Raises `to`'s revision towards `from`'s current one with at most `budget` writes, so
    /// that objects copied to `to` (and everything written there after) carry higher
    /// resourceVersions than any a client of the tenant has seen on `from`. How many revisions
    /// are still to raise: 0 once `to` is past `from`. Idempotent; cheap when already past.
    fn align_revision(
        &self,
        from: &DatastoreRecord,
        to: &DatastoreRecord,
        budget: u64,
    ) -> impl Future<Output = Result<u64, PortError>> + Send;

    /// Copies every key under tenant `id`'s prefix from `from` (whose writes are held) to `to`,
    /// replacing whatever a previous attempt left there, then checks both sides hold the same
    /// keys and values (count and digest). What was copied.
    fn copy(
        &self,
        from: &DatastoreRecord,
        to: &DatastoreRecord,
        id: &TenantId,
    ) -> impl Future<Output = Result<Copied, PortError>> + Send;

    /// Replaces whatever tenant `id` holds on `ds` with the keys of backup `backup` (read whole
    /// and checked against its recorded digest before the first write, so a corrupt archive
    /// touches nothing), written under `id`'s prefix. What was written, and the encryption keys
    /// the backup's objects need. Idempotent: a repeat after a crash writes it all again.
    fn restore(
        &self,
        ds: &DatastoreRecord,
        id: &TenantId,
        backup: &str,
    ) -> impl Future<Output = Result<Restored, PortError>> + Send;
}

/// What a restore wrote, and what the restored objects need to be read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Restored {
    pub keys: i64,
    pub bytes: i64,
    pub secrets: crate::backup::archive::Secrets,
}

/// What a copy between datastores moved, checked on both sides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Copied {
    pub keys: i64,
    pub bytes: i64,
}

/// What the runtime reports about one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeStatus {
    /// Every desired replica runs the desired version and the apiserver answers `/readyz`.
    pub ready: bool,
    /// `https://host:port` the tenant apiserver is reached at, once known.
    pub endpoint: Option<String>,
    /// Why it is not ready.
    pub message: String,
    /// Why it will not become ready as configured, if a component keeps failing the same way
    /// right after it starts (in the component's own words): no use waiting for it.
    pub stalled: Option<String>,
    /// `host:port` Konnectivity agents dial, when the tenant has the tunnel.
    pub tunnel: Option<String>,
}

/// Where tenant control planes run: pods in an admin cluster, or local processes. `apply` of an
/// unchanged tenant changes nothing; `delete` says `true` only once nothing is left.
pub trait Runtime: Send + Sync + 'static {
    fn apply(
        &self,
        t: &Tenant<'_>,
        pki: &TenantPki,
    ) -> impl Future<Output = Result<(), PortError>> + Send;
    fn status(
        &self,
        t: &Tenant<'_>,
    ) -> impl Future<Output = Result<RuntimeStatus, PortError>> + Send;
    /// A Ready tenant's routine health check: `ready` as [`Runtime::status`] would say it, from
    /// what the runtime already knows where it can (a watch), since every Ready tenant is
    /// checked every 30 s. The endpoint may be left out.
    fn health(
        &self,
        t: &Tenant<'_>,
    ) -> impl Future<Output = Result<RuntimeStatus, PortError>> + Send {
        self.status(t)
    }
    fn delete(&self, tenant: &TenantName) -> impl Future<Output = Result<bool, PortError>> + Send;
}

/// The objects kamajid keeps inside a tenant, reached through the tenant's own apiserver as
/// its admin: applied with server-side apply (drift restored), removed when turned off.
pub trait TenantObjects: Send + Sync + 'static {
    fn sync(
        &self,
        endpoint: &str,
        admin_kubeconfig: &str,
        apply: &[serde_json::Value],
        remove: &[serde_json::Value],
    ) -> impl Future<Output = Result<(), PortError>> + Send;

    /// Whether the tenant's apiserver now refuses, with kamajid's storage policy, both a create
    /// and an update from a user outside its control plane (dry runs: nothing is written). The
    /// policy takes effect only once the apiserver's admission has seen it.
    fn refuses_writes(
        &self,
        endpoint: &str,
        admin_kubeconfig: &str,
    ) -> impl Future<Output = Result<bool, PortError>> + Send;

    /// Writes every object of `resources` (`secrets`, `deployments.apps`) back unchanged, so
    /// the apiserver stores each with the key that now encrypts. How many were written.
    fn rewrite(
        &self,
        endpoint: &str,
        admin_kubeconfig: &str,
        resources: &[String],
    ) -> impl Future<Output = Result<usize, PortError>> + Send;
}

/// How a performed step ended, for [`StepObserver`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepResult {
    /// It ran to its end.
    Ran,
    /// It waits on the outside world and runs again next round.
    Waiting,
    /// Another writer changed the record first; it is retried at once.
    Conflict,
    /// It failed; the tenant is marked Degraded with the reason.
    Failed,
}

impl StepResult {
    /// A short, fixed name (a log field, a metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ran => "ran",
            Self::Waiting => "waiting",
            Self::Conflict => "conflict",
            Self::Failed => "failed",
        }
    }
}

/// What the lifecycle tells whoever watches it (metrics) about what it did. Calls are cheap
/// and synchronous; the default does nothing, so tests need no observer.
pub trait StepObserver: Send + Sync {
    /// `step` was performed on `before` (the record as it was read) and ended as `result`
    /// after `elapsed`.
    fn performed(
        &self,
        before: &TenantRecord,
        step: crate::lifecycle::Step,
        result: StepResult,
        elapsed: std::time::Duration,
    ) {
        let _ = (before, step, result, elapsed);
    }

    /// Placement found no datastore for a tenant (it is then Failed).
    fn placement_refused(&self, error: &crate::placement::PlacementError) {
        let _ = error;
    }

    /// Every tenant, as the leader listed them at the start of a round (every few seconds):
    /// the fleet's gauges come from this listing, which the lifecycle reads anyway.
    fn round(&self, tenants: &[TenantRecord]) {
        let _ = tenants;
    }
}

/// The observer that observes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unobserved;

impl StepObserver for Unobserved {}

/// What time it is, in unix seconds: the system's clock in kamajid, one a test sets where the
/// subject is time itself (maintenance windows, exclusions).
pub trait Clock: Send + Sync {
    fn now(&self) -> i64;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        super::now_unix()
    }
}
