//! The TenantClusters gRPC service: parses each request (the input contract, then the typed
//! spec), calls the [`TenantService`], and maps its errors to statuses in [`service_status`].
//! Writes return at once; clients follow progress with Get or Watch.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use kamaji_core::ids::TenantName;
use kamaji_core::spec::TenantSpec;
use kamaji_proto::errors::{field_status, FieldError};
use kamaji_proto::tenant as contract;
use kamaji_proto::v1::{self, tenant_clusters_server::TenantClusters};
use kamaji_proto::validate::selector_matches;
use tokio_stream::Stream;
use tonic::{Code, Request, Response, Status};

use super::store_status;
use crate::runtime::Capabilities;
use crate::service::{ServiceError, TenantService};
use crate::wire;

pub struct TenantApi {
    pub service: Arc<TenantService>,
    /// What the configured control-plane runtime can run; without one, creates are refused.
    pub runtime: Option<Arc<dyn Capabilities>>,
}

fn field(code: Code, name: &str, message: impl Into<String>) -> Status {
    field_status(code, &[FieldError::new(name, message)])
}

/// The one mapping of service errors to statuses: attribute-level where an attribute is at
/// fault, so the provider points at it.
pub fn service_status(e: ServiceError) -> Status {
    let message = e.to_string();
    match e {
        ServiceError::NotFound(_) => field(Code::NotFound, "name", message),
        ServiceError::AlreadyExists(_) => field(Code::AlreadyExists, "name", message),
        ServiceError::Invalid(errors) => field_status(Code::InvalidArgument, &errors),
        ServiceError::Unplaceable { field: f, error } => {
            field(Code::FailedPrecondition, f, error.to_string())
        }
        ServiceError::Protected(_) => {
            field(Code::FailedPrecondition, "deletion_protection", message)
        }
        ServiceError::Deleting(_) => Status::failed_precondition(message),
        ServiceError::NotReady(_, _) => Status::failed_precondition(message),
        ServiceError::Busy(_) => Status::aborted(message),
        ServiceError::Store(e) => store_status(e),
        ServiceError::Lifecycle(e) => Status::internal(e.to_string()),
    }
}

fn name(n: &str) -> Result<TenantName, Status> {
    wire::tenant_name(n).map_err(|e| field(Code::InvalidArgument, "name", e.detail))
}

/// The request's spec through the whole input contract, and its typed form.
fn checked(
    name: &str,
    spec: Option<v1::TenantClusterSpec>,
) -> Result<(v1::TenantClusterSpec, TenantSpec), Status> {
    let spec = spec.ok_or_else(|| field(Code::InvalidArgument, "spec", "is required"))?;
    let typed = contract::parse(name, &spec)
        .map_err(|errors| field_status(Code::InvalidArgument, &errors))?;
    Ok((spec, typed))
}

impl TenantApi {
    /// Refuses a spec the configured runtime cannot run as written.
    fn supported(&self, spec: &TenantSpec) -> Result<(), Status> {
        let Some(runtime) = &self.runtime else {
            return Err(Status::failed_precondition(
                "kamajid has no control-plane runtime: run it in the admin cluster or give it --kubeconfig",
            ));
        };
        let errors = runtime.refuses(spec);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(field_status(Code::InvalidArgument, &errors))
        }
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
        let (wire_spec, spec) = checked(&req.name, req.spec)?;
        let tenant = name(&req.name)?;
        self.supported(&spec)?;
        if req.validate_only {
            self.service
                .validate_create(&spec, &req.planned_datastores)
                .await
                .map_err(service_status)?;
            return Ok(Response::new(v1::TenantCluster {
                name: req.name,
                spec: Some(wire_spec),
                ..Default::default()
            }));
        }
        let created = self
            .service
            .create(tenant, &wire_spec, &spec)
            .await
            .map_err(service_status)?;
        Ok(Response::new(created))
    }

    async fn get_tenant_cluster(
        &self,
        req: Request<v1::GetTenantClusterRequest>,
    ) -> Result<Response<v1::TenantCluster>, Status> {
        let tenant = name(&req.into_inner().name)?;
        Ok(Response::new(
            self.service.get(&tenant).await.map_err(service_status)?,
        ))
    }

    async fn list_tenant_clusters(
        &self,
        req: Request<v1::ListTenantClustersRequest>,
    ) -> Result<Response<v1::ListTenantClustersResponse>, Status> {
        let req = req.into_inner();
        let tenant_clusters = self
            .service
            .list()
            .await
            .map_err(service_status)?
            .into_iter()
            .filter(|t| {
                let labels = t
                    .spec
                    .as_ref()
                    .map(|s| s.labels.clone())
                    .unwrap_or_default();
                let placed = t
                    .status
                    .as_ref()
                    .map(|s| s.datastore.as_str())
                    .unwrap_or("");
                selector_matches(&req.label_selector, &labels)
                    && (req.datastore.is_empty() || req.datastore == placed)
            })
            .collect();
        let (tenant_clusters, next_page_token) =
            page(tenant_clusters, req.page_size, &req.page_token);
        Ok(Response::new(v1::ListTenantClustersResponse {
            tenant_clusters,
            next_page_token,
        }))
    }

    async fn update_tenant_cluster(
        &self,
        req: Request<v1::UpdateTenantClusterRequest>,
    ) -> Result<Response<v1::TenantCluster>, Status> {
        let req = req.into_inner();
        let (wire_spec, spec) = checked(&req.name, req.spec)?;
        let tenant = name(&req.name)?;
        self.supported(&spec)?;
        Ok(Response::new(
            self.service
                .update(&tenant, &wire_spec, req.validate_only)
                .await
                .map_err(service_status)?,
        ))
    }

    async fn delete_tenant_cluster(
        &self,
        req: Request<v1::DeleteTenantClusterRequest>,
    ) -> Result<Response<v1::TenantCluster>, Status> {
        let tenant = name(&req.into_inner().name)?;
        Ok(Response::new(
            self.service.delete(&tenant).await.map_err(service_status)?,
        ))
    }

    type WatchTenantClusterStream = WatchStream;

    async fn watch_tenant_cluster(
        &self,
        req: Request<v1::WatchTenantClusterRequest>,
    ) -> Result<Response<WatchStream>, Status> {
        let tenant = name(&req.into_inner().name)?;
        let first = self.service.get(&tenant).await.map_err(service_status)?;
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let service = self.service.clone();
        tokio::spawn(async move {
            let mut last = first;
            if tx.send(Ok(last.clone())).await.is_err() {
                return;
            }
            loop {
                tokio::time::sleep(Duration::from_millis(500)).await;
                match service.get(&tenant).await {
                    Ok(now) => {
                        if now != last {
                            last = now.clone();
                            if tx.send(Ok(now)).await.is_err() {
                                return;
                            }
                        } else if tx.is_closed() {
                            return;
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(service_status(e))).await;
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
        let tenant = name(&req.into_inner().name)?;
        let c = self
            .service
            .credentials(&tenant)
            .await
            .map_err(service_status)?;
        Ok(Response::new(v1::TenantClusterCredentials {
            admin_kubeconfig: c.admin_kubeconfig,
            client_certificate: c.client_certificate,
            client_key: c.client_key,
        }))
    }
}

/// The largest page a List answers.
const MAX_PAGE: usize = 1000;

/// One page of `all` (in name order): the tenants after `token` (the last name of the previous
/// page), at most `size` (all of them when 0), and the token of the next page when more follow.
fn page(all: Vec<v1::TenantCluster>, size: i32, token: &str) -> (Vec<v1::TenantCluster>, String) {
    let Ok(size @ 1..) = usize::try_from(size) else {
        return (all, String::new());
    };
    let size = size.min(MAX_PAGE);
    let mut rest: Vec<_> = all
        .into_iter()
        .filter(|t| token.is_empty() || t.name.as_str() > token)
        .collect();
    if rest.len() <= size {
        return (rest, String::new());
    }
    rest.truncate(size);
    let next = rest.last().map(|t| t.name.clone()).unwrap_or_default();
    (rest, next)
}

#[cfg(test)]
mod tests {
    use kamaji_proto::errors::field_errors;
    use kamaji_proto::tenant::cases::cases;

    use super::*;

    /// kamajid's verdict on every case of the table the provider's tests run too: a create or
    /// an update is judged by [`checked`], and an update's change then by the rules the service
    /// applies to the stored spec (`contract::change`).
    #[test]
    fn pages_walk_every_tenant_once_in_name_order() {
        let all: Vec<v1::TenantCluster> = (0..2501)
            .map(|n| v1::TenantCluster {
                name: format!("t{n:04}"),
                ..Default::default()
            })
            .collect();
        let (one, token) = page(all.clone(), 0, "");
        assert_eq!((one.len(), token.as_str()), (2501, ""), "0: all at once");
        let mut seen = Vec::new();
        let mut token = String::new();
        loop {
            // Asked for more than the largest page: the largest page.
            let (p, next) = page(all.clone(), 5000, &token);
            assert!(p.len() <= MAX_PAGE);
            seen.extend(p.into_iter().map(|t| t.name));
            if next.is_empty() {
                break;
            }
            token = next;
        }
        let want: Vec<String> = all.into_iter().map(|t| t.name).collect();
        assert_eq!(seen, want);
    }

    #[test]
    fn kamajid_reaches_the_shared_verdict_on_every_case() {
        for case in cases() {
            let mut fields: Vec<String> = match checked("acme", Some(case.new.clone())) {
                Err(status) => field_errors(&status).into_iter().map(|e| e.field).collect(),
                Ok(_) => case
                    .old
                    .as_ref()
                    .map(|old| contract::change(old, &case.new))
                    .unwrap_or_default()
                    .into_iter()
                    .map(|e| e.field)
                    .collect(),
            };
            fields.sort();
            assert_eq!(fields, case.refused, "{}", case.name);
        }
    }
}
