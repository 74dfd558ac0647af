//! Per-tenant backups: a tenant's prefix read from its datastore at one revision, written as an
//! encrypted archive ([`kamaji_core::backup::archive`]) to the backup store, and written back
//! under a (new) tenant's prefix. Pages flow from etcd to the store and back as they are read:
//! memory stays flat whatever the tenant holds.

pub mod schedule;
pub mod store;

use std::sync::Arc;

use etcd_client::{Client, DeleteOptions, GetOptions, Txn, TxnOp};
use futures::StreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, WriteMultipart};
use sha2::{Digest, Sha256};

use kamaji_core::backup::archive::{ArchiveError, Header, Part, Reader, Secrets, Trailer, Writer};
use kamaji_core::backup::{location, new_id, BackupRecord};
use kamaji_core::etcd_keys::{prefix, prefix_end};
use kamaji_core::ids::TenantId;
use kamaji_core::kek::Kek;
use kamaji_core::lifecycle::ports::Restored;
use kamaji_core::tenant::TenantRecord;

use crate::datastore::transfer::{kv, PAGE};
use crate::etcd::error_chain;
use crate::store::{Store, StoreError};
pub use store::BackupStore;

/// Writes per transaction when restoring, within etcd's `--max-txn-ops` and request size.
const TXN_OPS: usize = 100;
const TXN_BYTES: usize = 1024 * 1024;
/// Upload parts in flight.
const PARTS_IN_FLIGHT: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("backup store {store}: {detail}")]
    Store { store: String, detail: String },
    #[error("reading the tenant's keys from its datastore: {0}")]
    Read(String),
    #[error("writing the restored keys to the datastore: {0}")]
    Write(String),
    #[error("backup {id}: {source}")]
    Archive {
        id: String,
        #[source]
        source: ArchiveError,
    },
    #[error("backup {id}: the archive's digest is sha256:{got}, its record says sha256:{want}: the archive was altered or replaced in the store")]
    Digest {
        id: String,
        got: String,
        want: String,
    },
    #[error("backup {0} does not exist")]
    NotFound(String),
    #[error(transparent)]
    Records(#[from] StoreError),
}

/// Backups of tenants: the store their archives go to, kamajid's records of them, and the KEK
/// their data keys are sealed with.
pub struct Backups {
    pub store: BackupStore,
    records: Store,
    kek: Kek,
}

/// A backup read whole and checked: its record, what it carries and its counts.
pub struct Checked {
    pub record: BackupRecord,
    pub header: Header,
    pub secrets: Secrets,
    pub trailer: Trailer,
}

impl Backups {
    pub fn new(store: BackupStore, records: Store, kek: Kek) -> Arc<Self> {
        Arc::new(Self {
            store,
            records,
            kek,
        })
    }

    fn store_err(&self, e: impl std::fmt::Display) -> BackupError {
        BackupError::Store {
            store: self.store.describe.clone(),
            detail: e.to_string(),
        }
    }

    /// Takes a backup of `tenant` (placed, its PKI's encryption keys in `secrets`) through
    /// `admin` (its datastore's administrator), records it and returns the record. Nothing is
    /// recorded unless the archive is stored whole; an upload cut short is aborted.
    pub async fn take(
        &self,
        tenant: &TenantRecord,
        secrets: &Secrets,
        admin: &Client,
        labels: std::collections::BTreeMap<String, String>,
        scheduled: bool,
        now: i64,
    ) -> Result<BackupRecord, BackupError> {
        let id = new_id(tenant.name.as_str(), now, rand::random());
        let loc = location(tenant.name.as_str(), &id);
        let mut c = kv(admin);
        let p = prefix(&tenant.uid);
        let end = prefix_end(p.as_bytes());
        let revision = c
            .get(
                p.as_str(),
                Some(GetOptions::new().with_range(end.clone()).with_count_only()),
            )
            .await
            .map_err(|e| BackupError::Read(error_chain(&e)))?
            .header()
            .map_or(0, |h| h.revision());
        let header = Header {
            id: id.clone(),
            tenant: tenant.name.to_string(),
            tenant_id: tenant.uid.to_string(),
            revision,
            kubernetes_version: tenant.current_version.clone().unwrap_or_default(),
            created_at: now,
            sealed_key: String::new(),
            nonce_prefix: String::new(),
        };
        let archive_err = |source| BackupError::Archive {
            id: id.clone(),
            source,
        };
        let (mut writer, head) =
            Writer::start(&self.kek, header.clone(), secrets).map_err(archive_err)?;
        let upload = self
            .store
            .objects
            .put_multipart(&Path::from(loc.as_str()))
            .await
            .map_err(|e| self.store_err(e))?;
        let mut out = Upload {
            up: WriteMultipart::new(upload),
            sum: Sha256::new(),
            size: 0,
        };
        let result = async {
            out.send(head).await.map_err(|e| self.store_err(e))?;
            let mut from = p.clone().into_bytes();
            loop {
                let opts = GetOptions::new()
                    .with_range(end.clone())
                    .with_limit(PAGE)
                    .with_revision(revision);
                let page = c
                    .get(from.clone(), Some(opts))
                    .await
                    .map_err(|e| BackupError::Read(error_chain(&e)))?;
                for kv in page.kvs() {
                    if kv.lease() != 0 {
                        writer.skip_leased();
                        continue;
                    }
                    if let Some(frame) = writer.entry(&kv.key()[p.len()..], kv.value()) {
                        out.send(frame).await.map_err(|e| self.store_err(e))?;
                    }
                }
                match page.kvs().last() {
                    Some(last) if page.more() => {
                        from = last.key().to_vec();
                        from.push(0);
                    }
                    _ => break,
                }
            }
            let (tail, trailer) = writer.finish();
            out.send(tail).await.map_err(|e| self.store_err(e))?;
            Ok::<_, BackupError>(trailer)
        }
        .await;
        let trailer = match result {
            Ok(t) => t,
            Err(e) => {
                let _ = out.up.abort().await;
                return Err(e);
            }
        };
        let (size, digest) = (out.size, hex::encode(out.sum.clone().finalize()));
        out.up.finish().await.map_err(|e| self.store_err(e))?;
        let record = BackupRecord {
            id,
            tenant: tenant.name.to_string(),
            tenant_id: tenant.uid.to_string(),
            labels,
            revision,
            keys: trailer.keys,
            bytes: trailer.bytes,
            size_bytes: size,
            digest,
            kubernetes_version: header.kubernetes_version,
            created_at: now,
            location: loc,
            scheduled,
        };
        self.records.create_backup(&record).await?;
        tracing::info!(tenant = %tenant.name, backup = %record.id, keys = record.keys, bytes = record.size_bytes, revision, "backup taken");
        Ok(record)
    }

    /// The record of backup `id`.
    pub async fn record(&self, id: &str) -> Result<BackupRecord, BackupError> {
        self.records
            .backup(id)
            .await?
            .ok_or_else(|| BackupError::NotFound(id.to_owned()))
    }

    /// Reads backup `id`'s archive, handing each part to `visit`, and checks it whole: every
    /// frame authentic, nothing cut or added, and its digest the one recorded. A visitor that
    /// writes must be ready for the check to fail after it ran (see [`Backups::check`]).
    async fn read<F, Fut>(&self, record: &BackupRecord, mut visit: F) -> Result<(), BackupError>
    where
        F: FnMut(Part) -> Fut,
        Fut: std::future::Future<Output = Result<(), BackupError>>,
    {
        let archive_err = |source| BackupError::Archive {
            id: record.id.clone(),
            source,
        };
        let got = self
            .store
            .objects
            .get(&Path::from(record.location.as_str()))
            .await
            .map_err(|e| match e {
                object_store::Error::NotFound { .. } => self.store_err(format!(
                    "the archive of backup {} ({}) is gone",
                    record.id, record.location
                )),
                e => self.store_err(e),
            })?;
        let mut stream = got.into_stream();
        let mut reader = Reader::new(&self.kek);
        let mut sum = Sha256::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.store_err(e))?;
            sum.update(&chunk);
            for part in reader.feed(&chunk).map_err(archive_err)? {
                visit(part).await?;
            }
        }
        reader.end().map_err(archive_err)?;
        let digest = hex::encode(sum.finalize());
        if digest != record.digest {
            return Err(BackupError::Digest {
                id: record.id.clone(),
                got: digest,
                want: record.digest.clone(),
            });
        }
        Ok(())
    }

    /// Reads backup `id` whole and checks it (frames, digest), writing nothing: what a restore
    /// does before it touches anything.
    pub async fn check(&self, id: &str) -> Result<Checked, BackupError> {
        let record = self.record(id).await?;
        let mut header = None;
        let mut secrets = Secrets::default();
        let mut trailer = Trailer::default();
        self.read(&record, |part| {
            match part {
                Part::Header(h) => header = Some(h),
                Part::Secrets(s) => secrets = s,
                Part::Trailer(t) => trailer = t,
                Part::Entries(_) => {}
            }
            async { Ok(()) }
        })
        .await?;
        let header = header.ok_or_else(|| BackupError::Archive {
            id: id.to_owned(),
            source: ArchiveError::Truncated,
        })?;
        if header.id != record.id || trailer.keys != record.keys {
            return Err(BackupError::Archive {
                id: id.to_owned(),
                source: ArchiveError::Header(format!(
                    "it says it is backup {} of {} keys; the record says {} of {}",
                    header.id, trailer.keys, record.id, record.keys
                )),
            });
        }
        Ok(Checked {
            record,
            header,
            secrets,
            trailer,
        })
    }

    /// Replaces what tenant `id` holds on a datastore (through `admin`) with backup `backup`'s
    /// keys: the archive is checked whole first, then the prefix emptied and written a page at
    /// a time. A repeat (after a crash, or after the archive changed between the check and the
    /// write, which fails the second read) starts again from an empty prefix.
    pub async fn restore(
        &self,
        backup: &str,
        admin: &Client,
        id: &TenantId,
    ) -> Result<Restored, BackupError> {
        let checked = self.check(backup).await?;
        let mut c = kv(admin);
        let p = prefix(id);
        c.delete(
            p.as_str(),
            Some(DeleteOptions::new().with_range(prefix_end(p.as_bytes()))),
        )
        .await
        .map_err(|e| BackupError::Write(error_chain(&e)))?;
        let written = std::sync::Arc::new(std::sync::Mutex::new((0i64, 0i64)));
        self.read(&checked.record, |part| {
            let (mut c, p, written) = (c.clone(), p.clone(), written.clone());
            async move {
                let Part::Entries(entries) = part else {
                    return Ok(());
                };
                let mut ops = Vec::new();
                let mut size = 0;
                let mut n = (0i64, 0i64);
                for e in entries {
                    if !ops.is_empty() && (ops.len() == TXN_OPS || size + e.value.len() > TXN_BYTES)
                    {
                        c.txn(Txn::new().and_then(std::mem::take(&mut ops)))
                            .await
                            .map_err(|e| BackupError::Write(error_chain(&e)))?;
                        size = 0;
                    }
                    let mut key = p.clone().into_bytes();
                    key.extend_from_slice(&e.key);
                    size += key.len() + e.value.len();
                    n.0 += 1;
                    n.1 += (e.key.len() + e.value.len()) as i64;
                    ops.push(TxnOp::put(key, e.value, None));
                }
                if !ops.is_empty() {
                    c.txn(Txn::new().and_then(ops))
                        .await
                        .map_err(|e| BackupError::Write(error_chain(&e)))?;
                }
                if let Ok(mut w) = written.lock() {
                    w.0 += n.0;
                    w.1 += n.1;
                }
                Ok(())
            }
        })
        .await?;
        let (keys, bytes) = written.lock().map(|w| *w).unwrap_or_default();
        tracing::info!(tenant = %id, backup, keys, "backup restored");
        Ok(Restored {
            keys,
            bytes,
            secrets: checked.secrets,
        })
    }

    /// Deletes backup `id`'s archive (already gone is fine), then its record.
    pub async fn delete(&self, id: &str) -> Result<(), BackupError> {
        let record = self.record(id).await?;
        match self
            .store
            .objects
            .delete(&Path::from(record.location.as_str()))
            .await
        {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(self.store_err(e)),
        }
        self.records.delete_backup(id).await?;
        tracing::info!(backup = id, "backup deleted");
        Ok(())
    }

    /// The backups of `tenant`, oldest first.
    pub async fn list(&self, tenant: &str) -> Result<Vec<BackupRecord>, BackupError> {
        Ok(self.records.backups(Some(tenant)).await?)
    }
}

/// An archive on its way to the store, with its digest and size as sent.
struct Upload {
    up: WriteMultipart,
    sum: Sha256,
    size: i64,
}

impl Upload {
    async fn send(&mut self, bytes: Vec<u8>) -> Result<(), object_store::Error> {
        self.sum.update(&bytes);
        self.size += bytes.len() as i64;
        self.up.write(&bytes);
        self.up.wait_for_capacity(PARTS_IN_FLIGHT).await
    }
}
