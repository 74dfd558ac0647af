//! The API's tenant cluster read back into Terraform values, shaped like the prior state so that
//! an unchanged cluster plans no change.

use std::collections::HashMap;

use kamaji_proto::tenant as contract;
use kamaji_proto::v1;
use tf_provider::value::Value;

use super::report::{phase_name, status_message};
use super::state::*;
use crate::number::Number;

impl TenantClusterState {
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
                konnectivity: Value::Value(net.konnectivity),
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
            hibernated: Value::Value(spec.hibernated),
            public_issuer: Value::Value(spec.public_issuer),
            restore_keep_identity: Value::Value(spec.restore_keep_identity),
            restore_from: if spec.restore_from.is_empty() {
                Value::Null
            } else {
                Value::Value(spec.restore_from.clone())
            },
            release_channel: Value::Value(if spec.release_channel.is_empty() {
                "none".to_owned()
            } else {
                spec.release_channel.clone()
            }),
            backup_schedule: match &spec.backup_schedule {
                Some(b) => Value::Value(BackupScheduleBlock {
                    interval: Value::Value(b.interval.clone()),
                    retention_count: Value::Value(
                        if b.retention_count == 0 {
                            kamaji_model::backup::DEFAULT_RETENTION_COUNT
                        } else {
                            b.retention_count
                        }
                        .into(),
                    ),
                    retention_max_age: text(&b.retention_max_age),
                }),
                None => Value::Null,
            },
            maintenance_window: match &spec.maintenance_window {
                Some(w) => Value::Value(MaintenanceWindow {
                    start: Value::Value(w.start.clone()),
                    duration_hours: Value::Value(w.duration_hours.into()),
                    days: list_like(
                        &w.days,
                        &prior
                            .maintenance_window
                            .as_ref_option()
                            .map_or(Value::Null, |p| p.days.clone()),
                    ),
                }),
                None => Value::Null,
            },
            maintenance_exclusion: Value::Value(
                spec.maintenance_exclusions
                    .iter()
                    .map(|x| {
                        Value::Value(MaintenanceExclusion {
                            name: Value::Value(x.name.clone()),
                            start: Value::Value(x.start.clone()),
                            end: Value::Value(x.end.clone()),
                            scope: Value::Value(if x.scope.is_empty() {
                                "no_upgrades".to_owned()
                            } else {
                                x.scope.clone()
                            }),
                        })
                    })
                    .collect(),
            ),
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
            service_account_issuer: text(&st.service_account_issuer),
            last_upgrade: match &st.last_upgrade {
                Some(u) => Value::Value(LastUpgrade {
                    from_version: Value::Value(u.from_version.clone()),
                    to_version: Value::Value(u.to_version.clone()),
                    automatic: Value::Value(u.automatic),
                    started_at: u.started_at.as_ref().map(|t| rfc3339(t.seconds)).into(),
                    finished_at: u.finished_at.as_ref().map(|t| rfc3339(t.seconds)).into(),
                }),
                None => Value::Null,
            },
            next_upgrade: match &st.next_upgrade {
                Some(n) => Value::Value(NextUpgrade {
                    to_version: Value::Value(n.to_version.clone()),
                    not_before: n.not_before.as_ref().map(|t| rfc3339(t.seconds)).into(),
                    waiting_for: text(&n.waiting_for),
                }),
                None => Value::Null,
            },
            last_backup_at: st
                .last_backup_time
                .as_ref()
                .map(|t| rfc3339(t.seconds))
                .into(),
            last_backup_id: Value::Value(st.last_backup_id.clone()),
            last_backup_error: Value::Value(st.last_backup_error.clone()),
            next_backup_at: st
                .next_backup_time
                .as_ref()
                .map(|t| rfc3339(t.seconds))
                .into(),
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
    pub(super) fn groups(mut self) -> Self {
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
