//! Fencing a tenant into its own key prefix of a shared etcd, over etcd's auth API: the
//! lifecycle's [`Isolation`] port.
//!
//! Per tenant id: a role with read-write on exactly `["/<id>/", prefix_end("/<id>/"))`, and a
//! password-less user of the same name, granted that role. The tenant's kube-apiserver connects
//! with a client certificate whose CN is the id (signed by the datastore's client CA) and runs
//! with `--etcd-prefix=/<id>`. The trailing '/' is what keeps tenant `team` out of `team-a`.
//!
//! Guarantees: `ensure` and `remove` are idempotent (etcd answers "already exists" and "not
//! found" for repeats; those are recognised here, in one place) so a lifecycle interrupted at
//! any step can run them again. `remove` revokes access first (role), then deletes exactly the
//! prefix, then the user: a crash between steps never leaves a user that can still read data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_client::{Client, DeleteOptions, Permission, UserAddOptions};
use kamaji_core::datastore::DatastoreRecord;
use kamaji_core::etcd_keys::{prefix, prefix_end};
use kamaji_core::ids::{DatastoreName, TenantId};
use kamaji_core::kek::Kek;
use kamaji_core::lifecycle::ports::{Copied, Isolation, PortError};
use kamaji_core::limits::{Breach, Limits, Metered, Wall};

use super::health::Shards;
use super::transfer;
use super::usage::UsageTracker;
use crate::etcd::{connect, error_chain, EtcdTls};

/// Isolation on real etcd datastores, with one admin connection per datastore kept between
/// calls (keyed by the record's update time, so changed credentials reconnect; dropped when a
/// call through it fails).
pub struct EtcdIsolation {
    kek: Kek,
    timeout: Duration,
    admins: Mutex<HashMap<DatastoreName, (i64, Client)>>,
    usage: Arc<UsageTracker>,
    shards: Arc<Shards>,
    /// Where backups are read from for restores; `None`: kamajid has no backup store.
    backups: Option<Arc<crate::backup::Backups>>,
}

fn failed(op: &str, id: &TenantId, detail: String) -> PortError {
    PortError {
        op: format!("{op} for tenant {id}"),
        detail,
    }
}

/// A new client of datastore `ds` as its administrator; on failure, what was being done and why.
pub async fn connect_admin(
    ds: &DatastoreRecord,
    kek: &Kek,
    timeout: Duration,
) -> Result<Client, (String, String)> {
    let creds = ds.admin_credentials(kek).map_err(|e| {
        (
            "opening the admin key of its datastore".to_owned(),
            e.to_string(),
        )
    })?;
    let tls = EtcdTls {
        ca_pem: Some(creds.ca_certificate),
        identity: Some((creds.client_certificate, creds.client_key)),
    };
    connect(&creds.endpoints, &tls, timeout).await.map_err(|e| {
        (
            format!("connecting to datastore {}", ds.name),
            error_chain(&e),
        )
    })
}

/// Runs one etcd call, treating an answer containing `benign` (e.g. "already exists") as
/// success; etcd repeats of grants succeed on their own and pass `None`.
async fn call<T>(
    id: &TenantId,
    op: &'static str,
    benign: Option<&str>,
    c: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<(), PortError> {
    match c.await {
        Ok(_) => Ok(()),
        Err(e) => {
            let detail = error_chain(&e);
            if benign.is_some_and(|b| detail.contains(b)) {
                Ok(())
            } else {
                Err(failed(op, id, detail))
            }
        }
    }
}

impl EtcdIsolation {
    /// Isolation whose usage figures come from `usage` (which the caller keeps tracking the
    /// registered datastores).
    pub fn new(kek: Kek, timeout: Duration, usage: Arc<UsageTracker>, shards: Arc<Shards>) -> Self {
        Self {
            kek,
            timeout,
            admins: Mutex::default(),
            usage,
            shards,
            backups: None,
        }
    }

    /// Restores read backups from `backups`.
    pub fn with_backups(mut self, backups: Option<Arc<crate::backup::Backups>>) -> Self {
        self.backups = backups;
        self
    }

    async fn admin(&self, ds: &DatastoreRecord, id: &TenantId) -> Result<Client, PortError> {
        if let Ok(cache) = self.admins.lock() {
            if let Some((at, c)) = cache.get(&ds.name) {
                if *at == ds.update_time {
                    return Ok(c.clone());
                }
            }
        }
        let client = connect_admin(ds, &self.kek, self.timeout)
            .await
            .map_err(|(op, detail)| failed(&op, id, detail))?;
        if let Ok(mut cache) = self.admins.lock() {
            cache.insert(ds.name.clone(), (ds.update_time, client.clone()));
        }
        Ok(client)
    }

    fn forget(&self, ds: &DatastoreName) {
        if let Ok(mut cache) = self.admins.lock() {
            cache.remove(ds);
        }
    }

    async fn ensure_with(&self, mut c: Client, id: &TenantId) -> Result<(), PortError> {
        let p = prefix(id);
        let name = id.as_str();
        call(id, "adding role", Some("already exists"), c.role_add(name)).await?;
        let perm = Permission::read_write(p.as_bytes()).with_range_end(prefix_end(p.as_bytes()));
        call(
            id,
            "granting the prefix",
            None,
            c.role_grant_permission(name, perm),
        )
        .await?;
        // Granted from the start (inside the prefix, they add no access), so the hard wall goes
        // up in one permission change when it must (see `transfer::set_access`).
        for key in super::transfer::policy_keys(id) {
            call(
                id,
                "granting the storage policy's keys",
                None,
                c.role_grant_permission(name, Permission::read_write(key.as_bytes())),
            )
            .await?;
        }
        call(
            id,
            "adding user",
            Some("already exists"),
            c.user_add(name, "", Some(UserAddOptions::new().with_no_pwd())),
        )
        .await?;
        call(id, "granting the role", None, c.user_grant_role(name, name)).await
    }

    async fn remove_with(&self, mut c: Client, id: &TenantId) -> Result<(), PortError> {
        let p = prefix(id);
        let name = id.as_str();
        call(id, "deleting role", Some("not found"), c.role_delete(name)).await?;
        let range = DeleteOptions::new().with_range(prefix_end(p.as_bytes()));
        call(
            id,
            "deleting keys",
            None,
            c.delete(p.as_bytes(), Some(range)),
        )
        .await?;
        call(id, "deleting user", Some("not found"), c.user_delete(name)).await
    }
}

impl EtcdIsolation {
    /// Runs `f` with the admin connection of `ds`, forgetting it when `f` fails.
    async fn with_admin<T, F, Fut>(
        &self,
        ds: &DatastoreRecord,
        id: &TenantId,
        op: &str,
        f: F,
    ) -> Result<T, PortError>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, String>>,
    {
        let c = self.admin(ds, id).await?;
        f(c).await.map_err(|detail| {
            self.forget(&ds.name);
            failed(&format!("{op} on datastore {}", ds.name), id, detail)
        })
    }
}

impl Isolation for EtcdIsolation {
    async fn hold_writes(
        &self,
        ds: &DatastoreRecord,
        id: &TenantId,
        held: bool,
    ) -> Result<(), PortError> {
        let op = if held {
            "holding writes"
        } else {
            "allowing writes"
        };
        self.usage
            .set_guard(&ds.name, id, |g| g.held = held)
            .await
            .map(|_| ())
            .map_err(|e| failed(&format!("{op} on datastore {}", ds.name), id, e.to_string()))
    }

    fn register(
        &self,
        ds: &DatastoreName,
        id: &TenantId,
        limits: Limits,
        held: bool,
        walled: Breach,
    ) {
        self.usage.register(ds, id, limits, held, walled);
    }

    async fn set_walls(
        &self,
        ds: &DatastoreName,
        id: &TenantId,
        wall: Wall,
        soft: bool,
    ) -> Result<(), PortError> {
        self.usage
            .set_guard(ds, id, |g| {
                g.wall = wall;
                g.soft = soft;
                g.synced = true;
            })
            .await
            .map(|_| ())
            .map_err(|e| {
                failed(
                    &format!("setting its walls on datastore {ds}"),
                    id,
                    e.to_string(),
                )
            })
    }

    async fn align_revision(
        &self,
        from: &DatastoreRecord,
        to: &DatastoreRecord,
        budget: u64,
    ) -> Result<u64, PortError> {
        let id = TenantId::parse("revision").map_err(|e| PortError {
            op: "raising a revision".into(),
            detail: e.to_string(),
        })?;
        let src = self.admin(from, &id).await?;
        let op = format!("raising the revision past datastore {}'s", from.name);
        let (writes, left) = self
            .with_admin(to, &id, &op, |dst| async move {
                transfer::align(&src, &dst, budget).await
            })
            .await?;
        tracing::info!(from = %from.name, to = %to.name, writes, left, "revision raised for a move");
        Ok(left)
    }

    async fn copy(
        &self,
        from: &DatastoreRecord,
        to: &DatastoreRecord,
        id: &TenantId,
    ) -> Result<Copied, PortError> {
        let src = self.admin(from, id).await?;
        let op = format!("copying from datastore {}", from.name);
        self.with_admin(to, id, &op, |dst| async move {
            transfer::copy(&src, &dst, id).await
        })
        .await
    }

    async fn restore(
        &self,
        ds: &DatastoreRecord,
        id: &TenantId,
        backup: &str,
    ) -> Result<kamaji_core::lifecycle::ports::Restored, PortError> {
        let Some(backups) = &self.backups else {
            return Err(failed(
                &format!("restoring backup {backup}"),
                id,
                "kamajid has no backup store (start it with --backup-store)".into(),
            ));
        };
        let admin = self.admin(ds, id).await?;
        backups
            .restore(backup, &admin, id)
            .await
            .map_err(|e| failed(&format!("restoring backup {backup}"), id, e.to_string()))
    }

    fn metered(&self, ds: &DatastoreName, id: &TenantId) -> Option<Metered> {
        self.usage.metered(ds, id)
    }

    fn refusing_writes(&self, ds: &DatastoreName) -> Option<String> {
        self.shards.refusing_writes(ds)
    }

    async fn ensure(&self, ds: &DatastoreRecord, id: &TenantId) -> Result<(), PortError> {
        let c = self.admin(ds, id).await?;
        let r = self.ensure_with(c, id).await;
        if r.is_err() {
            self.forget(&ds.name);
        }
        r
    }

    async fn remove(&self, ds: &DatastoreRecord, id: &TenantId) -> Result<(), PortError> {
        let c = self.admin(ds, id).await?;
        let r = self.remove_with(c, id).await;
        if r.is_err() {
            self.forget(&ds.name);
        } else {
            self.usage.forget(&ds.name, id);
        }
        r
    }
}
