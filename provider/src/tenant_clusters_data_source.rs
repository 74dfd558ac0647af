//! Data source `kamaji_tenant_clusters`: every tenant cluster, optionally only those carrying
//! some labels or placed on one datastore. No credentials: those are per cluster, through
//! `kamaji_tenant_cluster`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use kamaji_proto::v1;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{DataSource, Diagnostics};

use crate::client::{report, Shared};
use crate::listing;
use crate::schema::tenant_docs::*;
use crate::schema::*;
use crate::tenant_cluster::phase_name;

pub struct TenantClustersDataSource {
    pub client: Shared,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub name: String,
    pub uid: String,
    pub kubernetes_version: String,
    pub current_version: String,
    pub datastore: String,
    pub endpoint: String,
    pub status: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct TenantClustersState {
    pub id: Value<String>,
    pub labels: listing::LabelFilter,
    pub datastore: Value<String>,
    pub names: Value<Vec<String>>,
    pub tenant_clusters: Value<Vec<Summary>>,
}

fn summary_type() -> AttributeType {
    listing::objects(&[
        ("name", string()),
        ("uid", string()),
        ("kubernetes_version", string()),
        ("current_version", string()),
        ("datastore", string()),
        ("endpoint", string()),
        ("status", string()),
        ("labels", map_of_strings()),
    ])
}

#[async_trait]
impl DataSource for TenantClustersDataSource {
    type State<'a> = TenantClustersState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::markdown("Lists tenant clusters run by kamajid, optionally only those carrying all the given labels or placed on one datastore."),
                attributes: attributes([
                    ("id", computed(string(), "Identifier of this listing (its filters).")),
                    ("labels", optional(map_of_strings(), "Only tenant clusters carrying every one of these labels.")),
                    ("datastore", optional(string(), "Only tenant clusters placed on this datastore.")),
                    ("names", computed(list_of_strings(), "Names of the matching tenant clusters, sorted.")),
                    ("tenant_clusters", computed(summary_type(), &format!("The matching tenant clusters, sorted by name. `status`: {TC_STATUS}"))),
                ]),
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        listing::check_labels(diags, &config.labels);
        crate::schema::check_name(diags, "datastore", &config.datastore);
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
        let datastore = config
            .datastore
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        let listed = match crate::client::patiently("ListTenantClusters", || {
            let mut c = client.tenant_clusters();
            let req = v1::ListTenantClustersRequest {
                label_selector: selector.clone(),
                datastore: datastore.clone(),
                ..Default::default()
            };
            async move {
                crate::client::list_tenant_clusters(&mut c, req)
                    .await
                    .map(tonic::Response::new)
            }
        })
        .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => {
                report(diags, "Listing tenant clusters", &client.endpoint, &s);
                return None;
            }
        };
        let mut list: Vec<Summary> = listed
            .into_iter()
            .map(|t| {
                let spec = t.spec.unwrap_or_default();
                let st = t.status.unwrap_or_default();
                Summary {
                    name: t.name,
                    uid: t.uid,
                    kubernetes_version: spec.kubernetes_version,
                    current_version: st.current_version,
                    datastore: st.datastore,
                    endpoint: st.endpoint,
                    status: phase_name(st.phase).to_owned(),
                    labels: spec.labels.into_iter().collect(),
                }
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Some(TenantClustersState {
            id: listing::id(&selector, &[("datastore", &datastore)]),
            labels: config.labels,
            datastore: config.datastore,
            names: Value::Value(list.iter().map(|s| s.name.clone()).collect()),
            tenant_clusters: Value::Value(list),
        })
    }
}
