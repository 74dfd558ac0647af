//! Data source `kamaji_tenant_backups`: a tenant cluster's backups, oldest first, whether taken
//! by a `kamaji_tenant_backup` or kept after one was destroyed with `retain_on_destroy`.

use std::collections::BTreeMap;

use async_trait::async_trait;
use kamaji_proto::v1;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{AttributeType, Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, DataSource, Diagnostics};

use crate::client::{report, Shared};
use crate::listing;
use crate::schema::*;
use crate::tenant_backup_resource::{docs, rfc3339};

pub struct TenantBackupsDataSource {
    pub client: Shared,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Backup {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub revision: i64,
    pub keys: i64,
    pub size_bytes: i64,
    pub digest: String,
    pub kubernetes_version: String,
    pub created_at: String,
    pub location: String,
}

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct TenantBackupsState {
    pub id: Value<String>,
    pub tenant_cluster: Value<String>,
    pub ids: Value<Vec<String>>,
    pub backups: Value<Vec<Backup>>,
}

fn backup_type() -> AttributeType {
    listing::objects(&[
        ("id", string()),
        ("labels", map_of_strings()),
        ("revision", number()),
        ("keys", number()),
        ("size_bytes", number()),
        ("digest", string()),
        ("kubernetes_version", string()),
        ("created_at", string()),
        ("location", string()),
    ])
}

#[async_trait]
impl DataSource for TenantBackupsDataSource {
    type State<'a> = TenantBackupsState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::markdown("Lists the backups of one tenant cluster kamajid keeps, oldest first. `ids` (last: the newest) feeds `restore_from` of a new `kamaji_tenant_cluster`."),
                attributes: attributes([
                    ("id", computed(string(), "The tenant cluster's name.")),
                    ("tenant_cluster", required(string(), "Name of the tenant cluster whose backups to list (it may have been deleted since).")),
                    ("ids", computed(list_of_strings(), "The backups' ids, oldest first.")),
                    ("backups", computed(backup_type(), &format!("The backups, oldest first. `id`: {} `revision`: {} `keys`: {} `digest`: {} `kubernetes_version`: {} `location`: {}", docs::ID, docs::REVISION, docs::KEYS, docs::DIGEST, docs::VERSION, docs::LOCATION))),
                ]),
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        if let Value::Value(t) = &config.tenant_cluster {
            if let Err(e) = kamaji_proto::validate::dns_label("tenant_cluster", t) {
                diags.error(
                    "Invalid tenant_cluster",
                    e.message,
                    AttributePath::new("tenant_cluster"),
                );
            }
        }
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::State<'a>> {
        let client = self.client.get(diags).await?;
        let tenant = config
            .tenant_cluster
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        let listed = match crate::client::patiently("ListTenantBackups", || {
            let mut c = client.tenant_backups();
            let req = v1::ListTenantBackupsRequest {
                tenant_cluster: tenant.clone(),
            };
            async move { c.list_tenant_backups(req).await }
        })
        .await
        {
            Ok(r) => r.into_inner().backups,
            Err(s) => {
                report(
                    diags,
                    &format!("Listing the backups of {tenant:?}"),
                    &client.endpoint,
                    &s,
                );
                return None;
            }
        };
        let list: Vec<Backup> = listed
            .into_iter()
            .map(|b| Backup {
                created_at: rfc3339(b.create_time.as_ref()),
                id: b.id,
                labels: b.labels.into_iter().collect(),
                revision: b.revision,
                keys: b.keys,
                size_bytes: b.size_bytes,
                digest: b.digest,
                kubernetes_version: b.kubernetes_version,
                location: b.location,
            })
            .collect();
        Some(TenantBackupsState {
            id: Value::Value(tenant),
            tenant_cluster: config.tenant_cluster,
            ids: Value::Value(list.iter().map(|b| b.id.clone()).collect()),
            backups: Value::Value(list),
        })
    }
}
