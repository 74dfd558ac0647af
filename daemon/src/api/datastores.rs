//! The Datastores service: translates requests into validated specs, probes, and store writes.

use std::sync::Arc;

use kamaji_proto::errors::{field_status, FieldError};
use kamaji_proto::v1::{self, datastores_server::Datastores};
use kamaji_proto::validate::{self, selector_matches};
use tonic::{Code, Request, Response, Status};
use tracing::info;

use super::store_status;
use crate::datastore::probe::{ProbeReport, Prober};
use crate::datastore::{now_unix, AdminCredentials, DatastoreRecord, DatastoreStatusRecord, Phase};
use crate::kek::Kek;
use crate::store::{
    datastore_key, datastore_status_key, placements_prefix, Store, StoreError, Versioned, ROOT,
};

pub struct DatastoreApi<P> {
    pub store: Store,
    pub kek: Kek,
    pub prober: Arc<P>,
}

fn ready_status(r: ProbeReport) -> DatastoreStatusRecord {
    DatastoreStatusRecord {
        phase: Phase::Ready,
        message: String::new(),
        etcd_version: r.etcd_version,
        db_size_bytes: r.db_size_bytes,
        members: r.members,
        probe_time: now_unix(),
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
            .probe(&AdminCredentials::from_spec(spec))
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
        name: &str,
        spec: &v1::DatastoreSpec,
        report: &ProbeReport,
    ) -> Result<(), Status> {
        let refuse = |field: &str, message: String| {
            field_status(Code::FailedPrecondition, &[FieldError::new(field, message)])
        };
        let ca = crate::pki::Pem {
            cert: spec.client_ca_certificate.clone(),
            key: spec.client_ca_key.clone(),
        };
        self.prover_check(spec, &ca).await?;
        let ours: std::collections::BTreeSet<u64> = report.members.iter().map(|m| m.id).collect();
        let names = self
            .store
            .list_names(&datastore_status_key(""))
            .await
            .map_err(store_status)?;
        for other_name in names.into_iter().filter(|n| n != name) {
            let Some(other) = self
                .store
                .get::<DatastoreStatusRecord>(&datastore_status_key(&other_name))
                .await
                .map_err(store_status)?
            else {
                continue;
            };
            if let Some(m) = other.value.members.iter().find(|m| ours.contains(&m.id)) {
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

    async fn prover_check(
        &self,
        spec: &v1::DatastoreSpec,
        ca: &crate::pki::Pem,
    ) -> Result<(), Status> {
        self.prober
            .prove_client_ca(&AdminCredentials::from_spec(spec), ca)
            .await
            .map_err(|e| {
                field_status(
                    Code::FailedPrecondition,
                    &[FieldError::new(e.field(), e.to_string())],
                )
            })
    }

    async fn get_record(&self, name: &str) -> Result<Versioned<DatastoreRecord>, Status> {
        self.store
            .get(&datastore_key(name))
            .await
            .map_err(store_status)?
            .ok_or_else(|| not_found(name))
    }

    async fn view(&self, rec: &DatastoreRecord) -> Result<v1::Datastore, Status> {
        let status: Option<Versioned<DatastoreStatusRecord>> = self
            .store
            .get(&datastore_status_key(&rec.name))
            .await
            .map_err(store_status)?;
        let tenants = self
            .store
            .count(&placements_prefix(&rec.name))
            .await
            .map_err(store_status)?;
        let status = status.map(|s| s.value).unwrap_or_default();
        Ok(rec.to_proto(Some(status.to_proto(tenants))))
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
        let key = datastore_key(&req.name);
        let exists = |_| {
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
            .get::<DatastoreRecord>(&key)
            .await
            .map_err(store_status)?
            .is_some()
        {
            return Err(exists(()));
        }
        let report = self.probe(&spec).await?;
        self.check_new_connection(&req.name, &spec, &report).await?;
        let status = ready_status(report);
        let rec = DatastoreRecord::seal(&req.name, &spec, &self.kek, now_unix());
        let status_json = serde_json::to_vec(&status).unwrap_or_default();
        match self
            .store
            .create(
                &key,
                &rec,
                vec![(datastore_status_key(&req.name), status_json)],
            )
            .await
        {
            Ok(()) => {}
            Err(StoreError::AlreadyExists { .. }) => return Err(exists(())),
            Err(e) => return Err(store_status(e)),
        }
        info!(datastore = %req.name, version = %status.etcd_version, "datastore registered");
        Ok(Response::new(rec.to_proto(Some(status.to_proto(0)))))
    }

    async fn get_datastore(
        &self,
        req: Request<v1::GetDatastoreRequest>,
    ) -> Result<Response<v1::Datastore>, Status> {
        let rec = self.get_record(&req.into_inner().name).await?;
        Ok(Response::new(self.view(&rec.value).await?))
    }

    async fn list_datastores(
        &self,
        req: Request<v1::ListDatastoresRequest>,
    ) -> Result<Response<v1::ListDatastoresResponse>, Status> {
        let selector = req.into_inner().label_selector;
        let records: Vec<Versioned<DatastoreRecord>> = self
            .store
            .list(&format!("{ROOT}datastores/"))
            .await
            .map_err(store_status)?;
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
        let current = self.get_record(&req.name).await?;
        if current.value.client_ca_differs(&spec) {
            return Err(field_status(
                Code::InvalidArgument,
                &[FieldError::new(
                    "client_ca_certificate",
                    "the client CA cannot change in place because tenants' etcd certificates are signed by it; \
                     register a new datastore instead",
                )],
            ));
        }
        let probed = if current.value.connection_differs(&spec) {
            let report = self.probe(&spec).await?;
            self.check_new_connection(&req.name, &spec, &report).await?;
            Some(ready_status(report))
        } else {
            None
        };
        let rec = DatastoreRecord::seal(&req.name, &spec, &self.kek, current.value.create_time);
        self.store
            .update(&datastore_key(&req.name), &rec, current.mod_revision)
            .await
            .map_err(store_status)?;
        if let Some(status) = &probed {
            self.store
                .put_if_exists(
                    &datastore_status_key(&req.name),
                    status,
                    &datastore_key(&req.name),
                )
                .await
                .map_err(store_status)?;
        }
        info!(datastore = %req.name, reprobed = probed.is_some(), "datastore updated");
        Ok(Response::new(self.view(&rec).await?))
    }

    async fn delete_datastore(
        &self,
        req: Request<v1::DeleteDatastoreRequest>,
    ) -> Result<Response<v1::DeleteDatastoreResponse>, Status> {
        let name = req.into_inner().name;
        let current = self.get_record(&name).await?;
        match self.store.delete_datastore(&name, current.mod_revision).await {
            Ok(()) => {
                info!(datastore = %name, "datastore removed");
                Ok(Response::new(v1::DeleteDatastoreResponse {}))
            }
            // Not a fault of any attribute: the datastore is in use.
            Err(StoreError::HasTenants { tenants, .. }) => Err(Status::failed_precondition(format!(
                "datastore {name:?} still holds {} tenant cluster(s): {}; destroy or move them first",
                tenants.len(),
                tenants.join(", ")
            ))),
            Err(e) => Err(store_status(e)),
        }
    }
}
