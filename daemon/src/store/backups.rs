//! Backup records: what each backup holds and where its archive is. Written once the archive
//! is stored, removed after it is deleted.

use etcd_client::{Txn, TxnOp};
use kamaji_core::backup::BackupRecord;

use super::{at, encode, keys, Store, StoreError};

impl Store {
    /// Records a backup whose archive is stored; an id is never reused.
    pub async fn create_backup(&self, rec: &BackupRecord) -> Result<(), StoreError> {
        let key = keys::backup(&rec.id);
        let txn = Txn::new().when([at(&key, None)]).and_then([TxnOp::put(
            key.as_str(),
            encode(&key, rec)?,
            None,
        )]);
        if self.txn("create backup", txn).await?.succeeded() {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists {
                what: format!("backup {}", rec.id),
            })
        }
    }

    pub async fn backup(&self, id: &str) -> Result<Option<BackupRecord>, StoreError> {
        Ok(self.get(&keys::backup(id)).await?.map(|v| v.value))
    }

    /// The backups of `tenant` (every one when `None`), oldest first.
    pub async fn backups(&self, tenant: Option<&str>) -> Result<Vec<BackupRecord>, StoreError> {
        let mut all: Vec<BackupRecord> = self
            .list(&keys::backups())
            .await?
            .into_iter()
            .map(|v| v.value)
            .filter(|b: &BackupRecord| tenant.is_none_or(|t| b.tenant == t))
            .collect();
        all.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        Ok(all)
    }

    pub async fn delete_backup(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .clone()
            .delete(keys::backup(id), None)
            .await
            .map_err(super::etcd("delete backup"))?;
        Ok(())
    }
}
