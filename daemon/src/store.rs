//! kamajid's durable records, in etcd.
//!
//! Guarantees:
//! - every write is a transaction guarded by the record's `mod_revision` (or its absence), so
//!   concurrent writers never lose each other's updates: the loser gets [`StoreError::Conflict`];
//! - deleting a datastore and checking that no tenant is placed on it happen in one transaction,
//!   so a tenant placed concurrently either blocks the delete or is refused itself.
//!
//! Layout (all under `/kamajid/v1/`): `datastores/<name>` (spec), `status/datastores/<name>`
//! (last probe, written by the leader), `placements/<datastore>/<tenant>` (one key per placed
//! tenant, written with the tenant record), `leader`.
//!
//! Records are JSON. Secrets inside them are already sealed by [`crate::kek::Kek`].

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp};
use serde::{de::DeserializeOwned, Serialize};

use crate::etcd::prefix_end;

pub const ROOT: &str = "/kamajid/v1/";

pub fn datastore_key(name: &str) -> String {
    format!("{ROOT}datastores/{name}")
}
pub fn datastore_status_key(name: &str) -> String {
    format!("{ROOT}status/datastores/{name}")
}
/// Prefix of the placement keys of one datastore; the trailing '/' keeps `a` from covering `ab`.
pub fn placements_prefix(datastore: &str) -> String {
    format!("{ROOT}placements/{datastore}/")
}
pub fn leader_key() -> String {
    format!("{ROOT}leader")
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state etcd {op}: {source}")]
    Etcd {
        op: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    #[error("record {key} is corrupt: {source}")]
    Corrupt {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("{key} already exists")]
    AlreadyExists { key: String },
    #[error("{key} was changed or removed concurrently; retry")]
    Conflict { key: String },
    #[error("datastore {datastore} still holds tenants: {}", tenants.join(", "))]
    HasTenants {
        datastore: String,
        tenants: Vec<String>,
    },
}

/// A record and the revision it was read at, for compare-and-swap.
#[derive(Debug, Clone)]
pub struct Versioned<T> {
    pub value: T,
    pub mod_revision: i64,
}

/// Records per list page to start with; halved when a page would pass gRPC's 4 MiB response cap.
const LIST_PAGE: i64 = 256;

#[derive(Clone)]
pub struct Store {
    client: Client,
}

fn etcd(op: &'static str) -> impl FnOnce(etcd_client::Error) -> StoreError {
    move |source| StoreError::Etcd { op, source }
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|source| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Our record types are plain structs of strings, numbers and maps: serialising cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

impl Store {
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    pub fn client(&self) -> Client {
        self.client.clone()
    }

    pub async fn get<T: DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let resp = self
            .client
            .clone()
            .get(key, None)
            .await
            .map_err(etcd("get"))?;
        resp.kvs()
            .first()
            .map(|kv| {
                Ok(Versioned {
                    value: decode(kv.key(), kv.value())?,
                    mod_revision: kv.mod_revision(),
                })
            })
            .transpose()
    }

    pub async fn list<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<Versioned<T>>, StoreError> {
        let mut out = Vec::new();
        self.scan(prefix, false, |kv| {
            out.push(Versioned {
                value: decode(kv.key(), kv.value())?,
                mod_revision: kv.mod_revision(),
            });
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Keys directly under `prefix`, with the prefix removed.
    pub async fn list_names(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        let mut out = Vec::new();
        self.scan(prefix, true, |kv| {
            out.push(String::from_utf8_lossy(&kv.key()[prefix.len()..]).into_owned());
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Visits every key under `prefix` in pages, all read at the first page's revision: one
    /// response is capped at 4 MiB by gRPC, and a fleet's records are far more than that.
    async fn scan(
        &self,
        prefix: &str,
        keys_only: bool,
        mut visit: impl FnMut(&etcd_client::KeyValue) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let end = crate::etcd::prefix_end(prefix.as_bytes());
        let mut from = prefix.as_bytes().to_vec();
        let mut revision = 0;
        let mut page = LIST_PAGE;
        loop {
            let mut opts = GetOptions::new()
                .with_range(end.clone())
                .with_limit(page)
                .with_revision(revision);
            if keys_only {
                opts = opts.with_keys_only();
            }
            let resp = match self.client.clone().get(from.clone(), Some(opts)).await {
                Ok(r) => r,
                Err(etcd_client::Error::GRpcStatus(st))
                    if st.code() == tonic::Code::OutOfRange && page > 1 =>
                {
                    page /= 2;
                    continue;
                }
                Err(e) => return Err(etcd("list")(e)),
            };
            if revision == 0 {
                revision = resp.header().map(|h| h.revision()).unwrap_or(0);
            }
            for kv in resp.kvs() {
                visit(kv)?;
            }
            match resp.kvs().last() {
                Some(last) if resp.more() => {
                    from = last.key().to_vec();
                    from.push(0);
                }
                _ => return Ok(()),
            }
        }
    }

    pub async fn count(&self, prefix: &str) -> Result<u32, StoreError> {
        let resp = self
            .client
            .clone()
            .get(
                prefix,
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await
            .map_err(etcd("count"))?;
        Ok(u32::try_from(resp.count()).unwrap_or(u32::MAX))
    }

    /// Writes `value` at `key` only if no record exists there; `also` are written in the same
    /// transaction.
    pub async fn create<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        also: Vec<(String, Vec<u8>)>,
    ) -> Result<(), StoreError> {
        let mut ops = vec![TxnOp::put(key, encode(value), None)];
        ops.extend(also.into_iter().map(|(k, v)| TxnOp::put(k, v, None)));
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then(ops);
        let resp = self.client.clone().txn(txn).await.map_err(etcd("create"))?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            })
        }
    }

    /// Replaces the record at `key` if it is still at `mod_revision`.
    pub async fn update<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        mod_revision: i64,
    ) -> Result<(), StoreError> {
        let txn = Txn::new()
            .when([Compare::mod_revision(key, CompareOp::Equal, mod_revision)])
            .and_then([TxnOp::put(key, encode(value), None)]);
        let resp = self.client.clone().txn(txn).await.map_err(etcd("update"))?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                key: key.to_owned(),
            })
        }
    }

    /// Writes `value` at `key` only while the record at `owner` exists, so a status written by a
    /// slow probe never resurrects a deleted object.
    pub async fn put_if_exists<T: Serialize>(
        &self,
        key: &str,
        value: &T,
        owner: &str,
    ) -> Result<bool, StoreError> {
        let txn = Txn::new()
            .when([Compare::create_revision(owner, CompareOp::Greater, 0)])
            .and_then([TxnOp::put(key, encode(value), None)]);
        let resp = self
            .client
            .clone()
            .txn(txn)
            .await
            .map_err(etcd("put status"))?;
        Ok(resp.succeeded())
    }

    /// Deletes the datastore record, its status and its reservation record if it is still at
    /// `mod_revision` and no placement key exists under its prefix, all in one transaction:
    /// nothing of a removed datastore stays behind to be counted when a datastore of the same
    /// name is registered again.
    pub async fn delete_datastore(&self, name: &str, mod_revision: i64) -> Result<(), StoreError> {
        let key = datastore_key(name);
        let placements = placements_prefix(name);
        let txn = Txn::new()
            .when([
                Compare::mod_revision(key.as_str(), CompareOp::Equal, mod_revision),
                Compare::create_revision(placements.as_str(), CompareOp::Equal, 0)
                    .with_range(prefix_end(placements.as_bytes())),
            ])
            .and_then([
                TxnOp::delete(key.as_str(), None),
                TxnOp::delete(datastore_status_key(name), None),
                TxnOp::delete(reservation_key(name), None),
            ]);
        let resp = self.client.clone().txn(txn).await.map_err(etcd("delete"))?;
        if resp.succeeded() {
            return Ok(());
        }
        let tenants = self.list_names(&placements).await?;
        if tenants.is_empty() {
            Err(StoreError::Conflict { key })
        } else {
            Err(StoreError::HasTenants {
                datastore: name.to_owned(),
                tenants,
            })
        }
    }
}

pub fn tenant_key(name: &str) -> String {
    format!("{ROOT}tenants/{name}")
}
pub fn placement_key(datastore: &str, tenant: &str) -> String {
    format!("{}{tenant}", placements_prefix(datastore))
}
pub fn reservation_key(datastore: &str) -> String {
    format!("{ROOT}reservations/{datastore}")
}

/// What is reserved on one datastore; kept in step with its placement keys, in the same
/// transactions, so placement decisions read one key instead of scanning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reservation {
    pub tenants: u32,
    pub reserved_bytes: i64,
}

fn guard(key: &str, rev: Option<i64>) -> Compare {
    match rev {
        Some(r) => Compare::mod_revision(key, CompareOp::Equal, r),
        None => Compare::create_revision(key, CompareOp::Equal, 0),
    }
}

impl Store {
    /// Records `tenant` (already carrying its datastore) and adds its reservation to the
    /// datastore, in one transaction guarded by both revisions: two tenants placed at once on the
    /// same datastore cannot both succeed on a stale view of its capacity.
    pub async fn place_tenant<T: Serialize>(
        &self,
        tenant: &str,
        record: &T,
        record_rev: i64,
        datastore: &str,
        reservation: Option<Versioned<Reservation>>,
        bytes: i64,
    ) -> Result<(), StoreError> {
        let rkey = reservation_key(datastore);
        let current = reservation.as_ref().map(|r| r.value).unwrap_or_default();
        let next = Reservation {
            tenants: current.tenants + 1,
            reserved_bytes: current.reserved_bytes + bytes,
        };
        let txn = Txn::new()
            .when([
                Compare::mod_revision(tenant_key(tenant), CompareOp::Equal, record_rev),
                guard(&rkey, reservation.map(|r| r.mod_revision)),
                // The datastore still exists.
                Compare::create_revision(datastore_key(datastore), CompareOp::Greater, 0),
            ])
            .and_then([
                TxnOp::put(tenant_key(tenant), encode(record), None),
                TxnOp::put(placement_key(datastore, tenant), encode(&bytes), None),
                TxnOp::put(rkey, encode(&next), None),
            ]);
        let resp = self
            .client
            .clone()
            .txn(txn)
            .await
            .map_err(etcd("place tenant"))?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                key: tenant_key(tenant),
            })
        }
    }

    /// Removes the tenant record, its placement and its reservation in one transaction.
    pub async fn release_tenant(
        &self,
        tenant: &str,
        record_rev: i64,
        placement: Option<(&str, Option<Versioned<Reservation>>, i64)>,
    ) -> Result<(), StoreError> {
        let mut when = vec![Compare::mod_revision(
            tenant_key(tenant),
            CompareOp::Equal,
            record_rev,
        )];
        let mut ops = vec![TxnOp::delete(tenant_key(tenant), None)];
        if let Some((ds, reservation, bytes)) = placement {
            let rkey = reservation_key(ds);
            let current = reservation.as_ref().map(|r| r.value).unwrap_or_default();
            let next = Reservation {
                tenants: current.tenants.saturating_sub(1),
                reserved_bytes: (current.reserved_bytes - bytes).max(0),
            };
            when.push(guard(&rkey, reservation.map(|r| r.mod_revision)));
            ops.push(TxnOp::delete(placement_key(ds, tenant), None));
            ops.push(TxnOp::put(rkey, encode(&next), None));
        }
        let resp = self
            .client
            .clone()
            .txn(Txn::new().when(when).and_then(ops))
            .await
            .map_err(etcd("release tenant"))?;
        if resp.succeeded() {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                key: tenant_key(tenant),
            })
        }
    }
}
