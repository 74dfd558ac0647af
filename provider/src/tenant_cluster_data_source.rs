//! Data source `kamaji_tenant_cluster`: one tenant cluster by name, with its endpoint and
//! credentials, for configurations that use a cluster another configuration manages (e.g. to
//! configure the kubernetes or helm provider).
//!
//! The schema is the resource's with every attribute but `name` read-only, so the two never
//! drift apart.

use async_trait::async_trait;
use kamaji_proto::v1;
use tf_provider::schema::{Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, DataSource, Diagnostics};
use tonic::Code;

use crate::client::{report, Shared};
use crate::schema::read_only;
use crate::tenant_cluster;
use crate::tenant_cluster::TenantClusterState;

pub struct TenantClusterDataSource {
    pub client: Shared,
}

#[async_trait]
impl DataSource for TenantClusterDataSource {
    type State<'a> = TenantClusterState;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        let mut schema = tenant_cluster::schema();
        schema.block = read_only(&schema.block, &["name"]);
        schema.block.description = Description::markdown(
            "Reads a tenant cluster run by kamajid: its settings, status, endpoint and admin credentials.",
        );
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
        let mut tenants = client.tenant_clusters();
        match crate::client::patiently("GetTenantCluster", || {
            let mut c = tenants.clone();
            let req = v1::GetTenantClusterRequest { name: name.clone() };
            async move { c.get_tenant_cluster(req).await }
        })
        .await
        {
            Ok(r) => {
                let creds = tenants
                    .get_tenant_cluster_credentials(v1::GetTenantClusterCredentialsRequest {
                        name: name.clone(),
                    })
                    .await
                    .ok()
                    .map(|r| r.into_inner());
                let mut state = TenantClusterState::from_proto(
                    &r.into_inner(),
                    creds.as_ref(),
                    &TenantClusterState::default(),
                );
                state.timeouts = Value::Null;
                Some(state)
            }
            Err(s) if s.code() == Code::NotFound => {
                diags.error(
                    "Tenant cluster not found",
                    format!("kamajid has no tenant cluster named {name:?}."),
                    AttributePath::new("name"),
                );
                None
            }
            Err(s) => {
                report(
                    diags,
                    &format!("Reading tenant cluster {name:?}"),
                    &client.endpoint,
                    &s,
                );
                None
            }
        }
    }
}
