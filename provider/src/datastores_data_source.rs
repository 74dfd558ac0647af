//! Data source `kamaji_datastores`: every registered datastore, optionally filtered by labels.

use std::collections::BTreeMap;

use async_trait::async_trait;
use kamaji_proto::v1;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{DataSource, Diagnostics};

use crate::client::{report, Shared};
use crate::datastore::phase_name;
use crate::listing;
use crate::schema::docs::*;
use crate::schema::*;

pub struct DatastoresDataSource {
    pub client: Shared,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    pub endpoints: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub quota_bytes: i64,
    pub schedulable: bool,
    pub drain: bool,
    pub status: String,
    pub etcd_version: String,
    pub db_size_bytes: i64,
    pub db_size_in_use_bytes: i64,
    pub compacted_revision: i64,
    pub alarms: Vec<String>,
    pub tenant_count: i64,
    pub storage_used_bytes: Option<i64>,
    pub storage_keys: Option<i64>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct DatastoresState {
    pub id: Value<String>,
    pub labels: listing::LabelFilter,
    pub names: Value<Vec<String>>,
    pub datastores: Value<Vec<Summary>>,
}

fn summary_type() -> AttributeType {
    listing::objects(&[
        ("name", string()),
        ("endpoints", list_of_strings()),
        ("labels", map_of_strings()),
        ("quota_bytes", number()),
        ("schedulable", boolean()),
        ("drain", boolean()),
        ("status", string()),
        ("etcd_version", string()),
        ("db_size_bytes", number()),
        ("db_size_in_use_bytes", number()),
        ("compacted_revision", number()),
        ("alarms", list_of_strings()),
        ("tenant_count", number()),
        ("storage_used_bytes", number()),
        ("storage_keys", number()),
    ])
}

#[async_trait]
impl DataSource for DatastoresDataSource {
    type State<'a> = DatastoresState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::markdown("Lists datastores registered with kamajid, optionally only those carrying all the given labels."),
                attributes: attributes([
                    ("id", computed(string(), "Identifier of this listing (the label filter).")),
                    ("labels", optional(map_of_strings(), "Only datastores carrying every one of these labels.")),
                    ("names", computed(list_of_strings(), "Names of the matching datastores, sorted.")),
                    ("datastores", computed(summary_type(), &format!("The matching datastores, sorted by name. `status`: {DS_STATUS}"))),
                ]),
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        listing::check_labels(diags, &config.labels);
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::State<'a>> {
        let client = self.client.get(diags).await?;
        let selector = listing::selector(&config.labels);
        let resp = match crate::client::patiently("ListDatastores", || {
            let mut c = client.datastores();
            let req = v1::ListDatastoresRequest {
                label_selector: selector.clone(),
            };
            async move { c.list_datastores(req).await }
        })
        .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => {
                report(diags, "Listing datastores", &client.endpoint, &s);
                return None;
            }
        };
        let mut list: Vec<Summary> = resp
            .datastores
            .into_iter()
            .map(|d| {
                let spec = d.spec.unwrap_or_default();
                let status = d.status.unwrap_or_default();
                Summary {
                    name: d.name,
                    endpoints: spec.endpoints,
                    labels: spec.labels.into_iter().collect(),
                    quota_bytes: spec.quota_bytes,
                    schedulable: spec.schedulable,
                    drain: spec.drain,
                    status: phase_name(status.phase).to_owned(),
                    etcd_version: status.etcd_version,
                    db_size_bytes: status.db_size_bytes,
                    db_size_in_use_bytes: status.db_size_in_use_bytes,
                    compacted_revision: status.compacted_revision,
                    alarms: status.alarms,
                    tenant_count: i64::from(status.tenant_count),
                    storage_used_bytes: status.storage_used_bytes,
                    storage_keys: status.storage_keys,
                }
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Some(DatastoresState {
            id: listing::id(&selector, &[]),
            labels: config.labels,
            names: Value::Value(list.iter().map(|s| s.name.clone()).collect()),
            datastores: Value::Value(list),
        })
    }
}
