//! A tenant's life: ordered, named, idempotent steps over the [`ports`], and one driver.
//!
//! Guarantees:
//! - [`Lifecycle::step`] reads the record, decides the one step due ([`steps::next`], pure),
//!   performs it and records its result with a compare-and-swap, so a kamajid killed anywhere
//!   resumes from what is recorded;
//! - every step is idempotent: a step whose effects happened but whose record write was lost
//!   runs again to the same end (placement is recorded once, in the record's own transaction;
//!   isolation and applies converge; the PKI is minted only while none is recorded);
//! - a record, spec or PKI that does not decode stops that tenant with the reason in its
//!   `Reconciled` condition; nothing is ever minted or defaulted in its place;
//! - teardown undoes the create steps in reverse (see [`steps::CREATE`]): nothing of the tenant
//!   is left in the runtime, on its datastore or in the records.
//!
//! Assumptions: one kamajid at a time drives tenants (the lease-held leader); ports keep their
//! contracts ([`ports`]).

pub mod drain;
pub mod ports;
pub mod steps;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::ids::TenantName;
use crate::kek::{tenant_aad, Kek, KekError};
use crate::pki::{PkiError, TenantPki};
use crate::placement::Policy;
use crate::tenant::{Phase, TenantRecord, COND_RECONCILED, COND_RESTORED};
use ports::{
    Clock, Isolation, PortError, RecordError, Records, Runtime, StepObserver, StepResult,
    TenantObjects, Unobserved,
};
pub use steps::Step;
pub use steps::MOVE;

/// Tenants one kamajid drives at the same time.
pub const CONCURRENCY: usize = 64;

/// How often, by default, a Ready tenant's control plane and the objects inside it are
/// applied again (drift repair).
pub const RESYNC_SECONDS: i64 = 600;

/// How often a Ready tenant's control plane is checked. Kept in memory only: a restarted
/// kamajid checks every tenant at once, which is the right thing after a gap.
pub const HEALTH_RESYNC: Duration = Duration::from_secs(30);

/// A control plane that is starting is asked again this often, for up to [`READY_POLL_FOR`],
/// before it is left to the next round: an apiserver is ready a few seconds after it starts,
/// and a round (every 2 s) would add up to one more to every create, upgrade and restart.
pub const READY_POLL: Duration = Duration::from_millis(200);
pub const READY_POLL_FOR: Duration = Duration::from_secs(2);

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
pub enum LifecycleError {
    #[error(transparent)]
    Records(#[from] RecordError),
    #[error("{0}")]
    World(#[from] PortError),
    #[error("sealed secrets: {0}")]
    Kek(#[from] KekError),
    #[error("certificates: {0}")]
    Pki(#[from] PkiError),
    #[error("datastore {datastore}: {detail}")]
    Datastore { datastore: String, detail: String },
}

impl LifecycleError {
    /// Someone else wrote the record first: read again and retry.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Records(RecordError::Conflict { .. }))
    }
}

/// What the lifecycle is configured with besides its ports.
#[derive(Debug, Clone)]
pub struct Settings {
    pub policy: Policy,
    /// DNS domain of tenant clusters.
    pub dns_domain: String,
    /// Seconds between re-applies of a Ready tenant (drift repair).
    pub resync_seconds: i64,
    /// How long the leaf certificates kamajid signs are valid.
    pub certificate_validity: time::Duration,
    /// How long before the first leaf certificate expires they are all renewed.
    pub certificate_renew_before: time::Duration,
    /// Tenants of one draining datastore moved off it at the same time.
    pub drain_parallel: usize,
    /// The https URL kamajid's issuer endpoint is published at; None: it publishes none.
    pub issuer_base: Option<String>,
    /// The Kubernetes versions kamajid runs control planes of, for release channels.
    pub served: crate::maintenance::Served,
}

/// Leaf certificates are renewed this long before they expire, by default: a month leaves
/// time to notice and fix a renewal that keeps failing.
pub const RENEW_BEFORE: time::Duration = time::Duration::days(30);

impl Default for Settings {
    fn default() -> Self {
        Self {
            policy: Policy::Spread,
            dns_domain: "cluster.local".into(),
            resync_seconds: RESYNC_SECONDS,
            certificate_validity: crate::pki::LEAF_VALIDITY,
            certificate_renew_before: RENEW_BEFORE,
            drain_parallel: drain::DRAIN_PARALLEL,
            issuer_base: None,
            served: crate::maintenance::Served::new(
                Vec::new(),
                crate::maintenance::STABLE_AFTER_PATCHES,
            ),
        }
    }
}

/// The tenant lifecycle over its ports. Cheap to share (`Arc`); state kept between steps is
/// for speed only (losing it, as a restart does, costs a re-check, never correctness).
pub struct Lifecycle<R, I, T, O> {
    pub records: R,
    pub isolation: I,
    pub runtime: Arc<T>,
    pub objects: O,
    pub kek: Kek,
    pub settings: Settings,
    /// Placements by this process go one at a time: they would otherwise lose each other's
    /// compare-and-swap on the few reservation records and retry. The CAS still guards against
    /// another process.
    placing: tokio::sync::Mutex<()>,
    /// When each Ready tenant's control plane was last found healthy.
    checked: Mutex<HashMap<TenantName, Instant>>,
    /// Told about every step performed (metrics).
    pub(crate) observer: Arc<dyn StepObserver>,
    clock: Arc<dyn Clock>,
}

/// The current time, unix seconds.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl<R: Records, I: Isolation, T: Runtime, O: TenantObjects> Lifecycle<R, I, T, O> {
    pub fn new(
        records: R,
        isolation: I,
        runtime: Arc<T>,
        objects: O,
        kek: Kek,
        settings: Settings,
    ) -> Self {
        Self {
            records,
            isolation,
            runtime,
            objects,
            kek,
            settings,
            placing: Default::default(),
            checked: Default::default(),
            observer: Arc::new(Unobserved),
            clock: Arc::new(ports::SystemClock),
        }
    }

    /// The same lifecycle on `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// The current time, unix seconds, by the lifecycle's clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// `rec`'s spec as its steps apply it: the version is the one it is to run
    /// ([`crate::maintenance::desired`]), which a release channel may have moved past the
    /// spec's.
    pub fn spec_of(&self, rec: &TenantRecord) -> Result<crate::spec::TenantSpec, RecordError> {
        let mut spec = self.records.spec(rec)?;
        spec.kubernetes_version = crate::maintenance::desired(rec, &spec);
        Ok(spec)
    }

    /// The same lifecycle, telling `observer` about every step it performs.
    pub fn with_observer(mut self, observer: Arc<dyn StepObserver>) -> Self {
        self.observer = observer;
        self
    }

    fn health_due(&self, tenant: &TenantName) -> bool {
        self.checked
            .lock()
            .map(|m| m.get(tenant).is_none_or(|at| at.elapsed() >= HEALTH_RESYNC))
            .unwrap_or(true)
    }

    fn set_checked(&self, tenant: &TenantName, healthy: bool) {
        if let Ok(mut m) = self.checked.lock() {
            if healthy {
                m.insert(tenant.clone(), Instant::now());
            } else {
                m.remove(tenant);
            }
        }
    }

    /// Performs the next step for tenant `name`.
    pub async fn step(&self, name: &TenantName) -> Result<Outcome, LifecycleError> {
        let Some(v) = self.records.tenant(name).await? else {
            return Ok(Outcome::Gone);
        };
        let due = self.due(&v.value);
        let Some(step) = steps::next(&v.value, due) else {
            return Ok(Outcome::Converged);
        };
        // The record as read, for the observer (a step consumes it; the clone is small beside
        // the step's own I/O).
        let before = v.value.clone();
        let started = Instant::now();
        let outcome = self.perform(step, v.value, v.revision).await;
        let result = match &outcome {
            Ok(Outcome::Waiting(_)) => StepResult::Waiting,
            Ok(_) => StepResult::Ran,
            Err(e) if e.is_conflict() => StepResult::Conflict,
            Err(_) => StepResult::Failed,
        };
        log_step(name, step, result, outcome.as_ref().err());
        self.observer
            .performed(&before, step, result, started.elapsed());
        outcome
    }

    /// Runs steps until the tenant converges, waits or is gone, retrying lost
    /// compare-and-swaps. `limit` bounds the steps so a tenant stuck waiting does not spin; a
    /// control plane that is starting is polled for a moment ([`READY_POLL_FOR`]) first.
    pub async fn converge(
        &self,
        name: &TenantName,
        limit: usize,
    ) -> Result<Outcome, LifecycleError> {
        let mut last = Outcome::Converged;
        let started = Instant::now();
        let mut steps = 0;
        while steps < limit {
            steps += 1;
            match self.step(name).await {
                Ok(Outcome::Ran(s)) => last = Outcome::Ran(s),
                Ok(Outcome::Waiting(Step::AwaitReady))
                    if started.elapsed() + READY_POLL < READY_POLL_FOR =>
                {
                    steps -= 1;
                    tokio::time::sleep(READY_POLL).await;
                }
                Ok(o) => {
                    if o == Outcome::Gone {
                        self.set_checked(name, false);
                    }
                    return Ok(o);
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(last)
    }

    /// What is due for `rec` now besides what its record says.
    fn due(&self, rec: &TenantRecord) -> steps::Due {
        let now = self.now();
        // A spec that does not decode is reported by the step that needs it.
        let spec = self.spec_of(rec).ok();
        steps::Due {
            resync: steps::resync_due(rec, self.settings.resync_seconds, now),
            health: self.health_due(&rec.name),
            reencrypt: spec.as_ref().is_some_and(|s| steps::reencrypt_due(rec, s)),
            renew: steps::renew_due(rec, self.settings.certificate_renew_before, now),
            rotate: spec
                .as_ref()
                .is_some_and(|s| s.credential_rotation != rec.credentials),
            limits: spec.as_ref().is_some_and(|s| {
                let Some(ds) = &rec.datastore else {
                    return false;
                };
                // The watch of the shard raises walls at once, from these limits.
                self.isolation.register(
                    ds,
                    &rec.uid,
                    rec.limits(s),
                    steps::limits::held_on(rec, ds),
                    rec.walled(),
                );
                steps::limits::limits_due(rec, s, self.isolation.metered(ds, &rec.uid).as_ref())
            }),
            relocate: spec.as_ref().is_some_and(|s| steps::move_due(rec, s)),
            abort_move: spec.as_ref().is_some_and(|s| steps::abort_due(rec, s)),
            hibernate: spec.as_ref().is_some_and(|s| s.hibernated),
            restore: spec
                .as_ref()
                .is_some_and(|s| s.restore_from.is_some() && !rec.done(COND_RESTORED)),
            datastore_refusing: steps::writable_due(
                rec,
                rec.datastore
                    .as_ref()
                    .and_then(|ds| self.isolation.refusing_writes(ds))
                    .as_deref(),
            ),
        }
    }

    /// The datastores `tenants` are placed on, each read once (a round's health checks share
    /// them); one that does not read is left out, and its tenants' checks go through their step.
    async fn datastores_of(
        &self,
        tenants: &[TenantRecord],
    ) -> HashMap<crate::ids::DatastoreName, crate::datastore::DatastoreRecord> {
        let names: std::collections::BTreeSet<_> =
            tenants.iter().filter_map(|t| t.datastore.clone()).collect();
        let mut out = HashMap::new();
        for name in names {
            if let Ok(Some(ds)) = self.records.datastore(&name).await {
                out.insert(name, ds);
            }
        }
        out
    }

    /// Marks the tenants a drain moves off now ([`drain::evictions`]) as evicted, in `tenants`
    /// too; their lifecycle then moves them.
    pub async fn drain(&self, tenants: &mut [TenantRecord]) -> Result<(), LifecycleError> {
        let draining: std::collections::BTreeSet<_> = self
            .records
            .candidates()
            .await?
            .into_iter()
            .filter(|c| c.candidate.draining)
            .map(|c| c.candidate.name)
            .collect();
        if draining.is_empty() {
            return Ok(());
        }
        let with_specs: Vec<_> = tenants
            .iter()
            .map(|t| (t.clone(), self.records.spec(t).ok()))
            .collect();
        for name in drain::evictions(
            &with_specs,
            &draining,
            self.settings.drain_parallel,
            self.now(),
        ) {
            let Some(mut v) = self.records.tenant(&name).await? else {
                continue;
            };
            v.value.evict = true;
            match self.records.update_tenant(&v.value, v.revision).await {
                Ok(()) => {
                    tracing::info!(tenant = %name, "evicted from a drained datastore");
                    if let Some(t) = tenants.iter_mut().find(|t| t.name == name) {
                        *t = v.value;
                    }
                }
                Err(RecordError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Starts the automatic upgrades due now ([`crate::maintenance::due_upgrades`]): records the
    /// version each tenant moves to, as a new generation, in `tenants` too; their lifecycle then
    /// applies it as it applies a changed spec.
    pub async fn start_upgrades(&self, tenants: &mut [TenantRecord]) -> Result<(), LifecycleError> {
        if self.settings.served.versions().is_empty() {
            return Ok(());
        }
        let with_specs: Vec<_> = tenants
            .iter()
            .map(|t| (t.clone(), self.spec_of(t).ok()))
            .collect();
        let now = self.now();
        for (name, to) in crate::maintenance::due_upgrades(&with_specs, &self.settings.served, now)
        {
            let Some(mut v) = self.records.tenant(&name).await? else {
                continue;
            };
            v.value.auto_version = Some(to.to_string());
            v.value.generation += 1;
            match self.records.update_tenant(&v.value, v.revision).await {
                Ok(()) => {
                    tracing::info!(tenant = %name, to = %to, "automatic upgrade starts");
                    if let Some(t) = tenants.iter_mut().find(|t| t.name == name) {
                        *t = v.value;
                    }
                }
                Err(RecordError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Records a failed step on the tenant: `Reconciled` false with the reason, phase Degraded
    /// (unless it is being deleted). Best effort: the next round retries the step anyway.
    pub async fn record_failure(&self, name: &TenantName, message: &str) {
        if let Ok(Some(mut v)) = self.records.tenant(name).await {
            if !v.value.deleting {
                v.value.phase = Phase::Degraded;
            }
            v.value
                .set_condition(COND_RECONCILED, false, "StepFailed", message, self.now());
            let _ = self.records.update_tenant(&v.value, v.revision).await;
        }
    }

    /// The leader's loop: every `interval`, or when woken, converge every tenant that needs it,
    /// at most [`CONCURRENCY`] at once (a thousand at once would hold a thousand TLS sessions
    /// and their buffers at the same moment, which is what the process's memory then stays at).
    pub async fn run(
        self: Arc<Self>,
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
            self.round().await;
        }
    }

    /// One round: every tenant listed once, each that needs work converged, at most
    /// [`CONCURRENCY`] at once; a routine health check is made from the listed record.
    pub async fn round(&self) {
        let mut tenants = match self.records.tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(error = %e, "listing tenants");
                return;
            }
        };
        self.observer.round(&tenants);
        if let Err(e) = self.drain(&mut tenants).await {
            tracing::warn!(error = %e, "draining datastores");
        }
        if let Err(e) = self.start_upgrades(&mut tenants).await {
            tracing::warn!(error = %e, "starting automatic upgrades");
        }
        let datastores = self.datastores_of(&tenants).await;
        let work = tenants.iter().filter_map(|t| {
            let step = steps::next(t, self.due(t))?;
            let ds = t.datastore.as_ref().and_then(|d| datastores.get(d));
            Some(async move {
                if step == Step::CheckHealth && self.healthy_as_listed(t, ds).await {
                    return;
                }
                // A failed step was logged where it failed.
                if let Err(e) = self.converge(&t.name, 16).await {
                    self.record_failure(&t.name, &e.to_string()).await;
                }
            })
        });
        futures::StreamExt::for_each_concurrent(futures::stream::iter(work), CONCURRENCY, |f| f)
            .await;
    }
}

/// One line per step performed: what ran on which tenant and how it ended. Routine checks of
/// Ready tenants (every tenant, every 30 s) and waits are at debug level so that a quiet fleet
/// logs quietly; a failure is a warning with its reason (never a secret: errors carry none).
fn log_step(tenant: &TenantName, step: Step, result: StepResult, error: Option<&LifecycleError>) {
    let routine = matches!(step, Step::CheckHealth | Step::Resync);
    match (result, error) {
        (StepResult::Failed, Some(e)) => {
            tracing::warn!(tenant = %tenant, step = ?step, outcome = %result.as_str(), error = %e, "lifecycle step")
        }
        (StepResult::Ran, _) if !routine => {
            tracing::info!(tenant = %tenant, step = ?step, outcome = %result.as_str(), "lifecycle step")
        }
        _ => {
            tracing::debug!(tenant = %tenant, step = ?step, outcome = %result.as_str(), error = error.map(tracing::field::display), "lifecycle step")
        }
    }
}

/// Opens a tenant's sealed PKI. A PKI that decrypts but does not decode (a kamajid that wrote
/// another shape) is an error, never "no PKI": minting a new one would re-key the tenant and
/// break every kubeconfig and joined node.
pub fn open_pki(kek: &Kek, rec: &TenantRecord) -> Result<Option<TenantPki>, LifecycleError> {
    let Some(stored) = &rec.pki else {
        return Ok(None);
    };
    if !stored.sealed_read() {
        return Err(RecordError::Corrupt {
            what: format!("the stored PKI of tenant {}", rec.name),
            detail: "the record was read without its sealed PKI".into(),
        }
        .into());
    }
    let json = kek.open(&tenant_aad(&rec.name), &stored.sealed)?;
    serde_json::from_str(&json).map(Some).map_err(|e| {
        RecordError::Corrupt {
            what: format!("the stored PKI of tenant {}", rec.name),
            detail: e.to_string(),
        }
        .into()
    })
}

/// Seals `pki` into `rec`.
pub fn seal_pki(kek: &Kek, rec: &mut TenantRecord, pki: &TenantPki) -> Result<(), LifecycleError> {
    let json = serde_json::to_string(pki).map_err(|e| RecordError::Corrupt {
        what: format!("the PKI of tenant {}", rec.name),
        detail: e.to_string(),
    })?;
    rec.pki = Some(crate::tenant::StoredPki {
        sealed: kek.seal(&tenant_aad(&rec.name), &json),
        ca_certificate: pki.ca_bundle(),
        certificates_expire_at: crate::pki::leaves_expire_at(pki),
        stored_as: rec.pki.as_ref().and_then(|p| p.stored_as.clone()),
    });
    Ok(())
}

#[cfg(test)]
mod fakes;
#[cfg(test)]
mod tests;
