//! The tenant clusters service: every rule about how a tenant's desired state may be written,
//! in one place, between the gRPC layer (which only parses and maps errors) and the lifecycle
//! (which drives tenants to that state, [`kamaji_core::lifecycle`]).
//!
//! - create: a tenant no datastore can take now is refused (nothing is written that could only
//!   fail); else its record is written with a fresh immutable id and the lifecycle is woken;
//! - update: immutable settings stay, versions move one minor up at a time, the encryption key
//!   rotation only forward, credential rotations one phase at a time, the generation moves; the lifecycle writes status into the same
//!   record, so a lost compare-and-swap is re-checked against the fresh record and retried;
//! - delete: refused while `deletion_protection` is set, checked and marked at one revision;
//! - credentials and the tenant a bootstrap token is made in: the sealed PKI, opened once here.

use std::sync::Arc;

use kamaji_core::ids::TenantName;
use kamaji_core::lifecycle::ports::Versioned;
use kamaji_core::lifecycle::{now_unix, open_pki, LifecycleError};
use kamaji_core::pki::TenantPki;
use kamaji_core::placement::{self, PlacementError, Policy, Request};
use kamaji_core::spec::{Placement, TenantSpec};
use kamaji_core::tenant::{Phase, TenantRecord};
use kamaji_proto::errors::FieldError;
use kamaji_proto::tenant as contract;
use kamaji_proto::v1;
use tokio::sync::Notify;

use crate::datastore::usage::UsageTracker;
use crate::store::{Store, StoreError};
use crate::wire;

/// How often a request re-reads a record the lifecycle changed under it before giving up.
const CONFLICT_RETRIES: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("tenant cluster {0:?} does not exist")]
    NotFound(String),
    #[error("tenant cluster {0:?} already exists; import it or choose another name")]
    AlreadyExists(String),
    #[error("invalid tenant cluster")]
    Invalid(Vec<FieldError>),
    /// No datastore can take the tenant; `field` is the attribute that chose where.
    #[error("{error}")]
    Unplaceable {
        field: &'static str,
        error: PlacementError,
    },
    #[error("tenant cluster {0:?} has deletion_protection set; unset it first")]
    Protected(String),
    #[error("tenant cluster {0:?} is being deleted")]
    Deleting(String),
    #[error("tenant cluster {0:?} is not Ready yet: {1}")]
    NotReady(String, &'static str),
    #[error("tenant cluster {0:?} kept changing while the request was applied; retry")]
    Busy(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
}

/// What a client needs to use a tenant as its admin.
pub struct Credentials {
    pub admin_kubeconfig: String,
    pub client_certificate: String,
    pub client_key: String,
}

pub struct TenantService {
    pub store: Store,
    pub kek: kamaji_core::kek::Kek,
    /// Wakes the lifecycle after a write.
    pub wake: Arc<Notify>,
    /// Datastore bytes set aside for each new tenant.
    pub reservation_bytes: i64,
    /// What each tenant keeps, as measured.
    pub usage: Arc<UsageTracker>,
    /// Told about creates and updates refused for want of a datastore (metrics).
    pub observer: Arc<dyn kamaji_core::lifecycle::ports::StepObserver>,
    /// Where this kamajid publishes service-account issuers (`--service-account-issuer-base-url`).
    pub issuer_base: Option<String>,
    /// The Kubernetes versions this kamajid serves (`--served-versions`), for release channels.
    pub served: kamaji_core::maintenance::Served,
    /// Backups a new tenant may be restored from (`--backup-store`); `None`: none.
    pub backups: Option<Arc<crate::backup::Backups>>,
}

/// What a new cluster's spec cannot ask: a credential rotation in progress (a new PKI has no
/// older credentials to rotate from).
pub fn new_cluster_rules(spec: &TenantSpec) -> Result<(), ServiceError> {
    if spec.credential_rotation.started {
        return Err(ServiceError::Invalid(vec![FieldError::new(
            "credential_rotation.phase",
            "a new cluster has no credentials to rotate from: create it with phase \"completed\" \
             (or without the block), then start a rotation",
        )]));
    }
    Ok(())
}

/// The attribute a tenant's placement is chosen by, for errors about it.
fn placement_field(spec: &TenantSpec) -> &'static str {
    match spec.placement {
        Placement::Selector(_) => "datastore_selector",
        _ => "datastore",
    }
}

impl TenantService {
    /// A cluster restored from a backup: the backup exists, this kamajid can read it, and its
    /// objects were written by a Kubernetes the new cluster's can read. With `whole`, the archive
    /// is also read through and checked against its digest: a corrupt one is refused before the
    /// cluster exists.
    async fn restore_rules(&self, spec: &TenantSpec, whole: bool) -> Result<(), ServiceError> {
        let Some(id) = &spec.restore_from else {
            return Ok(());
        };
        let invalid = |m: String| ServiceError::Invalid(vec![FieldError::new("restore_from", m)]);
        let Some(backups) = &self.backups else {
            return Err(invalid(
                "kamajid has no backup store to restore from (start it with --backup-store)".into(),
            ));
        };
        let record = match backups.record(id).await {
            Ok(r) => r,
            Err(crate::backup::BackupError::Records(e)) => return Err(e.into()),
            Err(e) => return Err(invalid(e.to_string())),
        };
        kamaji_core::backup::restorable(&record.kubernetes_version, spec.kubernetes_version)
            .map_err(invalid)?;
        if whole {
            match backups.check(id).await {
                Ok(c) if spec.restore_keep_identity && c.secrets.identity.is_none() => {
                    return Err(ServiceError::Invalid(vec![FieldError::new(
                        "restore_keep_identity",
                        format!(
                            "backup {id} carries no identity (it was taken by an older kamajid): \
                             restore it without restore_keep_identity"
                        ),
                    )]))
                }
                Ok(_) => {}
                Err(crate::backup::BackupError::Records(e)) => return Err(e.into()),
                Err(e) => return Err(invalid(e.to_string())),
            }
        }
        Ok(())
    }

    /// A public issuer needs a kamajid that publishes issuers.
    fn issuer_rules(&self, spec: &TenantSpec) -> Result<(), ServiceError> {
        if spec.public_issuer && self.issuer_base.is_none() {
            return Err(ServiceError::Invalid(vec![FieldError::new(
                "public_issuer",
                "this kamajid publishes no service-account issuer: its operator starts it with \
                 --service-account-issuer-base-url (and --issuer-listen); until then set it to false",
            )]));
        }
        Ok(())
    }

    /// The automatic upgrade `rec`'s release channel has in store now, if any.
    fn next_upgrade(
        &self,
        rec: &TenantRecord,
        spec: Option<&v1::TenantClusterSpec>,
    ) -> Option<v1::PlannedUpgrade> {
        let spec = contract::from_stored(spec?).ok()?;
        let running = kamaji_core::maintenance::running(rec)?;
        let p = kamaji_core::maintenance::planned(
            &spec.maintenance,
            running,
            &self.served,
            now_unix(),
        )?;
        Some(v1::PlannedUpgrade {
            to_version: p.to.to_string(),
            not_before: p.not_before.and_then(wire::timestamp),
            waiting_for: p.waiting_for.unwrap_or_default(),
        })
    }

    pub(crate) async fn record(
        &self,
        name: &TenantName,
    ) -> Result<Versioned<TenantRecord>, ServiceError> {
        self.store
            .tenant_record(name)
            .await?
            .ok_or_else(|| ServiceError::NotFound(name.to_string()))
    }

    /// A tenant as the API shows it: its wire spec, its status, what it keeps as measured.
    fn view(&self, rec: &TenantRecord) -> Result<v1::TenantCluster, ServiceError> {
        let mut tc = wire::tenant_to_proto(rec, self.store.wire_spec(rec)?);
        let m = rec
            .datastore
            .as_ref()
            .and_then(|ds| self.usage.metered(ds, &rec.uid));
        if let Some(st) = tc.status.as_mut() {
            st.storage_used_bytes = m.map(|m| m.usage.bytes);
            st.storage_keys = m.map(|m| m.usage.keys);
            st.storage_write_bytes_per_second = m.map(|m| m.write_bytes_per_second);
            st.storage_history_bytes = m.map(|m| m.history_bytes);
            st.next_upgrade = self.next_upgrade(rec, tc.spec.as_ref());
            if let Some(run) = &rec.last_backup {
                st.last_backup_time = wire::timestamp(run.at);
                st.last_backup_id = run.id.clone().unwrap_or_default();
                st.last_backup_error = run.error.clone().unwrap_or_default();
            }
            let schedule = tc
                .spec
                .as_ref()
                .and_then(|s| contract::from_stored(s).ok())
                .and_then(|s| s.backup_schedule);
            st.next_backup_time = schedule.and_then(|s| {
                let at = kamaji_core::backup::schedule::next_at(&s, rec.last_backup.as_ref());
                wire::timestamp(at.max(now_unix()))
            });
        }
        Ok(tc)
    }

    /// A tenant, as the API shows it.
    pub async fn get(&self, name: &TenantName) -> Result<v1::TenantCluster, ServiceError> {
        let rec = self.record(name).await?.value;
        self.view(&rec)
    }

    /// Every tenant, as the API shows it.
    pub async fn list(&self) -> Result<Vec<v1::TenantCluster>, ServiceError> {
        let mut out = Vec::new();
        for rec in self.store.tenant_records().await? {
            out.push(self.view(&rec)?);
        }
        Ok(out)
    }

    /// Whether some datastore can take `spec` now. The lifecycle places for real (under a
    /// compare-and-swap) right after a create.
    pub async fn check_placement(&self, spec: &TenantSpec) -> Result<(), ServiceError> {
        self.check_placement_with(spec, Vec::new()).await
    }

    /// As [`Self::check_placement`], counting `planned` (datastores about to be registered) as
    /// empty, healthy candidates.
    async fn check_placement_with(
        &self,
        spec: &TenantSpec,
        planned: Vec<placement::Candidate>,
    ) -> Result<(), ServiceError> {
        let mut candidates: Vec<_> = self
            .store
            .candidacies()
            .await?
            .into_iter()
            .map(|c| c.candidate)
            .collect();
        candidates.retain(|c| !planned.iter().any(|p| p.name == c.name));
        candidates.extend(planned);
        let req = Request::new(&spec.placement, self.reservation_bytes);
        placement::place(&req, &candidates, Policy::Spread)
            .map(|_| ())
            .map_err(|error| ServiceError::Unplaceable {
                field: placement_field(spec),
                error,
            })
    }

    /// Counts a create or move refused for want of a datastore (a plan's check is not counted).
    fn refused(&self, e: &ServiceError) {
        if let ServiceError::Unplaceable { error, .. } = e {
            self.observer.placement_refused(error);
        }
    }

    /// Whether `spec` asks the placed tenant `rec` off its datastore (another is named, or its
    /// datastore no longer matches the selector): then some other datastore must have room now,
    /// and `rec.evict` is set for a selector. A tenant not yet placed is placed by the new spec.
    async fn wants_move(
        &self,
        rec: &mut TenantRecord,
        spec: &TenantSpec,
    ) -> Result<bool, ServiceError> {
        let Some(current) = rec.datastore.clone() else {
            return Ok(false);
        };
        let here = self
            .store
            .datastore_record(&current)
            .await?
            .map(|v| v.value);
        // A drain goes on whatever else changes, unless the spec now pins the tenant here.
        let drained = rec.evict && here.as_ref().is_some_and(|d| d.drain);
        let (moving, evict) = match &spec.placement {
            Placement::Named(n) => (n != &current, false),
            Placement::Selector(sel) => {
                let fits = here
                    .as_ref()
                    .is_some_and(|d| sel.iter().all(|(k, v)| d.labels.get(k) == Some(v)));
                (!fits, !fits || drained)
            }
            Placement::Any => (false, drained),
        };
        // A move already under way goes on (or is undone) as the lifecycle decides.
        rec.evict = evict;
        if !moving
            || rec.moving.as_ref().is_some_and(|m| {
                Some(&m.to)
                    == match &spec.placement {
                        Placement::Named(n) => Some(n),
                        _ => None,
                    }
            })
        {
            return Ok(moving);
        }
        let candidates: Vec<_> = self
            .store
            .candidacies()
            .await?
            .into_iter()
            .map(|c| c.candidate)
            .filter(|c| c.name != current)
            .collect();
        let req = Request::new(&spec.placement, rec.reservation_bytes);
        placement::place(&req, &candidates, Policy::Spread)
            .map(|_| true)
            .map_err(|error| ServiceError::Unplaceable {
                field: placement_field(spec),
                error,
            })
    }

    /// Checks a create without writing: only a named datastore that exists and cannot take the
    /// tenant is an error at plan time (others may be created by the same apply).
    /// Whether a datastore can take `spec` now, or one of `planned` (registered by the same
    /// plan before the tenant is created) would: a datastore that does not exist, a selector
    /// that matches nothing, or a named datastore that cannot take the tenant are refused at
    /// plan. (Room on the datastores that exist is judged again when the tenant is created:
    /// others may take it first.)
    pub async fn validate_create(
        &self,
        spec: &TenantSpec,
        planned: &[v1::PlannedDatastore],
    ) -> Result<(), ServiceError> {
        new_cluster_rules(spec)?;
        self.issuer_rules(spec)?;
        self.restore_rules(spec, false).await?;
        let planned = planned
            .iter()
            .filter_map(|p| {
                Some(placement::Candidate {
                    name: wire::datastore_name(&p.name).ok()?,
                    ready: true,
                    schedulable: true,
                    draining: false,
                    labels: p
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    // Room enough for any tenant: its capacity is judged once it exists.
                    quota_bytes: 1 << 50,
                    max_tenants: None,
                    tenants: 0,
                    reserved_bytes: 0,
                    used_bytes: 0,
                    file_bytes: 0,
                })
            })
            .collect();
        match self.check_placement_with(spec, planned).await {
            Err(
                e @ ServiceError::Unplaceable {
                    error: PlacementError::Refused { .. } | PlacementError::UnknownDatastore(_),
                    ..
                },
            ) => Err(e),
            // None matches at all (or none is registered): refused now. Datastores that match
            // but are full or capped may have room by apply (this plan may raise their quota).
            Err(ServiceError::Unplaceable {
                field,
                error: PlacementError::NoCandidate(refusals),
            }) if refusals
                .iter()
                .all(|(_, r)| *r == placement::Refusal::SelectorMismatch) =>
            {
                Err(ServiceError::Unplaceable {
                    field,
                    error: PlacementError::NoCandidate(refusals),
                })
            }
            Err(ServiceError::Unplaceable { .. }) => Ok(()),
            r => r,
        }
    }

    pub async fn create(
        &self,
        name: TenantName,
        wire_spec: &v1::TenantClusterSpec,
        spec: &TenantSpec,
    ) -> Result<v1::TenantCluster, ServiceError> {
        new_cluster_rules(spec)?;
        self.issuer_rules(spec)?;
        self.restore_rules(spec, true).await?;
        if let Err(e) = self.check_placement(spec).await {
            self.refused(&e);
            return Err(e);
        }
        let rec = TenantRecord::new(
            name.clone(),
            wire::encode_spec(wire_spec),
            self.reservation_bytes,
            now_unix(),
        );
        match self.store.create_tenant_record(&rec).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists { .. }) => {
                return Err(ServiceError::AlreadyExists(name.to_string()))
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(tenant = %name, uid = %rec.uid, "tenant cluster created");
        self.wake.notify_one();
        Ok(wire::tenant_to_proto(&rec, wire_spec.clone()))
    }

    /// Writes `new` as the tenant's spec; with `validate_only`, only checks it.
    pub async fn update(
        &self,
        name: &TenantName,
        new: &v1::TenantClusterSpec,
        validate_only: bool,
    ) -> Result<v1::TenantCluster, ServiceError> {
        for _ in 0..CONFLICT_RETRIES {
            let Versioned {
                value: mut rec,
                revision,
            } = self.record(name).await?;
            if rec.deleting {
                return Err(ServiceError::Deleting(name.to_string()));
            }
            let old = self.store.wire_spec(&rec)?;
            let errors = contract::change(&old, new);
            if !errors.is_empty() {
                return Err(ServiceError::Invalid(errors));
            }
            if &old == new {
                return Ok(wire::tenant_to_proto(&rec, old));
            }
            let spec = contract::from_stored(new).map_err(|e| ServiceError::Invalid(vec![e]))?;
            self.issuer_rules(&spec)?;
            if let (true, Some(m)) = (spec.hibernated && !old.hibernated, &rec.moving) {
                return Err(ServiceError::Invalid(vec![FieldError::new(
                    "hibernated",
                    format!(
                        "the cluster is moving from datastore {} to {}: hibernate it once the move is done",
                        m.from, m.to
                    ),
                )]));
            }
            let moving = self
                .wants_move(&mut rec, &spec)
                .await
                .inspect_err(|e| self.refused(e))?;
            if validate_only {
                return Ok(wire::tenant_to_proto(&rec, old));
            }
            rec.spec = wire::encode_spec(new);
            rec.generation += 1;
            if rec.phase == Phase::Hibernated && !spec.hibernated {
                rec.phase = Phase::Provisioning;
            } else if rec.phase == Phase::Ready {
                rec.phase = if moving {
                    Phase::Moving
                } else if old.kubernetes_version != new.kubernetes_version {
                    Phase::Upgrading
                } else {
                    Phase::Provisioning
                };
            }
            match self.store.update_tenant_record(&rec, revision).await {
                Ok(()) => {
                    tracing::info!(tenant = %name, generation = rec.generation, "tenant cluster updated");
                    self.wake.notify_one();
                    return Ok(wire::tenant_to_proto(&rec, new.clone()));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Busy(name.to_string()))
    }

    pub async fn delete(&self, name: &TenantName) -> Result<v1::TenantCluster, ServiceError> {
        for _ in 0..CONFLICT_RETRIES {
            let Versioned {
                value: mut rec,
                revision,
            } = self.record(name).await?;
            let spec = self.store.wire_spec(&rec)?;
            if rec.deleting {
                return Ok(wire::tenant_to_proto(&rec, spec));
            }
            if spec.deletion_protection {
                return Err(ServiceError::Protected(name.to_string()));
            }
            // Checked and marked against one revision: an update that sets deletion_protection
            // in between makes this write lose and the check run again.
            rec.mark_deleting(now_unix());
            match self.store.update_tenant_record(&rec, revision).await {
                Ok(()) => {
                    tracing::info!(tenant = %name, "tenant cluster marked for deletion");
                    self.wake.notify_one();
                    return Ok(wire::tenant_to_proto(&rec, spec));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Busy(name.to_string()))
    }

    /// The tenant's admin credentials, once it has an endpoint.
    pub async fn credentials(&self, name: &TenantName) -> Result<Credentials, ServiceError> {
        let rec = self.record(name).await?.value;
        let (Some(endpoint), Some(pki)) = (&rec.endpoint, open_pki(&self.kek, &rec)?) else {
            return Err(ServiceError::NotReady(
                name.to_string(),
                "it has no credentials yet",
            ));
        };
        Ok(Credentials {
            admin_kubeconfig: pki.admin_kubeconfig(name.as_str(), endpoint),
            client_certificate: pki.admin.cert.clone(),
            client_key: pki.admin.key.clone(),
        })
    }

    /// A tenant that answers and was bootstrapped, with its PKI: what bootstrap tokens need.
    pub async fn ready(
        &self,
        name: &TenantName,
    ) -> Result<(TenantRecord, TenantPki), ServiceError> {
        let rec = self.record(name).await?.value;
        let ready = rec.endpoint.is_some()
            && rec.bootstrapped_at > 0
            && !rec.deleting
            && rec.phase != Phase::Provisioning;
        let pki = open_pki(&self.kek, &rec)?;
        match pki {
            Some(pki) if ready => Ok((rec, pki)),
            _ => Err(ServiceError::NotReady(
                name.to_string(),
                "tokens are created once its control plane answers",
            )),
        }
    }
}
