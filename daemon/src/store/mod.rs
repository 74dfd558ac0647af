//! kamajid's durable records, in etcd. The store owns its key layout ([`keys`]): callers ask
//! for tenants, datastores and their statuses by name, never for keys.
//!
//! Guarantees:
//! - every write is a transaction guarded by the record's `mod_revision` (or its absence), so
//!   concurrent writers never lose each other's updates: the loser gets a conflict;
//! - placing a tenant writes its record, its placement key and its datastore's reservation in
//!   one transaction, guarded by both revisions: concurrent placements never overcommit;
//! - deleting a datastore and checking that no tenant is placed on it happen in one
//!   transaction, so a tenant placed concurrently either blocks the delete or is refused;
//! - a record that does not decode is an error ([`StoreError::Corrupt`]), never a default.
//!
//! Records are JSON. Secrets inside them are already sealed by the KEK. A tenant's sealed PKI,
//! by far the largest part of its record, is kept under its own key and rewritten only when it
//! changes (see [`tenants`]).

mod backups;
mod datastores;
mod keys;
mod tenants;

use etcd_client::{Client, Compare, CompareOp, GetOptions, Txn, TxnOp, TxnResponse};
use kamaji_core::lifecycle::ports::RecordError;
use serde::{de::DeserializeOwned, Serialize};

pub use kamaji_core::lifecycle::ports::Versioned;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state etcd {op}: {source}")]
    Etcd {
        op: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    #[error("record {key} does not decode: {detail}")]
    Corrupt { key: String, detail: String },
    #[error("{what} already exists")]
    AlreadyExists { what: String },
    #[error("{what} was changed or removed concurrently; retry")]
    Conflict { what: String },
    #[error("datastore {datastore} still holds tenants: {}", tenants.join(", "))]
    HasTenants {
        datastore: String,
        tenants: Vec<String>,
    },
}

impl From<StoreError> for RecordError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { what } => RecordError::Conflict { what },
            StoreError::AlreadyExists { what } => RecordError::AlreadyExists { what },
            StoreError::Corrupt { key, detail } => RecordError::Corrupt { what: key, detail },
            e @ (StoreError::Etcd { .. } | StoreError::HasTenants { .. }) => {
                RecordError::Unavailable(e.to_string())
            }
        }
    }
}

/// Records per list page to start with; halved when a page would pass gRPC's 4 MiB response cap.
const LIST_PAGE: i64 = 256;

#[derive(Clone)]
pub struct Store {
    client: Client,
    /// The tenant records the last list returned, by key, with their mod revisions: a list
    /// reads keys and revisions, and the values of only the records that changed since (the
    /// lifecycle lists every tenant every round; at rest almost none changed).
    listed: std::sync::Arc<tokio::sync::Mutex<tenants::Listed>>,
}

fn etcd(op: &'static str) -> impl FnOnce(etcd_client::Error) -> StoreError {
    move |source| StoreError::Etcd { op, source }
}

fn decode<T: DeserializeOwned>(key: &[u8], value: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(value).map_err(|e| StoreError::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        detail: e.to_string(),
    })
}

fn encode<T: Serialize>(key: &str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt {
        key: key.to_owned(),
        detail: format!("encoding: {e}"),
    })
}

/// A compare that the record at `key` is at `rev`, or absent when `None`.
fn at(key: &str, rev: Option<i64>) -> Compare {
    match rev {
        Some(r) => Compare::mod_revision(key, CompareOp::Equal, r),
        None => Compare::create_revision(key, CompareOp::Equal, 0),
    }
}

fn exists(key: &str) -> Compare {
    Compare::create_revision(key, CompareOp::Greater, 0)
}

impl Store {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            listed: Default::default(),
        }
    }

    /// The etcd client, for leader election (which owns its own key, [`Store::leader_key`]).
    pub fn client(&self) -> Client {
        self.client.clone()
    }

    /// The key the lease-held leader writes.
    pub fn leader_key() -> String {
        keys::leader()
    }

    /// Whether the state etcd answers (kamajid checks at start).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.client
            .clone()
            .get(keys::ROOT, None)
            .await
            .map_err(etcd("get"))?;
        Ok(())
    }

    async fn get<T: DeserializeOwned>(
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
                    revision: kv.mod_revision(),
                })
            })
            .transpose()
    }

    async fn list<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<Versioned<T>>, StoreError> {
        let mut out = Vec::new();
        self.scan(prefix, false, |kv| {
            out.push(Versioned {
                value: decode(kv.key(), kv.value())?,
                revision: kv.mod_revision(),
            });
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Every record under `prefix` with its key less the prefix.
    async fn list_named<T: DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        let mut out = Vec::new();
        self.scan(prefix, false, |kv| {
            let name = String::from_utf8_lossy(&kv.key()[prefix.len()..]).into_owned();
            out.push((name, decode(kv.key(), kv.value())?));
            Ok(())
        })
        .await?;
        Ok(out)
    }

    /// Keys directly under `prefix`, with the prefix removed.
    async fn list_names(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
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
        visit: impl FnMut(&etcd_client::KeyValue) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.scan_at(prefix, keys_only, 0, visit).await.map(|_| ())
    }

    /// As [`Self::scan`], at `revision` (0: the current one); returns the revision read, so that
    /// a second prefix can be read as of the same moment.
    async fn scan_at(
        &self,
        prefix: &str,
        keys_only: bool,
        mut revision: i64,
        mut visit: impl FnMut(&etcd_client::KeyValue) -> Result<(), StoreError>,
    ) -> Result<i64, StoreError> {
        let end = kamaji_core::etcd_keys::prefix_end(prefix.as_bytes());
        let mut from = prefix.as_bytes().to_vec();
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
                _ => return Ok(revision),
            }
        }
    }

    async fn count(&self, prefix: &str) -> Result<u32, StoreError> {
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

    async fn txn(&self, op: &'static str, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.client.clone().txn(txn).await.map_err(etcd(op))
    }

    /// Replaces the record at `key` if it is still at `revision`.
    async fn update<T: Serialize>(
        &self,
        key: &str,
        what: impl std::fmt::Display,
        value: &T,
        revision: i64,
    ) -> Result<(), StoreError> {
        let txn = Txn::new()
            .when([at(key, Some(revision))])
            .and_then([TxnOp::put(key, encode(key, value)?, None)]);
        if self.txn("update", txn).await?.succeeded() {
            Ok(())
        } else {
            Err(StoreError::Conflict {
                what: what.to_string(),
            })
        }
    }
}
