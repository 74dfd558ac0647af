//! A tenant cluster as kamajid means it: the typed spec every step reads. The API parses the wire
//! spec into it once (`kamaji_proto::tenant::parse`, which runs every rule of this crate first),
//! and a stored record is decoded into it the same way; the defaults clients fill in are
//! [`defaults`], here, once.

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::ids::DatastoreName;
pub use crate::net::Cidr;

/// Defaults clients fill in for unset settings (the API itself takes every field explicitly, so
/// a stored spec never changes meaning when a default does). kubeadm's defaults where it has one.
pub mod defaults {
    pub const REPLICAS: u32 = 2;
    pub const SERVICE_CIDR: &str = "10.96.0.0/12";
    pub const POD_CIDR: &str = "10.244.0.0/16";
    pub const DNS_SERVICE_IP: &str = "10.96.0.10";
    pub const PORT: u32 = 6443;
    pub const SERVICE_TYPE: &str = "LoadBalancer";
}

/// The API port of a tenant when the spec names none (kubeadm's).
pub const DEFAULT_PORT: u16 = defaults::PORT as u16;

pub use crate::version::Version;

/// How the admin cluster exposes a tenant's apiserver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ServiceType {
    ClusterIp,
    NodePort,
    #[default]
    LoadBalancer,
}

impl ServiceType {
    /// The Kubernetes Service `type`.
    pub fn kubernetes_name(self) -> &'static str {
        match self {
            ServiceType::ClusterIp => "ClusterIP",
            ServiceType::NodePort => "NodePort",
            ServiceType::LoadBalancer => "LoadBalancer",
        }
    }
}

/// Where the tenant's state goes: a named datastore, one matching labels, or any with room.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Placement {
    #[default]
    Any,
    Named(DatastoreName),
    Selector(BTreeMap<String, String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Network {
    pub service_cidr: Cidr,
    pub pod_cidr: Cidr,
    pub dns_service_ip: IpAddr,
    pub port: u16,
    pub service_type: ServiceType,
    /// The address workers and users reach the apiserver by, when it is not the Service's.
    pub endpoint_address: Option<String>,
    pub extra_sans: Vec<String>,
    /// Networks that may reach the apiserver; empty means any.
    pub authorized_networks: Vec<Cidr>,
    /// The apiserver reaches the cluster's network through a Konnectivity tunnel the nodes'
    /// agents open, so workers may sit where the control plane cannot dial them.
    pub konnectivity: bool,
}

/// Encryption at rest: Secrets always, and these resources too, with the key of this rotation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Encryption {
    /// Resources besides `secrets`, as the apiserver names them (`configmaps`, `deployments.apps`).
    pub resources: Vec<String>,
    /// Which key encrypts: raising it rotates the key.
    pub key_rotation: u32,
}

/// An OpenID Connect issuer whose ID tokens the apiserver accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcIssuer {
    pub issuer_url: String,
    pub client_id: String,
    /// `sub` when the spec names none.
    pub username_claim: String,
    pub username_prefix: String,
    pub groups_claim: Option<String>,
    pub groups_prefix: String,
    pub ca_certificate: Option<String>,
}

/// What the apiserver's audit log records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditPolicy {
    /// Every request at this level (`Metadata`, `Request`, `RequestResponse`), Secrets' and
    /// tokens' contents never beyond metadata.
    Preset(&'static str),
    /// An `audit.k8s.io/v1` Policy as the user wrote it.
    Custom(String),
}

/// Where a tenant's credential rotation stands: raising `generation` starts one (a new CA and
/// service-account key trusted beside the old ones, everything re-issued), `started` false
/// completes it (the old ones withdrawn).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CredentialRotation {
    pub generation: u32,
    pub started: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audit {
    pub policy: AuditPolicy,
    pub max_age_days: u32,
}

/// Requests and limits of one component, as Kubernetes quantities; `None` is kamajid's default.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requirements {
    pub cpu_request: Option<String>,
    pub memory_request: Option<String>,
    pub cpu_limit: Option<String>,
    pub memory_limit: Option<String>,
}

/// One value per control-plane component.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PerComponent<T> {
    pub apiserver: T,
    pub controller_manager: T,
    pub scheduler: T,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addons {
    pub coredns: bool,
    pub kube_proxy: bool,
}

impl Default for Addons {
    /// Both on: a tenant cluster is usable without them only with a CNI and DNS of its own.
    fn default() -> Self {
        Self {
            coredns: true,
            kube_proxy: true,
        }
    }
}

/// The desired state of a tenant cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantSpec {
    pub kubernetes_version: Version,
    pub replicas: u32,
    pub placement: Placement,
    pub network: Network,
    pub resources: PerComponent<Requirements>,
    /// Admission plugins in addition to the defaults.
    pub admission_plugins: Vec<String>,
    /// Flags per component, replacing a default of the same name.
    pub extra_args: PerComponent<BTreeMap<String, String>>,
    pub labels: BTreeMap<String, String>,
    pub deletion_protection: bool,
    pub addons: Addons,
    pub encryption: Encryption,
    pub oidc: Vec<OidcIssuer>,
    pub audit: Option<Audit>,
    pub credential_rotation: CredentialRotation,
    /// Bytes the tenant may keep in its datastore; `None`: its reservation.
    pub storage_quota_bytes: Option<i64>,
    /// Bytes per second it may write there; `None`: [`crate::limits::default_budget`].
    pub write_budget_bytes_per_second: Option<i64>,
    /// The control plane is stopped; everything else is kept, so waking it loses nothing.
    pub hibernated: bool,
    /// Its service-account issuer is published by kamajid (discovery document and key set), so
    /// that clouds' IAM and Vault can trust its tokens.
    pub public_issuer: bool,
    /// Which versions kamajid moves the tenant to by itself, and when: `kubernetes_version` is
    /// then the floor, and the version it runs is the record's.
    pub maintenance: crate::maintenance::Maintenance,
    /// Created from this backup (its id) rather than empty; fixed at creation.
    pub restore_from: Option<String>,
    /// Restored with the backed-up cluster's CA and keys rather than its own; fixed at creation.
    pub restore_keep_identity: bool,
    /// kamajid backs the tenant up on this schedule; `None`: only when asked.
    pub backup_schedule: Option<crate::backup::BackupSchedule>,
}
