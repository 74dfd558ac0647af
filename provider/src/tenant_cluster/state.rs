//! The Terraform shape of a tenant cluster, shared by the resource and the data source.
//!
//! Nested settings are `NestingGroup` blocks (`network {}`, `resources {}`, `extra_args {}`,
//! `timeouts {}`): optional to write, never null, so the provider can show defaults inside them.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tf_provider::value::Value;

use crate::duration::parse_duration;
use crate::number::Number;

pub type StrMap = BTreeMap<String, Value<String>>;
pub type StrList = Vec<Value<String>>;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Network {
    pub service_cidr: Value<String>,
    pub pod_cidr: Value<String>,
    pub dns_service_ip: Value<String>,
    pub port: Value<Number>,
    pub service_type: Value<String>,
    pub endpoint_address: Value<String>,
    pub extra_sans: Value<StrList>,
    pub authorized_networks: Value<StrList>,
    pub konnectivity: Value<bool>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Encryption {
    pub resources: Value<StrList>,
    pub key_rotation: Value<Number>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Oidc {
    pub issuer_url: Value<String>,
    pub client_id: Value<String>,
    pub username_claim: Value<String>,
    pub username_prefix: Value<String>,
    pub groups_claim: Value<String>,
    pub groups_prefix: Value<String>,
    pub ca_certificate: Value<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authentication {
    pub oidc: Value<Vec<Value<Oidc>>>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audit {
    pub preset: Value<String>,
    pub policy: Value<String>,
    pub max_age_days: Value<Number>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceWindow {
    pub start: Value<String>,
    pub duration_hours: Value<Number>,
    pub days: Value<StrList>,
}

/// `backup_schedule {}`: how often kamajid backs the cluster up, and how many it keeps.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupScheduleBlock {
    pub interval: Value<String>,
    pub retention_count: Value<Number>,
    pub retention_max_age: Value<String>,
}

/// Hours a maintenance window lasts when `duration_hours` is unset.
pub const WINDOW_HOURS: u32 = 4;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaintenanceExclusion {
    pub name: Value<String>,
    pub start: Value<String>,
    pub end: Value<String>,
    pub scope: Value<String>,
}

/// `last_upgrade`, as kamajid recorded it.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastUpgrade {
    pub from_version: Value<String>,
    pub to_version: Value<String>,
    pub automatic: Value<bool>,
    pub started_at: Value<String>,
    pub finished_at: Value<String>,
}

/// `next_upgrade`: what the release channel has in store.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct NextUpgrade {
    pub to_version: Value<String>,
    pub not_before: Value<String>,
    pub waiting_for: Value<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct CredentialRotation {
    pub generation: Value<Number>,
    pub phase: Value<String>,
}

/// Days audit logs are kept when `audit.max_age_days` is unset.
pub const AUDIT_MAX_AGE_DAYS: u32 = 30;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Requirements {
    pub cpu_request: Value<String>,
    pub memory_request: Value<String>,
    pub cpu_limit: Value<String>,
    pub memory_limit: Value<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    pub apiserver: Value<Requirements>,
    pub controller_manager: Value<Requirements>,
    pub scheduler: Value<Requirements>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExtraArgs {
    pub apiserver: Value<StrMap>,
    pub controller_manager: Value<StrMap>,
    pub scheduler: Value<StrMap>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Addons {
    pub coredns: Value<bool>,
    pub kube_proxy: Value<bool>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct Timeouts {
    pub create: Value<String>,
    pub update: Value<String>,
    pub delete: Value<String>,
}

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct TenantClusterState {
    pub id: Value<String>,
    pub name: Value<String>,
    pub kubernetes_version: Value<String>,
    pub replicas: Value<Number>,
    pub datastore: Value<String>,
    pub datastore_selector: Value<StrMap>,
    pub network: Value<Network>,
    pub resources: Value<Resources>,
    pub admission_plugins: Value<StrList>,
    pub extra_args: Value<ExtraArgs>,
    pub labels: Value<StrMap>,
    pub deletion_protection: Value<bool>,
    pub hibernated: Value<bool>,
    pub public_issuer: Value<bool>,
    pub restore_from: Value<String>,
    pub restore_keep_identity: Value<bool>,
    pub addons: Value<Addons>,
    pub encryption: Value<Encryption>,
    pub authentication: Value<Authentication>,
    /// At most one `audit {}` block: null when there is none.
    #[serde(with = "one_block")]
    pub audit: Value<Audit>,
    pub credential_rotation: Value<CredentialRotation>,
    pub release_channel: Value<String>,
    /// At most one `maintenance_window {}` block: null when there is none.
    #[serde(with = "one_block")]
    pub maintenance_window: Value<MaintenanceWindow>,
    pub maintenance_exclusion: Value<Vec<Value<MaintenanceExclusion>>>,
    /// At most one `backup_schedule {}` block: null when there is none.
    #[serde(with = "one_block")]
    pub backup_schedule: Value<BackupScheduleBlock>,
    pub storage_quota_bytes: Value<Number>,
    pub write_budget_bytes_per_second: Value<Number>,
    /// Absent from the data source's schema, hence never serialized when null.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub timeouts: Value<Timeouts>,
    pub uid: Value<String>,
    pub endpoint: Value<String>,
    pub cluster_ca_certificate: Value<String>,
    pub ca_cert_hash: Value<String>,
    pub admin_kubeconfig: Value<String>,
    pub client_certificate: Value<String>,
    pub client_key: Value<String>,
    pub current_version: Value<String>,
    pub service_account_issuer: Value<String>,
    pub last_upgrade: Value<LastUpgrade>,
    pub next_upgrade: Value<NextUpgrade>,
    pub last_backup_at: Value<String>,
    pub last_backup_id: Value<String>,
    pub last_backup_error: Value<String>,
    pub next_backup_at: Value<String>,
    pub status: Value<String>,
    pub status_message: Value<String>,
    pub certificates_expire_at: Value<String>,
    pub encryption_key_rotation: Value<Number>,
    pub storage_used_bytes: Value<Number>,
    pub storage_keys: Value<Number>,
    pub storage_write_bytes_per_second: Value<Number>,
    pub storage_history_bytes: Value<Number>,
}

/// A block written at most once, which Terraform holds as a list of zero or one (a computed
/// list attribute in the data source, null until read).
mod one_block {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use tf_provider::value::Value;

    pub fn serialize<S: Serializer, T: Serialize>(v: &Value<T>, s: S) -> Result<S::Ok, S::Error> {
        let list: Value<Vec<&T>> = match v {
            Value::Value(x) => Value::Value(vec![x]),
            Value::Null => Value::Value(Vec::new()),
            Value::Unknown => Value::Unknown,
        };
        list.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Value<T>, D::Error> {
        Ok(match Value::<Vec<Value<T>>>::deserialize(d)? {
            Value::Value(list) => list.into_iter().next().unwrap_or(Value::Null),
            Value::Null => Value::Null,
            Value::Unknown => Value::Unknown,
        })
    }
}

pub const CREATE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
pub const UPDATE_TIMEOUT: Duration = Duration::from_secs(20 * 60);
pub const DELETE_TIMEOUT: Duration = Duration::from_secs(10 * 60);

impl TenantClusterState {
    pub fn timeout(&self, which: &str) -> Duration {
        let t = self.timeouts.as_ref_option().cloned().unwrap_or_default();
        let (v, default) = match which {
            "create" => (t.create, CREATE_TIMEOUT),
            "update" => (t.update, UPDATE_TIMEOUT),
            _ => (t.delete, DELETE_TIMEOUT),
        };
        v.as_ref_option()
            .and_then(|s| parse_duration(s))
            .filter(|d| !d.is_zero())
            .unwrap_or(default)
    }
}
