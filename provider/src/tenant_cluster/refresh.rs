//! Refreshing many tenant clusters with one List: the first read of a tenant cluster in a
//! provider process lists them all, and the reads of the same refresh answer from that listing,
//! so a plan of 200 tenants costs one round trip instead of 200.
//!
//! A listing answers only while it is fresh (one refresh walk, [`FRESH_FOR`]) and only while
//! this process has written nothing: the first create, update or delete it makes drops the
//! listing for good, and later reads ask kamajid for their one tenant. A tenant the listing does
//! not hold is asked for too, so a listing never makes a tenant read as gone.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kamaji_proto::v1;
use tokio::sync::Mutex;

/// How long a listing answers reads: long enough for one refresh of hundreds of resources, short
/// enough that no later operation of a long-lived process reads an old view.
pub const FRESH_FOR: Duration = Duration::from_secs(30);

/// The tenant clusters one List returned, shared by the reads of one refresh.
#[derive(Default)]
pub struct Listing(Mutex<State>);

#[derive(Default)]
enum State {
    #[default]
    Unlisted,
    Listed {
        at: Instant,
        by_name: Arc<HashMap<String, v1::TenantCluster>>,
    },
    /// This process wrote: no listing is trusted again.
    Written,
}

impl Listing {
    /// Tenant `name` as a fresh listing holds it, listing with `list` when there is none (the
    /// reads waiting meanwhile use the same); `None` when the listing cannot answer (this process
    /// wrote, the list failed, or the tenant is not in it): ask for the one tenant.
    pub async fn lookup<F, Fut>(
        &self,
        name: &str,
        now: Instant,
        list: F,
    ) -> Option<v1::TenantCluster>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<v1::TenantCluster>, tonic::Status>>,
    {
        let mut state = self.0.lock().await;
        match &*state {
            State::Written => return None,
            State::Listed { at, by_name } if now.duration_since(*at) < FRESH_FOR => {
                return by_name.get(name).cloned();
            }
            _ => {}
        }
        let by_name: HashMap<String, v1::TenantCluster> = match list().await {
            Ok(all) => all.into_iter().map(|t| (t.name.clone(), t)).collect(),
            Err(e) => {
                tracing::debug!(error = %e.message(), "listing tenant clusters failed; reading one by one");
                return None;
            }
        };
        let found = by_name.get(name).cloned();
        *state = State::Listed {
            at: now,
            by_name: Arc::new(by_name),
        };
        found
    }

    /// This process changed a tenant cluster: later reads ask kamajid.
    pub async fn written(&self) {
        *self.0.lock().await = State::Written;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn tenant(name: &str) -> v1::TenantCluster {
        v1::TenantCluster {
            name: name.into(),
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn one_list_answers_a_refresh_until_it_is_stale_or_this_process_writes() {
        let lists = AtomicUsize::new(0);
        let list = || async {
            lists.fetch_add(1, Ordering::SeqCst);
            Ok(vec![tenant("a"), tenant("b")])
        };
        let l = Listing::default();
        let t0 = Instant::now();
        assert_eq!(
            l.lookup("a", t0, list).await.map(|t| t.name),
            Some("a".into())
        );
        assert_eq!(
            l.lookup("b", t0 + Duration::from_secs(5), list)
                .await
                .map(|t| t.name),
            Some("b".into())
        );
        assert_eq!(lists.load(Ordering::SeqCst), 1, "one List for both reads");
        // Not in the listing: the caller asks for it rather than calling it gone.
        assert!(l
            .lookup("c", t0 + Duration::from_secs(6), list)
            .await
            .is_none());
        assert_eq!(lists.load(Ordering::SeqCst), 1);
        // Stale: listed again.
        assert!(l.lookup("a", t0 + FRESH_FOR, list).await.is_some());
        assert_eq!(lists.load(Ordering::SeqCst), 2);
        // After a write, never from a listing again.
        l.written().await;
        assert!(l.lookup("a", t0 + FRESH_FOR, list).await.is_none());
        assert_eq!(lists.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_failed_list_sends_each_read_to_kamajid() {
        let l = Listing::default();
        let failing = || async { Err(tonic::Status::unavailable("down")) };
        assert!(l.lookup("a", Instant::now(), failing).await.is_none());
    }
}
