//! Measuring what each tenant keeps on each datastore, without re-reading shards.
//!
//! Per registered datastore, one task holds one connection (its admin credentials) and:
//! 1. scans every key once, a page (of 100 keys) at a time at one fixed revision, counting per tenant prefix
//!    ([`Tally::seed`]);
//! 2. watches every key from the next revision with previous values, applying each change
//!    ([`Tally::apply`]): a put adds the new size and takes away the old, a delete takes away
//!    the old.
//!
//! A watch that etcd cancels (history compacted past it), a change it cannot account for (a
//! replaced value etcd did not return), or a lost connection starts again from the scan, after
//! a pause. Until the first scan completes the datastore reads as unmeasured (`None`), never as
//! empty. Every kamajid replica measures, so any one of them can answer the API; the cost per
//! shard is one scan at start and one watch stream, whatever the number of tenants.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use etcd_client::{Client, EventType, GetOptions, WatchOptions};
use tokio::sync::watch;
use tracing::{debug, warn};

use kamaji_core::datastore::DatastoreRecord;
use kamaji_core::ids::{DatastoreName, TenantId};
use kamaji_core::kek::Kek;
use kamaji_core::usage::{Change, StorageUsage, Tally};

use crate::etcd::{connect, error_chain, EtcdTls};
use crate::store::Store;

/// Pause before measuring a datastore again after a failure.
const RETRY: Duration = Duration::from_secs(5);

type Shared = Arc<RwLock<Option<Tally>>>;

/// One datastore being measured; the task stops when this is dropped.
struct Shard {
    update_time: i64,
    tally: Shared,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Per-tenant usage of every registered datastore.
pub struct UsageTracker {
    kek: Kek,
    timeout: Duration,
    shards: Mutex<HashMap<DatastoreName, Shard>>,
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

impl UsageTracker {
    pub fn new(kek: Kek, timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            kek,
            timeout,
            shards: Mutex::default(),
        })
    }

    fn read<T>(&self, ds: &DatastoreName, f: impl FnOnce(&Tally) -> T) -> Option<T> {
        let shards = self.shards.lock().ok()?;
        let tally = shards.get(ds)?.tally.read().ok()?;
        tally.as_ref().map(f)
    }

    /// What tenant `id` keeps on `ds`; `None` until `ds` has been scanned.
    pub fn tenant(&self, ds: &DatastoreName, id: &TenantId) -> Option<StorageUsage> {
        self.read(ds, |t| t.tenant(id.as_str()))
    }

    /// What all tenants keep on `ds` together; `None` until it has been scanned.
    pub fn datastore(&self, ds: &DatastoreName) -> Option<StorageUsage> {
        self.read(ds, Tally::total)
    }

    /// Measures exactly `records`: starts on new datastores (and on ones whose credentials
    /// changed), stops on those no longer registered.
    pub fn track(&self, records: &[DatastoreRecord]) {
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
            let tally: Shared = Arc::default();
            let task = tokio::spawn(measure(
                rec.clone(),
                self.kek.clone(),
                self.timeout,
                tally.clone(),
            ));
            shards.insert(
                rec.name.clone(),
                Shard {
                    update_time: rec.update_time,
                    tally,
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
}

/// Measures one datastore for as long as it is tracked.
async fn measure(rec: DatastoreRecord, kek: Kek, timeout: Duration, tally: Shared) {
    loop {
        let err = match rec.admin_credentials(&kek) {
            Err(e) => MeasureError::Etcd(e.to_string()),
            Ok(creds) => {
                let tls = EtcdTls {
                    ca_pem: Some(creds.ca_certificate),
                    identity: Some((creds.client_certificate, creds.client_key)),
                };
                match connect(&creds.endpoints, &tls, timeout).await {
                    Ok(c) => follow(c, &tally).await,
                    Err(e) => e.into(),
                }
            }
        };
        debug!(datastore = %rec.name, reason = %err, "measuring usage again");
        if let MeasureError::Etcd(e) = &err {
            warn!(datastore = %rec.name, error = %e, "measuring tenants' usage");
        }
        tokio::time::sleep(RETRY).await;
    }
}

/// One scan, then the watch after it, until something breaks the count.
async fn follow(mut c: Client, tally: &Shared) -> MeasureError {
    let revision = match scan(&mut c).await {
        Ok((t, rev)) => {
            if let Ok(mut g) = tally.write() {
                *g = Some(t);
            }
            rev
        }
        Err(e) => return e,
    };
    let opts = WatchOptions::new()
        .with_range(vec![0])
        .with_prev_key()
        .with_start_revision(revision + 1);
    let mut stream = match c.watch(vec![0], Some(opts)).await {
        Ok(s) => s,
        Err(e) => return e.into(),
    };
    loop {
        let resp = match stream.message().await {
            Ok(Some(r)) => r,
            Ok(None) => return MeasureError::Ended,
            Err(e) => return e.into(),
        };
        if resp.canceled() {
            return MeasureError::Compacted(resp.compact_revision());
        }
        let Ok(mut g) = tally.write() else {
            return MeasureError::Ended;
        };
        let Some(t) = g.as_mut() else {
            return MeasureError::Ended;
        };
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let prev = ev.prev_kv().map(|p| p.value().len());
            let change = match (ev.event_type(), prev) {
                (EventType::Put, _) if kv.version() == 1 => Change::Put {
                    key: kv.key(),
                    value_len: kv.value().len(),
                    prev_len: None,
                },
                (EventType::Put, Some(p)) => Change::Put {
                    key: kv.key(),
                    value_len: kv.value().len(),
                    prev_len: Some(p),
                },
                (EventType::Delete, Some(p)) => Change::Delete {
                    key: kv.key(),
                    prev_len: p,
                },
                _ => {
                    *g = None;
                    return MeasureError::Unaccounted;
                }
            };
            t.apply(change);
        }
    }
}

/// Every key, a page at a time at the revision of the first page.
async fn scan(c: &mut Client) -> Result<(Tally, i64), MeasureError> {
    let mut c = super::transfer::kv(c);
    let mut tally = Tally::default();
    let mut from = vec![0u8];
    let mut revision = 0;
    loop {
        let mut opts = GetOptions::new()
            .with_range(vec![0])
            .with_limit(super::transfer::PAGE);
        if revision > 0 {
            opts = opts.with_revision(revision);
        }
        let page = c.get(from.clone(), Some(opts)).await?;
        if revision == 0 {
            revision = page.header().map_or(0, |h| h.revision());
        }
        for kv in page.kvs() {
            tally.seed(kv.key(), kv.value().len());
        }
        match page.kvs().last() {
            Some(last) if page.more() => {
                from = last.key().to_vec();
                from.push(0);
            }
            _ => return Ok((tally, revision)),
        }
    }
}
