//! Tenant clusters as kamajid stores them, and their view in the API.
//!
//! A tenant record holds the desired spec (with a generation that moves on every spec change),
//! the immutable id minted at creation (the etcd user and key prefix), the datastore it was
//! placed on and the reservation it holds there, its PKI (private keys sealed), and what
//! reconcile last observed: phase, conditions, endpoint, version.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use prost::Message;

use kamaji_proto::v1;
use serde::{Deserialize, Serialize};

use crate::datastore::{now_unix, timestamp};

/// Default reservation a tenant holds on its datastore until measured usage says otherwise.
pub const DEFAULT_RESERVATION_BYTES: i64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Provisioning,
    Ready,
    Upgrading,
    Deleting,
    Degraded,
    /// Could not be placed: terminal, holds no capacity, waits for its deletion.
    Failed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Condition {
    pub kind: String,
    pub ok: bool,
    pub reason: String,
    pub message: String,
    pub since: i64,
}

/// The PKI a tenant keeps across reconciles; keys sealed with the KEK.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct StoredPki {
    /// JSON of the PEM set, sealed as one value.
    pub sealed: String,
    pub ca_certificate: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TenantRecord {
    pub name: String,
    pub uid: String,
    /// The desired spec, as the API received it (validated), see [`spec_to_stored`].
    pub spec: String,
    pub generation: i64,
    pub datastore: Option<String>,
    pub reservation_bytes: i64,
    pub pki: Option<StoredPki>,
    pub phase: Phase,
    pub conditions: Vec<Condition>,
    pub endpoint: Option<String>,
    pub current_version: Option<String>,
    pub observed_generation: i64,
    pub deleting: bool,
    pub create_time: i64,
    pub delete_time: i64,
    /// When the bootstrap objects were last applied inside the tenant (unix seconds).
    #[serde(default)]
    pub bootstrapped_at: i64,
}

impl TenantRecord {
    pub fn new(name: &str, uid: &str, spec: &v1::TenantClusterSpec) -> Self {
        Self {
            name: name.to_owned(),
            uid: uid.to_owned(),
            spec: spec_to_stored(spec),
            generation: 1,
            datastore: None,
            reservation_bytes: DEFAULT_RESERVATION_BYTES,
            pki: None,
            phase: Phase::Provisioning,
            conditions: Vec::new(),
            endpoint: None,
            current_version: None,
            observed_generation: 0,
            deleting: false,
            create_time: now_unix(),
            delete_time: 0,
            bootstrapped_at: 0,
        }
    }

    /// The desired spec. Records are written only by kamajid from validated specs; a record that
    /// does not decode reads as an empty spec, which validation then reports.
    pub fn spec(&self) -> v1::TenantClusterSpec {
        spec_from_stored(&self.spec).unwrap_or_default()
    }

    /// Records a condition, keeping its transition time when its truth did not change.
    pub fn set_condition(
        &mut self,
        kind: &str,
        ok: bool,
        reason: &str,
        message: impl Into<String>,
    ) {
        let message = message.into();
        match self.conditions.iter_mut().find(|c| c.kind == kind) {
            Some(c) => {
                if c.ok != ok {
                    c.since = now_unix();
                }
                c.ok = ok;
                c.reason = reason.to_owned();
                c.message = message;
            }
            None => self.conditions.push(Condition {
                kind: kind.to_owned(),
                ok,
                reason: reason.to_owned(),
                message,
                since: now_unix(),
            }),
        }
    }

    pub fn condition(&self, kind: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }

    pub fn to_proto(&self) -> v1::TenantCluster {
        v1::TenantCluster {
            name: self.name.clone(),
            uid: self.uid.clone(),
            spec: Some(self.spec()),
            status: Some(v1::TenantClusterStatus {
                phase: match self.phase {
                    Phase::Provisioning => v1::TenantClusterPhase::Provisioning,
                    Phase::Ready => v1::TenantClusterPhase::Ready,
                    Phase::Upgrading => v1::TenantClusterPhase::Upgrading,
                    Phase::Deleting => v1::TenantClusterPhase::Deleting,
                    Phase::Degraded => v1::TenantClusterPhase::Degraded,
                    Phase::Failed => v1::TenantClusterPhase::Failed,
                } as i32,
                conditions: self
                    .conditions
                    .iter()
                    .map(|c| v1::Condition {
                        r#type: c.kind.clone(),
                        status: if c.ok {
                            v1::ConditionStatus::True
                        } else {
                            v1::ConditionStatus::False
                        } as i32,
                        reason: c.reason.clone(),
                        message: c.message.clone(),
                        last_transition_time: timestamp(c.since),
                    })
                    .collect(),
                endpoint: self.endpoint.clone().unwrap_or_default(),
                cluster_ca_certificate: self
                    .pki
                    .as_ref()
                    .map(|p| p.ca_certificate.clone())
                    .unwrap_or_default(),
                current_version: self.current_version.clone().unwrap_or_default(),
                datastore: self.datastore.clone().unwrap_or_default(),
                observed_generation: self.observed_generation,
                ca_cert_hash: self
                    .pki
                    .as_ref()
                    .and_then(|p| kamaji_proto::validate::ca_cert_hash(&p.ca_certificate))
                    .unwrap_or_default(),
            }),
            generation: self.generation,
            create_time: timestamp(self.create_time),
            delete_time: timestamp(self.delete_time),
        }
    }
}

/// Proto messages are not serde types; records keep the spec as base64 protobuf, which is
/// lossless and reads back across schema additions.
pub fn spec_to_stored(spec: &v1::TenantClusterSpec) -> String {
    B64.encode(spec.encode_to_vec())
}

pub fn spec_from_stored(s: &str) -> Option<v1::TenantClusterSpec> {
    let bytes = B64.decode(s).ok()?;
    v1::TenantClusterSpec::decode(bytes.as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_survives_the_record_round_trip() {
        let spec = v1::TenantClusterSpec {
            kubernetes_version: "1.35.1".into(),
            replicas: 3,
            datastore_selector: [("tier".into(), "gold".into())].into(),
            network: Some(v1::Network {
                service_cidr: "10.96.0.0/12".into(),
                pod_cidr: "10.244.0.0/16".into(),
                dns_service_ip: "10.96.0.10".into(),
                port: 6443,
                service_type: 3,
                endpoint_address: "203.0.113.7".into(),
                extra_sans: vec!["api.example".into()],
            }),
            resources: Some(v1::ComponentResources {
                apiserver: Some(v1::ResourceRequirements {
                    cpu_request: "1".into(),
                    ..Default::default()
                }),
                controller_manager: Some(Default::default()),
                scheduler: Some(Default::default()),
            }),
            admission_plugins: vec!["NodeRestriction".into()],
            extra_args: Some(v1::ExtraArgs {
                apiserver: [("v".into(), "2".into())].into(),
                ..Default::default()
            }),
            labels: [("team".into(), "a".into())].into(),
            deletion_protection: true,
            ..Default::default()
        };
        assert_eq!(spec_from_stored(&spec_to_stored(&spec)), Some(spec));
    }

    #[test]
    fn conditions_keep_their_transition_time_until_their_truth_changes() {
        let mut r = TenantRecord::new("a", "a-1", &Default::default());
        r.set_condition("Ready", false, "Waiting", "x");
        let since = r.condition("Ready").unwrap().since;
        r.set_condition("Ready", false, "Waiting", "y");
        assert_eq!(r.condition("Ready").unwrap().since, since);
        assert_eq!(r.condition("Ready").unwrap().message, "y");
        r.set_condition("Ready", true, "Ready", "");
        assert!(r.condition("Ready").unwrap().ok);
        assert_eq!(r.conditions.len(), 1);
    }
}
