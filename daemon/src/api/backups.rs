//! The TenantBackups service: backups of one tenant taken on request, listed, read and
//! deleted. The archive goes to kamajid's backup store; its record to the state store.

use std::sync::Arc;

use kamaji_core::backup::archive::Secrets;
use kamaji_core::backup::BackupRecord;
use kamaji_core::lifecycle::{now_unix, open_pki};
use kamaji_proto::errors::{field_status, FieldError};
use kamaji_proto::v1::{self, tenant_backups_server::TenantBackups};
use tonic::{Code, Request, Response, Status};

use super::tenants::service_status;
use crate::backup::{BackupError, Backups};
use crate::datastore::isolation::connect_admin;
use crate::service::TenantService;
use crate::wire;

pub struct BackupApi {
    pub service: Arc<TenantService>,
    /// `None`: kamajid was started without `--backup-store`.
    pub backups: Option<Arc<Backups>>,
    /// How long to wait for a datastore to answer.
    pub etcd_timeout: std::time::Duration,
}

fn field(code: Code, name: &str, message: impl Into<String>) -> Status {
    field_status(code, &[FieldError::new(name, message)])
}

/// The one place backup errors become statuses.
pub fn backup_status(e: BackupError) -> Status {
    let message = e.to_string();
    match e {
        BackupError::NotFound(_) => field(Code::NotFound, "id", message),
        BackupError::Records(e) => super::store_status(e),
        BackupError::Store { .. } | BackupError::Read(_) | BackupError::Write(_) => {
            Status::unavailable(message)
        }
        BackupError::Archive { .. } | BackupError::Digest { .. } => Status::data_loss(message),
    }
}

/// A backup as the API shows it.
pub fn to_proto(store: &str, b: &BackupRecord) -> v1::TenantBackup {
    v1::TenantBackup {
        id: b.id.clone(),
        tenant_cluster: b.tenant.clone(),
        labels: b.labels.clone().into_iter().collect(),
        revision: b.revision,
        keys: b.keys,
        bytes: b.bytes,
        size_bytes: b.size_bytes,
        digest: format!("sha256:{}", b.digest),
        kubernetes_version: b.kubernetes_version.clone(),
        create_time: Some(prost_types::Timestamp {
            seconds: b.created_at,
            nanos: 0,
        }),
        location: format!("{store}/{}", b.location),
        scheduled: b.scheduled,
    }
}

impl BackupApi {
    fn backups(&self) -> Result<&Arc<Backups>, Status> {
        self.backups.as_ref().ok_or_else(|| {
            Status::failed_precondition(
                "kamajid has no backup store: start it with --backup-store (a directory or \
                 s3://<bucket>[/<prefix>]; Helm: config.backupStore)",
            )
        })
    }
}

/// Takes a backup of tenant `name` now (the API's create, and a schedule's).
pub async fn take(
    service: &TenantService,
    backups: &Backups,
    etcd_timeout: std::time::Duration,
    name: &kamaji_core::ids::TenantName,
    labels: std::collections::BTreeMap<String, String>,
    scheduled: bool,
) -> Result<BackupRecord, Status> {
    let rec = service.record(name).await.map_err(service_status)?.value;
    let not_yet = |why: &str| {
        field(
            Code::FailedPrecondition,
            "tenant_cluster",
            format!("tenant cluster {name:?} cannot be backed up now: {why}"),
        )
    };
    if rec.deleting {
        return Err(not_yet("it is being deleted"));
    }
    if rec.moving.is_some() {
        return Err(not_yet(
            "it is moving to another datastore; back it up once it is there",
        ));
    }
    let (Some(ds_name), Some(_)) = (&rec.datastore, &rec.current_version) else {
        return Err(not_yet("it has not been Ready yet"));
    };
    let pki = open_pki(&service.kek, &rec)
        .map_err(|e| Status::internal(e.to_string()))?
        .ok_or_else(|| not_yet("it has no PKI yet"))?;
    let secrets = Secrets {
        encryption_keys: pki.encryption_keys.clone(),
        encrypted_resources: pki.encrypted_resources.clone(),
        identity: serde_json::to_string(&pki)
            .ok()
            .map(kamaji_core::backup::archive::Identity),
    };
    let ds = service
        .store
        .datastore_record(ds_name)
        .await
        .map_err(super::store_status)?
        .ok_or_else(|| not_yet("its datastore is no longer registered"))?
        .value;
    let admin = connect_admin(&ds, &service.kek, etcd_timeout)
        .await
        .map_err(|(op, detail)| Status::unavailable(format!("{op}: {detail}")))?;
    backups
        .take(&rec, &secrets, &admin, labels, scheduled, now_unix())
        .await
        .map_err(backup_status)
}

#[tonic::async_trait]
impl TenantBackups for BackupApi {
    async fn create_tenant_backup(
        &self,
        req: Request<v1::CreateTenantBackupRequest>,
    ) -> Result<Response<v1::TenantBackup>, Status> {
        let req = req.into_inner();
        let name = wire::tenant_name(&req.tenant_cluster)
            .map_err(|e| field(Code::InvalidArgument, "tenant_cluster", e.detail))?;
        kamaji_proto::validate::labels(
            "labels",
            req.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        )
        .map_err(|e| field_status(Code::InvalidArgument, &[e]))?;
        let backups = self.backups()?;
        let labels = req.labels.into_iter().collect();
        let b = take(
            &self.service,
            backups,
            self.etcd_timeout,
            &name,
            labels,
            false,
        )
        .await?;
        Ok(Response::new(to_proto(&backups.store.describe, &b)))
    }

    async fn get_tenant_backup(
        &self,
        req: Request<v1::GetTenantBackupRequest>,
    ) -> Result<Response<v1::TenantBackup>, Status> {
        let backups = self.backups()?;
        let b = backups
            .record(&req.into_inner().id)
            .await
            .map_err(backup_status)?;
        Ok(Response::new(to_proto(&backups.store.describe, &b)))
    }

    async fn list_tenant_backups(
        &self,
        req: Request<v1::ListTenantBackupsRequest>,
    ) -> Result<Response<v1::ListTenantBackupsResponse>, Status> {
        let backups = self.backups()?;
        let list = backups
            .list(&req.into_inner().tenant_cluster)
            .await
            .map_err(backup_status)?;
        Ok(Response::new(v1::ListTenantBackupsResponse {
            backups: list
                .iter()
                .map(|b| to_proto(&backups.store.describe, b))
                .collect(),
        }))
    }

    async fn restore_tenant_backup(
        &self,
        req: Request<v1::RestoreTenantBackupRequest>,
    ) -> Result<Response<v1::RestoreTenantBackupResponse>, Status> {
        let req = req.into_inner();
        let name = wire::tenant_name(&req.tenant_cluster)
            .map_err(|e| field(Code::InvalidArgument, "tenant_cluster", e.detail))?;
        let backups = self.backups()?;
        let refused = |m: String| field(Code::FailedPrecondition, "backup_id", m);
        let record = backups.record(&req.id).await.map_err(|e| match e {
            BackupError::NotFound(_) => field(Code::NotFound, "backup_id", e.to_string()),
            e => backup_status(e),
        })?;
        // The archive read whole and checked now: a corrupt one touches nothing.
        let checked = backups.check(&req.id).await.map_err(|e| match e {
            e @ (BackupError::Archive { .. } | BackupError::Digest { .. }) => {
                field(Code::DataLoss, "backup_id", e.to_string())
            }
            e => backup_status(e),
        })?;
        for _ in 0..5 {
            let v = self.service.record(&name).await.map_err(service_status)?;
            let mut rec = v.value;
            let busy = |why: &str| {
                field(
                    Code::FailedPrecondition,
                    "tenant_cluster",
                    format!("tenant cluster {name:?} cannot be restored in place now: {why}"),
                )
            };
            if rec.deleting {
                return Err(busy("it is being deleted"));
            }
            if rec.moving.is_some() {
                return Err(busy("it is moving to another datastore"));
            }
            if let Some(r) = &rec.restoring {
                return Err(busy(&format!(
                    "it is being restored from backup {}",
                    r.backup
                )));
            }
            if rec.phase == kamaji_core::tenant::Phase::Hibernated {
                return Err(busy("it is hibernated; wake it first (hibernated = false)"));
            }
            let Some(running) = rec
                .current_version
                .as_deref()
                .and_then(kamaji_core::spec::Version::parse)
            else {
                return Err(busy("it has not been Ready yet"));
            };
            kamaji_core::backup::restorable(&record.kubernetes_version, running)
                .map_err(&refused)?;
            let pki = open_pki(&self.service.kek, &rec)
                .map_err(|e| Status::internal(e.to_string()))?
                .ok_or_else(|| busy("it has no PKI yet"))?;
            for k in &checked.secrets.encryption_keys {
                if pki
                    .encryption_keys
                    .iter()
                    .any(|o| o.rotation == k.rotation && o.secret != k.secret)
                {
                    return Err(refused(format!(
                        "backup {} was encrypted with another cluster's {}: restore it into a new \
                         cluster (restore_from) instead",
                        record.id,
                        k.name()
                    )));
                }
            }
            let now = now_unix();
            rec.restoring = Some(kamaji_core::tenant::InPlaceRestore {
                backup: record.id.clone(),
                stage: kamaji_core::tenant::RestoreStage::Requested,
                requested_at: now,
                held_at: 0,
                keys: 0,
            });
            match self
                .service
                .store
                .update_tenant_record(&rec, v.revision)
                .await
            {
                Ok(()) => {
                    tracing::info!(tenant = %name, backup = %record.id, "in-place restore requested");
                    self.service.wake.notify_one();
                    return Ok(Response::new(v1::RestoreTenantBackupResponse {
                        requested_time: Some(prost_types::Timestamp {
                            seconds: now,
                            nanos: 0,
                        }),
                    }));
                }
                Err(crate::store::StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(super::store_status(e)),
            }
        }
        Err(Status::aborted(format!(
            "tenant cluster {name:?} kept changing; retry"
        )))
    }

    async fn delete_tenant_backup(
        &self,
        req: Request<v1::DeleteTenantBackupRequest>,
    ) -> Result<Response<v1::DeleteTenantBackupResponse>, Status> {
        let backups = self.backups()?;
        let id = req.into_inner().id;
        // A restore still reading it would fail half-way: it stays until they are done.
        let records = self
            .service
            .store
            .tenant_records()
            .await
            .map_err(super::store_status)?;
        for rec in records {
            let in_place = rec.restoring.as_ref().is_some_and(|r| r.backup == id);
            let from = !rec.done(kamaji_core::tenant::COND_RESTORED)
                && self
                    .service
                    .store
                    .wire_spec(&rec)
                    .is_ok_and(|s| s.restore_from == id);
            if in_place || from {
                return Err(field(
                    Code::FailedPrecondition,
                    "id",
                    format!(
                        "backup {id} is being restored into tenant cluster {:?}; delete it once \
                         that restore is done",
                        rec.name.as_str()
                    ),
                ));
            }
        }
        backups.delete(&id).await.map_err(backup_status)?;
        Ok(Response::new(v1::DeleteTenantBackupResponse {}))
    }
}
