//! etcd datastores: what kamajid stores about each one, how it checks one, and the loop that
//! keeps their health current.
//!
//! - [`DatastoreRecord`]: the stored spec, secrets sealed by the KEK.
//! - [`probe`]: connects to a datastore with its admin credentials and checks that it is
//!   reachable, secured (auth on, client-certificate auth on) and that the credentials are root.
//! - [`health`]: the leader's loop that re-probes every datastore and records its status.

pub mod health;
pub mod isolation;
pub mod probe;

use std::collections::BTreeMap;

use kamaji_proto::v1;
use kamaji_proto::validate::pem_fingerprint;
use serde::{Deserialize, Serialize};

use crate::kek::{Kek, KekError};
use crate::store::datastore_key;

/// A datastore as stored. Private keys are sealed, bound to the record's key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatastoreRecord {
    pub name: String,
    pub endpoints: Vec<String>,
    pub ca_certificate: String,
    pub client_certificate: String,
    pub client_key_sealed: String,
    pub client_key_sha256: String,
    pub client_ca_certificate: String,
    pub client_ca_key_sealed: String,
    pub client_ca_key_sha256: String,
    pub quota_bytes: i64,
    pub max_tenants: Option<u32>,
    pub labels: BTreeMap<String, String>,
    pub schedulable: bool,
    pub create_time: i64,
    pub update_time: i64,
}

/// What it takes to connect to a datastore as its administrator. Debug never shows the key.
#[derive(Clone)]
pub struct AdminCredentials {
    pub endpoints: Vec<String>,
    pub ca_certificate: String,
    pub client_certificate: String,
    pub client_key: String,
}

impl std::fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredentials")
            .field("endpoints", &self.endpoints)
            .finish_non_exhaustive()
    }
}

impl AdminCredentials {
    pub fn from_spec(spec: &v1::DatastoreSpec) -> Self {
        Self {
            endpoints: spec.endpoints.clone(),
            ca_certificate: spec.ca_certificate.clone(),
            client_certificate: spec.client_certificate.clone(),
            client_key: spec.client_key.clone(),
        }
    }
}

pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

pub fn timestamp(unix: i64) -> Option<prost_types::Timestamp> {
    (unix > 0).then_some(prost_types::Timestamp {
        seconds: unix,
        nanos: 0,
    })
}

impl DatastoreRecord {
    /// Builds the stored form of a validated spec, sealing its keys.
    pub fn seal(name: &str, spec: &v1::DatastoreSpec, kek: &Kek, create_time: i64) -> Self {
        let aad = datastore_key(name);
        Self {
            name: name.to_owned(),
            endpoints: spec.endpoints.clone(),
            ca_certificate: spec.ca_certificate.clone(),
            client_certificate: spec.client_certificate.clone(),
            client_key_sealed: kek.seal(&aad, &spec.client_key),
            client_key_sha256: pem_fingerprint(&spec.client_key),
            client_ca_certificate: spec.client_ca_certificate.clone(),
            client_ca_key_sealed: kek.seal(&aad, &spec.client_ca_key),
            client_ca_key_sha256: pem_fingerprint(&spec.client_ca_key),
            quota_bytes: spec.quota_bytes,
            max_tenants: spec.max_tenants,
            labels: spec
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            schedulable: spec.schedulable,
            create_time,
            update_time: now_unix(),
        }
    }

    pub fn admin_credentials(&self, kek: &Kek) -> Result<AdminCredentials, KekError> {
        Ok(AdminCredentials {
            endpoints: self.endpoints.clone(),
            ca_certificate: self.ca_certificate.clone(),
            client_certificate: self.client_certificate.clone(),
            client_key: kek.open(&datastore_key(&self.name), &self.client_key_sealed)?,
        })
    }

    /// Whether connecting with `spec` would use other credentials or endpoints than stored.
    pub fn connection_differs(&self, spec: &v1::DatastoreSpec) -> bool {
        self.endpoints != spec.endpoints
            || self.ca_certificate != spec.ca_certificate
            || self.client_certificate != spec.client_certificate
            || self.client_key_sha256 != pem_fingerprint(&spec.client_key)
    }

    pub fn client_ca_differs(&self, spec: &v1::DatastoreSpec) -> bool {
        self.client_ca_certificate.trim() != spec.client_ca_certificate.trim()
            || self.client_ca_key_sha256 != pem_fingerprint(&spec.client_ca_key)
    }

    /// The API view: the spec without keys, their fingerprints instead.
    pub fn to_proto(&self, status: Option<v1::DatastoreStatus>) -> v1::Datastore {
        v1::Datastore {
            name: self.name.clone(),
            spec: Some(v1::DatastoreSpec {
                endpoints: self.endpoints.clone(),
                ca_certificate: self.ca_certificate.clone(),
                client_certificate: self.client_certificate.clone(),
                client_key: String::new(),
                client_ca_certificate: self.client_ca_certificate.clone(),
                client_ca_key: String::new(),
                quota_bytes: self.quota_bytes,
                max_tenants: self.max_tenants,
                labels: self
                    .labels
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                schedulable: self.schedulable,
            }),
            client_key_sha256: self.client_key_sha256.clone(),
            client_ca_key_sha256: self.client_ca_key_sha256.clone(),
            status,
            create_time: timestamp(self.create_time),
            update_time: timestamp(self.update_time),
        }
    }
}

/// The last known health of a datastore.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct DatastoreStatusRecord {
    pub phase: Phase,
    pub message: String,
    pub etcd_version: String,
    pub db_size_bytes: i64,
    pub members: Vec<Member>,
    pub probe_time: i64,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Unknown,
    Ready,
    Unreachable,
    Insecure,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub id: u64,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl DatastoreStatusRecord {
    pub fn to_proto(&self, tenant_count: u32) -> v1::DatastoreStatus {
        v1::DatastoreStatus {
            phase: match self.phase {
                Phase::Unknown => v1::DatastorePhase::Unspecified,
                Phase::Ready => v1::DatastorePhase::Ready,
                Phase::Unreachable => v1::DatastorePhase::Unreachable,
                Phase::Insecure => v1::DatastorePhase::Insecure,
            } as i32,
            message: self.message.clone(),
            etcd_version: self.etcd_version.clone(),
            db_size_bytes: self.db_size_bytes,
            members: self
                .members
                .iter()
                .map(|m| v1::EtcdMember {
                    name: m.name.clone(),
                    id: m.id,
                    client_urls: m.client_urls.clone(),
                    is_learner: m.is_learner,
                })
                .collect(),
            tenant_count,
            last_probe_time: timestamp(self.probe_time),
        }
    }
}
