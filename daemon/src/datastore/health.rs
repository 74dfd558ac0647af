//! The leader's loop that keeps every datastore's status current.
//!
//! Only the leader probes, so N replicas do not multiply the load on the datastores. A status is
//! written only while its datastore record exists ([`Store::put_status`]), so a probe racing a
//! delete never leaves a stray status behind.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

use kamaji_core::datastore::{DatastoreRecord, DatastoreStatusRecord, Phase};
use kamaji_core::kek::Kek;
use kamaji_core::lifecycle::now_unix;

use super::probe::Prober;
use crate::store::{Store, StoreError};

/// Probes one datastore and records the outcome.
pub async fn refresh<P: Prober>(
    store: &Store,
    kek: &Kek,
    prober: &P,
    rec: &DatastoreRecord,
) -> Result<DatastoreStatusRecord, StoreError> {
    let status = match rec.admin_credentials(kek) {
        Err(e) => DatastoreStatusRecord {
            phase: Phase::Insecure,
            message: e.to_string(),
            probe_time: now_unix(),
            ..Default::default()
        },
        Ok(creds) => match prober.probe(&creds).await {
            Ok(r) => DatastoreStatusRecord {
                phase: Phase::Ready,
                message: String::new(),
                etcd_version: r.etcd_version,
                db_size_bytes: r.db_size_bytes,
                members: r.members,
                probe_time: now_unix(),
            },
            Err(e) => DatastoreStatusRecord {
                phase: e.phase(),
                message: e.to_string(),
                probe_time: now_unix(),
                ..Default::default()
            },
        },
    };
    store.put_status(&rec.name, &status).await?;
    Ok(status)
}

/// Runs until `shutdown` flips, probing every datastore each `interval` while `leader` is true.
pub async fn run<P: Prober>(
    store: Store,
    kek: Kek,
    prober: Arc<P>,
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
            .map(|r| refresh(&store, &kek, prober.as_ref(), &r.value));
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
