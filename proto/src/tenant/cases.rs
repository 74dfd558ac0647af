//! The shared verdict table: specs to create and changes to make, each with the fields refused.
//! The provider (its plan, from Terraform values) and kamajid (its API handlers) each run every
//! case and must reach this verdict, so the two cannot drift apart. Built only for their tests
//! (feature `cases`).

use crate::v1;

/// One case: a spec to create (`old` none) or a change from `old` to `new`, and the fields
/// refused (sorted; a field fixed at creation counts as refused although Terraform plans a
/// replacement for it rather than an error).
pub struct Case {
    pub name: &'static str,
    pub old: Option<v1::TenantClusterSpec>,
    pub new: v1::TenantClusterSpec,
    pub refused: &'static [&'static str],
}

/// A valid spec with every setting a user commonly writes.
pub fn base() -> v1::TenantClusterSpec {
    v1::TenantClusterSpec {
        kubernetes_version: "1.35.4".into(),
        replicas: 2,
        network: Some(v1::Network {
            service_cidr: "10.96.0.0/12".into(),
            pod_cidr: "10.244.0.0/16".into(),
            dns_service_ip: "10.96.0.10".into(),
            port: 6443,
            service_type: v1::ServiceType::LoadBalancer as i32,
            extra_sans: vec!["api.acme.example".into()],
            ..Default::default()
        }),
        encryption: Some(v1::Encryption {
            resources: vec!["configmaps".into()],
            key_rotation: 2,
        }),
        ..Default::default()
    }
}

/// A valid spec with every field set: what round trips and conversions are tested with.
pub fn full() -> v1::TenantClusterSpec {
    v1::TenantClusterSpec {
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
            authorized_networks: vec!["203.0.113.0/24".into()],
            konnectivity: true,
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
        encryption: Some(v1::Encryption {
            resources: vec!["configmaps".into()],
            key_rotation: 2,
        }),
        authentication: Some(v1::Authentication {
            oidc: vec![v1::OidcIssuer {
                issuer_url: "https://idp.example".into(),
                client_id: "kamaji".into(),
                groups_claim: "groups".into(),
                ..Default::default()
            }],
        }),
        audit: Some(v1::Audit {
            preset: "request_response".into(),
            max_age_days: 7,
            ..Default::default()
        }),
        release_channel: "stable".into(),
        maintenance_window: Some(window("02:00", 4, &["saturday", "sunday"])),
        maintenance_exclusions: vec![exclusion(
            "2026-11-27T00:00:00Z",
            "2026-12-01T00:00:00Z",
            "no_minor_upgrades",
        )],
        ..Default::default()
    }
}

fn window(start: &str, duration_hours: u32, days: &[&str]) -> v1::MaintenanceWindow {
    v1::MaintenanceWindow {
        start: start.into(),
        duration_hours,
        days: days.iter().map(|d| (*d).to_owned()).collect(),
    }
}

fn exclusion(start: &str, end: &str, scope: &str) -> v1::MaintenanceExclusion {
    v1::MaintenanceExclusion {
        name: "freeze".into(),
        start: start.into(),
        end: end.into(),
        scope: scope.into(),
    }
}

fn with(f: impl FnOnce(&mut v1::TenantClusterSpec)) -> v1::TenantClusterSpec {
    let mut s = base();
    f(&mut s);
    s
}

fn net(f: impl FnOnce(&mut v1::Network)) -> v1::TenantClusterSpec {
    with(|s| f(s.network.get_or_insert_with(Default::default)))
}

fn rotation(generation: u32, phase: &str) -> Option<v1::CredentialRotation> {
    Some(v1::CredentialRotation {
        generation,
        phase: phase.into(),
    })
}

fn create(
    name: &'static str,
    new: v1::TenantClusterSpec,
    refused: &'static [&'static str],
) -> Case {
    Case {
        name,
        old: None,
        new,
        refused,
    }
}

fn change(
    name: &'static str,
    old: v1::TenantClusterSpec,
    new: v1::TenantClusterSpec,
    refused: &'static [&'static str],
) -> Case {
    Case {
        name,
        old: Some(old),
        new,
        refused,
    }
}

/// Every case.
pub fn cases() -> Vec<Case> {
    vec![
        create("valid", base(), &[]),
        create(
            "release channel with a window and an exclusion",
            with(|s| {
                s.release_channel = "patch".into();
                s.maintenance_window = Some(window("23:30", 4, &["friday"]));
                s.maintenance_exclusions = vec![exclusion(
                    "2026-12-24T00:00:00Z",
                    "2027-01-02T00:00:00Z",
                    "",
                )];
            }),
            &[],
        ),
        create(
            "unknown release channel",
            with(|s| s.release_channel = "rapid".into()),
            &["release_channel"],
        ),
        create(
            "backup schedule out of bounds",
            with(|s| {
                s.backup_schedule = Some(v1::BackupSchedule {
                    interval: "30s".into(),
                    retention_count: 5000,
                    retention_max_age: "a week".into(),
                })
            }),
            &[
                "backup_schedule.interval",
                "backup_schedule.retention_count",
                "backup_schedule.retention_max_age",
            ],
        ),
        create(
            "an identity kept from no backup",
            with(|s| s.restore_keep_identity = true),
            &["restore_keep_identity"],
        ),
        create(
            "a restore from something that is not a backup id",
            with(|s| s.restore_from = "Not An Id!".into()),
            &["restore_from"],
        ),
        create(
            "window out of bounds",
            with(|s| s.maintenance_window = Some(window("24:00", 25, &["funday"]))),
            &[
                "maintenance_window.days",
                "maintenance_window.duration_hours",
                "maintenance_window.start",
            ],
        ),
        create(
            "exclusion ending before it starts, and of no scope",
            with(|s| {
                s.maintenance_exclusions = vec![
                    exclusion("2026-12-24T00:00:00Z", "2026-12-01T00:00:00Z", ""),
                    exclusion("2026-12-24T00:00:00Z", "2026-12-25T00:00:00Z", "some"),
                ]
            }),
            &[
                "maintenance_exclusion",
                "maintenance_exclusion[0].end",
                "maintenance_exclusion[1].scope",
            ],
        ),
        create(
            "unsupported minor",
            with(|s| s.kubernetes_version = "1.20.1".into()),
            &["kubernetes_version"],
        ),
        create(
            "pre-release version",
            with(|s| s.kubernetes_version = "1.35.0-rc.1".into()),
            &["kubernetes_version"],
        ),
        create(
            "too many replicas",
            with(|s| s.replicas = 10),
            &["replicas"],
        ),
        create(
            "service range with host bits",
            net(|n| n.service_cidr = "10.96.0.1/12".into()),
            &["network.service_cidr"],
        ),
        create(
            "pod range overlapping the services",
            net(|n| n.pod_cidr = "10.100.0.0/16".into()),
            &["network.pod_cidr"],
        ),
        create(
            "DNS address outside the service range",
            net(|n| n.dns_service_ip = "10.244.0.10".into()),
            &["network.dns_service_ip"],
        ),
        create(
            "DNS address the kubernetes Service takes",
            net(|n| n.dns_service_ip = "10.96.0.1".into()),
            &["network.dns_service_ip"],
        ),
        create(
            "authorized network with host bits",
            net(|n| n.authorized_networks = vec!["203.0.113.7/24".into()]),
            &["network.authorized_networks"],
        ),
        create(
            "managed flag in extra_args",
            with(|s| {
                s.extra_args = Some(v1::ExtraArgs {
                    apiserver: [("etcd-prefix".into(), "/other".into())].into(),
                    ..Default::default()
                })
            }),
            &["extra_args.apiserver"],
        ),
        create(
            "admission plugin of no Kubernetes",
            with(|s| s.admission_plugins = vec!["PodSecurityPolicy2".into()]),
            &["admission_plugins"],
        ),
        create(
            "request above its limit",
            with(|s| {
                s.resources = Some(v1::ComponentResources {
                    apiserver: Some(v1::ResourceRequirements {
                        memory_request: "2Gi".into(),
                        memory_limit: "1Gi".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
            }),
            &["resources.apiserver.memory_request"],
        ),
        create(
            "storage quota below 1 MiB",
            with(|s| s.storage_quota_bytes = 1000),
            &["storage_quota_bytes"],
        ),
        create(
            "unknown audit preset",
            with(|s| {
                s.audit = Some(v1::Audit {
                    preset: "everything".into(),
                    max_age_days: 30,
                    ..Default::default()
                })
            }),
            &["audit.preset"],
        ),
        change(
            "patch upgrade",
            base(),
            with(|s| s.kubernetes_version = "1.35.9".into()),
            &[],
        ),
        change(
            "next minor",
            base(),
            with(|s| s.kubernetes_version = "1.36.0".into()),
            &[],
        ),
        change(
            "two minors at once",
            base(),
            with(|s| s.kubernetes_version = "1.37.1".into()),
            &["kubernetes_version"],
        ),
        change(
            "downgrade",
            base(),
            with(|s| s.kubernetes_version = "1.35.1".into()),
            &["kubernetes_version"],
        ),
        change(
            "service range changed",
            base(),
            net(|n| {
                n.service_cidr = "10.112.0.0/12".into();
                n.dns_service_ip = "10.112.0.10".into();
            }),
            &["network.dns_service_ip", "network.service_cidr"],
        ),
        change(
            "pod range changed",
            base(),
            net(|n| n.pod_cidr = "10.245.0.0/16".into()),
            &["network.pod_cidr"],
        ),
        change(
            "port and replicas change in place",
            base(),
            with(|s| {
                s.replicas = 3;
                if let Some(n) = s.network.as_mut() {
                    n.port = 8443;
                }
            }),
            &[],
        ),
        change(
            "encryption key raised",
            base(),
            with(|s| {
                s.encryption = Some(v1::Encryption {
                    resources: vec!["configmaps".into()],
                    key_rotation: 3,
                })
            }),
            &[],
        ),
        change(
            "encryption key lowered",
            base(),
            with(|s| {
                s.encryption = Some(v1::Encryption {
                    resources: vec!["configmaps".into()],
                    key_rotation: 1,
                })
            }),
            &["encryption.key_rotation"],
        ),
        change(
            "credential rotation started",
            base(),
            with(|s| s.credential_rotation = rotation(1, "started")),
            &[],
        ),
        change(
            "credential rotation completed",
            with(|s| s.credential_rotation = rotation(1, "started")),
            with(|s| s.credential_rotation = rotation(1, "completed")),
            &[],
        ),
        change(
            "credential rotation skipping a generation",
            base(),
            with(|s| s.credential_rotation = rotation(2, "started")),
            &["credential_rotation.generation"],
        ),
        change(
            "credential rotation never started",
            base(),
            with(|s| s.credential_rotation = rotation(1, "completed")),
            &["credential_rotation.phase"],
        ),
        change(
            "hibernated, upgraded in place",
            base(),
            with(|s| {
                s.hibernated = true;
                s.kubernetes_version = "1.36.0".into();
            }),
            &[],
        ),
        change(
            "hibernated, key raised",
            with(|s| s.hibernated = true),
            with(|s| {
                s.hibernated = true;
                s.encryption = Some(v1::Encryption {
                    resources: vec!["configmaps".into()],
                    key_rotation: 3,
                })
            }),
            &["encryption.key_rotation"],
        ),
        change(
            "hibernating while starting a credential rotation and moving",
            base(),
            with(|s| {
                s.hibernated = true;
                s.credential_rotation = rotation(1, "started");
                s.datastore = "other".into();
            }),
            &["credential_rotation.generation", "datastore"],
        ),
        change(
            "woken with a key raised",
            with(|s| s.hibernated = true),
            with(|s| {
                s.encryption = Some(v1::Encryption {
                    resources: vec!["configmaps".into()],
                    key_rotation: 3,
                })
            }),
            &[],
        ),
        change(
            "invalid new spec",
            base(),
            with(|s| s.replicas = 12),
            &["replicas"],
        ),
    ]
}
