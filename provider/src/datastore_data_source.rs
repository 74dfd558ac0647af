//! Data source `kamaji_datastore`: one registered datastore by name, without its keys.
//!
//! The schema is the resource's, with keys removed and every attribute but `name` computed, so
//! the two never drift apart.

use async_trait::async_trait;
use kamaji_proto::v1;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeConstraint, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, DataSource, Diagnostics};
use tonic::Code;

use crate::client::{report, Shared};
use crate::datastore::{self, DatastoreState};

pub struct DatastoreDataSource {
    pub client: Shared,
}

/// The resource state without key attributes (a data source never holds keys).
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct DatastoreView {
    pub id: Value<String>,
    pub name: Value<String>,
    pub endpoints: Value<Vec<Value<String>>>,
    pub ca_certificate: Value<String>,
    pub client_certificate: Value<String>,
    pub client_ca_certificate: Value<String>,
    pub quota_bytes: Value<crate::number::Number>,
    pub max_tenants: Value<crate::number::Number>,
    pub labels: Value<std::collections::BTreeMap<String, Value<String>>>,
    pub schedulable: Value<bool>,
    pub drain: Value<bool>,
    pub status: Value<String>,
    pub status_message: Value<String>,
    pub etcd_version: Value<String>,
    pub db_size_bytes: Value<i64>,
    pub db_size_in_use_bytes: Value<i64>,
    pub compacted_revision: Value<i64>,
    pub last_compaction_time: Value<String>,
    pub last_defragmentation_time: Value<String>,
    pub alarms: Value<Vec<Value<String>>>,
    pub tenant_count: Value<i64>,
    pub storage_used_bytes: Value<i64>,
    pub storage_keys: Value<i64>,
    pub members: Value<Vec<Value<String>>>,
}

impl From<&v1::Datastore> for DatastoreView {
    fn from(ds: &v1::Datastore) -> Self {
        let s = DatastoreState::from_proto(ds, &DatastoreState::default());
        let mut v = Self {
            id: s.id,
            name: s.name,
            endpoints: s.endpoints,
            ca_certificate: s.ca_certificate,
            client_certificate: s.client_certificate,
            client_ca_certificate: s.client_ca_certificate,
            quota_bytes: s.quota_bytes,
            max_tenants: s.max_tenants,
            labels: s.labels,
            schedulable: s.schedulable,
            drain: s.drain,
            status: s.status,
            status_message: s.status_message,
            etcd_version: s.etcd_version,
            db_size_bytes: s.db_size_bytes,
            db_size_in_use_bytes: s.db_size_in_use_bytes,
            compacted_revision: s.compacted_revision,
            last_compaction_time: s.last_compaction_time,
            last_defragmentation_time: s.last_defragmentation_time,
            alarms: s.alarms,
            tenant_count: s.tenant_count,
            storage_used_bytes: s.storage_used_bytes,
            storage_keys: s.storage_keys,
            members: s.members,
        };
        if v.labels.is_null() {
            v.labels = Value::Value(Default::default());
        }
        v
    }
}

#[async_trait]
impl DataSource for DatastoreDataSource {
    type State<'a> = DatastoreView;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut schema = datastore::schema();
        schema.block.description = Description::markdown(
            "Reads a datastore registered with kamajid. Keys are never returned.",
        );
        schema
            .block
            .attributes
            .retain(|name, _| name != "client_key" && name != "client_ca_key");
        for (name, attr) in schema.block.attributes.iter_mut() {
            attr.constraint = if name == "name" {
                AttributeConstraint::Required
            } else {
                AttributeConstraint::Computed
            };
        }
        Some(schema)
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        crate::schema::check_name(diags, "name", &config.name);
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::State<'a>> {
        let client = self.client.get(diags).await?;
        let name = config.name.as_ref_option().cloned().unwrap_or_default();
        match crate::client::patiently("GetDatastore", || {
            let mut c = client.datastores();
            let req = v1::GetDatastoreRequest { name: name.clone() };
            async move { c.get_datastore(req).await }
        })
        .await
        {
            Ok(r) => Some(DatastoreView::from(&r.into_inner())),
            Err(s) if s.code() == Code::NotFound => {
                diags.error(
                    "Datastore not found",
                    format!("kamajid has no datastore named {name:?}."),
                    AttributePath::new("name"),
                );
                None
            }
            Err(s) => {
                report(
                    diags,
                    &format!("Reading datastore {name:?}"),
                    &client.endpoint,
                    &s,
                );
                None
            }
        }
    }
}
