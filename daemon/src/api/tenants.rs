//! The TenantClusters service: validates, persists desired state, and wakes the reconciler.
//! Writes return at once; clients follow progress with Get or Watch.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kamaji_proto::errors::{field_status, FieldError};
use kamaji_proto::tenant as contract;
use kamaji_proto::v1::{self, tenant_clusters_server::TenantClusters};
use kamaji_proto::validate::selector_matches;
use tokio::sync::Notify;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};
use tracing::info;

use super::store_status;
use crate::kek::Kek;
use crate::pki::{kubeconfig, TenantPki};
use crate::placement::{self, Candidate, PlacementError, Policy};
use crate::reconcile;
use crate::store::{tenant_key, Store, StoreError, Versioned, ROOT};
use crate::tenant::{Phase, TenantRecord};

pub struct TenantApi {
    pub store: Store,
    pub kek: Kek,
    /// Wakes the reconciler after a write.
    pub wake: Arc<Notify>,
    /// Whether a control-plane runtime is configured; without one, creates are refused.
    pub has_runtime: bool,
    /// Datastore bytes set aside for each new tenant, see [`crate::placement`].
    pub reservation_bytes: i64,
}

/// How often a request re-reads a record the reconciler changed under it before giving up.
const CONFLICT_RETRIES: usize = 32;

fn busy(name: &str) -> Status {
    Status::aborted(format!(
        "tenant cluster {name:?} kept changing while the request was applied; retry"
    ))
}

fn not_found(name: &str) -> Status {
    field_status(
        Code::NotFound,
        &[FieldError::new(
            "name",
            format!("tenant cluster {name:?} does not exist"),
        )],
    )
}

fn checked(
    name: &str,
    spec: Option<v1::TenantClusterSpec>,
) -> Result<v1::TenantClusterSpec, Status> {
    let spec = spec.ok_or_else(|| {
        field_status(
            Code::InvalidArgument,
            &[FieldError::new("spec", "is required")],
        )
    })?;
    let errors = contract::tenant_cluster(name, &spec);
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(field_status(Code::InvalidArgument, &errors))
    }
}

/// Fields fixed at creation: placement, the network plan, and the names baked into the PKI.
/// Naming the datastore the tenant already sits on (or none) is not a move: clients that show
/// the assigned datastore send it back.
pub fn immutable_changes(
    old: &v1::TenantClusterSpec,
    new: &v1::TenantClusterSpec,
    placed: Option<&str>,
) -> Vec<FieldError> {
    let moved = old.datastore != new.datastore
        && !new.datastore.is_empty()
        && placed != Some(new.datastore.as_str());
    let (o, n) = (
        old.network.clone().unwrap_or_default(),
        new.network.clone().unwrap_or_default(),
    );
    let fixed = [
        ("datastore", moved),
        (
            "datastore_selector",
            old.datastore_selector != new.datastore_selector,
        ),
        ("network.service_cidr", o.service_cidr != n.service_cidr),
        ("network.pod_cidr", o.pod_cidr != n.pod_cidr),
        (
            "network.dns_service_ip",
            o.dns_service_ip != n.dns_service_ip,
        ),
    ];
    fixed
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(f, _)| {
            FieldError::new(
                f,
                "cannot change in place; the tenant cluster must be replaced",
            )
        })
        .collect()
}

impl TenantApi {
    /// Whether some datastore can take `spec` now. The reconciler places for real (under a
    /// compare-and-swap) right after a create.
    async fn try_place(
        &self,
        spec: &v1::TenantClusterSpec,
    ) -> Result<Result<(), PlacementError>, Status> {
        let candidates: Vec<Candidate> = reconcile::candidates(&self.store)
            .await
            .map_err(store_status)?
            .into_iter()
            .map(|(c, _)| c)
            .collect();
        let req = placement::Request {
            reservation_bytes: self.reservation_bytes,
            datastore: (!spec.datastore.is_empty()).then(|| spec.datastore.clone()),
            selector: spec
                .datastore_selector
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        };
        Ok(placement::place(&req, &candidates, Policy::Spread).map(|_| ()))
    }

    /// The refusal of `spec` for `e`, on the attribute that chose the datastore.
    fn placement_status(spec: &v1::TenantClusterSpec, e: &PlacementError) -> Status {
        let field = if spec.datastore.is_empty() && !spec.datastore_selector.is_empty() {
            "datastore_selector"
        } else {
            "datastore"
        };
        field_status(
            Code::FailedPrecondition,
            &[FieldError::new(field, e.to_string())],
        )
    }

    async fn get_record(&self, name: &str) -> Result<Versioned<TenantRecord>, Status> {
        self.store
            .get(&tenant_key(name))
            .await
            .map_err(store_status)?
            .ok_or_else(|| not_found(name))
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::TenantCluster, Status>> + Send>>;

#[tonic::async_trait]
impl TenantClusters for TenantApi {
    async fn create_tenant_cluster(
        &self,
        req: Request<v1::CreateTenantClusterRequest>,
    ) -> Result<Response<v1::TenantCluster>, Status> {
        let req = req.into_inner();
        let spec = checked(&req.name, req.spec)?;
        if !self.has_runtime {
            return Err(Status::failed_precondition(
                "kamajid has no control-plane runtime: run it in the admin cluster or give it --kubeconfig",
            ));
        }
        let placed = self.try_place(&spec).await?;
        if req.validate_only {
            // At plan time the datastore, or those a selector matches, may be created by the
            // same apply: only a named datastore that exists and cannot take the tenant is an
            // error yet.
            if let Err(e @ PlacementError::Refused { .. }) = &placed {
                return Err(Self::placement_status(&spec, e));
            }
            return Ok(Response::new(v1::TenantCluster {
                name: req.name,
                spec: Some(spec),
                ..Default::default()
            }));
        }
        // Refuses a tenant no datastore can take now, so nothing is created that could only fail.
        if let Err(e) = &placed {
            return Err(Self::placement_status(&spec, e));
        }
        let rec =
            match reconcile::create(&self.store, &req.name, &spec, self.reservation_bytes).await {
                Ok(r) => r,
                Err(StoreError::AlreadyExists { .. }) => {
                    return Err(field_status(
                        Code::AlreadyExists,
                        &[FieldError::new(
                            "name",
                            format!(
                            "tenant cluster {:?} already exists; import it or choose another name",
                            req.name
                        ),
                        )],
                    ))
                }
                Err(e) => return Err(store_status(e)),
            };
        info!(tenant = %req.name, uid = %rec.uid, "tenant cluster created");
        self.wake.notify_one();
        Ok(Response::new(rec.to_proto()))
    }

    async fn get_tenant_cluster(
        &self,
        req: Request<v1::GetTenantClusterRequest>,
    ) -> Result<Response<v1::TenantCluster>, Status> {
        Ok(Response::new(
            self.get_record(&req.into_inner().name)
                .await?
                .value
                .to_proto(),
        ))
    }

    async fn list_tenant_clusters(
        &self,
        req: Request<v1::ListTenantClustersRequest>,
    ) -> Result<Response<v1::ListTenantClustersResponse>, Status> {
        let req = req.into_inner();
        let all: Vec<Versioned<TenantRecord>> = self
            .store
            .list(&format!("{ROOT}tenants/"))
            .await
            .map_err(store_status)?;
        let tenant_clusters = all
            .into_iter()
            .map(|r| r.value.to_proto())
            .filter(|t| {
                let spec = t.spec.clone().unwrap_or_default();
                let placed = t
                    .status
                    .as_ref()
                    .map(|s| s.datastore.clone())
                    .unwrap_or_default();
                selector_matches(&req.label_selector, &spec.labels)
                    && (req.datastore.is_empty() || req.datastore == placed)
            })
            .collect();
        Ok(Response::new(v1::ListTenantClustersResponse {
            tenant_clusters,
        }))
    }

    async fn update_tenant_cluster(
        &self,
        req: Request<v1::UpdateTenantClusterRequest>,
    ) -> Result<Response<v1::TenantCluster>, Status> {
        let req = req.into_inner();
        let spec = checked(&req.name, req.spec)?;
        // The reconciler writes status into the same record; a lost compare-and-swap only means
        // it got there first, so the change is re-checked against the fresh record and retried.
        for _ in 0..CONFLICT_RETRIES {
            let Versioned {
                value: mut rec,
                mod_revision,
            } = self.get_record(&req.name).await?;
            if rec.deleting {
                return Err(Status::failed_precondition(format!(
                    "tenant cluster {:?} is being deleted",
                    req.name
                )));
            }
            let old = rec.spec();
            let mut errors = immutable_changes(&old, &spec, rec.datastore.as_deref());
            if let (Ok(from), Ok(to)) = (
                contract::version("kubernetes_version", &old.kubernetes_version),
                contract::version("kubernetes_version", &spec.kubernetes_version),
            ) {
                if let Err(e) = contract::upgrade("kubernetes_version", from, to) {
                    errors.push(e);
                }
            }
            if !errors.is_empty() {
                return Err(field_status(Code::InvalidArgument, &errors));
            }
            if old == spec {
                return Ok(Response::new(rec.to_proto()));
            }
            rec.spec = crate::tenant::spec_to_stored(&spec);
            rec.generation += 1;
            if rec.phase == Phase::Ready {
                rec.phase = if old.kubernetes_version != spec.kubernetes_version {
                    Phase::Upgrading
                } else {
                    Phase::Provisioning
                };
            }
            match self
                .store
                .update(&tenant_key(&req.name), &rec, mod_revision)
                .await
            {
                Ok(()) => {
                    info!(tenant = %req.name, generation = rec.generation, "tenant cluster updated");
                    self.wake.notify_one();
                    return Ok(Response::new(rec.to_proto()));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_status(e)),
            }
        }
        Err(busy(&req.name))
    }

    async fn delete_tenant_cluster(
        &self,
        req: Request<v1::DeleteTenantClusterRequest>,
    ) -> Result<Response<v1::TenantCluster>, Status> {
        let name = req.into_inner().name;
        for _ in 0..CONFLICT_RETRIES {
            let Versioned {
                value: mut rec,
                mod_revision,
            } = self.get_record(&name).await?;
            if rec.deleting {
                return Ok(Response::new(rec.to_proto()));
            }
            if rec.spec().deletion_protection {
                return Err(field_status(
                    Code::FailedPrecondition,
                    &[FieldError::new(
                        "deletion_protection",
                        format!(
                            "tenant cluster {name:?} has deletion_protection set; unset it first"
                        ),
                    )],
                ));
            }
            // Checked and marked against one revision: an update that sets deletion_protection
            // in between makes this write lose and the check run again.
            reconcile::mark_deleting_record(&mut rec);
            match self
                .store
                .update(&tenant_key(&name), &rec, mod_revision)
                .await
            {
                Ok(()) => {
                    info!(tenant = %name, "tenant cluster marked for deletion");
                    self.wake.notify_one();
                    return Ok(Response::new(rec.to_proto()));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(store_status(e)),
            }
        }
        Err(busy(&name))
    }

    type WatchTenantClusterStream = WatchStream;

    async fn watch_tenant_cluster(
        &self,
        req: Request<v1::WatchTenantClusterRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let name = req.into_inner().name;
        let first = self.get_record(&name).await?.value;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut last = first.to_proto();
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                match store.get::<TenantRecord>(&tenant_key(&name)).await {
                    Ok(Some(r)) => {
                        let now = r.value.to_proto();
                        if now != last {
                            last = now.clone();
                            if tx.send(Ok(now)).await.is_err() {
                                return;
                            }
                        } else if tx.is_closed() {
                            return;
                        }
                    }
                    Ok(None) => {
                        let _ = tx.send(Err(not_found(&name))).await;
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(store_status(e))).await;
                        return;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn get_tenant_cluster_credentials(
        &self,
        req: Request<v1::GetTenantClusterCredentialsRequest>,
    ) -> Result<Response<v1::TenantClusterCredentials>, Status> {
        let name = req.into_inner().name;
        let rec = self.get_record(&name).await?.value;
        let (Some(stored), Some(endpoint)) = (&rec.pki, &rec.endpoint) else {
            return Err(Status::failed_precondition(format!(
                "tenant cluster {name:?} has no credentials yet: it is not ready"
            )));
        };
        let json = self
            .kek
            .open(&tenant_key(&name), &stored.sealed)
            .map_err(|e| Status::internal(e.to_string()))?;
        let pki: TenantPki = serde_json::from_str(&json)
            .map_err(|_| Status::internal("stored PKI does not decode"))?;
        Ok(Response::new(v1::TenantClusterCredentials {
            admin_kubeconfig: kubeconfig(
                &name,
                endpoint,
                &pki.ca.cert,
                "kubernetes-admin",
                &pki.admin,
            ),
            client_certificate: pki.admin.cert.clone(),
            client_key: pki.admin.key.clone(),
        }))
    }
}
