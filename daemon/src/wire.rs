//! kamajid's records shown as v1 API messages, and the store's encoding of a spec ([`WireSpec`])
//! written and read, in one place. (A v1 spec becomes the typed one in
//! `kamaji_proto::tenant::parse`, which the provider calls too.)

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kamaji_core::datastore::{
    AdminCredentials, DatastoreRecord, DatastoreStatusRecord, Phase as DsPhase,
};
use kamaji_core::ids::{BadName, DatastoreName, TenantName};
use kamaji_core::kek::{datastore_aad, Kek};
use kamaji_core::tenant::{Phase, TenantRecord, WireSpec};
use kamaji_proto::v1;
use kamaji_proto::validate::pem_fingerprint;
use prost::Message;

/// Why a wire value cannot be what the core needs. The input contract refuses all of these
/// first, with messages for users; reaching one means a message skipped the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {detail}")]
pub struct WireError {
    pub field: &'static str,
    pub detail: String,
}

fn bad(field: &'static str) -> impl Fn(BadName) -> WireError {
    move |e| WireError {
        field,
        detail: e.to_string(),
    }
}

pub fn tenant_name(name: &str) -> Result<TenantName, WireError> {
    TenantName::parse(name).map_err(bad("name"))
}

pub fn datastore_name(name: &str) -> Result<DatastoreName, WireError> {
    DatastoreName::parse(name).map_err(bad("name"))
}

/// The store's encoding of a wire spec: base64 protobuf, lossless across schema additions.
pub fn encode_spec(spec: &v1::TenantClusterSpec) -> WireSpec {
    WireSpec(B64.encode(spec.encode_to_vec()))
}

pub fn decode_spec(s: &WireSpec) -> Result<v1::TenantClusterSpec, String> {
    let bytes = B64.decode(&s.0).map_err(|e| e.to_string())?;
    v1::TenantClusterSpec::decode(bytes.as_slice()).map_err(|e| e.to_string())
}

pub fn timestamp(unix: i64) -> Option<prost_types::Timestamp> {
    (unix > 0).then_some(prost_types::Timestamp {
        seconds: unix,
        nanos: 0,
    })
}

/// A tenant record as the API shows it, with its (decoded) wire spec. What it keeps is
/// measured, not recorded: the caller adds it.
pub fn tenant_to_proto(rec: &TenantRecord, spec: v1::TenantClusterSpec) -> v1::TenantCluster {
    // The limits in effect, as the lifecycle enforces them (the reservation and its default
    // budget where the spec sets none).
    let limits = kamaji_proto::tenant::from_stored(&spec).map_or_else(
        |_| kamaji_core::limits::Limits::new(rec.reservation_bytes, rec.reservation_bytes, None),
        |typed| rec.limits(&typed),
    );
    let (storage_quota_bytes, write_budget_bytes_per_second) =
        (limits.quota_bytes, limits.write_bytes_per_second);
    v1::TenantCluster {
        name: rec.name.to_string(),
        uid: rec.uid.to_string(),
        spec: Some(spec),
        status: Some(v1::TenantClusterStatus {
            phase: match rec.phase {
                Phase::Provisioning => v1::TenantClusterPhase::Provisioning,
                Phase::Ready => v1::TenantClusterPhase::Ready,
                Phase::Upgrading => v1::TenantClusterPhase::Upgrading,
                Phase::Deleting => v1::TenantClusterPhase::Deleting,
                Phase::Degraded => v1::TenantClusterPhase::Degraded,
                Phase::Failed => v1::TenantClusterPhase::Failed,
                Phase::Moving => v1::TenantClusterPhase::Moving,
                Phase::Hibernated => v1::TenantClusterPhase::Hibernated,
                Phase::Restoring => v1::TenantClusterPhase::Restoring,
            } as i32,
            conditions: rec
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
            endpoint: rec.endpoint.clone().unwrap_or_default(),
            cluster_ca_certificate: rec
                .pki
                .as_ref()
                .map(|p| p.ca_certificate.clone())
                .unwrap_or_default(),
            current_version: rec.current_version.clone().unwrap_or_default(),
            datastore: rec
                .datastore
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default(),
            observed_generation: rec.observed_generation,
            ca_cert_hash: rec
                .pki
                .as_ref()
                .and_then(|p| kamaji_proto::validate::ca_cert_hash(&p.ca_certificate))
                .unwrap_or_default(),
            certificates_expire_at: rec
                .pki
                .as_ref()
                .and_then(|p| timestamp(p.certificates_expire_at)),
            encryption_key_rotation: rec.encrypted.as_ref().map_or(0, |e| e.rotation),
            storage_used_bytes: None,
            storage_keys: None,
            storage_quota_bytes,
            write_budget_bytes_per_second,
            storage_write_bytes_per_second: None,
            storage_history_bytes: None,
            service_account_issuer: rec.service_account_issuer.clone().unwrap_or_default(),
            last_upgrade: rec.last_upgrade.as_ref().map(|u| v1::UpgradeRecord {
                from_version: u.from.clone(),
                to_version: u.to.clone(),
                automatic: u.automatic,
                started_at: timestamp(u.started_at),
                finished_at: (u.finished_at > 0)
                    .then(|| timestamp(u.finished_at))
                    .flatten(),
            }),
            // What the release channel has in store depends on the clock and on the versions
            // kamajid serves: the service fills it in.
            next_upgrade: None,
            // Filled in by the service, from the record and the schedule.
            last_backup_time: None,
            last_backup_id: String::new(),
            last_backup_error: String::new(),
            next_backup_time: None,
            last_restore: rec.last_restore.as_ref().map(|r| v1::LastRestore {
                backup_id: r.backup.clone(),
                requested_time: timestamp(r.requested_at),
                released_time: timestamp(r.released_at),
                write_hold_seconds: r.held_seconds,
                keys: r.keys,
            }),
            restoring_backup_id: rec
                .restoring
                .as_ref()
                .map(|r| r.backup.clone())
                .unwrap_or_default(),
        }),
        generation: rec.generation,
        create_time: timestamp(rec.create_time),
        delete_time: timestamp(rec.delete_time),
    }
}

pub fn admin_credentials(spec: &v1::DatastoreSpec) -> AdminCredentials {
    AdminCredentials {
        endpoints: spec.endpoints.clone(),
        ca_certificate: spec.ca_certificate.clone(),
        client_certificate: spec.client_certificate.clone(),
        client_key: spec.client_key.clone(),
    }
}

/// The stored form of a validated datastore spec, its keys sealed.
pub fn seal_datastore(
    name: &DatastoreName,
    spec: &v1::DatastoreSpec,
    kek: &Kek,
    create_time: i64,
    now: i64,
) -> DatastoreRecord {
    let aad = datastore_aad(name);
    DatastoreRecord {
        name: name.clone(),
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
        drain: spec.drain,
        create_time,
        update_time: now,
    }
}

/// Whether connecting with `spec` would use other credentials or endpoints than stored.
pub fn connection_differs(rec: &DatastoreRecord, spec: &v1::DatastoreSpec) -> bool {
    rec.endpoints != spec.endpoints
        || rec.ca_certificate != spec.ca_certificate
        || rec.client_certificate != spec.client_certificate
        || rec.client_key_sha256 != pem_fingerprint(&spec.client_key)
}

pub fn client_ca_differs(rec: &DatastoreRecord, spec: &v1::DatastoreSpec) -> bool {
    rec.client_ca_certificate.trim() != spec.client_ca_certificate.trim()
        || rec.client_ca_key_sha256 != pem_fingerprint(&spec.client_ca_key)
}

/// The API view of a datastore: the spec without keys, their fingerprints instead.
pub fn datastore_to_proto(
    rec: &DatastoreRecord,
    status: Option<v1::DatastoreStatus>,
) -> v1::Datastore {
    v1::Datastore {
        name: rec.name.to_string(),
        spec: Some(v1::DatastoreSpec {
            endpoints: rec.endpoints.clone(),
            ca_certificate: rec.ca_certificate.clone(),
            client_certificate: rec.client_certificate.clone(),
            client_key: String::new(),
            client_ca_certificate: rec.client_ca_certificate.clone(),
            client_ca_key: String::new(),
            quota_bytes: rec.quota_bytes,
            max_tenants: rec.max_tenants,
            labels: rec
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            schedulable: rec.schedulable,
            drain: rec.drain,
        }),
        client_key_sha256: rec.client_key_sha256.clone(),
        client_ca_key_sha256: rec.client_ca_key_sha256.clone(),
        status,
        create_time: timestamp(rec.create_time),
        update_time: timestamp(rec.update_time),
    }
}

pub fn status_to_proto(s: &DatastoreStatusRecord, tenant_count: u32) -> v1::DatastoreStatus {
    v1::DatastoreStatus {
        phase: match s.phase {
            DsPhase::Unknown => v1::DatastorePhase::Unspecified,
            DsPhase::Ready => v1::DatastorePhase::Ready,
            DsPhase::Unreachable => v1::DatastorePhase::Unreachable,
            DsPhase::Insecure => v1::DatastorePhase::Insecure,
            DsPhase::Alarm => v1::DatastorePhase::Alarm,
        } as i32,
        message: s.message.clone(),
        etcd_version: s.etcd_version.clone(),
        db_size_bytes: s.db_size_bytes,
        members: s
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
        last_probe_time: timestamp(s.probe_time),
        storage_used_bytes: None,
        storage_keys: None,
        db_size_in_use_bytes: s.db_size_in_use_bytes,
        etcd_quota_bytes: s.etcd_quota_bytes,
        compacted_revision: s.upkeep.compacted_revision,
        last_compaction_time: timestamp(s.upkeep.compacted_time),
        last_defragmentation_time: timestamp(s.upkeep.defragmented_time),
        alarms: s.alarms.clone(),
        last_upkeep_event: s.upkeep.last_event.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_survives_the_record_round_trip() {
        let spec = kamaji_proto::tenant::cases::full();
        assert_eq!(decode_spec(&encode_spec(&spec)), Ok(spec));
        assert!(decode_spec(&WireSpec("not base64!".into())).is_err());
    }
}
