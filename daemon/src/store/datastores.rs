//! Datastore records and their statuses.

use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use kamaji_core::datastore::{DatastoreRecord, DatastoreStatusRecord};
use kamaji_core::etcd_keys::prefix_end;
use kamaji_core::ids::DatastoreName;

use super::{at, encode, exists, keys, Store, StoreError, Versioned};

impl Store {
    pub async fn datastore_record(
        &self,
        name: &DatastoreName,
    ) -> Result<Option<Versioned<DatastoreRecord>>, StoreError> {
        self.get(&keys::datastore(name)).await
    }

    pub async fn datastore_records(&self) -> Result<Vec<Versioned<DatastoreRecord>>, StoreError> {
        self.list(&keys::datastores()).await
    }

    pub async fn datastore_status(
        &self,
        name: &DatastoreName,
    ) -> Result<Option<Versioned<DatastoreStatusRecord>>, StoreError> {
        self.get(&keys::datastore_status(name)).await
    }

    /// Every recorded datastore status, by datastore name.
    pub async fn datastore_statuses(
        &self,
    ) -> Result<Vec<(String, DatastoreStatusRecord)>, StoreError> {
        self.list_named(&keys::statuses()).await
    }

    /// How many tenants are placed on `name`.
    pub async fn placement_count(&self, name: &DatastoreName) -> Result<u32, StoreError> {
        self.count(&keys::placements(name)).await
    }

    /// Registers a datastore with its first status, unless one of that name exists.
    pub async fn create_datastore(
        &self,
        rec: &DatastoreRecord,
        status: &DatastoreStatusRecord,
    ) -> Result<(), StoreError> {
        let key = keys::datastore(&rec.name);
        let skey = keys::datastore_status(&rec.name);
        let txn = Txn::new().when([at(&key, None)]).and_then([
            TxnOp::put(key.as_str(), encode(&key, rec)?, None),
            TxnOp::put(skey.as_str(), encode(&skey, status)?, None),
        ]);
        if self.txn("create datastore", txn).await?.succeeded() {
            Ok(())
        } else {
            Err(StoreError::AlreadyExists {
                what: format!("datastore {:?}", rec.name.as_str()),
            })
        }
    }

    pub async fn update_datastore(
        &self,
        rec: &DatastoreRecord,
        revision: i64,
    ) -> Result<(), StoreError> {
        self.update(
            &keys::datastore(&rec.name),
            format!("datastore {:?}", rec.name.as_str()),
            rec,
            revision,
        )
        .await
    }

    /// Writes `status` only while the datastore's record exists, so a status written by a slow
    /// probe never resurrects a deleted datastore. `false` when it no longer exists.
    pub async fn put_status(
        &self,
        name: &DatastoreName,
        status: &DatastoreStatusRecord,
    ) -> Result<bool, StoreError> {
        let skey = keys::datastore_status(name);
        let txn = Txn::new()
            .when([exists(&keys::datastore(name))])
            .and_then([TxnOp::put(skey.as_str(), encode(&skey, status)?, None)]);
        Ok(self.txn("put status", txn).await?.succeeded())
    }

    /// Deletes the datastore record, its status and its reservation record if it is still at
    /// `revision` and no placement key exists under its prefix, all in one transaction: nothing
    /// of a removed datastore stays behind to be counted when a datastore of the same name is
    /// registered again.
    pub async fn delete_datastore(
        &self,
        name: &DatastoreName,
        revision: i64,
    ) -> Result<(), StoreError> {
        let key = keys::datastore(name);
        let placements = keys::placements(name);
        let txn = Txn::new()
            .when([
                at(&key, Some(revision)),
                Compare::create_revision(placements.as_str(), CompareOp::Equal, 0)
                    .with_range(prefix_end(placements.as_bytes())),
            ])
            .and_then([
                TxnOp::delete(key.as_str(), None),
                TxnOp::delete(keys::datastore_status(name), None),
                TxnOp::delete(keys::reservation(name), None),
            ]);
        if self.txn("delete datastore", txn).await?.succeeded() {
            return Ok(());
        }
        let tenants = self.list_names(&placements).await?;
        if tenants.is_empty() {
            Err(StoreError::Conflict {
                what: format!("datastore {:?}", name.as_str()),
            })
        } else {
            Err(StoreError::HasTenants {
                datastore: name.to_string(),
                tenants,
            })
        }
    }
}
