//! Resource `kamaji_tenant_backup`: a backup of one tenant cluster, taken when the resource is
//! created: its keys in the shared etcd read at one revision, encrypted, in kamajid's backup
//! store. A new `kamaji_tenant_cluster` is restored from it with `restore_from = <id>`.
//!
//! - Nothing about a backup changes in place: a new tenant or new labels take a new backup.
//! - Destroy deletes the archive, unless `retain_on_destroy`: then it stays in the store (and in
//!   the `kamaji_tenant_backups` listing) after Terraform forgets it.
//! - A backup deleted out of band reads as gone, so the next plan takes a new one.

use std::collections::BTreeMap;

use async_trait::async_trait;
use kamaji_proto::v1;
use kamaji_proto::validate;
use serde::{Deserialize, Serialize};
use tf_provider::schema::{Block, Description, Schema};
use tf_provider::value::{Value, ValueEmpty};
use tf_provider::{AttributePath, Diagnostics, Resource};
use tonic::Code;

use crate::client::{report, Shared};
use crate::schema::*;

pub struct TenantBackupResource {
    pub client: Shared,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantBackupState {
    pub id: Value<String>,
    pub tenant_cluster: Value<String>,
    pub labels: Value<BTreeMap<String, String>>,
    pub retain_on_destroy: Value<bool>,
    pub revision: Value<i64>,
    pub keys: Value<i64>,
    pub bytes: Value<i64>,
    pub size_bytes: Value<i64>,
    pub digest: Value<String>,
    pub kubernetes_version: Value<String>,
    pub created_at: Value<String>,
    pub location: Value<String>,
}

/// Descriptions shared with the `kamaji_tenant_backups` data source.
pub mod docs {
    pub const ID: &str = "The backup's id, `<tenant_cluster>-<YYYYMMDDhhmmss>-<4 hex>`: what `restore_from` of a new `kamaji_tenant_cluster` names, and the import ID.";
    pub const REVISION: &str = "The datastore revision every key was read at: the backup is the tenant exactly as it was then.";
    pub const KEYS: &str = "Keys in the backup (objects of the tenant cluster; Events and other keys bound to an etcd lease are left out).";
    pub const BYTES: &str = "Bytes of keys and values, before encryption.";
    pub const SIZE: &str = "Size of the encrypted archive in the backup store.";
    pub const DIGEST: &str = "`sha256:<hex>` of the archive as stored; a restore refuses an archive that does not match.";
    pub const VERSION: &str = "Kubernetes version the cluster ran when the backup was taken. A restore needs a cluster of this minor or the next.";
    pub const CREATED: &str = "When the backup was taken (RFC 3339, UTC).";
    pub const LOCATION: &str = "Where the archive is: `<backup store>/<tenant_cluster>/<id>.kbak`.";
}

pub fn schema() -> Schema {
    Schema {
        version: 1,
        block: Block {
            version: 1,
            description: Description::markdown(
                "A backup of one tenant cluster, taken when the resource is created: every object the cluster \
                 keeps in its shared etcd, read at one revision while it runs (no write is held, no other tenant \
                 is read), encrypted with kamajid's key-encryption key and written to kamajid's backup store \
                 (`--backup-store`: a directory or S3-compatible storage). Secrets are kept as they are stored \
                 (encrypted at rest) together with the keys that read them. Create a new cluster from it with \
                 `restore_from` on `kamaji_tenant_cluster`. Changing any argument takes a new backup.",
            ),
            attributes: attributes([
                ("id", computed(string(), docs::ID)),
                (
                    "tenant_cluster",
                    required(string(), "Name of the tenant cluster to back up. It must have been Ready. Changing it takes a new backup."),
                ),
                (
                    "labels",
                    optional(map_of_strings(), "Labels kept with the backup (Kubernetes label syntax). Changing them takes a new backup."),
                ),
                (
                    "retain_on_destroy",
                    optional_default(boolean(), "Keep the archive in the store when this resource is destroyed (Terraform then only forgets it). Default `false`: destroy deletes it."),
                ),
                ("revision", computed(number(), docs::REVISION)),
                ("keys", computed(number(), docs::KEYS)),
                ("bytes", computed(number(), docs::BYTES)),
                ("size_bytes", computed(number(), docs::SIZE)),
                ("digest", computed(string(), docs::DIGEST)),
                ("kubernetes_version", computed(string(), docs::VERSION)),
                ("created_at", computed(string(), docs::CREATED)),
                ("location", computed(string(), docs::LOCATION)),
            ]),
            blocks: Default::default(),
            deprecated: false,
        },
    }
}

fn text(v: &Value<String>) -> String {
    v.as_ref_option().cloned().unwrap_or_default()
}

/// RFC 3339 of an API timestamp (empty when absent), as the tenant cluster writes times.
pub fn rfc3339(ts: Option<&prost_types::Timestamp>) -> String {
    ts.map_or_else(String::new, |t| crate::tenant_cluster::rfc3339(t.seconds))
}

impl TenantBackupState {
    fn check(&self, diags: &mut Diagnostics) {
        if let Value::Value(t) = &self.tenant_cluster {
            if let Err(e) = validate::dns_label("tenant_cluster", t) {
                diags.error(
                    "Invalid tenant_cluster",
                    e.message,
                    AttributePath::new("tenant_cluster"),
                );
            }
        }
        if let Value::Value(l) = &self.labels {
            if let Err(e) =
                validate::labels("labels", l.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            {
                diags.error("Invalid labels", e.message, AttributePath::new("labels"));
            }
        }
    }

    fn unknown_outputs(mut self) -> Self {
        self.id = Value::Unknown;
        self.revision = Value::Unknown;
        self.keys = Value::Unknown;
        self.bytes = Value::Unknown;
        self.size_bytes = Value::Unknown;
        self.digest = Value::Unknown;
        self.kubernetes_version = Value::Unknown;
        self.created_at = Value::Unknown;
        self.location = Value::Unknown;
        self
    }

    /// The state of backup `b`, keeping what only the configuration says.
    fn with(mut self, b: v1::TenantBackup) -> Self {
        self.id = Value::Value(b.id);
        self.tenant_cluster = Value::Value(b.tenant_cluster);
        if !b.labels.is_empty() || self.labels.is_value() {
            self.labels = Value::Value(b.labels.into_iter().collect());
        }
        if !self.retain_on_destroy.is_value() {
            self.retain_on_destroy = Value::Value(false);
        }
        self.revision = Value::Value(b.revision);
        self.keys = Value::Value(b.keys);
        self.bytes = Value::Value(b.bytes);
        self.size_bytes = Value::Value(b.size_bytes);
        self.digest = Value::Value(b.digest);
        self.kubernetes_version = Value::Value(b.kubernetes_version);
        self.created_at = Value::Value(rfc3339(b.create_time.as_ref()));
        self.location = Value::Value(b.location);
        self
    }
}

#[async_trait]
impl Resource for TenantBackupResource {
    type State<'a> = TenantBackupState;
    type PrivateState<'a> = ValueEmpty;
    type ProviderMetaState<'a> = ValueEmpty;

    fn schema(&self, _diags: &mut Diagnostics) -> Option<Schema> {
        Some(schema())
    }

    async fn validate<'a>(&self, diags: &mut Diagnostics, config: Self::State<'a>) -> Option<()> {
        config.check(diags);
        Some(())
    }

    async fn read<'a>(
        &self,
        diags: &mut Diagnostics,
        state: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.client.get(diags).await?;
        let id = text(&state.id);
        match crate::client::patiently("GetTenantBackup", || {
            let mut c = client.tenant_backups();
            let req = v1::GetTenantBackupRequest { id: id.clone() };
            async move { c.get_tenant_backup(req).await }
        })
        .await
        {
            Ok(r) => Some((state.with(r.into_inner()), private)),
            // Deleted out of band: plan a new backup.
            Err(s) if s.code() == Code::NotFound => None,
            Err(s) => {
                report(
                    diags,
                    &format!("Reading backup {id:?}"),
                    &client.endpoint,
                    &s,
                );
                None
            }
        }
    }

    async fn plan_create<'a>(
        &self,
        diags: &mut Diagnostics,
        proposed: Self::State<'a>,
        config: Self::State<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        config.check(diags);
        let mut planned = proposed.unknown_outputs();
        if planned.retain_on_destroy.is_null() {
            planned.retain_on_destroy = Value::Value(false);
        }
        Some((planned, Default::default()))
    }

    async fn plan_update<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        proposed: Self::State<'a>,
        config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>, Vec<AttributePath>)> {
        config.check(diags);
        let mut planned = proposed;
        if config.retain_on_destroy.is_null() {
            planned.retain_on_destroy = Value::Value(false);
        }
        let mut replace = Vec::new();
        if prior.tenant_cluster != planned.tenant_cluster {
            replace.push(AttributePath::new("tenant_cluster"));
        }
        let labels =
            |v: &Value<BTreeMap<String, String>>| v.as_ref_option().cloned().unwrap_or_default();
        if labels(&prior.labels) != labels(&planned.labels) || planned.labels.is_unknown() {
            replace.push(AttributePath::new("labels"));
        }
        if !replace.is_empty() {
            planned = planned.unknown_outputs();
        }
        Some((planned, private, replace))
    }

    async fn plan_destroy<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<Self::PrivateState<'a>> {
        Some(private)
    }

    async fn create<'a>(
        &self,
        diags: &mut Diagnostics,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        let client = self.client.get(diags).await?;
        let tenant = text(&planned.tenant_cluster);
        let labels = planned.labels.as_ref_option().cloned().unwrap_or_default();
        match client
            .tenant_backups()
            .create_tenant_backup(v1::CreateTenantBackupRequest {
                tenant_cluster: tenant.clone(),
                labels: labels.into_iter().collect(),
            })
            .await
        {
            Ok(r) => Some((planned.with(r.into_inner()), private)),
            Err(s) => {
                report(
                    diags,
                    &format!("Backing up tenant cluster {tenant:?}"),
                    &client.endpoint,
                    &s,
                );
                None
            }
        }
    }

    async fn update<'a>(
        &self,
        _diags: &mut Diagnostics,
        _prior: Self::State<'a>,
        planned: Self::State<'a>,
        _config: Self::State<'a>,
        private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        // Only retain_on_destroy changes in place, and only Terraform reads it.
        Some((planned, private))
    }

    async fn destroy<'a>(
        &self,
        diags: &mut Diagnostics,
        prior: Self::State<'a>,
        _private: Self::PrivateState<'a>,
        _meta: Self::ProviderMetaState<'a>,
    ) -> Option<()> {
        if prior.retain_on_destroy.as_ref_option() == Some(&true) {
            return Some(());
        }
        let client = self.client.get(diags).await?;
        let id = text(&prior.id);
        match client
            .tenant_backups()
            .delete_tenant_backup(v1::DeleteTenantBackupRequest { id: id.clone() })
            .await
        {
            Ok(_) => Some(()),
            Err(s) if s.code() == Code::NotFound => Some(()),
            Err(s) => {
                report(
                    diags,
                    &format!("Deleting backup {id:?}"),
                    &client.endpoint,
                    &s,
                );
                None
            }
        }
    }

    async fn import<'a>(
        &self,
        _diags: &mut Diagnostics,
        id: String,
    ) -> Option<(Self::State<'a>, Self::PrivateState<'a>)> {
        // Read fills in the rest. Destroy then deletes it, as for any backup, unless the
        // configuration sets retain_on_destroy.
        Some((
            TenantBackupState {
                id: Value::Value(id),
                retain_on_destroy: Value::Value(false),
                ..Default::default()
            },
            Default::default(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_names_are_checked_at_plan() {
        let s = |tenant: &str, k: &str| TenantBackupState {
            tenant_cluster: Value::Value(tenant.into()),
            labels: Value::Value([(k.to_owned(), "x".to_owned())].into()),
            ..Default::default()
        };
        let errors = |s: TenantBackupState| {
            let mut d = Diagnostics::default();
            s.check(&mut d);
            d.errors
                .iter()
                .map(|e| e.summary.clone())
                .collect::<Vec<_>>()
        };
        assert!(errors(s("prod", "tier")).is_empty());
        assert_eq!(errors(s("Prod_1", "tier")), ["Invalid tenant_cluster"]);
        assert_eq!(errors(s("prod", "-bad")), ["Invalid labels"]);
    }
}
