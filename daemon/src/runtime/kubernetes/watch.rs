//! What the admin cluster says about kamajid's Deployments and Services, kept current by one
//! watch each (cluster-wide, kamajid's label), so that the health check every Ready tenant gets
//! every 30 s reads memory instead of asking the admin cluster twice per tenant.
//!
//! The cache answers only the routine check, and only "healthy": until a watch has listed once,
//! for an object it does not hold, or when it does not show a healthy control plane, the check
//! asks the admin cluster as before. A watch that breaks keeps its last view and reconnects with
//! backoff; a stale "healthy" delays the Degraded of a tenant by the time the watch is down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;

use kamaji_core::controlplane::MANAGED_BY;

/// The objects of kind `K` kamajid manages, as the last watch event left them.
pub struct Watched<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    synced: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Watched<K>
where
    K: Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    /// Starts watching every `K` labelled as kamajid's (needs a Tokio runtime), keeping each as
    /// `trim` leaves it: only what a health check reads is worth a place in kamajid's memory.
    pub fn start(client: kube::Client, trim: fn(&mut K)) -> Self {
        let (store, writer) = reflector::store();
        let config =
            watcher::Config::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
        let events = watcher(Api::<K>::all(client), config).modify(move |o: &mut K| {
            let meta = o.meta_mut();
            meta.managed_fields = None;
            meta.annotations = None;
            meta.labels = None;
            trim(o);
        });
        let stream = reflector::reflector(writer, events).default_backoff();
        let synced = Arc::new(AtomicBool::new(false));
        let (flag, ready) = (synced.clone(), store.clone());
        let task = tokio::spawn(async move {
            let mark = async move {
                if ready.wait_until_ready().await.is_ok() {
                    flag.store(true, Ordering::Relaxed);
                    tracing::info!(kind = %K::kind(&()), objects = ready.state().len(), "watching kamajid's objects in the admin cluster");
                }
            };
            // Retried with backoff; said each time (a watch refused, say for want of the
            // chart's list and watch permissions, leaves every health check asking the API).
            let run = stream.for_each(|event| async move {
                if let Err(e) = event {
                    tracing::warn!(kind = %K::kind(&()), error = %e, "watching the admin cluster");
                }
            });
            futures::join!(mark, run);
        });
        Self {
            store,
            synced,
            task,
        }
    }

    /// Object `name` in namespace `ns` as watched; `None` until the watch has listed once, or
    /// when it does not hold it.
    pub fn get(&self, ns: &str, name: &str) -> Option<Arc<K>> {
        if !self.synced.load(Ordering::Relaxed) {
            return None;
        }
        self.store.get(&ObjectRef::new(name).within(ns))
    }
}

impl<K: Resource<DynamicType = ()> + 'static> Drop for Watched<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}
