//! The leader's loop that keeps every datastore healthy and its status current: each round
//! probes it (reachable, secured, an etcd release without a known auth bypass), then does its
//! upkeep ([`super::upkeep`]: compaction, defragmentation, recovery from `NOSPACE`) and records
//! what it found and did.
//!
//! Only the leader probes and keeps shards, so N replicas do not multiply the load on the
//! datastores. A status is written only while its datastore record exists
//! ([`Store::put_status`]), so a probe racing a delete never leaves a stray status behind. What
//! the lifecycle must know at once (a shard that refuses writes) is also kept in memory
//! ([`Shards`]): the lifecycle runs on the leader too.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};

use kamaji_core::datastore::{DatastoreRecord, DatastoreStatusRecord, Phase};
use kamaji_core::ids::DatastoreName;
use kamaji_core::kek::Kek;
use kamaji_core::lifecycle::now_unix;
use kamaji_core::shard::Policy;
use kamaji_core::tenant::MoveStage;

use super::probe::Prober;
use super::upkeep::{self, ShardAdmin};
use crate::store::{Store, StoreError};

/// Why each shard refuses writes now, as the last round found (absent: it takes them).
#[derive(Debug, Default)]
pub struct Shards {
    refusing: RwLock<HashMap<DatastoreName, String>>,
}

impl Shards {
    pub fn refusing_writes(&self, ds: &DatastoreName) -> Option<String> {
        self.refusing.read().ok()?.get(ds).cloned()
    }

    fn set(&self, ds: &DatastoreName, why: Option<String>) {
        if let Ok(mut m) = self.refusing.write() {
            match why {
                Some(w) => m.insert(ds.clone(), w),
                None => m.remove(ds),
            };
        }
    }
}

/// How shards are kept, and where the lifecycle learns of them.
#[derive(Clone)]
pub struct Upkeep {
    pub policy: Policy,
    pub shards: Arc<Shards>,
    pub timeout: Duration,
}

/// Whether a move holds or copies a tenant's keys on `ds` now: a defragmentation would stall it.
async fn moving_on(store: &Store, ds: &DatastoreName) -> bool {
    match store.tenant_records().await {
        Ok(all) => all.iter().any(|t| {
            t.moving.as_ref().is_some_and(|m| {
                (&m.from == ds || &m.to == ds)
                    && matches!(m.stage, MoveStage::Held | MoveStage::Copied)
            })
        }),
        // Unknown: do not risk stalling a move.
        Err(_) => true,
    }
}

/// Probes one datastore, keeps it, and records the outcome.
pub async fn refresh<P: Prober>(
    store: &Store,
    kek: &Kek,
    prober: &P,
    rec: &DatastoreRecord,
    keep: &Upkeep,
) -> Result<DatastoreStatusRecord, StoreError> {
    let now = now_unix();
    let prev = store
        .datastore_status(&rec.name)
        .await?
        .map(|v| v.value)
        .unwrap_or_default();
    let mut status = DatastoreStatusRecord {
        probe_time: now,
        upkeep: prev.upkeep.clone(),
        ..Default::default()
    };
    match rec.admin_credentials(kek) {
        Err(e) => {
            status.phase = Phase::Insecure;
            status.message = e.to_string();
        }
        Ok(creds) => match prober.probe(&creds).await {
            Err(e) => {
                status.phase = e.phase();
                status.message = e.to_string();
            }
            Ok(r) => {
                status.phase = Phase::Ready;
                status.etcd_version = r.etcd_version;
                status.db_size_bytes = r.db_size_bytes;
                status.members = r.members;
                let mut notes = r.warnings;
                let admin = ShardAdmin::new(creds, keep.timeout);
                let busy = moving_on(store, &rec.name);
                match upkeep::round(
                    &admin,
                    &prev.upkeep,
                    rec.quota_bytes,
                    &keep.policy,
                    now,
                    busy,
                )
                .await
                {
                    Ok(round) => {
                        if round.upkeep.last_event != prev.upkeep.last_event {
                            info!(datastore = %rec.name, event = %round.upkeep.last_event, "datastore upkeep");
                        }
                        if round.upkeep.compacted_revision != prev.upkeep.compacted_revision {
                            debug!(datastore = %rec.name, revision = round.upkeep.compacted_revision, "compacted");
                        }
                        let largest = round.observed.largest();
                        status.db_size_bytes = largest.db_size;
                        status.db_size_in_use_bytes = largest.db_size_in_use;
                        status.etcd_quota_bytes = round.observed.etcd_quota;
                        status.revision = round.observed.revision;
                        status.alarms = round.observed.alarm_names();
                        status.upkeep = round.upkeep;
                        if status.etcd_quota_bytes > 0 && status.etcd_quota_bytes < rec.quota_bytes
                        {
                            notes.push(format!(
                                "quota_bytes ({}) is more than etcd's own --quota-backend-bytes ({}): placement counts etcd's",
                                rec.quota_bytes, status.etcd_quota_bytes
                            ));
                        }
                        if let Some(t) = round.trouble {
                            if status.alarmed() {
                                status.phase = Phase::Alarm;
                            }
                            notes.insert(0, t);
                        }
                    }
                    Err(e) => {
                        warn!(datastore = %rec.name, error = %e, "datastore upkeep");
                        notes.insert(
                            0,
                            format!("upkeep (compaction, defragmentation) failed: {e}"),
                        );
                    }
                }
                status.message = notes.join("; ");
            }
        },
    }
    keep.shards.set(
        &rec.name,
        (status.phase == Phase::Alarm).then(|| status.message.clone()),
    );
    store.put_status(&rec.name, &status).await?;
    Ok(status)
}

/// Runs until `shutdown` flips, probing and keeping every datastore each `interval` while
/// `leader` is true.
pub async fn run<P: Prober>(
    store: Store,
    kek: Kek,
    prober: Arc<P>,
    keep: Upkeep,
    interval: Duration,
    mut leader: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
            _ = leader.changed() => continue,
        }
        if *shutdown.borrow() {
            return;
        }
        if !*leader.borrow() {
            continue;
        }
        let records = match store.datastore_records().await {
            Ok(r) => r,
            Err(e) => {
                warn!(error = %e, "listing datastores for health probes");
                continue;
            }
        };
        let probes = records
            .iter()
            .map(|r| refresh(&store, &kek, prober.as_ref(), &r.value, &keep));
        for (rec, result) in records.iter().zip(futures::future::join_all(probes).await) {
            match result {
                Ok(s) => debug!(datastore = %rec.value.name, phase = ?s.phase, "probed"),
                Err(e) => {
                    warn!(datastore = %rec.value.name, error = %e, "recording datastore status")
                }
            }
        }
    }
}
