//! An etcd datastore as kamajid records it: where it is, the credentials kamajid administers
//! it with (keys sealed with the KEK), the client CA that signs tenants' etcd certificates, its
//! capacity and labels; and its last probed health.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::DatastoreName;
use crate::kek::{datastore_aad, Kek, KekError};
use crate::pki::Pem;

/// A datastore as stored. Private keys are sealed, bound to the datastore's name.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DatastoreRecord {
    pub name: DatastoreName,
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
    /// Its tenants are moved off; no new one is placed here.
    #[serde(default)]
    pub drain: bool,
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

impl DatastoreRecord {
    pub fn admin_credentials(&self, kek: &Kek) -> Result<AdminCredentials, KekError> {
        Ok(AdminCredentials {
            endpoints: self.endpoints.clone(),
            ca_certificate: self.ca_certificate.clone(),
            client_certificate: self.client_certificate.clone(),
            client_key: kek.open(&datastore_aad(&self.name), &self.client_key_sealed)?,
        })
    }

    /// The CA (with its key) that signs tenants' etcd client certificates.
    pub fn client_ca(&self, kek: &Kek) -> Result<Pem, KekError> {
        Ok(Pem {
            cert: self.client_ca_certificate.clone(),
            key: kek.open(&datastore_aad(&self.name), &self.client_ca_key_sealed)?,
        })
    }
}

/// The last known health of a datastore. Fields added after the first release read back as
/// their defaults from older records (0: not known).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct DatastoreStatusRecord {
    pub phase: Phase,
    pub message: String,
    pub etcd_version: String,
    /// The largest member's file, free pages included: what etcd's quota is checked against.
    pub db_size_bytes: i64,
    pub members: Vec<Member>,
    pub probe_time: i64,
    /// What the data takes in the largest member's file (free pages excluded).
    #[serde(default)]
    pub db_size_in_use_bytes: i64,
    /// etcd's own `--quota-backend-bytes`, as etcd 3.6 reports it (0: not reported).
    #[serde(default)]
    pub etcd_quota_bytes: i64,
    /// The revision when probed.
    #[serde(default)]
    pub revision: i64,
    /// Alarms raised on its members (`NOSPACE`, `CORRUPT`), as `NOSPACE on member <id>`.
    #[serde(default)]
    pub alarms: Vec<String>,
    /// Compaction and defragmentation by kamajid.
    #[serde(default)]
    pub upkeep: crate::shard::Upkeep,
}

impl DatastoreStatusRecord {
    /// Whether etcd refuses writes: an alarm is raised.
    pub fn alarmed(&self) -> bool {
        !self.alarms.is_empty()
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Unknown,
    Ready,
    Unreachable,
    Insecure,
    /// An etcd alarm is raised (`NOSPACE`, `CORRUPT`): the shard refuses writes and takes no
    /// tenant. kamajid recovers `NOSPACE` by itself when compaction and defragmentation free
    /// enough room.
    Alarm,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Member {
    pub name: String,
    pub id: u64,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

/// What is reserved on one datastore: kept in step with its placements, in the same
/// transactions, so placement decisions read one record instead of scanning.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub tenants: u32,
    pub reserved_bytes: i64,
}
