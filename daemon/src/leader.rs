//! Lease-held leadership for background work, so several kamajid replicas can run.
//!
//! Guarantees: at most one replica holds `/kamajid/v1/leader` at a time (the key is created
//! only if absent, attached to the holder's lease); a holder that dies loses it when its lease
//! expires (TTL seconds); a holder that cannot renew its lease steps down at once rather than
//! risk two leaders. API requests do not need leadership: their writes are compare-and-swap.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::store::Store;

/// Campaigns until `shutdown`, publishing whether this replica leads on `leading`.
pub async fn run(
    client: Client,
    id: String,
    ttl_seconds: i64,
    leading: watch::Sender<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ttl = ttl_seconds.max(2);
    let renew = Duration::from_millis((ttl as u64 * 1000) / 3);
    let key = Store::leader_key();
    loop {
        if *shutdown.borrow() {
            return;
        }
        match campaign(client.clone(), &key, &id, ttl).await {
            Ok(Some(lease)) => {
                info!(%id, "became leader");
                let _ = leading.send(true);
                let stepped_down = hold(client.clone(), lease, renew, &mut shutdown).await;
                let _ = leading.send(false);
                let _ = client.clone().lease_revoke(lease).await;
                if stepped_down {
                    warn!(%id, "lost leadership");
                } else {
                    return;
                }
            }
            Ok(None) => {}
            Err(e) => warn!(error = %e, "leader campaign"),
        }
        tokio::select! {
            _ = tokio::time::sleep(renew) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Tries once to take the key; returns the lease held on success.
async fn campaign(
    mut client: Client,
    key: &str,
    id: &str,
    ttl: i64,
) -> Result<Option<i64>, etcd_client::Error> {
    let lease = client.lease_grant(ttl, None).await?.id();
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            id,
            Some(PutOptions::new().with_lease(lease)),
        )]);
    if client.txn(txn).await?.succeeded() {
        Ok(Some(lease))
    } else {
        let _ = client.lease_revoke(lease).await;
        Ok(None)
    }
}

/// Keeps the lease alive. Returns true when leadership was lost, false on shutdown.
async fn hold(
    mut client: Client,
    lease: i64,
    renew: Duration,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    let Ok((mut keeper, mut responses)) = client.lease_keep_alive(lease).await else {
        return true;
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(renew) => {}
            _ = shutdown.changed() => return false,
        }
        if keeper.keep_alive().await.is_err() {
            return true;
        }
        match responses.message().await {
            Ok(Some(r)) if r.ttl() > 0 => {}
            _ => return true,
        }
    }
}
