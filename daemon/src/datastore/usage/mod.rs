//! Measuring what each tenant keeps and writes on each datastore, without re-reading shards, and
//! walling a tenant off the moment it passes its limits.
//!
//! Per registered datastore, one task holds one connection (its admin credentials) and:
//! 1. scans every key once, a page (of 100 keys) at a time at one fixed revision, counting per tenant prefix
//!    ([`Tally::seed`]);
//! 2. watches every key from the next revision with previous values, applying each change
//!    ([`Tally::apply`]): a put adds the new size and takes away the old, a delete takes away
//!    the old; and metering what each tenant writes ([`Meter`]: the bytes of every put).
//!
//! A watch that etcd cancels (history compacted past it), a change it cannot account for (a
//! replaced value etcd did not return), or a lost connection starts again from the scan, after
//! a pause. Until the first scan completes the datastore reads as unmeasured (`None`), never as
//! empty. Every kamajid replica measures, so any one of them can answer the API; the cost per
//! shard is one scan at start and one watch stream, whatever the number of tenants.
//!
//! **Walls** ([`kamaji_core::limits`]). The lifecycle registers each tenant's limits here
//! ([`UsageTracker::guard`]); on the leader, the watch task then raises a tenant's hard wall
//! (its etcd role made read-only but for kamajid's policy keys) the moment an event takes it past
//! a limit while its soft wall is not proven in force, or touches the soft wall's own keys, and
//! wakes the lifecycle, which puts the soft wall in place and lowers the hard one. Every change
//! of a tenant's role on a datastore (walls, and a move's hold) goes through
//! [`UsageTracker::set_guard`], one at a time per datastore, so the role always reflects all
//! of them: a move's hold is never lifted by a wall coming down, and the other way round.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use etcd_client::Client;
use tokio::sync::watch;
use tracing::warn;

use kamaji_core::datastore::DatastoreRecord;
use kamaji_core::ids::{DatastoreName, TenantId};
use kamaji_core::kek::Kek;
use kamaji_core::limits::{self, Guard, Limits, Meter, Metered, Wall};
use kamaji_core::usage::{StorageUsage, Tally};

use super::transfer::{self, Access};
use crate::etcd::error_chain;
use crate::store::Store;

/// Pause before measuring a datastore again after a failure, doubling while it keeps failing.
const RETRY: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(120);

mod follow;
use follow::measure;

/// The role that reflects everything enforced on a tenant.
pub fn access(g: &Guard) -> Access {
    match (g.held, g.wall) {
        (true, _) | (_, Wall::Locked) => Access::ReadOnly,
        (false, Wall::Up) => Access::Walled,
        (false, Wall::Down) => Access::ReadWrite,
    }
}

/// Everything known of one datastore, behind one lock: the live tally, each tenant's meter and
/// guard, and the connection walls are raised through.
#[derive(Default)]
struct ShardState {
    tally: Option<Tally>,
    meters: HashMap<String, Meter>,
    guards: HashMap<String, Guard>,
    admin: Option<Client>,
}

type Shared = Arc<RwLock<ShardState>>;

/// One datastore being measured; the task stops when this is dropped.
struct Shard {
    update_time: i64,
    state: Shared,
    /// Role changes on this datastore, one at a time.
    roles: Arc<tokio::sync::Mutex<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Per-tenant usage of every registered datastore, and the walls enforcing each tenant's limits.
pub struct UsageTracker {
    kek: Kek,
    timeout: Duration,
    /// Seconds of history the datastores keep (two compaction retentions).
    history_secs: i64,
    /// The lifecycle, woken when a wall goes up.
    wake: Option<Arc<tokio::sync::Notify>>,
    /// Whether this replica leads (only the leader raises walls).
    leading: Option<watch::Receiver<bool>>,
    shards: Mutex<HashMap<DatastoreName, Shard>>,
    epoch: Instant,
    /// Where raised walls are counted.
    metrics: std::sync::OnceLock<Arc<crate::metrics::Metrics>>,
}

/// Why measuring a datastore stopped; it starts again from a scan.
#[derive(Debug, thiserror::Error)]
enum MeasureError {
    #[error("{0}")]
    Etcd(String),
    #[error("the watch was cancelled (compacted at revision {0}); scanning again")]
    Compacted(i64),
    #[error("a change came without the value it replaced; scanning again")]
    Unaccounted,
    #[error("the watch ended; scanning again")]
    Ended,
}

impl From<etcd_client::Error> for MeasureError {
    fn from(e: etcd_client::Error) -> Self {
        Self::Etcd(error_chain(&e))
    }
}

/// A role change that failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct GuardError(String);

impl UsageTracker {
    /// A tracker that measures only (no walls raised by itself): tests and the bench.
    pub fn new(kek: Kek, timeout: Duration) -> Arc<Self> {
        Self::enforcing(
            kek,
            timeout,
            2 * kamaji_core::shard::RETENTION_SECONDS,
            None,
            None,
        )
    }

    /// A tracker that also raises walls while `leading`, waking `wake`; `history_secs` is how
    /// long the datastores keep history (for the figures).
    pub fn enforcing(
        kek: Kek,
        timeout: Duration,
        history_secs: i64,
        wake: Option<Arc<tokio::sync::Notify>>,
        leading: Option<watch::Receiver<bool>>,
    ) -> Arc<Self> {
        Arc::new(Self {
            kek,
            timeout,
            history_secs,
            wake,
            leading,
            shards: Mutex::default(),
            epoch: Instant::now(),
            metrics: std::sync::OnceLock::new(),
        })
    }

    /// Counts every wall this tracker raises in `metrics`.
    pub fn count_walls_in(&self, metrics: Arc<crate::metrics::Metrics>) {
        let _ = self.metrics.set(metrics);
    }

    fn now_ms(&self) -> i64 {
        i64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(i64::MAX)
    }

    fn state(&self, ds: &DatastoreName) -> Option<(Shared, Arc<tokio::sync::Mutex<()>>)> {
        let shards = self.shards.lock().ok()?;
        let s = shards.get(ds)?;
        Some((s.state.clone(), s.roles.clone()))
    }

    fn read<T>(&self, ds: &DatastoreName, f: impl FnOnce(&Tally) -> T) -> Option<T> {
        let (state, _) = self.state(ds)?;
        let st = state.read().ok()?;
        st.tally.as_ref().map(f)
    }

    /// What tenant `id` keeps on `ds`; `None` until `ds` has been scanned.
    pub fn tenant(&self, ds: &DatastoreName, id: &TenantId) -> Option<StorageUsage> {
        self.read(ds, |t| t.tenant(id.as_str()))
    }

    /// What all tenants keep on `ds` together; `None` until it has been scanned.
    pub fn datastore(&self, ds: &DatastoreName) -> Option<StorageUsage> {
        self.read(ds, Tally::total)
    }

    /// What tenant `id` keeps and writes on `ds`, and how it is walled; `None` until `ds` has
    /// been scanned.
    pub fn metered(&self, ds: &DatastoreName, id: &TenantId) -> Option<Metered> {
        let (state, _) = self.state(ds)?;
        let st = state.read().ok()?;
        let usage = st.tally.as_ref()?.tenant(id.as_str());
        let now = self.now_ms();
        let guard = st.guards.get(id.as_str()).copied().unwrap_or_default();
        let meter = st.meters.get(id.as_str());
        let rate = guard.limits.map_or(0, |l| l.write_bytes_per_second);
        Some(Metered {
            usage,
            write_bytes_per_second: meter.map_or(0, |m| m.rate(now)),
            history_bytes: meter.map_or(0, |m| m.written_within(now, self.history_secs)),
            debt_bytes: match (meter, guard.limits) {
                (Some(m), Some(_)) => m.debt(now, rate),
                _ => 0,
            },
            guard,
        })
    }

    /// Registers what is enforced on tenant `id` of `ds` (its limits, whether a move holds its
    /// writes and what it is walled for, as its record says) without touching its role. A tenant registered for the
    /// first time owes nothing: what was written before (a move's copy) was not its doing.
    pub fn register(
        &self,
        ds: &DatastoreName,
        id: &TenantId,
        limits: Limits,
        held: bool,
        walled: limits::Breach,
    ) {
        let Some((state, _)) = self.state(ds) else {
            return;
        };
        let Ok(mut st) = state.write() else { return };
        let first = !st.guards.contains_key(id.as_str());
        let g = st.guards.entry(id.as_str().to_owned()).or_default();
        g.limits = Some(limits);
        g.held = held;
        g.walled = walled;
        if first {
            if let Some(m) = st.meters.get_mut(id.as_str()) {
                m.forgive();
            }
        }
    }

    /// Changes what is enforced on tenant `id` of `ds` and gives its role the access that
    /// reflects all of it (one change at a time per datastore).
    pub async fn set_guard(
        &self,
        ds: &DatastoreName,
        id: &TenantId,
        change: impl FnOnce(&mut Guard),
    ) -> Result<Guard, GuardError> {
        let (state, roles) = self
            .state(ds)
            .ok_or_else(|| GuardError(format!("datastore {ds} is not measured yet")))?;
        let _one = roles.lock().await;
        let (guard, admin) = {
            let mut st = state
                .write()
                .map_err(|_| GuardError("a poisoned lock".into()))?;
            let g = st.guards.entry(id.as_str().to_owned()).or_default();
            change(g);
            (*g, st.admin.clone())
        };
        let mut admin =
            admin.ok_or_else(|| GuardError(format!("datastore {ds} is not connected yet")))?;
        transfer::set_access(&mut admin, id, access(&guard))
            .await
            .map_err(GuardError)?;
        Ok(guard)
    }

    /// Forgets tenant `id` on `ds` (it left: deleted, or moved off).
    pub fn forget(&self, ds: &DatastoreName, id: &TenantId) {
        if let Some((state, _)) = self.state(ds) {
            if let Ok(mut st) = state.write() {
                st.guards.remove(id.as_str());
                st.meters.remove(id.as_str());
            }
        }
    }

    /// Measures exactly `records`: starts on new datastores (and on ones whose credentials
    /// changed), stops on those no longer registered.
    pub fn track(self: &Arc<Self>, records: &[DatastoreRecord]) {
        let Ok(mut shards) = self.shards.lock() else {
            return;
        };
        shards.retain(|name, s| {
            records
                .iter()
                .any(|r| &r.name == name && r.update_time == s.update_time)
        });
        for rec in records {
            if shards.contains_key(&rec.name) {
                continue;
            }
            let state: Shared = Arc::default();
            let roles = Arc::new(tokio::sync::Mutex::new(()));
            let task = tokio::spawn(measure(
                self.clone(),
                rec.clone(),
                state.clone(),
                roles.clone(),
            ));
            shards.insert(
                rec.name.clone(),
                Shard {
                    update_time: rec.update_time,
                    state,
                    roles,
                    task,
                },
            );
        }
    }

    /// Follows the registered datastores every `interval` until `shutdown` flips.
    pub async fn run(
        self: Arc<Self>,
        store: Store,
        interval: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        loop {
            match store.datastore_records().await {
                Ok(r) => self.track(&r.into_iter().map(|v| v.value).collect::<Vec<_>>()),
                Err(e) => warn!(error = %e, "listing datastores to measure"),
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                if let Ok(mut s) = self.shards.lock() {
                    s.clear();
                }
                return;
            }
        }
    }

    fn leading(&self) -> bool {
        self.leading.as_ref().is_some_and(|l| *l.borrow())
    }
}
