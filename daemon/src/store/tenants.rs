//! Tenant records, placements and reservations: the lifecycle's [`Records`] over the state etcd.

use etcd_client::{Txn, TxnOp};
use kamaji_core::datastore::{DatastoreRecord, DatastoreStatusRecord, Phase, Reservation};
use kamaji_core::ids::{DatastoreName, TenantName};
use kamaji_core::lifecycle::ports::{Candidacy, RecordError, Records};
use kamaji_core::placement::Candidate;
use kamaji_core::spec::TenantSpec;
use kamaji_core::tenant::TenantRecord;

use super::{at, encode, exists, keys, Store, StoreError, Versioned};
use crate::wire;

impl Store {
    /// The decoded wire spec of a record, as the API shows it.
    pub fn wire_spec(
        &self,
        rec: &TenantRecord,
    ) -> Result<kamaji_proto::v1::TenantClusterSpec, StoreError> {
        wire::decode_spec(&rec.spec).map_err(|detail| StoreError::Corrupt {
            key: keys::tenant(&rec.name),
            detail: format!("the spec: {detail}"),
        })
    }

    pub async fn tenant_record(
        &self,
        name: &TenantName,
    ) -> Result<Option<Versioned<TenantRecord>>, StoreError> {
        self.get(&keys::tenant(name)).await
    }

    pub async fn tenant_records(&self) -> Result<Vec<TenantRecord>, StoreError> {
        Ok(self
            .list::<TenantRecord>(&keys::tenants())
            .await?
            .into_iter()
            .map(|v| v.value)
            .collect())
    }

    pub async fn create_tenant_record(&self, rec: &TenantRecord) -> Result<(), StoreError> {
        let key = keys::tenant(&rec.name);
        let txn = Txn::new().when([at(&key, None)]).and_then([TxnOp::put(
            key.as_str(),
            encode(&key, rec)?,
            None,
        )]);
        if self.txn("create tenant", txn).await?.succeeded() {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists {
                what: format!("tenant cluster {:?}", rec.name.as_str()),
            })
        }
    }

    pub async fn update_tenant_record(
        &self,
        rec: &TenantRecord,
        revision: i64,
    ) -> Result<(), StoreError> {
        self.update(
            &keys::tenant(&rec.name),
            format!("tenant cluster {:?}", rec.name.as_str()),
            rec,
            revision,
        )
        .await
    }

    async fn reservation(
        &self,
        ds: &DatastoreName,
    ) -> Result<Option<Versioned<Reservation>>, StoreError> {
        self.get(&keys::reservation(ds)).await
    }

    /// Every registered datastore as placement sees it, with its reservation record.
    pub async fn candidacies(&self) -> Result<Vec<Candidacy>, StoreError> {
        let mut out = Vec::new();
        for ds in self.datastore_records().await? {
            let ds = ds.value;
            let status: DatastoreStatusRecord = self
                .datastore_status(&ds.name)
                .await?
                .map(|v| v.value)
                .unwrap_or_default();
            let reservation = self.reservation(&ds.name).await?;
            let res = reservation.as_ref().map(|v| v.value).unwrap_or_default();
            out.push(Candidacy {
                candidate: Candidate {
                    name: ds.name.clone(),
                    ready: status.phase == Phase::Ready,
                    schedulable: ds.schedulable,
                    draining: ds.drain,
                    labels: ds.labels.clone(),
                    quota_bytes: kamaji_core::shard::effective_quota(
                        ds.quota_bytes,
                        status.etcd_quota_bytes,
                    ),
                    max_tenants: ds.max_tenants,
                    tenants: res.tenants,
                    reserved_bytes: res.reserved_bytes,
                    // Records from before in-use sizes were measured: the file.
                    used_bytes: if status.db_size_in_use_bytes > 0 {
                        status.db_size_in_use_bytes
                    } else {
                        status.db_size_bytes
                    },
                    file_bytes: status.db_size_bytes,
                },
                reservation,
            });
        }
        Ok(out)
    }

    async fn place_record(
        &self,
        rec: &TenantRecord,
        revision: i64,
        reservation: Option<Versioned<Reservation>>,
    ) -> Result<(), StoreError> {
        let ds = rec.datastore.as_ref().ok_or_else(|| StoreError::Corrupt {
            key: keys::tenant(&rec.name),
            detail: "placed on no datastore".into(),
        })?;
        let tkey = keys::tenant(&rec.name);
        let (guard, write) = Self::reservation_delta(ds, reservation, 1, rec.reservation_bytes)?;
        let when = vec![
            at(&tkey, Some(revision)),
            guard,
            exists(&keys::datastore(ds)),
        ];
        let ops = vec![
            TxnOp::put(tkey.as_str(), encode(&tkey, rec)?, None),
            TxnOp::put(
                keys::placement(ds, &rec.name),
                encode(&tkey, &rec.reservation_bytes)?,
                None,
            ),
            write,
        ];
        self.commit("place tenant", rec, when, ops).await
    }

    /// The guard and the write that change `ds`'s reservation by one tenant reserving
    /// `bytes` (`sign`: +1 adds it, -1 takes it off), from the reservation read as `read`.
    fn reservation_delta(
        ds: &DatastoreName,
        read: Option<Versioned<Reservation>>,
        sign: i64,
        bytes: i64,
    ) -> Result<(etcd_client::Compare, TxnOp), StoreError> {
        let rkey = keys::reservation(ds);
        let current = read.as_ref().map(|r| r.value).unwrap_or_default();
        let tenants = (i64::from(current.tenants) + sign).max(0);
        let next = Reservation {
            tenants: u32::try_from(tenants).unwrap_or(u32::MAX),
            reserved_bytes: (current.reserved_bytes + sign * bytes).max(0),
        };
        Ok((
            at(&rkey, read.map(|r| r.revision)),
            TxnOp::put(rkey.as_str(), encode(&rkey, &next)?, None),
        ))
    }

    async fn commit(
        &self,
        what: &'static str,
        rec: &TenantRecord,
        when: Vec<etcd_client::Compare>,
        ops: Vec<TxnOp>,
    ) -> Result<(), StoreError> {
        if self
            .txn(what, Txn::new().when(when).and_then(ops))
            .await?
            .succeeded()
        {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                what: format!("tenant cluster {:?}", rec.name.as_str()),
            })
        }
    }

    fn moving(rec: &TenantRecord) -> Result<&kamaji_core::tenant::Move, StoreError> {
        rec.moving.as_ref().ok_or_else(|| StoreError::Corrupt {
            key: keys::tenant(&rec.name),
            detail: "no move in the record".into(),
        })
    }

    async fn reserve_move_record(
        &self,
        rec: &TenantRecord,
        revision: i64,
        reservation: Option<Versioned<Reservation>>,
    ) -> Result<(), StoreError> {
        let to = &Self::moving(rec)?.to;
        let tkey = keys::tenant(&rec.name);
        let (guard, write) = Self::reservation_delta(to, reservation, 1, rec.reservation_bytes)?;
        let when = vec![
            at(&tkey, Some(revision)),
            guard,
            exists(&keys::datastore(to)),
        ];
        let ops = vec![TxnOp::put(tkey.as_str(), encode(&tkey, rec)?, None), write];
        self.commit("reserve a move", rec, when, ops).await
    }

    async fn switch_move_record(
        &self,
        rec: &TenantRecord,
        revision: i64,
    ) -> Result<(), StoreError> {
        let from = &Self::moving(rec)?.from;
        let to = rec.datastore.as_ref().ok_or_else(|| StoreError::Corrupt {
            key: keys::tenant(&rec.name),
            detail: "placed on no datastore".into(),
        })?;
        let tkey = keys::tenant(&rec.name);
        let (guard, write) = Self::reservation_delta(
            from,
            self.reservation(from).await?,
            -1,
            rec.reservation_bytes,
        )?;
        let when = vec![at(&tkey, Some(revision)), guard];
        let ops = vec![
            TxnOp::put(tkey.as_str(), encode(&tkey, rec)?, None),
            TxnOp::delete(keys::placement(from, &rec.name), None),
            TxnOp::put(
                keys::placement(to, &rec.name),
                encode(&tkey, &rec.reservation_bytes)?,
                None,
            ),
            write,
        ];
        self.commit("switch a move", rec, when, ops).await
    }

    async fn abort_move_record(
        &self,
        rec: &TenantRecord,
        revision: i64,
        target: &DatastoreName,
    ) -> Result<(), StoreError> {
        let tkey = keys::tenant(&rec.name);
        let (guard, write) = Self::reservation_delta(
            target,
            self.reservation(target).await?,
            -1,
            rec.reservation_bytes,
        )?;
        let when = vec![at(&tkey, Some(revision)), guard];
        let ops = vec![TxnOp::put(tkey.as_str(), encode(&tkey, rec)?, None), write];
        self.commit("abandon a move", rec, when, ops).await
    }

    async fn release_record(&self, rec: &TenantRecord, revision: i64) -> Result<(), StoreError> {
        let tkey = keys::tenant(&rec.name);
        let mut when = vec![at(&tkey, Some(revision))];
        let mut ops = vec![TxnOp::delete(tkey.as_str(), None)];
        if let Some(ds) = &rec.datastore {
            let (guard, write) = Self::reservation_delta(
                ds,
                self.reservation(ds).await?,
                -1,
                rec.reservation_bytes,
            )?;
            when.push(guard);
            ops.push(TxnOp::delete(keys::placement(ds, &rec.name), None));
            ops.push(write);
        }
        if let Some(m) = rec
            .moving
            .as_ref()
            .filter(|m| m.stage < kamaji_core::tenant::MoveStage::Switched)
        {
            let (guard, write) = Self::reservation_delta(
                &m.to,
                self.reservation(&m.to).await?,
                -1,
                rec.reservation_bytes,
            )?;
            when.push(guard);
            ops.push(write);
        }
        self.commit("release tenant", rec, when, ops).await
    }
}

impl Records for Store {
    async fn tenant(
        &self,
        name: &TenantName,
    ) -> Result<Option<Versioned<TenantRecord>>, RecordError> {
        Ok(self.tenant_record(name).await?)
    }

    fn spec(&self, rec: &TenantRecord) -> Result<TenantSpec, RecordError> {
        let v = self.wire_spec(rec)?;
        kamaji_proto::tenant::from_stored(&v).map_err(|e| RecordError::Corrupt {
            what: format!("the spec of tenant {}", rec.name),
            detail: e.to_string(),
        })
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>, RecordError> {
        Ok(self.tenant_records().await?)
    }

    async fn create_tenant(&self, rec: &TenantRecord) -> Result<(), RecordError> {
        Ok(self.create_tenant_record(rec).await?)
    }

    async fn update_tenant(&self, rec: &TenantRecord, revision: i64) -> Result<(), RecordError> {
        Ok(self.update_tenant_record(rec, revision).await?)
    }

    async fn datastore(
        &self,
        name: &DatastoreName,
    ) -> Result<Option<DatastoreRecord>, RecordError> {
        Ok(self.datastore_record(name).await?.map(|v| v.value))
    }

    async fn candidates(&self) -> Result<Vec<Candidacy>, RecordError> {
        Ok(self.candidacies().await?)
    }

    async fn place(
        &self,
        rec: &TenantRecord,
        revision: i64,
        reservation: Option<Versioned<Reservation>>,
    ) -> Result<(), RecordError> {
        Ok(self.place_record(rec, revision, reservation).await?)
    }

    async fn reserve_move(
        &self,
        rec: &TenantRecord,
        revision: i64,
        reservation: Option<Versioned<Reservation>>,
    ) -> Result<(), RecordError> {
        Ok(self.reserve_move_record(rec, revision, reservation).await?)
    }

    async fn switch_move(&self, rec: &TenantRecord, revision: i64) -> Result<(), RecordError> {
        Ok(self.switch_move_record(rec, revision).await?)
    }

    async fn abort_move(
        &self,
        rec: &TenantRecord,
        revision: i64,
        target: &DatastoreName,
    ) -> Result<(), RecordError> {
        Ok(self.abort_move_record(rec, revision, target).await?)
    }

    async fn release(&self, rec: &TenantRecord, revision: i64) -> Result<(), RecordError> {
        Ok(self.release_record(rec, revision).await?)
    }
}
