//! The provider block: where kamajid is and how to authenticate, with environment fallbacks so
//! CI pipelines need no secrets in HCL.

use std::collections::HashMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{map, AttributePath, Diagnostics, DynamicDataSource, DynamicResource, Provider};

use crate::client::{Client, Settings, Shared};
use crate::plan_memo::{NameSet, PlannedDatastores};
use crate::schema::{attributes, optional, sensitive, string};
use crate::{
    bootstrap_token_resource, datastore, datastore_data_source, datastores_data_source,
    tenant_backup_resource, tenant_backups_data_source, tenant_cluster, tenant_cluster_data_source,
    tenant_clusters_data_source, tenant_restore_resource,
};

#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct ProviderConfig {
    pub endpoint: Value<String>,
    pub token: Value<String>,
    pub ca_certificate: Value<String>,
}

#[derive(Default)]
pub struct KamajiProvider {
    client: Shared,
    /// Tenant clusters the running plan destroys, see [`crate::plan_memo`].
    tenants_leaving: NameSet,
    /// Datastores the running plan registers, see [`crate::plan_memo`].
    datastores_arriving: PlannedDatastores,
    /// Tenant clusters the running plan creates.
    tenants_arriving: NameSet,
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// An attribute's value, else an environment variable, else the content of the file an
/// environment variable names.
fn setting(
    value: &Value<String>,
    var: &str,
    file_var: &str,
    diags: &mut Diagnostics,
    attr: &'static str,
) -> Option<String> {
    if let Value::Value(v) = value {
        return Some(v.clone());
    }
    if let Some(v) = env(var) {
        return Some(v);
    }
    let path = env(file_var)?;
    match std::fs::read_to_string(&path) {
        Ok(v) => Some(v.trim().to_owned()),
        Err(e) => {
            diags.error(
                format!("Cannot read {file_var}"),
                format!("{file_var}={path} could not be read: {e}"),
                AttributePath::new(attr),
            );
            None
        }
    }
}

/// What is wrong with a kamajid URL, if anything. kamajid serves its API over TLS only: a
/// plain `http://` URL would fail later as an HTTP/2 protocol error that says nothing useful.
fn endpoint_problem(e: &str) -> Option<String> {
    if let Some(rest) = e.strip_prefix("http://") {
        return Some(format!(
            "{e:?} is plain HTTP, but kamajid serves its API over TLS only: use \"https://{rest}\" \
             (and set ca_certificate to the CA that signed kamajid's certificate)"
        ));
    }
    (!e.starts_with("https://"))
        .then(|| format!("{e:?} must be a URL such as https://kamajid.example:7443"))
}

impl KamajiProvider {
    fn settings(config: &ProviderConfig, diags: &mut Diagnostics) -> Option<Settings> {
        let endpoint = setting(
            &config.endpoint,
            "KAMAJI_ENDPOINT",
            "KAMAJI_ENDPOINT_FILE",
            diags,
            "endpoint",
        );
        let token = setting(
            &config.token,
            "KAMAJI_TOKEN",
            "KAMAJI_TOKEN_FILE",
            diags,
            "token",
        );
        let ca = setting(
            &config.ca_certificate,
            "KAMAJI_CA_CERTIFICATE",
            "KAMAJI_CA_CERTIFICATE_FILE",
            diags,
            "ca_certificate",
        );
        let Some(endpoint) = endpoint else {
            diags.error(
                "Missing kamajid endpoint",
                "Set endpoint (e.g. \"https://kamajid.example:7443\") or KAMAJI_ENDPOINT.",
                AttributePath::new("endpoint"),
            );
            return None;
        };
        if let Some(why) = endpoint_problem(&endpoint) {
            diags.error("Invalid endpoint", why, AttributePath::new("endpoint"));
            return None;
        }
        let Some(token) = token else {
            diags.error(
                "Missing kamajid token",
                "Set token or KAMAJI_TOKEN (or KAMAJI_TOKEN_FILE) to a bearer token listed in kamajid's --tokens-file.",
                AttributePath::new("token"),
            );
            return None;
        };
        if ca.is_none() {
            diags.error(
                "Missing kamajid CA certificate",
                "Set ca_certificate (PEM) or KAMAJI_CA_CERTIFICATE / KAMAJI_CA_CERTIFICATE_FILE to the CA that signed kamajid's serving certificate.",
                AttributePath::new("ca_certificate"),
            );
            return None;
        }
        Some(Settings {
            endpoint,
            token,
            ca_certificate: ca,
        })
    }
}

#[async_trait]
impl Provider for KamajiProvider {
    type Config<'a> = ProviderConfig;
    type MetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(Schema {
            version: 1,
            block: Block {
                version: 1,
                description: Description::markdown(
                    "Manages kamaji etcd datastores and tenant Kubernetes clusters through kamajid.",
                ),
                attributes: attributes([
                    ("endpoint", optional(string(), "kamajid gRPC URL, e.g. `https://kamajid.example:7443`. Env: `KAMAJI_ENDPOINT`.")),
                    ("token", sensitive(optional(string(), "Bearer token accepted by kamajid. Env: `KAMAJI_TOKEN` or `KAMAJI_TOKEN_FILE`."))),
                    ("ca_certificate", optional(string(), "PEM CA that signed kamajid's serving certificate. Env: `KAMAJI_CA_CERTIFICATE` or `KAMAJI_CA_CERTIFICATE_FILE`.")),
                ]),
                ..Default::default()
            },
        })
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::Config<'a>) -> Option<()> {
        if let Value::Value(e) = &config.endpoint {
            if let Some(why) = endpoint_problem(e) {
                diags.error("Invalid endpoint", why, AttributePath::new("endpoint"));
            }
        }
        if let Value::Value(ca) = &config.ca_certificate {
            if let Err(e) = kamaji_proto::validate::certificates("ca_certificate", ca) {
                diags.error(
                    "Invalid ca_certificate",
                    e.message,
                    AttributePath::new("ca_certificate"),
                );
            }
        }
        Some(())
    }

    async fn configure<'a>(
        &self,
        diags: &mut Diagnostics,
        _tf: String,
        config: Self::Config<'a>,
    ) -> Option<()> {
        let settings = Self::settings(&config, diags)?;
        match Client::new(&settings) {
            Ok(c) => self.client.set(c).await,
            Err(e) => diags.error(
                "Invalid kamajid connection settings",
                e.to_string(),
                AttributePath::new("endpoint"),
            ),
        }
        Some(())
    }

    fn get_resources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicResource>>> {
        Some(map! {
            "datastore" => datastore::DatastoreResource { client: self.client.clone(), own_names: Default::default(), tenants_leaving: self.tenants_leaving.clone(), arriving: self.datastores_arriving.clone() },
            "tenant_cluster" => tenant_cluster::TenantClusterResource { client: self.client.clone(), own_names: Default::default(), leaving: self.tenants_leaving.clone(), datastores_arriving: self.datastores_arriving.clone(), arriving: self.tenants_arriving.clone(), listing: Default::default() },
            "bootstrap_token" => bootstrap_token_resource::BootstrapTokenResource { client: self.client.clone(), tenants_arriving: self.tenants_arriving.clone() },
            "tenant_backup" => tenant_backup_resource::TenantBackupResource { client: self.client.clone() },
            "tenant_restore" => tenant_restore_resource::TenantRestoreResource { client: self.client.clone() },
        })
    }

    fn get_data_sources(
        &self,
        _diags: &mut Diagnostics,
    ) -> Option<HashMap<String, Box<dyn DynamicDataSource>>> {
        Some(map! {
            "datastore" => datastore_data_source::DatastoreDataSource { client: self.client.clone() },
            "datastores" => datastores_data_source::DatastoresDataSource { client: self.client.clone() },
            "tenant_cluster" => tenant_cluster_data_source::TenantClusterDataSource { client: self.client.clone() },
            "tenant_clusters" => tenant_clusters_data_source::TenantClustersDataSource { client: self.client.clone() },
            "tenant_backups" => tenant_backups_data_source::TenantBackupsDataSource { client: self.client.clone() },
        })
    }
}
