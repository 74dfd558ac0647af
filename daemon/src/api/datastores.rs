//! The Datastores service: translates requests into validated specs, probes, and store writes.

use std::sync::Arc;

use kamaji_proto::errors::{field_status, FieldError};
use kamaji_proto::v1::{self, datastores_server::Datastores};
use kamaji_proto::validate::{self, selector_matches};
use tonic::{Code, Request, Response, Status};
use tracing::info;

use kamaji_core::datastore::{DatastoreRecord, DatastoreStatusRecord, Phase};
use kamaji_core::ids::DatastoreName;
use kamaji_core::kek::Kek;
use kamaji_core::lifecycle::now_unix;
use kamaji_core::pki::Pem;

use super::store_status;
use crate::datastore::probe::{ProbeReport, Prober};
use crate::datastore::usage::UsageTracker;
use crate::store::{Store, StoreError, Versioned};
use crate::wire::{self, admin_credentials};
use kamaji_core::lifecycle::ports::Records;

pub struct DatastoreApi<P> {
    pub store: Store,
    pub kek: Kek,
    pub prober: Arc<P>,
    /// What the tenants on each datastore keep, as measured.
    pub usage: Arc<UsageTracker>,
}

fn ready_status(r: ProbeReport) -> DatastoreStatusRecord {
    DatastoreStatusRecord {
        phase: Phase::Ready,
        message: r.warnings.join("; "),
        etcd_version: r.etcd_version,
        db_size_bytes: r.db_size_bytes,
        members: r.members,
        probe_time: now_unix(),
        ..Default::default()
    }
}

fn not_found(name: &str) -> Status {
    field_status(
        Code::NotFound,
        &[FieldError::new(
            "name",
            format!("datastore {name:?} does not exist"),
        )],
    )
}

fn name(n: &str) -> Result<DatastoreName, Status> {
    wire::datastore_name(n)
        .map_err(|e| field_status(Code::InvalidArgument, &[FieldError::new("name", e.detail)]))
}

/// Parses the request's spec and applies the whole input contract.
fn checked_spec(name: &str, spec: Option<v1::DatastoreSpec>) -> Result<v1::DatastoreSpec, Status> {
    let spec = spec.ok_or_else(|| {
        field_status(
            Code::InvalidArgument,
            &[FieldError::new("spec", "is required")],
        )
    })?;
    let errors = validate::datastore(name, &spec);
    if errors.is_empty() {
        Ok(spec)
    } else {
        Err(field_status(Code::InvalidArgument, &errors))
    }
}

impl<P: Prober> DatastoreApi<P> {
    async fn probe(&self, spec: &v1::DatastoreSpec) -> Result<ProbeReport, Status> {
        self.prober
            .probe(&admin_credentials(spec))
            .await
            .map_err(|e| {
                field_status(
                    Code::FailedPrecondition,
                    &[FieldError::new(e.field(), e.to_string())],
                )
            })
    }

    /// Registration's extra checks, beyond what every health probe checks: etcd trusts the
    /// client CA (C), and no other datastore is the same etcd cluster (F), which would count its
    /// quota twice. An etcd is known by its members' IDs, not by a URL (`localhost` and
    /// `127.0.0.1` are one etcd).
    async fn check_new_connection(
        &self,
        name: &DatastoreName,
        spec: &v1::DatastoreSpec,
        report: &ProbeReport,
    ) -> Result<(), Status> {
        let refuse = |field: &str, message: String| {
            field_status(Code::FailedPrecondition, &[FieldError::new(field, message)])
        };
        let ca = Pem {
            cert: spec.client_ca_certificate.clone(),
            key: spec.client_ca_key.clone(),
        };
        self.prover_check(spec, &ca).await?;
        let ours: std::collections::BTreeSet<u64> = report.members.iter().map(|m| m.id).collect();
        let statuses = self
            .store
            .datastore_statuses()
            .await
            .map_err(store_status)?;
        for (other_name, other) in statuses.into_iter().filter(|(n, _)| n != name.as_str()) {
            if let Some(m) = other.members.iter().find(|m| ours.contains(&m.id)) {
                return Err(refuse(
                    "endpoints",
                    format!(
                        "reach the etcd cluster that datastore {other_name:?} already is (member {} {:x}); \
                         one etcd registered twice would count its quota twice",
                        m.name, m.id
                    ),
                ));
            }
        }
        Ok(())
    }

    async fn prover_check(&self, spec: &v1::DatastoreSpec, ca: &Pem) -> Result<(), Status> {
        self.prober
            .prove_client_ca(&admin_credentials(spec), ca)
            .await
            .map_err(|e| {
                field_status(
                    Code::FailedPrecondition,
                    &[FieldError::new(e.field(), e.to_string())],
                )
            })
    }

    async fn get_record(&self, name: &DatastoreName) -> Result<Versioned<DatastoreRecord>, Status> {
        self.store
            .datastore_record(name)
            .await
            .map_err(store_status)?
            .ok_or_else(|| not_found(name.as_str()))
    }

    async fn view(&self, rec: &DatastoreRecord) -> Result<v1::Datastore, Status> {
        let status = self
            .store
            .datastore_status(&rec.name)
            .await
            .map_err(store_status)?
            .map(|s| s.value)
            .unwrap_or_default();
        let tenants = self
            .store
            .placement_count(&rec.name)
            .await
            .map_err(store_status)?;
        let mut st = wire::status_to_proto(&status, tenants);
        if rec.drain {
            // Which tenants are left, and why each still is.
            let all: Vec<_> = self
                .store
                .tenant_records()
                .await
                .map_err(store_status)?
                .into_iter()
                .map(|t| {
                    let spec = self.store.spec(&t).ok();
                    (t, spec)
                })
                .collect();
            let left = kamaji_core::lifecycle::drain::report(&rec.name, &all);
            if !left.is_empty() {
                st.message = if st.message.is_empty() {
                    left
                } else {
                    format!("{}; {left}", st.message)
                };
            }
        }
        let used = self.usage.datastore(&rec.name);
        st.storage_used_bytes = used.map(|u| u.bytes);
        st.storage_keys = used.map(|u| u.keys);
        Ok(wire::datastore_to_proto(rec, Some(st)))
    }
}

#[tonic::async_trait]
impl<P: Prober> Datastores for DatastoreApi<P> {
    async fn create_datastore(
        &self,
        req: Request<v1::CreateDatastoreRequest>,
    ) -> Result<Response<v1::Datastore>, Status> {
        let req = req.into_inner();
        let spec = checked_spec(&req.name, req.spec)?;
        let ds = name(&req.name)?;
        let exists = || {
            field_status(
                Code::AlreadyExists,
                &[FieldError::new(
                    "name",
                    format!("datastore {:?} already exists; import it (terraform import) or choose another name", req.name),
                )],
            )
        };
        if self
            .store
            .datastore_record(&ds)
            .await
            .map_err(store_status)?
            .is_some()
        {
            return Err(exists());
        }
        let report = self.probe(&spec).await?;
        self.check_new_connection(&ds, &spec, &report).await?;
        let status = ready_status(report);
        let now = now_unix();
        let rec = wire::seal_datastore(&ds, &spec, &self.kek, now, now);
        match self.store.create_datastore(&rec, &status).await {
            Ok(()) => {}
            Err(StoreError::AlreadyExists { .. }) => return Err(exists()),
            Err(e) => return Err(store_status(e)),
        }
        info!(datastore = %ds, version = %status.etcd_version, "datastore registered");
        Ok(Response::new(wire::datastore_to_proto(
            &rec,
            Some(wire::status_to_proto(&status, 0)),
        )))
    }

    async fn get_datastore(
        &self,
        req: Request<v1::GetDatastoreRequest>,
    ) -> Result<Response<v1::Datastore>, Status> {
        let ds = name(&req.into_inner().name)?;
        let rec = self.get_record(&ds).await?;
        Ok(Response::new(self.view(&rec.value).await?))
    }

    async fn list_datastores(
        &self,
        req: Request<v1::ListDatastoresRequest>,
    ) -> Result<Response<v1::ListDatastoresResponse>, Status> {
        let selector = req.into_inner().label_selector;
        let records = self.store.datastore_records().await.map_err(store_status)?;
        let mut datastores = Vec::new();
        for r in records {
            let labels = r
                .value
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            if selector_matches(&selector, &labels) {
                datastores.push(self.view(&r.value).await?);
            }
        }
        Ok(Response::new(v1::ListDatastoresResponse { datastores }))
    }

    async fn update_datastore(
        &self,
        req: Request<v1::UpdateDatastoreRequest>,
    ) -> Result<Response<v1::Datastore>, Status> {
        let req = req.into_inner();
        let spec = checked_spec(&req.name, req.spec)?;
        let ds = name(&req.name)?;
        let current = self.get_record(&ds).await?;
        if wire::client_ca_differs(&current.value, &spec) {
            return Err(field_status(
                Code::InvalidArgument,
                &[FieldError::new(
                    "client_ca_certificate",
                    "the client CA cannot change in place because tenants' etcd certificates are signed by it; \
                     register a new datastore instead",
                )],
            ));
        }
        let probed = if wire::connection_differs(&current.value, &spec) {
            let report = self.probe(&spec).await?;
            self.check_new_connection(&ds, &spec, &report).await?;
            Some(ready_status(report))
        } else {
            None
        };
        let rec =
            wire::seal_datastore(&ds, &spec, &self.kek, current.value.create_time, now_unix());
        self.store
            .update_datastore(&rec, current.revision)
            .await
            .map_err(store_status)?;
        if let Some(status) = &probed {
            self.store
                .put_status(&ds, status)
                .await
                .map_err(store_status)?;
        }
        info!(datastore = %ds, reprobed = probed.is_some(), "datastore updated");
        Ok(Response::new(self.view(&rec).await?))
    }

    async fn delete_datastore(
        &self,
        req: Request<v1::DeleteDatastoreRequest>,
    ) -> Result<Response<v1::DeleteDatastoreResponse>, Status> {
        let ds = name(&req.into_inner().name)?;
        let current = self.get_record(&ds).await?;
        match self.store.delete_datastore(&ds, current.revision).await {
            Ok(()) => {
                info!(datastore = %ds, "datastore removed");
                Ok(Response::new(v1::DeleteDatastoreResponse {}))
            }
            // Not a fault of any attribute: the datastore is in use.
            Err(StoreError::HasTenants { tenants, .. }) => {
                Err(Status::failed_precondition(format!(
                "datastore {:?} still holds {} tenant cluster(s): {}; destroy or move them first",
                ds.as_str(),
                tenants.len(),
                tenants.join(", ")
            )))
            }
            Err(e) => Err(store_status(e)),
        }
    }
}
