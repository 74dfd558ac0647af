//! Tenant records, placements and reservations: the lifecycle's [`Records`] over the state etcd.
//!
//! A tenant's sealed PKI (about 20 KiB) is kept under its own key (`pki/<name>`), beside a
//! record of about 2 KiB that names it by digest ([`StoredPki::stored_as`]). The record is
//! written at every step of the lifecycle; the sealed PKI only when it changes (issued, renewed,
//! rotated, re-sealed), in the same transaction as the record that names it. Reading one tenant
//! reads both in one transaction; listing reads records only (every round of the lifecycle
//! lists them all), with `sealed` empty. Records written before the split hold the sealed PKI
//! inline; they read as they are and are split at their next write.

use etcd_client::{KeyValue, Txn, TxnOp, TxnOpResponse};
use kamaji_core::datastore::{DatastoreRecord, DatastoreStatusRecord, Phase, Reservation};
use kamaji_core::ids::{DatastoreName, TenantName};
use kamaji_core::lifecycle::ports::{Candidacy, RecordError, Records};
use kamaji_core::placement::Candidate;
use kamaji_core::spec::TenantSpec;
use kamaji_core::tenant::TenantRecord;
use sha2::{Digest, Sha256};

use super::{at, decode, encode, exists, keys, Store, StoreError, Versioned};
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

    /// One tenant with its sealed PKI, read in one transaction.
    pub async fn tenant_record(
        &self,
        name: &TenantName,
    ) -> Result<Option<Versioned<TenantRecord>>, StoreError> {
        let (tkey, pkey) = (keys::tenant(name), keys::pki(name));
        let resp = self
            .txn(
                "get tenant",
                Txn::new().and_then([
                    TxnOp::get(tkey.as_str(), None),
                    TxnOp::get(pkey.as_str(), None),
                ]),
            )
            .await?;
        let mut gets = resp.op_responses().into_iter().map(|r| match r {
            TxnOpResponse::Get(g) => g.kvs().first().cloned(),
            _ => None,
        });
        let (Some(record), sealed) = (gets.next().flatten(), gets.next().flatten()) else {
            return Ok(None);
        };
        let mut value: TenantRecord = decode(record.key(), record.value())?;
        join_sealed(&mut value, sealed.as_ref())?;
        Ok(Some(Versioned {
            value,
            revision: record.mod_revision(),
        }))
    }

    /// Every tenant record without its sealed PKI (`sealed` empty where it is kept apart), in
    /// name order: what the lifecycle's rounds, the API's lists and the metrics read. Reads the
    /// keys and their revisions, then only the records that changed since the last list (all
    /// of them, in pages, when many did), everything as of one revision.
    pub async fn tenant_records(&self) -> Result<Vec<TenantRecord>, StoreError> {
        // One list at a time: the next one then reads only what changed after it.
        let mut listed = self.listed.lock().await;
        let prefix = keys::tenants();
        let mut seen: Vec<(Vec<u8>, i64)> = Vec::new();
        let revision = self
            .scan_at(&prefix, true, 0, |kv| {
                seen.push((kv.key().to_vec(), kv.mod_revision()));
                Ok(())
            })
            .await?;
        // Taken: a list that fails midway leaves nothing cached, and the next reads everything.
        let mut known = std::mem::take(&mut *listed);
        let changed: Vec<&[u8]> = seen
            .iter()
            .filter(|(k, r)| known.get(k).map(|(at, _)| at) != Some(r))
            .map(|(k, _)| k.as_slice())
            .collect();
        if changed.len() > REREAD_ONE_BY_ONE {
            self.scan_at(&prefix, false, revision, |kv| {
                let rec: TenantRecord = decode(kv.key(), kv.value())?;
                known.insert(kv.key().to_vec(), (kv.mod_revision(), rec));
                Ok(())
            })
            .await?;
        } else {
            for key in changed {
                let opts = etcd_client::GetOptions::new().with_revision(revision);
                let resp = self
                    .client
                    .clone()
                    .get(key, Some(opts))
                    .await
                    .map_err(|source| StoreError::Etcd { op: "get", source })?;
                if let Some(kv) = resp.kvs().first() {
                    let rec: TenantRecord = decode(kv.key(), kv.value())?;
                    known.insert(kv.key().to_vec(), (kv.mod_revision(), rec));
                }
            }
        }
        // Only what this list saw is kept: removed tenants leave the cache.
        let mut now = Listed::new();
        let mut out = Vec::with_capacity(seen.len());
        for (key, _) in seen {
            if let Some(entry) = known.remove(&key) {
                out.push(entry.1.clone());
                now.insert(key, entry);
            }
        }
        *listed = now;
        Ok(out)
    }

    /// Every tenant record with its sealed PKI, both read as of one revision: for re-sealing
    /// with a new KEK, which must see every sealed value.
    pub async fn tenant_records_sealed(&self) -> Result<Vec<TenantRecord>, StoreError> {
        let mut records = Vec::new();
        let revision = self
            .scan_at(&keys::tenants(), false, 0, |kv| {
                records.push(decode::<TenantRecord>(kv.key(), kv.value())?);
                Ok(())
            })
            .await?;
        let prefix = keys::pkis();
        let mut sealed = std::collections::HashMap::new();
        self.scan_at(&prefix, false, revision, |kv| {
            let name = String::from_utf8_lossy(&kv.key()[prefix.len()..]).into_owned();
            sealed.insert(name, kv.clone());
            Ok(())
        })
        .await?;
        for rec in &mut records {
            join_sealed(rec, sealed.get(rec.name.as_str()))?;
        }
        Ok(records)
    }

    pub async fn create_tenant_record(&self, rec: &TenantRecord) -> Result<(), StoreError> {
        let key = keys::tenant(&rec.name);
        let txn = Txn::new()
            .when([at(&key, None)])
            .and_then(tenant_puts(rec)?);
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
        let when = vec![at(&keys::tenant(&rec.name), Some(revision))];
        self.commit("update tenant", rec, when, tenant_puts(rec)?)
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
        let mut ops = tenant_puts(rec)?;
        ops.extend([
            TxnOp::put(
                keys::placement(ds, &rec.name),
                encode(&tkey, &rec.reservation_bytes)?,
                None,
            ),
            write,
        ]);
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
        let mut ops = tenant_puts(rec)?;
        ops.push(write);
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
        let mut ops = tenant_puts(rec)?;
        ops.extend([
            TxnOp::delete(keys::placement(from, &rec.name), None),
            TxnOp::put(
                keys::placement(to, &rec.name),
                encode(&tkey, &rec.reservation_bytes)?,
                None,
            ),
            write,
        ]);
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
        let mut ops = tenant_puts(rec)?;
        ops.push(write);
        self.commit("abandon a move", rec, when, ops).await
    }

    async fn release_record(&self, rec: &TenantRecord, revision: i64) -> Result<(), StoreError> {
        let tkey = keys::tenant(&rec.name);
        let mut when = vec![at(&tkey, Some(revision))];
        let mut ops = vec![
            TxnOp::delete(tkey.as_str(), None),
            TxnOp::delete(keys::pki(&rec.name), None),
        ];
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

/// Tenant records by key, with their mod revisions, as a list last read them.
pub(super) type Listed = std::collections::HashMap<Vec<u8>, (i64, TenantRecord)>;

/// Past this many changed records a list reads them all in pages rather than one by one.
const REREAD_ONE_BY_ONE: usize = 16;

/// The digest a record names its sealed PKI by.
fn digest(sealed: &str) -> String {
    hex::encode(Sha256::digest(sealed.as_bytes()))
}

/// The writes that store `rec`: the record without its sealed PKI, and the sealed PKI under its
/// own key unless the one stored there already is this one (a record read without it, or whose
/// `sealed` still has the digest it was read with). Written in one transaction with the record,
/// under the record's revision guard, the two never disagree.
fn tenant_puts(rec: &TenantRecord) -> Result<Vec<TxnOp>, StoreError> {
    let key = keys::tenant(&rec.name);
    let mut ops = Vec::with_capacity(2);
    let mut stored = rec.clone();
    if let Some(p) = stored.pki.as_mut().filter(|p| p.sealed_read()) {
        let d = digest(&p.sealed);
        let sealed = std::mem::take(&mut p.sealed);
        if p.stored_as.as_deref() != Some(d.as_str()) {
            ops.push(TxnOp::put(keys::pki(&rec.name), sealed, None));
        }
        p.stored_as = Some(d);
    }
    ops.insert(0, TxnOp::put(key.as_str(), encode(&key, &stored)?, None));
    Ok(ops)
}

/// Puts the sealed PKI read from its own key (`sealed`) into the record that names it. A record
/// that names one the key does not hold is corrupt: never read as "no PKI", which would re-key
/// the tenant.
fn join_sealed(rec: &mut TenantRecord, sealed: Option<&KeyValue>) -> Result<(), StoreError> {
    let key = keys::pki(&rec.name);
    let Some(p) = rec.pki.as_mut().filter(|p| !p.sealed_read()) else {
        return Ok(());
    };
    let corrupt = |detail: String| StoreError::Corrupt {
        key: key.clone(),
        detail,
    };
    let want = p.stored_as.clone().unwrap_or_default();
    let kv =
        sealed.ok_or_else(|| corrupt("missing: the tenant's record names a sealed PKI".into()))?;
    let text = std::str::from_utf8(kv.value()).map_err(|e| corrupt(format!("not text: {e}")))?;
    if digest(text) != want {
        return Err(corrupt(
            "holds another sealed PKI than the tenant's record names".into(),
        ));
    }
    p.sealed = text.to_owned();
    Ok(())
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
