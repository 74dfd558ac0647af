//! The Terraform shape of a tenant cluster, shared by the resource and the data source: the
//! state struct, its translation to and from the API, and the plan-time checks.
//!
//! Nested settings are `NestingGroup` blocks (`network {}`, `resources {}`, `extra_args {}`,
//! `timeouts {}`): optional to write, never null, so the provider can show defaults inside them.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use kamaji_proto::errors::FieldError;
use kamaji_proto::tenant::{self as contract, defaults};
use kamaji_proto::v1;
use serde::{Deserialize, Serialize};
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

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
    pub addons: Value<Addons>,
    pub encryption: Value<Encryption>,
    pub authentication: Value<Authentication>,
    /// At most one `audit {}` block: null when there is none.
    #[serde(with = "one_block")]
    pub audit: Value<Audit>,
    pub credential_rotation: Value<CredentialRotation>,
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

/// The phase as users read it.
pub fn phase_name(p: i32) -> &'static str {
    match v1::TenantClusterPhase::try_from(p).unwrap_or_default() {
        v1::TenantClusterPhase::Provisioning => "Provisioning",
        v1::TenantClusterPhase::Ready => "Ready",
        v1::TenantClusterPhase::Upgrading => "Upgrading",
        v1::TenantClusterPhase::Deleting => "Deleting",
        v1::TenantClusterPhase::Degraded => "Degraded",
        v1::TenantClusterPhase::Failed => "Failed",
        v1::TenantClusterPhase::Moving => "Moving",
        v1::TenantClusterPhase::Unspecified => "Unknown",
    }
}

/// Why a tenant is not Ready: the messages of its failing conditions.
pub fn status_message(tc: &v1::TenantCluster) -> String {
    let st = tc.status.clone().unwrap_or_default();
    let ready = st.phase == v1::TenantClusterPhase::Ready as i32;
    st.conditions
        .iter()
        .filter(|c| {
            let warns_when_true = WARN_WHEN_TRUE.contains(&c.r#type.as_str());
            let true_ = c.status == v1::ConditionStatus::True as i32;
            // A Ready cluster only has the warnings to report.
            (true_ == warns_when_true) && (!ready || warns_when_true)
        })
        .map(|c| format!("{}: {}", c.r#type, c.message))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Conditions that report trouble when true (the others when false); they may hold while the
/// cluster is Ready.
const WARN_WHEN_TRUE: [&str; 2] = ["StorageQuotaExceeded", "WriteBudgetExceeded"];

/// Blocks the API holds as one message but Terraform as a list of at most one.
const SINGLE_LIST_BLOCKS: [&str; 1] = ["audit"];

/// The attribute path a contract field names: `network.port`, `authentication.oidc[1].client_id`.
pub fn attribute_path(field: &str) -> AttributePath {
    let mut path = AttributePath::root();
    for (n, seg) in field.split('.').enumerate() {
        let (name, index) = match seg.split_once('[') {
            Some((name, rest)) => (name, rest.trim_end_matches(']').parse::<i64>().ok()),
            None => (seg, None),
        };
        path = path.attribute(name.to_owned());
        if let Some(i) = index {
            path = path.index(i);
        } else if n == 0 && SINGLE_LIST_BLOCKS.contains(&name) && field.contains('.') {
            path = path.index(0);
        }
    }
    path
}

/// A diagnostic for a field error, on the attribute path it names (`network.port`, ...).
pub fn field_diag(diags: &mut Diagnostics, e: FieldError) {
    let path = attribute_path(&e.field);
    diags.error(format!("Invalid {}", e.field), e.message, path);
}

/// Collects the spec from state values, noting which paths are still unknown so their
/// (placeholder) values are not judged.
#[derive(Default)]
struct Reader {
    unknown: Vec<String>,
    /// Numbers that cannot be what the API carries (negative, fractions, too large), by path,
    /// judged by [`TenantClusterState::check`] on the number as written.
    invalid: Vec<(String, Number)>,
}

impl Reader {
    fn string(&mut self, path: &str, v: &Value<String>, default: &str) -> String {
        match v {
            Value::Value(s) => s.clone(),
            Value::Null => default.to_owned(),
            Value::Unknown => {
                self.unknown.push(path.to_owned());
                String::new()
            }
        }
    }

    fn int(&mut self, path: &str, v: &Value<Number>, default: u32) -> u32 {
        match v {
            Value::Value(n) => match n.whole().ok().and_then(|w| u32::try_from(w).ok()) {
                Some(w) => w,
                None => {
                    self.invalid.push((path.to_owned(), n.clone()));
                    default
                }
            },
            Value::Null => default,
            Value::Unknown => {
                self.unknown.push(path.to_owned());
                0
            }
        }
    }

    /// A whole number the API carries in 64 bits (its range is the contract's to judge).
    fn wide(&mut self, path: &str, v: &Value<Number>, default: i64) -> i64 {
        match v {
            Value::Value(n) => n.whole().unwrap_or_else(|_| {
                self.invalid.push((path.to_owned(), n.clone()));
                default
            }),
            Value::Null => default,
            Value::Unknown => {
                self.unknown.push(path.to_owned());
                0
            }
        }
    }

    /// A number whose 0 on the wire means "unset": a configured 0 is judged as written (and
    /// refused) instead of passing for the default, which would read back as null and make
    /// Terraform report an inconsistent result.
    fn wide_unset_zero(&mut self, path: &str, v: &Value<Number>) -> i64 {
        if matches!(v, Value::Value(Number::Whole(0))) {
            self.invalid.push((path.to_owned(), Number::Whole(0)));
        }
        self.wide(path, v, 0)
    }

    fn boolean(&mut self, path: &str, v: &Value<bool>, default: bool) -> bool {
        match v {
            Value::Value(b) => *b,
            Value::Null => default,
            Value::Unknown => {
                self.unknown.push(path.to_owned());
                default
            }
        }
    }

    fn list(&mut self, path: &str, v: &Value<StrList>) -> Vec<String> {
        match v {
            Value::Value(l) => l
                .iter()
                .filter_map(|e| match e {
                    Value::Value(s) => Some(s.clone()),
                    _ => {
                        self.unknown.push(path.to_owned());
                        None
                    }
                })
                .collect(),
            Value::Null => Vec::new(),
            Value::Unknown => {
                self.unknown.push(path.to_owned());
                Vec::new()
            }
        }
    }

    fn map(&mut self, path: &str, v: &Value<StrMap>) -> HashMap<String, String> {
        match v {
            Value::Value(m) => m
                .iter()
                .filter_map(|(k, e)| match e {
                    Value::Value(s) => Some((k.clone(), s.clone())),
                    _ => {
                        self.unknown.push(path.to_owned());
                        None
                    }
                })
                .collect(),
            Value::Null => HashMap::new(),
            Value::Unknown => {
                self.unknown.push(path.to_owned());
                HashMap::new()
            }
        }
    }

    fn requirements(
        &mut self,
        path: &str,
        v: &Value<Requirements>,
    ) -> Option<v1::ResourceRequirements> {
        let r = v.as_ref_option()?;
        let out = v1::ResourceRequirements {
            cpu_request: self.string(&format!("{path}.cpu_request"), &r.cpu_request, ""),
            memory_request: self.string(&format!("{path}.memory_request"), &r.memory_request, ""),
            cpu_limit: self.string(&format!("{path}.cpu_limit"), &r.cpu_limit, ""),
            memory_limit: self.string(&format!("{path}.memory_limit"), &r.memory_limit, ""),
        };
        (out != v1::ResourceRequirements::default()).then_some(out)
    }
}

impl TenantClusterState {
    /// The API spec these values describe, defaults filled in, and the attribute paths whose
    /// values are not known yet.
    pub fn spec(&self) -> (v1::TenantClusterSpec, Vec<String>) {
        let (spec, r) = self.read();
        (spec, r.unknown)
    }

    fn read(&self) -> (v1::TenantClusterSpec, Reader) {
        let mut r = Reader::default();
        let net = self.network.as_ref_option().cloned().unwrap_or_default();
        let service_type = r.string(
            "network.service_type",
            &net.service_type,
            defaults::SERVICE_TYPE,
        );
        let network = v1::Network {
            service_cidr: r.string(
                "network.service_cidr",
                &net.service_cidr,
                defaults::SERVICE_CIDR,
            ),
            pod_cidr: r.string("network.pod_cidr", &net.pod_cidr, defaults::POD_CIDR),
            dns_service_ip: r.string(
                "network.dns_service_ip",
                &net.dns_service_ip,
                defaults::DNS_SERVICE_IP,
            ),
            port: r.int("network.port", &net.port, defaults::PORT),
            service_type: contract::service_type("network.service_type", &service_type)
                .map(|t| t as i32)
                .unwrap_or_default(),
            endpoint_address: r.string("network.endpoint_address", &net.endpoint_address, ""),
            extra_sans: r.list("network.extra_sans", &net.extra_sans),
            authorized_networks: r.list("network.authorized_networks", &net.authorized_networks),
        };
        let enc = self.encryption.as_ref_option().cloned().unwrap_or_default();
        let encryption = v1::Encryption {
            resources: r.list("encryption.resources", &enc.resources),
            key_rotation: r.int("encryption.key_rotation", &enc.key_rotation, 0),
        };
        let oidc: Vec<v1::OidcIssuer> = self
            .authentication
            .as_ref_option()
            .and_then(|a| a.oidc.as_ref_option())
            .map(|l| {
                l.iter()
                    .enumerate()
                    .filter_map(|(i, o)| o.as_ref_option().map(|o| (i, o)))
                    .map(|(i, o)| {
                        let f = |k: &str| format!("authentication.oidc[{i}].{k}");
                        v1::OidcIssuer {
                            issuer_url: r.string(&f("issuer_url"), &o.issuer_url, ""),
                            client_id: r.string(&f("client_id"), &o.client_id, ""),
                            username_claim: r.string(
                                &f("username_claim"),
                                &o.username_claim,
                                "sub",
                            ),
                            username_prefix: r.string(
                                &f("username_prefix"),
                                &o.username_prefix,
                                "",
                            ),
                            groups_claim: r.string(&f("groups_claim"), &o.groups_claim, ""),
                            groups_prefix: r.string(&f("groups_prefix"), &o.groups_prefix, ""),
                            ca_certificate: r.string(&f("ca_certificate"), &o.ca_certificate, ""),
                        }
                    })
                    .collect()
            })
            .unwrap_or_default();
        let rot = self
            .credential_rotation
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        let credential_rotation = v1::CredentialRotation {
            generation: r.int("credential_rotation.generation", &rot.generation, 0),
            phase: r.string("credential_rotation.phase", &rot.phase, "completed"),
        };
        let audit = self.audit.as_ref_option().map(|a| v1::Audit {
            preset: r.string("audit.preset", &a.preset, ""),
            policy: r.string("audit.policy", &a.policy, ""),
            max_age_days: r.int("audit.max_age_days", &a.max_age_days, AUDIT_MAX_AGE_DAYS),
        });
        let res = self.resources.as_ref_option().cloned().unwrap_or_default();
        let resources = v1::ComponentResources {
            apiserver: r.requirements("resources.apiserver", &res.apiserver),
            controller_manager: r
                .requirements("resources.controller_manager", &res.controller_manager),
            scheduler: r.requirements("resources.scheduler", &res.scheduler),
        };
        let x = self.extra_args.as_ref_option().cloned().unwrap_or_default();
        let extra_args = v1::ExtraArgs {
            apiserver: r.map("extra_args.apiserver", &x.apiserver),
            controller_manager: r.map("extra_args.controller_manager", &x.controller_manager),
            scheduler: r.map("extra_args.scheduler", &x.scheduler),
        };
        let addons = self.addons.as_ref_option().cloned().unwrap_or_default();
        let spec = v1::TenantClusterSpec {
            kubernetes_version: r.string("kubernetes_version", &self.kubernetes_version, ""),
            replicas: r.int("replicas", &self.replicas, defaults::REPLICAS),
            datastore: r.string("datastore", &self.datastore, ""),
            datastore_selector: r.map("datastore_selector", &self.datastore_selector),
            network: Some(network),
            resources: (resources != v1::ComponentResources::default()).then_some(resources),
            admission_plugins: r.list("admission_plugins", &self.admission_plugins),
            extra_args: (extra_args != v1::ExtraArgs::default()).then_some(extra_args),
            labels: r.map("labels", &self.labels),
            deletion_protection: self
                .deletion_protection
                .as_ref_option()
                .copied()
                .unwrap_or(false),
            addons: Some(v1::Addons {
                coredns: r.boolean("addons.coredns", &addons.coredns, true),
                kube_proxy: r.boolean("addons.kube_proxy", &addons.kube_proxy, true),
            }),
            encryption: (encryption != v1::Encryption::default()).then_some(encryption),
            authentication: (!oidc.is_empty()).then_some(v1::Authentication { oidc }),
            audit,
            credential_rotation: (credential_rotation
                != v1::CredentialRotation {
                    generation: 0,
                    phase: "completed".into(),
                })
            .then_some(credential_rotation),
            storage_quota_bytes: r
                .wide_unset_zero("storage_quota_bytes", &self.storage_quota_bytes),
            write_budget_bytes_per_second: r.wide_unset_zero(
                "write_budget_bytes_per_second",
                &self.write_budget_bytes_per_second,
            ),
        };
        (spec, r)
    }

    /// Every check the API makes that can be made from known values, plus the service type
    /// name and the timeouts, reported on the attributes at fault.
    pub fn check(&self, diags: &mut Diagnostics) {
        let (spec, read) = self.read();
        let mut unknown = read.unknown;
        let name = match &self.name {
            Value::Value(n) => n.clone(),
            _ => {
                unknown.push("name".into());
                String::new()
            }
        };
        let mut errors = contract::tenant_cluster(&name, &spec);
        if let Some(Value::Value(t)) = self.network.as_ref_option().map(|n| &n.service_type) {
            if let Err(e) = contract::service_type("network.service_type", t) {
                errors.retain(|x| x.field != e.field);
                errors.push(e);
            }
        }
        // A number the API cannot carry is judged as written, not by its placeholder.
        for (field, n) in &read.invalid {
            errors.retain(|e| &e.field != field);
            let range = match field.as_str() {
                "replicas" => contract::replicas,
                "network.port" => contract::port,
                "audit.max_age_days" => contract::audit_max_age,
                "storage_quota_bytes" => contract::storage_quota,
                "write_budget_bytes_per_second" => contract::write_budget,
                // encryption.key_rotation, credential_rotation.generation
                _ => contract::key_rotation,
            };
            errors.push(match n.whole() {
                Ok(w) => range(field, w).err().unwrap_or_else(|| {
                    FieldError::new(field.clone(), format!("{w} is out of range"))
                }),
                Err(why) => FieldError::new(field.clone(), why),
            });
        }
        let judged = |field: &str| {
            !unknown
                .iter()
                .any(|u| field == u || field.starts_with(&format!("{u}.")))
        };
        for e in errors.into_iter().filter(|e| judged(&e.field)) {
            field_diag(diags, e);
        }
        if let Some(t) = self.timeouts.as_ref_option() {
            for (k, v) in [
                ("create", &t.create),
                ("update", &t.update),
                ("delete", &t.delete),
            ] {
                let why = match v.as_ref_option().map(|s| (s, parse_duration(s))) {
                    Some((s, None)) => {
                        format!("{s:?} is not a duration such as \"30s\", \"20m\" or \"1h30m\"")
                    }
                    Some((s, Some(d))) if d.is_zero() => {
                        format!("{s:?} leaves no time to wait: give a duration longer than 0s")
                    }
                    _ => continue,
                };
                field_diag(diags, FieldError::new(format!("timeouts.{k}"), why));
            }
        }
    }

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

    /// Fills in the defaults of unset settings, as the plan must show them.
    pub fn with_defaults(mut self) -> Self {
        if self.replicas.is_null() {
            self.replicas = Value::Value(defaults::REPLICAS.into());
        }
        if self.deletion_protection.is_null() {
            self.deletion_protection = Value::Value(false);
        }
        let mut net = self.network.as_ref_option().cloned().unwrap_or_default();
        let fill = |v: &mut Value<String>, d: &str| {
            if v.is_null() {
                *v = Value::Value(d.to_owned());
            }
        };
        fill(&mut net.service_cidr, defaults::SERVICE_CIDR);
        fill(&mut net.pod_cidr, defaults::POD_CIDR);
        fill(&mut net.dns_service_ip, defaults::DNS_SERVICE_IP);
        fill(&mut net.service_type, defaults::SERVICE_TYPE);
        if net.port.is_null() {
            net.port = Value::Value(defaults::PORT.into());
        }
        self.network = Value::Value(net);
        self.resources = Value::Value(
            self.resources
                .as_ref_option()
                .cloned()
                .unwrap_or_default()
                .groups(),
        );
        if self.extra_args.is_null() {
            self.extra_args = Value::Value(ExtraArgs::default());
        }
        let mut addons = self.addons.as_ref_option().cloned().unwrap_or_default();
        for a in [&mut addons.coredns, &mut addons.kube_proxy] {
            if a.is_null() {
                *a = Value::Value(true);
            }
        }
        self.addons = Value::Value(addons);
        let mut enc = self.encryption.as_ref_option().cloned().unwrap_or_default();
        if enc.key_rotation.is_null() {
            enc.key_rotation = Value::Value(Number::Whole(0));
        }
        self.encryption = Value::Value(enc);
        let mut authn = self
            .authentication
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        if let Value::Value(list) = &mut authn.oidc {
            for o in list.iter_mut().filter_map(|o| match o {
                Value::Value(o) => Some(o),
                _ => None,
            }) {
                fill(&mut o.username_claim, "sub");
            }
        }
        self.authentication = Value::Value(authn);
        let mut rot = self
            .credential_rotation
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        if rot.generation.is_null() {
            rot.generation = Value::Value(Number::Whole(0));
        }
        fill(&mut rot.phase, "completed");
        self.credential_rotation = Value::Value(rot);
        if let Value::Value(a) = &mut self.audit {
            if a.max_age_days.is_null() {
                a.max_age_days = Value::Value(AUDIT_MAX_AGE_DAYS.into());
            }
        }
        if self.timeouts.is_null() {
            self.timeouts = Value::Value(Timeouts::default());
        }
        self
    }

    /// Marks what kamajid reports as not known until apply.
    pub fn unknown_status(mut self) -> Self {
        self.current_version = Value::Unknown;
        self.status = Value::Unknown;
        self.status_message = Value::Unknown;
        self.certificates_expire_at = Value::Unknown;
        self.encryption_key_rotation = Value::Unknown;
        self.storage_used_bytes = Value::Unknown;
        self.storage_keys = Value::Unknown;
        self.storage_write_bytes_per_second = Value::Unknown;
        self.storage_history_bytes = Value::Unknown;
        self
    }

    pub fn unknown_outputs(mut self) -> Self {
        self.uid = Value::Unknown;
        self.endpoint = Value::Unknown;
        self.cluster_ca_certificate = Value::Unknown;
        self.ca_cert_hash = Value::Unknown;
        self.admin_kubeconfig = Value::Unknown;
        self.client_certificate = Value::Unknown;
        self.client_key = Value::Unknown;
        self.unknown_status()
    }

    /// The state kamajid reports. Settings written as empty collections stay empty rather than
    /// null (and the reverse) by following `prior`; credentials come from `creds` or `prior`.
    pub fn from_proto(
        tc: &v1::TenantCluster,
        creds: Option<&v1::TenantClusterCredentials>,
        prior: &TenantClusterState,
    ) -> Self {
        let spec = tc.spec.clone().unwrap_or_default();
        let st = tc.status.clone().unwrap_or_default();
        let net = spec.network.clone().unwrap_or_default();
        let pnet = prior.network.as_ref_option().cloned().unwrap_or_default();
        let px = prior
            .extra_args
            .as_ref_option()
            .cloned()
            .unwrap_or_default();
        let res = spec.resources.clone().unwrap_or_default();
        let x = spec.extra_args.clone().unwrap_or_default();
        let text = |s: &str| {
            if s.is_empty() {
                Value::Null
            } else {
                Value::Value(s.to_owned())
            }
        };
        let secret = |new: Option<&String>, old: &Value<String>| match new {
            Some(s) => Value::Value(s.clone()),
            None => old.clone().as_option().into(),
        };
        Self {
            id: Value::Value(tc.name.clone()),
            name: Value::Value(tc.name.clone()),
            kubernetes_version: Value::Value(spec.kubernetes_version.clone()),
            replicas: Value::Value(spec.replicas.into()),
            datastore: if spec.datastore.is_empty() {
                text(&st.datastore)
            } else {
                Value::Value(spec.datastore.clone())
            },
            datastore_selector: map_like(&spec.datastore_selector, &prior.datastore_selector),
            network: Value::Value(Network {
                service_cidr: Value::Value(net.service_cidr),
                pod_cidr: Value::Value(net.pod_cidr),
                dns_service_ip: Value::Value(net.dns_service_ip),
                port: Value::Value(net.port.into()),
                service_type: Value::Value(
                    contract::service_type_name(net.service_type).to_owned(),
                ),
                endpoint_address: if net.endpoint_address.is_empty()
                    && pnet.endpoint_address.is_null()
                {
                    Value::Null
                } else {
                    Value::Value(net.endpoint_address)
                },
                extra_sans: list_like(&net.extra_sans, &pnet.extra_sans),
                authorized_networks: list_like(&net.authorized_networks, &pnet.authorized_networks),
            }),
            resources: Value::Value(Resources {
                apiserver: requirements(res.apiserver.as_ref()),
                controller_manager: requirements(res.controller_manager.as_ref()),
                scheduler: requirements(res.scheduler.as_ref()),
            }),
            admission_plugins: list_like(&spec.admission_plugins, &prior.admission_plugins),
            extra_args: Value::Value(ExtraArgs {
                apiserver: map_like(&x.apiserver, &px.apiserver),
                controller_manager: map_like(&x.controller_manager, &px.controller_manager),
                scheduler: map_like(&x.scheduler, &px.scheduler),
            }),
            labels: map_like(&spec.labels, &prior.labels),
            deletion_protection: Value::Value(spec.deletion_protection),
            addons: {
                let a = spec.addons.unwrap_or(v1::Addons {
                    coredns: true,
                    kube_proxy: true,
                });
                Value::Value(Addons {
                    coredns: Value::Value(a.coredns),
                    kube_proxy: Value::Value(a.kube_proxy),
                })
            },
            encryption: {
                let e = spec.encryption.clone().unwrap_or_default();
                let pe = prior
                    .encryption
                    .as_ref_option()
                    .cloned()
                    .unwrap_or_default();
                Value::Value(Encryption {
                    resources: list_like(&e.resources, &pe.resources),
                    key_rotation: Value::Value(e.key_rotation.into()),
                })
            },
            authentication: {
                let list = spec.authentication.clone().unwrap_or_default().oidc;
                let prior_empty = prior
                    .authentication
                    .as_ref_option()
                    .is_some_and(|a| matches!(&a.oidc, Value::Value(l) if l.is_empty()));
                Value::Value(Authentication {
                    oidc: if list.is_empty() && !prior_empty {
                        Value::Null
                    } else {
                        Value::Value(
                            list.into_iter()
                                .map(|o| {
                                    Value::Value(Oidc {
                                        issuer_url: Value::Value(o.issuer_url),
                                        client_id: Value::Value(o.client_id),
                                        username_claim: Value::Value(
                                            if o.username_claim.is_empty() {
                                                "sub".into()
                                            } else {
                                                o.username_claim
                                            },
                                        ),
                                        username_prefix: text(&o.username_prefix),
                                        groups_claim: text(&o.groups_claim),
                                        groups_prefix: text(&o.groups_prefix),
                                        ca_certificate: text(&o.ca_certificate),
                                    })
                                })
                                .collect(),
                        )
                    },
                })
            },
            credential_rotation: {
                let (generation, started) =
                    contract::rotation_state(spec.credential_rotation.as_ref());
                Value::Value(CredentialRotation {
                    generation: Value::Value(generation.into()),
                    phase: Value::Value(if started { "started" } else { "completed" }.to_owned()),
                })
            },
            audit: match &spec.audit {
                Some(a) => Value::Value(Audit {
                    preset: text(&a.preset),
                    policy: text(&a.policy),
                    max_age_days: Value::Value(a.max_age_days.into()),
                }),
                None => Value::Null,
            },
            timeouts: match &prior.timeouts {
                Value::Value(t) => Value::Value(t.clone()),
                _ => Value::Null,
            },
            uid: Value::Value(tc.uid.clone()),
            endpoint: text(&st.endpoint),
            cluster_ca_certificate: text(&st.cluster_ca_certificate),
            ca_cert_hash: text(&st.ca_cert_hash),
            admin_kubeconfig: secret(creds.map(|c| &c.admin_kubeconfig), &prior.admin_kubeconfig),
            client_certificate: secret(
                creds.map(|c| &c.client_certificate),
                &prior.client_certificate,
            ),
            client_key: secret(creds.map(|c| &c.client_key), &prior.client_key),
            current_version: text(&st.current_version),
            status: Value::Value(phase_name(st.phase).to_owned()),
            status_message: Value::Value(status_message(tc)),
            certificates_expire_at: match &st.certificates_expire_at {
                Some(t) => Value::Value(rfc3339(t.seconds)),
                None => Value::Null,
            },
            encryption_key_rotation: Value::Value(st.encryption_key_rotation.into()),
            storage_quota_bytes: if spec.storage_quota_bytes > 0 {
                Value::Value(spec.storage_quota_bytes.into())
            } else {
                Value::Null
            },
            write_budget_bytes_per_second: if spec.write_budget_bytes_per_second > 0 {
                Value::Value(spec.write_budget_bytes_per_second.into())
            } else {
                Value::Null
            },
            storage_used_bytes: st.storage_used_bytes.map(Number::from).into(),
            storage_keys: st.storage_keys.map(Number::from).into(),
            storage_write_bytes_per_second: st
                .storage_write_bytes_per_second
                .map(Number::from)
                .into(),
            storage_history_bytes: st.storage_history_bytes.map(Number::from).into(),
        }
    }
}

impl Resources {
    /// Nested groups are never null either.
    fn groups(mut self) -> Self {
        for r in [
            &mut self.apiserver,
            &mut self.controller_manager,
            &mut self.scheduler,
        ] {
            if r.is_null() {
                *r = Value::Value(Requirements::default());
            }
        }
        self
    }
}

/// Unix seconds as RFC 3339 (UTC), as Terraform's `timestamp()` writes them.
pub fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

fn requirements(r: Option<&v1::ResourceRequirements>) -> Value<Requirements> {
    let r = r.cloned().unwrap_or_default();
    let q = |s: String| {
        if s.is_empty() {
            Value::Null
        } else {
            Value::Value(s)
        }
    };
    Value::Value(Requirements {
        cpu_request: q(r.cpu_request),
        memory_request: q(r.memory_request),
        cpu_limit: q(r.cpu_limit),
        memory_limit: q(r.memory_limit),
    })
}

/// A map as the API has it; empty reads as null unless the prior value was an empty map.
pub fn map_like(m: &HashMap<String, String>, prior: &Value<StrMap>) -> Value<StrMap> {
    if m.is_empty() && !matches!(prior, Value::Value(p) if p.is_empty()) {
        return Value::Null;
    }
    Value::Value(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::Value(v.clone())))
            .collect(),
    )
}

/// A list as the API has it; empty reads as null unless the prior value was an empty list.
pub fn list_like(l: &[String], prior: &Value<StrList>) -> Value<StrList> {
    if l.is_empty() && !matches!(prior, Value::Value(p) if p.is_empty()) {
        return Value::Null;
    }
    Value::Value(l.iter().cloned().map(Value::Value).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> TenantClusterState {
        TenantClusterState {
            name: Value::Value("acme".into()),
            kubernetes_version: Value::Value("1.35.2".into()),
            ..Default::default()
        }
    }

    fn errors(s: &TenantClusterState) -> Vec<String> {
        let mut d = Diagnostics::default();
        s.check(&mut d);
        d.errors.iter().map(|e| e.summary.to_string()).collect()
    }

    #[test]
    fn defaults_make_a_valid_spec() {
        assert!(errors(&config()).is_empty(), "{:?}", errors(&config()));
        let (spec, unknown) = config().spec();
        assert!(unknown.is_empty());
        let net = spec.network.unwrap();
        assert_eq!(
            (net.service_cidr.as_str(), net.port, spec.replicas),
            (defaults::SERVICE_CIDR, defaults::PORT, defaults::REPLICAS)
        );
        assert_eq!(net.service_type, v1::ServiceType::LoadBalancer as i32);
    }

    #[test]
    fn unknown_values_are_judged_at_apply_not_at_plan() {
        let mut s = config();
        s.kubernetes_version = Value::Unknown;
        s.network = Value::Value(Network {
            service_cidr: Value::Unknown,
            dns_service_ip: Value::Value("10.0.0.10".into()),
            ..Default::default()
        });
        assert!(errors(&s).is_empty(), "{:?}", errors(&s));
        s.kubernetes_version = Value::Value("1.20.0".into());
        assert_eq!(errors(&s), vec!["Invalid kubernetes_version"]);
    }

    #[test]
    fn bad_settings_name_their_attribute() {
        let mut s = config();
        s.network = Value::Value(Network {
            service_type: Value::Value("Ingress".into()),
            port: Value::Value(Number::Whole(70000)),
            ..Default::default()
        });
        s.timeouts = Value::Value(Timeouts {
            create: Value::Value("soon".into()),
            ..Default::default()
        });
        let mut e = errors(&s);
        e.sort();
        assert_eq!(
            e,
            vec![
                "Invalid network.port",
                "Invalid network.service_type",
                "Invalid timeouts.create"
            ]
        );
    }

    #[test]
    fn contract_fields_map_to_the_blocks_terraform_shows() {
        let show = |f: &str| format!("{:?}", attribute_path(f));
        assert_eq!(
            show("authentication.oidc[1].client_id"),
            format!(
                "{:?}",
                AttributePath::new("authentication")
                    .attribute("oidc")
                    .index(1)
                    .attribute("client_id")
            )
        );
        assert_eq!(
            show("audit.preset"),
            format!(
                "{:?}",
                AttributePath::new("audit").index(0).attribute("preset")
            )
        );
        assert_eq!(
            show("network.port"),
            format!("{:?}", AttributePath::new("network").attribute("port"))
        );
    }

    #[test]
    fn numbers_the_api_cannot_carry_are_judged_as_written() {
        let mut s = config();
        s.replicas = Value::Value(Number::Whole(-1));
        let mut d = Diagnostics::default();
        s.check(&mut d);
        let msgs: Vec<String> = d
            .errors
            .iter()
            .map(|e| e.detail.lines().next().unwrap_or_default().to_owned())
            .collect();
        assert_eq!(msgs, ["-1 is not between 1 and 9"]);
        s.replicas = Value::Value(Number::Other("1.5".into()));
        s.network = Value::Value(Network {
            port: Value::Value(Number::Other("9223372036854775808".into())),
            ..Default::default()
        });
        let mut e = errors(&s);
        e.sort();
        assert_eq!(e, ["Invalid network.port", "Invalid replicas"]);
    }

    #[test]
    fn storage_quotas_are_judged_at_plan_on_the_attribute() {
        let detail = |q: Number| {
            let mut s = config();
            s.storage_quota_bytes = Value::Value(q);
            let mut d = Diagnostics::default();
            s.check(&mut d);
            d.errors
                .iter()
                .map(|e| (e.summary.clone(), e.detail.clone()))
                .collect::<Vec<_>>()
        };
        assert!(detail(Number::Whole(64 << 20)).is_empty());
        for bad in [
            Number::Whole(-1),
            Number::Whole(1000),
            Number::Other("1.5".into()),
            Number::Other("9223372036854775808".into()),
        ] {
            let e = detail(bad.clone());
            assert_eq!(e.len(), 1, "{bad:?}: {e:?}");
            assert_eq!(e[0].0, "Invalid storage_quota_bytes");
        }
        assert!(detail(Number::Whole(1000))[0].1.contains("1 MiB"));
        // 0 is not "the default": refused at plan, not read back as null after apply.
        let zero = detail(Number::Whole(0));
        assert_eq!(zero.len(), 1, "{zero:?}");
        assert!(zero[0].1.starts_with("0 is not between"), "{zero:?}");
        assert!(detail(Number::Other("1.5".into()))[0]
            .1
            .contains("not a whole number"));
    }
}
