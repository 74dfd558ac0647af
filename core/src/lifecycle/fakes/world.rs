//! Fakes of the world outside kamajid's records: etcd isolation, the runtime, the objects
//! inside a tenant.

use super::*;

/// etcd users and roles of each datastore, and what each tenant keeps there as measured.
#[derive(Clone, Default)]
pub struct MemIsolation {
    pub users: Arc<Mutex<BTreeSet<(DatastoreName, TenantId)>>>,
    pub usage: Arc<Mutex<BTreeMap<TenantId, crate::usage::StorageUsage>>>,
    /// Tenants whose writes are held, by datastore.
    pub held: Arc<Mutex<BTreeSet<(DatastoreName, TenantId)>>>,
    /// Copies made by moves: (target, tenant); gone with the tenant's removal from the target.
    pub copies: Arc<Mutex<BTreeSet<(DatastoreName, TenantId)>>>,
    /// Revisions the target of a move is behind its source.
    pub revision_gap: Arc<Mutex<u64>>,
    /// Datastores that refuse writes (an alarm), and why.
    pub refusing: Arc<Mutex<BTreeMap<DatastoreName, String>>>,
    /// Bytes written beyond its budget, per tenant, as the watch would meter them.
    pub debt: Arc<Mutex<BTreeMap<TenantId, i64>>>,
    /// What is enforced on each tenant of each datastore.
    pub guards: Arc<Mutex<BTreeMap<(DatastoreName, TenantId), crate::limits::Guard>>>,
    /// Backups a restore can read: id → the secrets it carries.
    pub backups: Arc<Mutex<BTreeMap<String, crate::backup::archive::Secrets>>>,
    /// Restores written: (datastore, tenant, backup).
    pub restored: Arc<Mutex<Vec<(DatastoreName, TenantId, String)>>>,
    pub faults: Faults,
}

impl MemIsolation {
    /// What is enforced on `id` at `ds`.
    pub fn guard(&self, ds: &DatastoreName, id: &TenantId) -> crate::limits::Guard {
        self.guards
            .lock()
            .unwrap()
            .get(&(ds.clone(), id.clone()))
            .copied()
            .unwrap_or_default()
    }
}

impl Isolation for MemIsolation {
    fn metered(&self, ds: &DatastoreName, id: &TenantId) -> Option<crate::limits::Metered> {
        let placed = self
            .users
            .lock()
            .unwrap()
            .contains(&(ds.clone(), id.clone()));
        let usage = placed
            .then(|| self.usage.lock().unwrap().get(id).copied())
            .flatten()?;
        Some(crate::limits::Metered {
            usage,
            debt_bytes: self.debt.lock().unwrap().get(id).copied().unwrap_or(0),
            guard: self.guard(ds, id),
            ..Default::default()
        })
    }

    fn register(
        &self,
        ds: &DatastoreName,
        id: &TenantId,
        limits: crate::limits::Limits,
        held: bool,
        walled: crate::limits::Breach,
    ) {
        let mut g = self.guards.lock().unwrap();
        let e = g.entry((ds.clone(), id.clone())).or_default();
        e.limits = Some(limits);
        e.held = held;
        e.walled = walled;
    }

    async fn set_walls(
        &self,
        ds: &DatastoreName,
        id: &TenantId,
        wall: crate::limits::Wall,
        soft: bool,
    ) -> Result<(), PortError> {
        self.faults.hit("isolation.walls")?;
        let mut g = self.guards.lock().unwrap();
        let e = g.entry((ds.clone(), id.clone())).or_default();
        e.wall = wall;
        e.soft = soft;
        e.synced = true;
        Ok(())
    }

    fn refusing_writes(&self, ds: &DatastoreName) -> Option<String> {
        self.refusing.lock().unwrap().get(ds).cloned()
    }

    async fn ensure(&self, ds: &DatastoreRecord, id: &TenantId) -> Result<(), PortError> {
        self.faults.hit("isolation.ensure")?;
        self.users
            .lock()
            .unwrap()
            .insert((ds.name.clone(), id.clone()));
        Ok(())
    }

    async fn remove(&self, ds: &DatastoreRecord, id: &TenantId) -> Result<(), PortError> {
        self.faults.hit("isolation.remove")?;
        let key = (ds.name.clone(), id.clone());
        self.users.lock().unwrap().remove(&key);
        self.copies.lock().unwrap().remove(&key);
        self.held.lock().unwrap().remove(&key);
        Ok(())
    }

    async fn hold_writes(
        &self,
        ds: &DatastoreRecord,
        id: &TenantId,
        held: bool,
    ) -> Result<(), PortError> {
        self.faults.hit("isolation.hold")?;
        let key = (ds.name.clone(), id.clone());
        if held {
            self.held.lock().unwrap().insert(key);
        } else {
            self.held.lock().unwrap().remove(&key);
        }
        Ok(())
    }

    async fn align_revision(
        &self,
        _from: &DatastoreRecord,
        _to: &DatastoreRecord,
        budget: u64,
    ) -> Result<u64, PortError> {
        self.faults.hit("isolation.align")?;
        let mut gap = self.revision_gap.lock().unwrap();
        *gap = gap.saturating_sub(budget);
        Ok(*gap)
    }

    async fn copy(
        &self,
        from: &DatastoreRecord,
        to: &DatastoreRecord,
        id: &TenantId,
    ) -> Result<Copied, PortError> {
        self.faults.hit("isolation.copy")?;
        assert!(
            self.held
                .lock()
                .unwrap()
                .contains(&(from.name.clone(), id.clone())),
            "copied while the source still takes writes"
        );
        self.copies
            .lock()
            .unwrap()
            .insert((to.name.clone(), id.clone()));
        Ok(Copied {
            keys: 10,
            bytes: 1000,
        })
    }

    async fn restore(
        &self,
        ds: &DatastoreRecord,
        id: &TenantId,
        backup: &str,
    ) -> Result<crate::lifecycle::ports::Restored, PortError> {
        self.faults.hit("isolation.restore")?;
        assert!(
            self.users
                .lock()
                .unwrap()
                .contains(&(ds.name.clone(), id.clone())),
            "restored before the tenant is isolated"
        );
        let secrets = self
            .backups
            .lock()
            .unwrap()
            .get(backup)
            .cloned()
            .ok_or_else(|| PortError {
                op: format!("restoring backup {backup}"),
                detail: "no such backup".into(),
            })?;
        self.restored
            .lock()
            .unwrap()
            .push((ds.name.clone(), id.clone(), backup.to_owned()));
        Ok(crate::lifecycle::ports::Restored {
            keys: 10,
            bytes: 1000,
            secrets,
        })
    }
}

/// Control planes that are ready as soon as they are applied, at `https://127.0.0.1:6443`
/// (a name every serving certificate carries).
#[derive(Default)]
pub struct MemRuntime {
    /// Tenant → (version, serving certificate) applied.
    pub applied: Mutex<BTreeMap<TenantName, (String, String)>>,
    /// Tenants applied with no pods: their address not known yet (`Tenant::address_known`),
    /// or hibernated.
    pub held: Mutex<BTreeSet<TenantName>>,
    /// Tenants whose control plane stopped answering.
    pub down: Mutex<BTreeSet<TenantName>>,
    /// Tenants whose control plane keeps failing at start, and what it says.
    pub stalled: Mutex<BTreeMap<TenantName, String>>,
    /// Tenant → the encryption keys its applied configuration holds, the encrypting one first.
    pub keys: Mutex<BTreeMap<TenantName, Vec<String>>>,
    pub faults: Faults,
}

pub const ENDPOINT: &str = "https://127.0.0.1:6443";

impl Runtime for MemRuntime {
    async fn apply(&self, t: &Tenant<'_>, pki: &TenantPki) -> Result<(), PortError> {
        self.faults.hit("runtime.apply")?;
        self.applied.lock().unwrap().insert(
            t.name.clone(),
            (
                t.spec.kubernetes_version.to_string(),
                pki.apiserver.cert.clone(),
            ),
        );
        self.keys.lock().unwrap().insert(
            t.name.clone(),
            pki.encryption_keys.iter().map(|k| k.name()).collect(),
        );
        let mut held = self.held.lock().unwrap();
        if t.address_known && !t.spec.hibernated {
            held.remove(t.name);
        } else {
            held.insert(t.name.clone());
        }
        Ok(())
    }

    async fn status(&self, t: &Tenant<'_>) -> Result<RuntimeStatus, PortError> {
        self.faults.hit("runtime.status")?;
        let stalled = self.stalled.lock().unwrap().get(t.name).cloned();
        // The address exists once the objects do; pods answer once they run.
        let applied = self.applied.lock().unwrap().contains_key(t.name);
        let ready = applied
            && !self.held.lock().unwrap().contains(t.name)
            && !self.down.lock().unwrap().contains(t.name)
            && stalled.is_none();
        Ok(RuntimeStatus {
            ready,
            endpoint: applied.then(|| ENDPOINT.to_owned()),
            message: if ready {
                String::new()
            } else {
                "rolling out".into()
            },
            stalled,
            tunnel: None,
        })
    }

    async fn delete(&self, tenant: &TenantName) -> Result<bool, PortError> {
        self.faults.hit("runtime.delete")?;
        self.applied.lock().unwrap().remove(tenant);
        self.held.lock().unwrap().remove(tenant);
        Ok(true)
    }
}

/// One rewrite: the cluster, and the resources written again.
pub type Rewrite = (String, Vec<String>);

/// The objects inside each tenant, by the cluster name of the kubeconfig they were applied with.
#[derive(Clone, Default)]
pub struct MemObjects {
    /// What each cluster holds of kamajid's objects (`"Kind"/"name"`), applied and not removed.
    pub applied: Arc<Mutex<BTreeMap<String, Vec<String>>>>,
    /// Calls of `refuses_writes` that answer "not yet" after a policy is applied (the
    /// apiserver's admission catching up).
    pub admission_lag: Arc<Mutex<u32>>,
    /// Each rewrite: the cluster and the resources written again.
    pub rewrites: Arc<Mutex<Vec<Rewrite>>>,
    pub faults: Faults,
}

fn cluster_of(admin_kubeconfig: &str) -> String {
    admin_kubeconfig
        .lines()
        .find_map(|l| l.strip_prefix("- name: "))
        .unwrap_or_default()
        .to_owned()
}

impl TenantObjects for MemObjects {
    async fn sync(
        &self,
        _endpoint: &str,
        admin_kubeconfig: &str,
        apply: &[serde_json::Value],
        remove: &[serde_json::Value],
    ) -> Result<(), PortError> {
        self.faults.hit("objects.sync")?;
        let cluster = cluster_of(admin_kubeconfig);
        let name = |o: &serde_json::Value| format!("{}/{}", o["kind"], o["metadata"]["name"]);
        let mut all = self.applied.lock().unwrap();
        let held = all.entry(cluster).or_default();
        for o in apply {
            if !held.contains(&name(o)) {
                held.push(name(o));
            }
        }
        held.retain(|n| !remove.iter().any(|o| &name(o) == n));
        Ok(())
    }

    async fn refuses_writes(
        &self,
        _endpoint: &str,
        admin_kubeconfig: &str,
    ) -> Result<bool, PortError> {
        self.faults.hit("objects.refuses")?;
        let mut lag = self.admission_lag.lock().unwrap();
        if *lag > 0 {
            *lag -= 1;
            return Ok(false);
        }
        let policy = format!(
            "\"ValidatingAdmissionPolicy\"/\"{}\"",
            crate::bootstrap::quota::POLICY
        );
        Ok(self
            .applied
            .lock()
            .unwrap()
            .get(&cluster_of(admin_kubeconfig))
            .is_some_and(|held| held.contains(&policy)))
    }

    async fn rewrite(
        &self,
        _endpoint: &str,
        admin_kubeconfig: &str,
        resources: &[String],
    ) -> Result<usize, PortError> {
        self.faults.hit("objects.rewrite")?;
        self.rewrites
            .lock()
            .unwrap()
            .push((cluster_of(admin_kubeconfig), resources.to_vec()));
        Ok(resources.len())
    }
}
