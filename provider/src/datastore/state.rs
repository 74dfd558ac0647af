//! The Terraform shape of a datastore, its checks at plan, and its translation to and from the
//! API (keys kept write-only: only their fingerprints come back).

use std::collections::{BTreeMap, HashMap};

use kamaji_proto::errors::FieldError;
use kamaji_proto::v1;
use kamaji_proto::validate::{self, pem_fingerprint};
use serde::{Deserialize, Serialize};
use tf_provider::value::Value;
use tf_provider::{AttributePath, Diagnostics};

use crate::client::report;
use crate::number::Number;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatastoreState {
    pub id: Value<String>,
    pub name: Value<String>,
    pub endpoints: Value<Vec<Value<String>>>,
    pub ca_certificate: Value<String>,
    pub client_certificate: Value<String>,
    pub client_key: Value<String>,
    pub client_ca_certificate: Value<String>,
    pub client_ca_key: Value<String>,
    pub quota_bytes: Value<Number>,
    pub max_tenants: Value<Number>,
    pub labels: Value<BTreeMap<String, Value<String>>>,
    pub schedulable: Value<bool>,
    pub drain: Value<bool>,
    pub status: Value<String>,
    pub status_message: Value<String>,
    pub etcd_version: Value<String>,
    pub db_size_bytes: Value<i64>,
    pub db_size_in_use_bytes: Value<i64>,
    pub compacted_revision: Value<i64>,
    pub last_compaction_time: Value<String>,
    pub last_defragmentation_time: Value<String>,
    pub alarms: Value<Vec<Value<String>>>,
    pub tenant_count: Value<i64>,
    pub storage_used_bytes: Value<i64>,
    pub storage_keys: Value<i64>,
    pub members: Value<Vec<Value<String>>>,
}

/// Fingerprints of the keys kamajid holds, to tell whether the keys in state are still those.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyFingerprints {
    #[serde(default)]
    pub client_key_sha256: String,
    #[serde(default)]
    pub client_ca_key_sha256: String,
}

impl DatastoreState {
    /// The name and labels a plan gives this datastore, when both are known.
    pub(super) fn planned_identity(&self) -> Option<(String, BTreeMap<String, String>)> {
        let name = self.name.as_ref_option()?.clone();
        let labels = match &self.labels {
            Value::Null => BTreeMap::new(),
            Value::Value(m) => m
                .iter()
                .map(|(k, v)| v.as_ref_option().map(|v| (k.clone(), v.clone())))
                .collect::<Option<_>>()?,
            Value::Unknown => return None,
        };
        Some((name, labels))
    }
}

pub fn phase_name(p: i32) -> &'static str {
    match v1::DatastorePhase::try_from(p).unwrap_or_default() {
        v1::DatastorePhase::Ready => "Ready",
        v1::DatastorePhase::Unreachable => "Unreachable",
        v1::DatastorePhase::Insecure => "Insecure",
        v1::DatastorePhase::Alarm => "Alarm",
        v1::DatastorePhase::Unspecified => "Unknown",
    }
}

fn known_strings(v: &Value<Vec<Value<String>>>) -> Option<Vec<String>> {
    let list = v.as_ref_option()?;
    list.iter().map(|e| e.as_ref_option().cloned()).collect()
}

fn known_map(v: &Value<BTreeMap<String, Value<String>>>) -> Option<HashMap<String, String>> {
    let m = v.as_ref_option()?;
    m.iter()
        .map(|(k, e)| e.as_ref_option().map(|e| (k.clone(), e.clone())))
        .collect()
}

/// RFC 3339 of a timestamp; empty when there is none.
fn rfc3339(ts: Option<&prost_types::Timestamp>) -> String {
    ts.map(|t| crate::tenant_cluster::rfc3339(t.seconds))
        .unwrap_or_default()
}

fn strings(v: &[String]) -> Value<Vec<Value<String>>> {
    Value::Value(v.iter().cloned().map(Value::Value).collect())
}

fn err(diags: &mut Diagnostics, e: kamaji_proto::errors::FieldError) {
    diags.error(
        format!("Invalid {}", e.field),
        e.message,
        AttributePath::new(e.field),
    );
}

impl DatastoreState {
    /// Checks every known input; unknown values (from other resources) are checked at apply by
    /// kamajid.
    pub fn check(&self, diags: &mut Diagnostics) {
        if let Value::Value(n) = &self.name {
            if let Err(e) = validate::dns_label("name", n) {
                err(diags, e);
            }
        }
        if let Some(eps) = known_strings(&self.endpoints) {
            if let Err(e) = validate::endpoints("endpoints", &eps) {
                err(diags, e);
            }
        }
        if let Value::Value(ca) = &self.ca_certificate {
            if let Err(e) = validate::certificates("ca_certificate", ca) {
                err(diags, e);
            }
        }
        if let Value::Value(ca) = &self.client_ca_certificate {
            if let Err(e) = validate::ca_certificate("client_ca_certificate", ca) {
                err(diags, e);
            }
        }
        for (cert_field, cert, key_field, key) in [
            (
                "client_certificate",
                &self.client_certificate,
                "client_key",
                &self.client_key,
            ),
            (
                "client_ca_certificate",
                &self.client_ca_certificate,
                "client_ca_key",
                &self.client_ca_key,
            ),
        ] {
            match (cert, key) {
                (Value::Value(c), Value::Value(k)) => {
                    if let Err(e) = validate::key_pair(cert_field, c, key_field, k) {
                        if !diags
                            .errors
                            .iter()
                            .any(|d| d.attribute == AttributePath::new(e.field.clone()))
                        {
                            err(diags, e);
                        }
                    }
                }
                (_, Value::Value(k)) => {
                    if let Err(e) = validate::private_key(key_field, k) {
                        err(diags, e);
                    }
                }
                _ => {}
            }
        }
        let whole = |field: &str, v: &Value<Number>| -> Option<Result<i64, FieldError>> {
            v.as_ref_option()
                .map(|n| n.whole().map_err(|why| FieldError::new(field, why)))
        };
        match whole("quota_bytes", &self.quota_bytes).map(|q| {
            q.and_then(|q| validate::quota_bytes("quota_bytes", q).map(|()| q))
        }) {
            Some(Err(e)) => err(diags, e),
            Some(Ok(q)) if q > kamaji_proto::RECOMMENDED_MAX_QUOTA_BYTES => diags.warning(
                "quota_bytes above etcd's recommended maximum",
                format!("{q} bytes is more than the 8 GiB etcd recommends; large databases slow down compaction and defragmentation."),
                AttributePath::new("quota_bytes"),
            ),
            _ => {}
        }
        if let Some(m) = whole("max_tenants", &self.max_tenants) {
            if let Err(e) = m.and_then(|m| validate::max_tenants("max_tenants", m)) {
                err(diags, e);
            }
        }
        if let Some(labels) = known_map(&self.labels) {
            if let Err(e) = validate::labels(
                "labels",
                labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            ) {
                err(diags, e);
            }
        }
    }

    pub(super) fn spec(&self) -> v1::DatastoreSpec {
        let s = |v: &Value<String>| v.as_ref_option().cloned().unwrap_or_default();
        v1::DatastoreSpec {
            endpoints: known_strings(&self.endpoints).unwrap_or_default(),
            ca_certificate: s(&self.ca_certificate),
            client_certificate: s(&self.client_certificate),
            client_key: s(&self.client_key),
            client_ca_certificate: s(&self.client_ca_certificate),
            client_ca_key: s(&self.client_ca_key),
            // Checked at plan; an unusable number reaches kamajid as one it refuses too.
            quota_bytes: self
                .quota_bytes
                .as_ref_option()
                .map_or(kamaji_proto::DEFAULT_QUOTA_BYTES, |n| {
                    n.whole().unwrap_or(0)
                }),
            max_tenants: self.max_tenants.as_ref_option().map(|m| {
                m.whole()
                    .ok()
                    .and_then(|m| u32::try_from(m).ok())
                    .unwrap_or(0)
            }),
            labels: known_map(&self.labels).unwrap_or_default(),
            schedulable: self.schedulable.as_ref_option().copied().unwrap_or(true),
            drain: self.drain.as_ref_option().copied().unwrap_or(false),
        }
    }

    /// Fills in defaults for unset optional attributes, as the plan must show them.
    pub(super) fn with_defaults(mut self) -> Self {
        if self.quota_bytes.is_null() {
            self.quota_bytes = Value::Value(kamaji_proto::DEFAULT_QUOTA_BYTES.into());
        }
        if self.schedulable.is_null() {
            self.schedulable = Value::Value(true);
        }
        if self.drain.is_null() {
            self.drain = Value::Value(false);
        }
        self
    }

    pub(super) fn unknown_computed(mut self) -> Self {
        self.status = Value::Unknown;
        self.status_message = Value::Unknown;
        self.etcd_version = Value::Unknown;
        self.db_size_bytes = Value::Unknown;
        self.db_size_in_use_bytes = Value::Unknown;
        self.compacted_revision = Value::Unknown;
        self.last_compaction_time = Value::Unknown;
        self.last_defragmentation_time = Value::Unknown;
        self.alarms = Value::Unknown;
        self.tenant_count = Value::Unknown;
        self.storage_used_bytes = Value::Unknown;
        self.storage_keys = Value::Unknown;
        self.members = Value::Unknown;
        self
    }

    /// The state for `ds` as kamajid reports it. Keys come from `keys_from` while their
    /// fingerprints still match what kamajid holds; otherwise they are null.
    pub fn from_proto(ds: &v1::Datastore, keys_from: &DatastoreState) -> Self {
        let spec = ds.spec.clone().unwrap_or_default();
        let status = ds.status.clone().unwrap_or_default();
        let keep = |v: &Value<String>, sha: &str| match v {
            Value::Value(k) if pem_fingerprint(k) == sha => Value::Value(k.clone()),
            _ => Value::Null,
        };
        Self {
            id: Value::Value(ds.name.clone()),
            name: Value::Value(ds.name.clone()),
            endpoints: strings(&spec.endpoints),
            ca_certificate: Value::Value(spec.ca_certificate),
            client_certificate: Value::Value(spec.client_certificate),
            client_key: keep(&keys_from.client_key, &ds.client_key_sha256),
            client_ca_certificate: Value::Value(spec.client_ca_certificate),
            client_ca_key: keep(&keys_from.client_ca_key, &ds.client_ca_key_sha256),
            quota_bytes: Value::Value(spec.quota_bytes.into()),
            max_tenants: spec.max_tenants.map(Number::from).into(),
            labels: if spec.labels.is_empty() && keys_from.labels.is_null() {
                Value::Null
            } else {
                Value::Value(
                    spec.labels
                        .into_iter()
                        .map(|(k, v)| (k, Value::Value(v)))
                        .collect(),
                )
            },
            schedulable: Value::Value(spec.schedulable),
            drain: Value::Value(spec.drain),
            status: Value::Value(phase_name(status.phase).to_owned()),
            status_message: Value::Value(status.message),
            etcd_version: Value::Value(status.etcd_version),
            db_size_bytes: Value::Value(status.db_size_bytes),
            db_size_in_use_bytes: Value::Value(status.db_size_in_use_bytes),
            compacted_revision: Value::Value(status.compacted_revision),
            last_compaction_time: Value::Value(rfc3339(status.last_compaction_time.as_ref())),
            last_defragmentation_time: Value::Value(rfc3339(
                status.last_defragmentation_time.as_ref(),
            )),
            alarms: strings(&status.alarms),
            tenant_count: Value::Value(i64::from(status.tenant_count)),
            storage_used_bytes: status.storage_used_bytes.into(),
            storage_keys: status.storage_keys.into(),
            members: Value::Value(
                status
                    .members
                    .into_iter()
                    .map(|m| Value::Value(m.name))
                    .collect(),
            ),
        }
    }
}

/// The state after a create or update: kamajid's answer, keeping the keys just sent.
pub(super) fn written(
    diags: &mut Diagnostics,
    client: &crate::client::Client,
    what: &str,
    result: Result<tonic::Response<v1::Datastore>, tonic::Status>,
    planned: &DatastoreState,
) -> Option<(DatastoreState, KeyFingerprints)> {
    match result {
        Ok(r) => {
            let ds = r.into_inner();
            Some((DatastoreState::from_proto(&ds, planned), fingerprints(&ds)))
        }
        Err(s) => {
            report(diags, what, &client.endpoint, &s);
            None
        }
    }
}

pub(super) fn fingerprints(ds: &v1::Datastore) -> KeyFingerprints {
    KeyFingerprints {
        client_key_sha256: ds.client_key_sha256.clone(),
        client_ca_key_sha256: ds.client_ca_key_sha256.clone(),
    }
}

/// Whether a key attribute really changes: after import the prior key is null, and the
/// configured key is the same one kamajid holds when the fingerprints agree.
pub(super) fn key_changes(
    prior: &Value<String>,
    proposed: &Value<String>,
    stored_sha: &str,
) -> bool {
    match (prior, proposed) {
        (Value::Null, Value::Value(k)) => pem_fingerprint(k) != stored_sha,
        (a, b) => a != b,
    }
}
