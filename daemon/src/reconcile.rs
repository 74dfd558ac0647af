//! Drives each tenant to its desired state, one idempotent step at a time.
//!
//! Guarantees:
//! - each [`step`] reads the record, performs exactly one step, and records its result with a
//!   compare-and-swap, so a kamajid killed anywhere resumes from what is recorded;
//! - every step is idempotent (placement is recorded once; isolation and apply converge;
//!   the PKI is minted only while none is recorded), so running a step again is harmless;
//! - teardown undoes in reverse: control plane, then etcd role/keys/user, then the record,
//!   its placement and its reservation in one transaction. Nothing of the tenant is left.
//!
//! Steps, in order: Place → Isolate → MintPki → Apply → AwaitReady → Bootstrap (create and
//! update); RemoveControlPlane → ReleaseEtcd → Forget (delete). A tenant is Ready once its
//! control plane answers and the objects `kubeadm join` needs are in it; those are re-applied
//! every [`BOOTSTRAP_RESYNC`] so drift inside the tenant is repaired. When the endpoint the
//! admin cluster gave the tenant is not in its serving certificate, AwaitReady re-issues the
//! certificate and goes back to Apply. At each resync the runtime's objects are applied again
//! too, so a field kamajid owns that someone else changed (a `kubectl scale` of the control-plane
//! Deployment) is taken back. A Ready tenant's control plane is checked every
//! [`HEALTH_RESYNC`]; one that stopped answering goes Degraded and back through AwaitReady,
//! so its status says so and it is bootstrapped again when it returns.

use std::sync::Arc;
use std::time::Duration;

use etcd_client::Client;

use crate::bootstrap;
use crate::controlplane::render::Tenant;
use crate::datastore::now_unix;
use crate::datastore::{isolation, DatastoreRecord, DatastoreStatusRecord, Phase as DsPhase};
use crate::etcd::{connect, error_chain, EtcdTls};
use crate::kek::{Kek, KekError};
use crate::pki::{self, mint, Pem, PkiError, TenantPki, TenantPkiSpec};
use crate::placement::{self, Candidate, Policy, Request};
use crate::runtime::{Runtime, RuntimeError};
use crate::store::{
    datastore_key, datastore_status_key, reservation_key, tenant_key, Reservation, Store,
    StoreError, Versioned, ROOT,
};
use crate::tenant::{Phase, StoredPki, TenantRecord};

pub const COND_PLACED: &str = "DatastoreAssigned";
pub const COND_ISOLATED: &str = "EtcdIsolated";
pub const COND_APPLIED: &str = "ControlPlaneApplied";
pub const COND_READY: &str = "ControlPlaneReady";
pub const COND_BOOTSTRAPPED: &str = "TenantBootstrapped";
pub const COND_RECONCILED: &str = "Reconciled";

/// Tenants one kamajid drives at the same time.
pub const CONCURRENCY: usize = 64;

/// How often, by default, a Ready tenant's bootstrap objects and control plane are re-applied
/// (`--resync-seconds`).
pub const BOOTSTRAP_RESYNC: i64 = 600;

/// How often a Ready tenant's control plane is checked (the runtime's status). Kept in memory
/// only: a restarted kamajid checks every tenant at once, which is the right thing after a gap.
pub const HEALTH_RESYNC: Duration = Duration::from_secs(30);
pub const COND_REMOVED: &str = "ControlPlaneRemoved";
pub const COND_RELEASED: &str = "EtcdReleased";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Place,
    Isolate,
    MintPki,
    Apply,
    AwaitReady,
    ReissueServingCert,
    Bootstrap,
    CheckHealth,
    RemoveControlPlane,
    ReleaseEtcd,
    Forget,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A step ran; call again.
    Ran(Step),
    /// The step waits on the outside world (a rollout, a restart); come back next round.
    Waiting(Step),
    /// Nothing left to do.
    Converged,
    /// The tenant no longer exists.
    Gone,
}

#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kek(#[from] KekError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error(transparent)]
    Isolation(#[from] isolation::IsolationError),
    #[error(transparent)]
    Bootstrap(#[from] crate::bootstrap::BootstrapError),
    #[error("datastore {datastore}: {detail}")]
    Datastore { datastore: String, detail: String },
}

/// What reconcile needs; the runtime is generic so the core does not know which one it drives.
pub struct Context<R> {
    pub store: Store,
    pub kek: Kek,
    pub runtime: Arc<R>,
    pub policy: Policy,
    pub dns_domain: String,
    pub etcd_timeout: Duration,
    /// Seconds between re-applies of a Ready tenant's objects (drift repair).
    pub resync_seconds: i64,
    pub shared: Shared,
}

/// State the reconciler keeps between steps, for speed only: losing it (a restart) costs
/// reconnections, never correctness.
#[derive(Default)]
pub struct Shared {
    /// One admin connection per datastore, keyed by its record's update time so changed
    /// credentials reconnect. Dropped when a call through it fails.
    admins: std::sync::Mutex<std::collections::HashMap<String, (i64, Client)>>,
    /// Placements by this process go one at a time: they would otherwise lose each other's
    /// compare-and-swap on the few reservation keys and retry. The CAS still guards against
    /// another process.
    placing: tokio::sync::Mutex<()>,
    /// When each Ready tenant's control plane was last found healthy.
    checked: std::sync::Mutex<std::collections::HashMap<String, std::time::Instant>>,
}

impl Shared {
    fn health_due(&self, tenant: &str) -> bool {
        self.checked
            .lock()
            .map(|m| m.get(tenant).is_none_or(|at| at.elapsed() >= HEALTH_RESYNC))
            .unwrap_or(true)
    }

    fn set_checked(&self, tenant: &str, healthy: bool) {
        if let Ok(mut m) = self.checked.lock() {
            if healthy {
                m.insert(tenant.to_owned(), std::time::Instant::now());
            } else {
                m.remove(tenant);
            }
        }
    }
}

impl<R: Runtime> Context<R> {
    async fn datastore(&self, name: &str) -> Result<DatastoreRecord, ReconcileError> {
        self.store
            .get::<DatastoreRecord>(&datastore_key(name))
            .await?
            .map(|v| v.value)
            .ok_or_else(|| ReconcileError::Datastore {
                datastore: name.to_owned(),
                detail: "no longer registered".into(),
            })
    }

    async fn admin(&self, ds: &DatastoreRecord) -> Result<Client, ReconcileError> {
        if let Ok(cache) = self.shared.admins.lock() {
            if let Some((at, c)) = cache.get(&ds.name) {
                if *at == ds.update_time {
                    return Ok(c.clone());
                }
            }
        }
        let client = self.connect_admin(ds).await?;
        if let Ok(mut cache) = self.shared.admins.lock() {
            cache.insert(ds.name.clone(), (ds.update_time, client.clone()));
        }
        Ok(client)
    }

    fn forget_admin(&self, datastore: &str) {
        if let Ok(mut cache) = self.shared.admins.lock() {
            cache.remove(datastore);
        }
    }

    async fn connect_admin(&self, ds: &DatastoreRecord) -> Result<Client, ReconcileError> {
        let creds = ds.admin_credentials(&self.kek)?;
        let tls = EtcdTls {
            ca_pem: Some(creds.ca_certificate),
            identity: Some((creds.client_certificate, creds.client_key)),
        };
        connect(&creds.endpoints, &tls, self.etcd_timeout)
            .await
            .map_err(|e| ReconcileError::Datastore {
                datastore: ds.name.clone(),
                detail: error_chain(&e),
            })
    }

    async fn candidates(
        &self,
    ) -> Result<Vec<(Candidate, Option<Versioned<Reservation>>)>, ReconcileError> {
        Ok(candidates(&self.store).await?)
    }

    /// What the runtime renders the tenant from.
    fn tenant<'a>(
        &'a self,
        rec: &'a TenantRecord,
        spec: &'a kamaji_proto::v1::TenantClusterSpec,
        ds: &'a DatastoreRecord,
    ) -> Tenant<'a> {
        Tenant {
            name: &rec.name,
            id: &rec.uid,
            spec,
            etcd_endpoints: &ds.endpoints,
            etcd_ca_certificate: &ds.ca_certificate,
            dns_domain: &self.dns_domain,
        }
    }

    fn open_pki(&self, rec: &TenantRecord) -> Result<Option<TenantPki>, ReconcileError> {
        let Some(stored) = &rec.pki else {
            return Ok(None);
        };
        let json = self.kek.open(&tenant_key(&rec.name), &stored.sealed)?;
        Ok(serde_json::from_str(&json).ok())
    }
}

/// Every registered datastore as placement sees it, with its reservation record (whose
/// revision the placing transaction guards).
pub async fn candidates(
    store: &Store,
) -> Result<Vec<(Candidate, Option<Versioned<Reservation>>)>, StoreError> {
    let records: Vec<Versioned<DatastoreRecord>> =
        store.list(&format!("{ROOT}datastores/")).await?;
    let mut out = Vec::new();
    for r in records {
        let ds = r.value;
        let status: DatastoreStatusRecord = store
            .get(&datastore_status_key(&ds.name))
            .await?
            .map(|v| v.value)
            .unwrap_or_default();
        let reservation: Option<Versioned<Reservation>> =
            store.get(&reservation_key(&ds.name)).await?;
        let res = reservation.as_ref().map(|v| v.value).unwrap_or_default();
        out.push((
            Candidate {
                name: ds.name.clone(),
                ready: status.phase == DsPhase::Ready,
                schedulable: ds.schedulable,
                labels: ds.labels.clone(),
                quota_bytes: ds.quota_bytes,
                max_tenants: ds.max_tenants,
                tenants: res.tenants,
                reserved_bytes: res.reserved_bytes,
                used_bytes: status.db_size_bytes,
            },
            reservation,
        ));
    }
    Ok(out)
}

/// Writes a new tenant record (the API's create): the spec and a fresh immutable id. The id is
/// minted here, once, so every later step and every replay reuses it.
pub async fn create(
    store: &Store,
    name: &str,
    spec: &kamaji_proto::v1::TenantClusterSpec,
    reservation_bytes: i64,
) -> Result<TenantRecord, StoreError> {
    let uid = format!("{name}-{}", &hex::encode(rand::random::<[u8; 3]>())[..5]);
    let mut rec = TenantRecord::new(name, &uid, spec);
    rec.reservation_bytes = reservation_bytes;
    store.create(&tenant_key(name), &rec, vec![]).await?;
    Ok(rec)
}

/// Marks a tenant for deletion; teardown steps follow.
pub async fn mark_deleting(store: &Store, name: &str) -> Result<bool, StoreError> {
    let Some(mut rec) = store.get::<TenantRecord>(&tenant_key(name)).await? else {
        return Ok(false);
    };
    if !rec.value.deleting {
        mark_deleting_record(&mut rec.value);
        store
            .update(&tenant_key(name), &rec.value, rec.mod_revision)
            .await?;
    }
    Ok(true)
}

/// Flags a record for teardown; the driver does the rest.
pub fn mark_deleting_record(rec: &mut TenantRecord) {
    rec.deleting = true;
    rec.phase = Phase::Deleting;
    rec.delete_time = crate::datastore::now_unix();
}

async fn save<R>(ctx: &Context<R>, rec: &TenantRecord, rev: i64) -> Result<(), ReconcileError> {
    ctx.store.update(&tenant_key(&rec.name), rec, rev).await?;
    Ok(())
}

fn done(rec: &TenantRecord, kind: &str) -> bool {
    rec.condition(kind).is_some_and(|c| c.ok)
}

/// Performs the next step for tenant `name`.
pub async fn step<R: Runtime>(ctx: &Context<R>, name: &str) -> Result<Outcome, ReconcileError> {
    let Some(Versioned {
        value: mut rec,
        mod_revision: rev,
    }) = ctx.store.get::<TenantRecord>(&tenant_key(name)).await?
    else {
        return Ok(Outcome::Gone);
    };
    if rec.deleting {
        return teardown(ctx, rec, rev).await;
    }
    if rec.phase == Phase::Failed {
        // Terminal: only its deletion is left to do.
        return Ok(Outcome::Converged);
    }
    let spec = rec.spec();

    let Some(ds_name) = rec.datastore.clone() else {
        let _one_at_a_time = ctx.shared.placing.lock().await;
        let candidates = ctx.candidates().await?;
        let req = Request {
            reservation_bytes: rec.reservation_bytes,
            datastore: (!spec.datastore.is_empty()).then(|| spec.datastore.clone()),
            selector: spec
                .datastore_selector
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        let plain: Vec<Candidate> = candidates.iter().map(|(c, _)| c.clone()).collect();
        let chosen = match placement::place(&req, &plain, ctx.policy) {
            Ok(c) => c.name.clone(),
            Err(e) => {
                // No room (or no match) now. Waiting would hold the create for its whole timeout
                // and then grab capacity whenever some frees, long after the user gave up: fail
                // it now, with the reasons, holding nothing.
                rec.phase = Phase::Failed;
                rec.set_condition(COND_PLACED, false, "Unschedulable", e.to_string());
                save(ctx, &rec, rev).await?;
                return Ok(Outcome::Converged);
            }
        };
        let reservation = candidates
            .into_iter()
            .find(|(c, _)| c.name == chosen)
            .and_then(|(_, r)| r);
        rec.datastore = Some(chosen.clone());
        rec.set_condition(
            COND_PLACED,
            true,
            "Placed",
            format!("placed on datastore {chosen}"),
        );
        ctx.store
            .place_tenant(name, &rec, rev, &chosen, reservation, rec.reservation_bytes)
            .await?;
        return Ok(Outcome::Ran(Step::Place));
    };

    let ds = ctx.datastore(&ds_name).await?;
    if !done(&rec, COND_ISOLATED) {
        if let Err(e) = isolation::ensure(&ctx.admin(&ds).await?, &rec.uid).await {
            ctx.forget_admin(&ds.name);
            return Err(e.into());
        }
        rec.set_condition(
            COND_ISOLATED,
            true,
            "UserAndRoleReady",
            format!(
                "etcd user {} fenced into {}",
                rec.uid,
                isolation::prefix(&rec.uid)
            ),
        );
        save(ctx, &rec, rev).await?;
        return Ok(Outcome::Ran(Step::Isolate));
    }

    let Some(pki) = ctx.open_pki(&rec)? else {
        let client_ca = Pem {
            cert: ds.client_ca_certificate.clone(),
            key: ctx
                .kek
                .open(&datastore_key(&ds.name), &ds.client_ca_key_sealed)?,
        };
        let pki = mint(&pki_spec(ctx, &rec, &spec), &client_ca)?;
        seal_pki(ctx, &mut rec, &pki);
        save(ctx, &rec, rev).await?;
        return Ok(Outcome::Ran(Step::MintPki));
    };

    if !done(&rec, COND_APPLIED) || rec.observed_generation < rec.generation {
        // The serving certificate follows `endpoint_address` and `extra_sans`, which change in
        // place: re-issued (same CA) before the apply that rolls it out.
        let want = pki_spec(ctx, &rec, &spec);
        let mut pki = pki;
        if !pki::serves_exactly(&pki.apiserver.cert, &want)? {
            pki::reissue_apiserver(&mut pki, &want)?;
            seal_pki(ctx, &mut rec, &pki);
        }
        let t = ctx.tenant(&rec, &spec, &ds);
        ctx.runtime.apply(&t, &pki).await?;
        if rec.observed_generation < rec.generation && rec.observed_generation > 0 {
            rec.phase = Phase::Upgrading;
        }
        rec.observed_generation = rec.generation;
        rec.set_condition(
            COND_APPLIED,
            true,
            "Applied",
            format!("generation {} applied", rec.generation),
        );
        rec.set_condition(
            COND_READY,
            false,
            "Rolling",
            "waiting for the control plane to answer",
        );
        save(ctx, &rec, rev).await?;
        return Ok(Outcome::Ran(Step::Apply));
    }

    if rec.phase != Phase::Ready {
        let t = ctx.tenant(&rec, &spec, &ds);
        let status = ctx.runtime.status(&t).await?;
        let endpoint = match (status.ready, status.endpoint) {
            (true, Some(e)) => e,
            (_, _) => {
                let before = rec.clone();
                let reason = if rec.phase == Phase::Degraded {
                    "Unhealthy"
                } else {
                    "Waiting"
                };
                rec.set_condition(COND_READY, false, reason, status.message);
                if rec != before {
                    save(ctx, &rec, rev).await?;
                }
                return Ok(Outcome::Waiting(Step::AwaitReady));
            }
        };
        let host = endpoint_host(&endpoint);
        if !pki::covers(&pki.apiserver.cert, &host) {
            let mut pki = pki;
            let mut want = pki_spec(ctx, &rec, &spec);
            want.external_sans.push(host.clone());
            pki::reissue_apiserver(&mut pki, &want)?;
            seal_pki(ctx, &mut rec, &pki);
            // Recorded now, so the apply that rolls the certificate out keeps this name in it.
            rec.endpoint = Some(endpoint);
            rec.set_condition(
                COND_APPLIED,
                false,
                "ServingCertReissued",
                format!("serving certificate re-issued for the endpoint address {host}"),
            );
            save(ctx, &rec, rev).await?;
            return Ok(Outcome::Ran(Step::ReissueServingCert));
        }
        rec.endpoint = Some(endpoint);
        rec.set_condition(COND_READY, true, "Ready", "");
        bootstrap_tenant(ctx, &mut rec, &spec, &pki).await?;
        rec.phase = Phase::Ready;
        rec.current_version = Some(spec.kubernetes_version.clone());
        if rec.condition(COND_RECONCILED).is_some() {
            rec.set_condition(COND_RECONCILED, true, "Converged", "");
        }
        save(ctx, &rec, rev).await?;
        return Ok(Outcome::Ran(Step::AwaitReady));
    }
    if bootstrap_due(&rec, ctx.resync_seconds) {
        // Drift repair: what kamajid owns in the runtime and inside the tenant, applied again.
        ctx.runtime
            .apply(&ctx.tenant(&rec, &spec, &ds), &pki)
            .await?;
        bootstrap_tenant(ctx, &mut rec, &spec, &pki).await?;
        save(ctx, &rec, rev).await?;
        return Ok(Outcome::Ran(Step::Bootstrap));
    }
    if ctx.shared.health_due(&rec.name) {
        let t = ctx.tenant(&rec, &spec, &ds);
        let status = ctx.runtime.status(&t).await?;
        ctx.shared.set_checked(&rec.name, status.ready);
        if !status.ready {
            tracing::warn!(tenant = %rec.name, reason = %status.message, "control plane unhealthy");
            rec.phase = Phase::Degraded;
            rec.set_condition(COND_READY, false, "Unhealthy", status.message);
            save(ctx, &rec, rev).await?;
            return Ok(Outcome::Ran(Step::CheckHealth));
        }
    }
    Ok(Outcome::Converged)
}

/// The names the tenant's serving certificate must carry beyond the in-cluster ones.
fn pki_spec<R>(
    ctx: &Context<R>,
    rec: &TenantRecord,
    spec: &kamaji_proto::v1::TenantClusterSpec,
) -> TenantPkiSpec {
    let net = spec.network.clone().unwrap_or_default();
    let mut sans: Vec<String> = net.extra_sans.clone();
    if !net.endpoint_address.is_empty() {
        sans.insert(0, net.endpoint_address.clone());
    }
    if let Some(host) = rec.endpoint.as_deref().map(endpoint_host) {
        if !sans.contains(&host) {
            sans.push(host);
        }
    }
    TenantPkiSpec {
        tenant_id: rec.uid.clone(),
        service_cidr: net.service_cidr,
        dns_domain: ctx.dns_domain.clone(),
        external_sans: sans,
    }
}

fn seal_pki<R>(ctx: &Context<R>, rec: &mut TenantRecord, pki: &TenantPki) {
    let json = serde_json::to_string(pki).unwrap_or_default();
    rec.pki = Some(StoredPki {
        sealed: ctx.kek.seal(&tenant_key(&rec.name), &json),
        ca_certificate: pki.ca.cert.clone(),
    });
}

/// `host` of `https://host:port` (IPv6 without brackets).
pub fn endpoint_host(endpoint: &str) -> String {
    let hp = bootstrap::host_port(endpoint);
    let host = match hp.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => hp,
    };
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned()
}

fn bootstrap_due(rec: &TenantRecord, resync_seconds: i64) -> bool {
    rec.phase == Phase::Ready && now_unix() - rec.bootstrapped_at >= resync_seconds
}

/// A client for the tenant's apiserver as its admin.
pub async fn tenant_client(
    rec: &TenantRecord,
    pki: &TenantPki,
) -> Result<kube::Client, bootstrap::BootstrapError> {
    let endpoint = rec.endpoint.clone().unwrap_or_default();
    let kc = pki::kubeconfig(
        &rec.name,
        &endpoint,
        &pki.ca.cert,
        "kubernetes-admin",
        &pki.admin,
    );
    bootstrap::connect(&kc, &endpoint).await
}

/// Applies the bootstrap objects and records it; the caller saves the record.
async fn bootstrap_tenant<R>(
    ctx: &Context<R>,
    rec: &mut TenantRecord,
    spec: &kamaji_proto::v1::TenantClusterSpec,
    pki: &TenantPki,
) -> Result<(), ReconcileError> {
    let net = spec.network.clone().unwrap_or_default();
    let addons = spec.addons.unwrap_or(kamaji_proto::v1::Addons {
        coredns: true,
        kube_proxy: true,
    });
    let endpoint = rec.endpoint.clone().unwrap_or_default();
    let inputs = bootstrap::Inputs {
        cluster_name: &rec.name,
        endpoint: &endpoint,
        ca_pem: &pki.ca.cert,
        kubernetes_version: spec.kubernetes_version.trim_start_matches('v'),
        service_cidr: &net.service_cidr,
        pod_cidr: &net.pod_cidr,
        dns_service_ip: &net.dns_service_ip,
        dns_domain: &ctx.dns_domain,
        coredns: addons.coredns,
        kube_proxy: addons.kube_proxy,
    };
    let objects = bootstrap::render(&inputs);
    let client = tenant_client(rec, pki).await?;
    bootstrap::apply(&client, &objects).await?;
    bootstrap::remove(&client, &bootstrap::disabled_addons(&inputs)).await?;
    rec.bootstrapped_at = now_unix();
    rec.set_condition(
        COND_BOOTSTRAPPED,
        true,
        "Bootstrapped",
        format!("{} objects for kubeadm join applied", objects.len()),
    );
    Ok(())
}

async fn teardown<R: Runtime>(
    ctx: &Context<R>,
    mut rec: TenantRecord,
    rev: i64,
) -> Result<Outcome, ReconcileError> {
    if !done(&rec, COND_REMOVED) {
        let gone = ctx.runtime.delete(&rec.name).await?;
        if gone {
            rec.set_condition(COND_REMOVED, true, "Removed", "control plane removed");
        }
        save(ctx, &rec, rev).await?;
        return Ok(Outcome::Ran(Step::RemoveControlPlane));
    }
    if let Some(ds_name) = rec.datastore.clone() {
        if !done(&rec, COND_RELEASED) {
            let ds = ctx.datastore(&ds_name).await?;
            if let Err(e) = isolation::remove(&ctx.admin(&ds).await?, &rec.uid).await {
                ctx.forget_admin(&ds.name);
                return Err(e.into());
            }
            rec.set_condition(
                COND_RELEASED,
                true,
                "Released",
                "etcd role, keys and user removed",
            );
            save(ctx, &rec, rev).await?;
            return Ok(Outcome::Ran(Step::ReleaseEtcd));
        }
        let reservation: Option<Versioned<Reservation>> =
            ctx.store.get(&reservation_key(&ds_name)).await?;
        ctx.store
            .release_tenant(
                &rec.name,
                rev,
                Some((&ds_name, reservation, rec.reservation_bytes)),
            )
            .await?;
    } else {
        ctx.store.release_tenant(&rec.name, rev, None).await?;
    }
    Ok(Outcome::Ran(Step::Forget))
}

/// Runs steps until the tenant converges or is gone, retrying compare-and-swap conflicts.
/// `limit` bounds the steps so a tenant stuck waiting does not spin forever.
pub async fn converge<R: Runtime>(
    ctx: &Context<R>,
    name: &str,
    limit: usize,
) -> Result<Outcome, ReconcileError> {
    let mut last = Outcome::Converged;
    for _ in 0..limit {
        match step(ctx, name).await {
            Ok(Outcome::Ran(s)) => last = Outcome::Ran(s),
            Ok(o) => {
                if o == Outcome::Gone {
                    ctx.shared.set_checked(name, false);
                }
                return Ok(o);
            }
            Err(ReconcileError::Store(StoreError::Conflict { .. })) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(last)
}

/// Whether a tenant needs work: not ready, behind its spec, being deleted, or due a check.
fn pending(rec: &TenantRecord, shared: &Shared, resync_seconds: i64) -> bool {
    rec.deleting
        || (rec.phase != Phase::Ready && rec.phase != Phase::Failed)
        || rec.observed_generation < rec.generation
        || bootstrap_due(rec, resync_seconds)
        || shared.health_due(&rec.name)
}

/// The leader's loop: every `interval`, or when woken by the API, converge every tenant that
/// needs it, concurrently. A failing step is recorded on the tenant (phase Degraded, condition
/// `Reconciled` false with the reason) and retried next round.
pub async fn run<R: Runtime>(
    ctx: Arc<Context<R>>,
    interval: Duration,
    wake: Arc<tokio::sync::Notify>,
    mut leader: tokio::sync::watch::Receiver<bool>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = wake.notified() => {}
            _ = shutdown.changed() => return,
            _ = leader.changed() => {}
        }
        if *shutdown.borrow() {
            return;
        }
        if !*leader.borrow() {
            continue;
        }
        let tenants: Vec<Versioned<TenantRecord>> =
            match ctx.store.list(&format!("{ROOT}tenants/")).await {
                Ok(t) => t,
                Err(e) => {
                    tracing::warn!(error = %e, "listing tenants");
                    continue;
                }
            };
        let work = tenants
            .into_iter()
            .filter(|t| pending(&t.value, &ctx.shared, ctx.resync_seconds))
            .map(|t| {
                let ctx = ctx.clone();
                async move {
                    let name = t.value.name;
                    match converge(&ctx, &name, 16).await {
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(tenant = %name, error = %e, "reconcile");
                            record_failure(&ctx.store, &name, &e.to_string()).await;
                        }
                    }
                }
            });
        // Bounded: a thousand tenants at once would hold a thousand TLS sessions and their
        // buffers at the same moment, which is what the process's memory then stays at.
        futures::StreamExt::for_each_concurrent(futures::stream::iter(work), CONCURRENCY, |f| f)
            .await;
    }
}

async fn record_failure(store: &Store, name: &str, message: &str) {
    if let Ok(Some(mut rec)) = store.get::<TenantRecord>(&tenant_key(name)).await {
        if !rec.value.deleting {
            rec.value.phase = Phase::Degraded;
        }
        rec.value
            .set_condition(COND_RECONCILED, false, "StepFailed", message);
        let _ = store
            .update(&tenant_key(name), &rec.value, rec.mod_revision)
            .await;
    }
}
