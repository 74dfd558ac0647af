//! The input contract of tenant clusters: versions and how they may move, network settings,
//! resources, flags. Pure, shared by the provider (at plan) and kamajid (on every write).

use std::net::IpAddr;

use crate::errors::FieldError;
use crate::v1::{
    Audit, Authentication, CredentialRotation, Encryption, Network, ResourceRequirements,
    ServiceType, TenantClusterSpec,
};
use crate::validate::labels;
use kamaji_model::ids::dns_label;

pub use kamaji_model::audit::{audit_policy, AUDIT_PRESETS};
pub use kamaji_model::bounds::*;
pub use kamaji_model::change::{
    credential_rotation_change, key_rotation_change, upgrade, ROTATION_PHASES,
};
pub use kamaji_model::flags::*;
pub use kamaji_model::ids::host;
use kamaji_model::maintenance::{Maintenance, ReleaseChannel};
pub use kamaji_model::net::{authorized_network, cidr};
pub use kamaji_model::quantity::{quantity, quantity_value};
pub use kamaji_model::spec::defaults;
pub use kamaji_model::version::{version, Version, SUPPORTED_MINORS};

#[cfg(any(test, feature = "cases"))]
pub mod cases;
mod change;
mod parse;
pub use change::change;
pub use parse::{from_stored, parse};

/// Service type names as users write them.
pub const SERVICE_TYPES: [(&str, ServiceType); 3] = [
    ("ClusterIP", ServiceType::ClusterIp),
    ("NodePort", ServiceType::NodePort),
    ("LoadBalancer", ServiceType::LoadBalancer),
];

pub fn service_type(field: &str, name: &str) -> Result<ServiceType, FieldError> {
    SERVICE_TYPES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            FieldError::new(
                field,
                format!("{name:?} is not a service type; use ClusterIP, NodePort or LoadBalancer"),
            )
        })
}

pub fn service_type_name(t: i32) -> &'static str {
    SERVICE_TYPES
        .iter()
        .find(|(_, v)| *v as i32 == t)
        .map(|(n, _)| *n)
        .unwrap_or("")
}

fn resources(prefix: &str, r: &ResourceRequirements) -> Vec<FieldError> {
    let mut errs: Vec<FieldError> = [
        ("cpu_request", &r.cpu_request),
        ("memory_request", &r.memory_request),
        ("cpu_limit", &r.cpu_limit),
        ("memory_limit", &r.memory_limit),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .filter_map(|(k, v)| quantity(&format!("{prefix}.{k}"), v).err())
    .collect();
    // Kubernetes refuses a pod whose request is more than its limit.
    for (what, req, lim) in [
        ("cpu", &r.cpu_request, &r.cpu_limit),
        ("memory", &r.memory_request, &r.memory_limit),
    ] {
        if let (Some(rq), Some(li)) = (quantity_value(req), quantity_value(lim)) {
            if rq > li {
                errs.push(FieldError::new(
                    format!("{prefix}.{what}_request"),
                    format!(
                        "{req} is more than {what}_limit {lim}; a request cannot exceed its limit"
                    ),
                ));
            }
        }
    }
    errs
}

/// Network checks: CIDRs, that they do not overlap, the DNS IP inside the service range, port,
/// service type and names.
pub fn network(n: &Network) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let svc = cidr("network.service_cidr", &n.service_cidr)
        .map_err(|e| errs.push(e))
        .ok();
    let pod = cidr("network.pod_cidr", &n.pod_cidr)
        .map_err(|e| errs.push(e))
        .ok();
    if let (Some(s), Some(p)) = (svc, pod) {
        if s.overlaps(&p) {
            errs.push(FieldError::new(
                "network.pod_cidr",
                format!("{} overlaps service_cidr {}", n.pod_cidr, n.service_cidr),
            ));
        }
    }
    match n.dns_service_ip.parse::<IpAddr>() {
        Err(_) => errs.push(FieldError::new(
            "network.dns_service_ip",
            format!("{:?} is not an IP address", n.dns_service_ip),
        )),
        Ok(ip) => {
            if let Some(s) = svc {
                if !s.contains(ip) {
                    errs.push(FieldError::new(
                        "network.dns_service_ip",
                        format!("{ip} is outside service_cidr {}", n.service_cidr),
                    ));
                } else if let Some(why) = s.reserved_service_ip(ip) {
                    errs.push(FieldError::new(
                        "network.dns_service_ip",
                        format!(
                            "{ip} is {why} of service_cidr {}; kube-apiserver gives it to no \
                             Service, so DNS would never answer there: use another address of the \
                             range (the tenth is usual)",
                            n.service_cidr
                        ),
                    ));
                }
            }
        }
    }
    if let Err(e) = port("network.port", i64::from(n.port)) {
        errs.push(e);
    }
    if ServiceType::try_from(n.service_type).unwrap_or_default() == ServiceType::Unspecified {
        errs.push(FieldError::new(
            "network.service_type",
            "must be ClusterIP, NodePort or LoadBalancer",
        ));
    }
    if !n.endpoint_address.is_empty() {
        if let Err(e) = host("network.endpoint_address", &n.endpoint_address) {
            errs.push(e);
        }
    }
    // A certificate may name a wildcard (`*.example.com`): one label in front of a name.
    if let Some(e) = n.extra_sans.iter().find_map(|s| {
        let name = s.strip_prefix("*.").unwrap_or(s);
        host("network.extra_sans", name).err().map(|e| {
            FieldError::new(
                e.field,
                format!(
                    "{s:?} is neither an IP address, a DNS name nor a wildcard such as \
                     \"*.example.com\""
                ),
            )
        })
    }) {
        errs.push(e);
    }
    if let Some(e) = n
        .authorized_networks
        .iter()
        .find_map(|c| authorized_network("network.authorized_networks", c).err())
    {
        errs.push(e);
    }
    errs
}

fn credential_rotation(r: &CredentialRotation) -> Vec<FieldError> {
    if r.phase.is_empty() || ROTATION_PHASES.contains(&r.phase.as_str()) {
        return Vec::new();
    }
    vec![FieldError::new(
        "credential_rotation.phase",
        format!(
            "{:?} is not a phase; use {}",
            r.phase,
            ROTATION_PHASES.join(" or ")
        ),
    )]
}

fn encryption(e: &Encryption) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for r in &e.resources {
        let ok = r.split('.').enumerate().all(|(i, part)| {
            (i == 0 && part == "*") || (!part.is_empty() && dns_label("", part).is_ok())
        });
        if !ok || r == "*" {
            errs.push(FieldError::new(
                "encryption.resources",
                format!(
                    "{r:?} is not a resource as the apiserver names it, such as \"configmaps\" or \"deployments.apps\""
                ),
            ));
            break;
        }
    }
    errs
}

fn authentication(a: &Authentication) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (i, o) in a.oidc.iter().enumerate() {
        let field = |k: &str| format!("authentication.oidc[{i}].{k}");
        let url_ok = url::Url::parse(&o.issuer_url).is_ok_and(|u| {
            u.scheme() == "https"
                && u.host().is_some()
                && u.query().is_none()
                && u.fragment().is_none()
        });
        if !url_ok {
            errs.push(FieldError::new(
                field("issuer_url"),
                format!(
                    "{:?} is not an https URL without query or fragment",
                    o.issuer_url
                ),
            ));
        } else if !seen.insert(o.issuer_url.trim_end_matches('/')) {
            errs.push(FieldError::new(
                field("issuer_url"),
                format!("{:?} is listed twice", o.issuer_url),
            ));
        } else if let Ok(u) = url::Url::parse(&o.issuer_url) {
            if !u.username().is_empty() || u.password().is_some() {
                errs.push(FieldError::new(
                    field("issuer_url"),
                    "must not carry a user or a password: kube-apiserver refuses such an issuer",
                ));
            } else if u
                .host_str()
                .is_some_and(|h| h.starts_with("kubernetes.default.svc"))
            {
                errs.push(FieldError::new(
                    field("issuer_url"),
                    format!(
                        "{:?} is the cluster's own service-account issuer; an OIDC issuer must be \
                         another",
                        o.issuer_url
                    ),
                ));
            }
        }
        if !o.groups_prefix.is_empty() && o.groups_claim.is_empty() {
            errs.push(FieldError::new(
                field("groups_prefix"),
                "needs groups_claim: without a claim to read groups from, there is nothing to prefix",
            ));
        }
        for (k, v) in [
            ("username_prefix", &o.username_prefix),
            ("groups_prefix", &o.groups_prefix),
        ] {
            if v.starts_with("system:") {
                errs.push(FieldError::new(
                    field(k),
                    format!(
                        "{v:?} starts with \"system:\", which Kubernetes reserves for its own \
                         users and groups: OIDC users would pass for them"
                    ),
                ));
            }
        }
        if o.client_id.trim().is_empty() {
            errs.push(FieldError::new(
                field("client_id"),
                "is required: the audience the issuer's tokens carry",
            ));
        }
        if !o.ca_certificate.is_empty() {
            if let Err(e) =
                crate::validate::certificates(&field("ca_certificate"), &o.ca_certificate)
            {
                errs.push(e);
            }
        }
    }
    errs
}

fn audit(a: &Audit) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match (a.preset.as_str(), a.policy.trim()) {
        ("", "") => errs.push(FieldError::new(
            "audit.preset",
            format!("set a preset ({}) or a policy", AUDIT_PRESETS.join(", ")),
        )),
        (p, "") if !AUDIT_PRESETS.contains(&p) => errs.push(FieldError::new(
            "audit.preset",
            format!("{p:?} is not a preset; use {}", AUDIT_PRESETS.join(", ")),
        )),
        ("", policy) if audit_policy(policy).is_err() => errs.push(FieldError::new(
            "audit.policy",
            audit_policy(policy).err().unwrap_or_default(),
        )),
        (p, policy) if !p.is_empty() && !policy.is_empty() => errs.push(FieldError::new(
            "audit.policy",
            "set preset or policy, not both",
        )),
        _ => {}
    }
    if let Err(e) = audit_max_age("audit.max_age_days", i64::from(a.max_age_days)) {
        errs.push(e);
    }
    errs
}

/// Every check of a tenant cluster spec, collected, one error per field.
pub fn tenant_cluster(name: &str, spec: &TenantClusterSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    match dns_label("name", name) {
        Err(e) => errs.push(e),
        Ok(()) if name.len() > MAX_NAME_LEN => errs.push(FieldError::new(
            "name",
            format!("{name:?} is longer than {MAX_NAME_LEN} characters"),
        )),
        Ok(()) => {}
    }
    if let Err(e) = version("kubernetes_version", &spec.kubernetes_version) {
        errs.push(e);
    }
    if let Err(e) = replicas("replicas", i64::from(spec.replicas)) {
        errs.push(e);
    }
    if !spec.datastore.is_empty() {
        if let Err(e) = dns_label("datastore", &spec.datastore) {
            errs.push(e);
        }
        if !spec.datastore_selector.is_empty() {
            errs.push(FieldError::new(
                "datastore_selector",
                "set datastore or datastore_selector, not both",
            ));
        }
    }
    if let Err(e) = labels(
        "datastore_selector",
        spec.datastore_selector
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    ) {
        errs.push(e);
    }
    match &spec.network {
        Some(n) => errs.extend(network(n)),
        None => errs.push(FieldError::new("network", "is required")),
    }
    if let Some(r) = &spec.resources {
        for (c, req) in [
            ("apiserver", &r.apiserver),
            ("controller_manager", &r.controller_manager),
            ("scheduler", &r.scheduler),
        ] {
            if let Some(req) = req {
                errs.extend(resources(&format!("resources.{c}"), req));
            }
        }
    }
    let minor = spec
        .kubernetes_version
        .strip_prefix("1.")
        .and_then(|r| r.split('.').next())
        .and_then(|m| m.parse().ok());
    if let Err(e) = admission_plugins_for("admission_plugins", &spec.admission_plugins, minor) {
        errs.push(e);
    }
    if let Some(x) = &spec.extra_args {
        for (c, m) in [
            ("apiserver", &x.apiserver),
            ("controller_manager", &x.controller_manager),
            ("scheduler", &x.scheduler),
        ] {
            if let Err(e) = extra_args(&format!("extra_args.{c}"), m) {
                errs.push(e);
            }
        }
    }
    if let Err(e) = labels(
        "labels",
        spec.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
    ) {
        errs.push(e);
    }
    if let Some(e) = &spec.encryption {
        errs.extend(encryption(e));
    }
    if let Some(a) = &spec.authentication {
        errs.extend(authentication(a));
    }
    if let Some(a) = &spec.audit {
        errs.extend(audit(a));
    }
    if let Some(r) = &spec.credential_rotation {
        errs.extend(credential_rotation(r));
    }
    if spec.storage_quota_bytes != 0 {
        if let Err(e) = storage_quota("storage_quota_bytes", spec.storage_quota_bytes) {
            errs.push(e);
        }
    }
    if spec.write_budget_bytes_per_second != 0 {
        if let Err(e) = write_budget(
            "write_budget_bytes_per_second",
            spec.write_budget_bytes_per_second,
        ) {
            errs.push(e);
        }
    }
    if let Err(e) = parse::backup_id("restore_from", &spec.restore_from) {
        errs.push(e);
    }
    if spec.restore_keep_identity && spec.restore_from.is_empty() {
        errs.push(FieldError::new(
            "restore_keep_identity",
            "keeps the identity of the backup restore_from names: set restore_from too",
        ));
    }
    if let Some(b) = &spec.backup_schedule {
        if let Err(e) = kamaji_model::backup::schedule(
            "backup_schedule",
            &b.interval,
            b.retention_count,
            &b.retention_max_age,
        ) {
            errs.extend(e);
        }
    }
    if let Err(e) = maintenance(spec) {
        errs.extend(e);
    }
    let mut seen = std::collections::HashSet::new();
    errs.retain(|e| seen.insert(e.field.clone()));
    errs
}

/// The release channel, window and exclusions of `spec`, typed; every refusal, one per
/// attribute (exclusions as the HCL names its blocks, `maintenance_exclusion[i]`).
pub fn maintenance(spec: &TenantClusterSpec) -> Result<Maintenance, Vec<FieldError>> {
    let mut errs = Vec::new();
    let channel = ReleaseChannel::parse("release_channel", &spec.release_channel)
        .map_err(|e| errs.push(e))
        .unwrap_or_default();
    let window = spec.maintenance_window.as_ref().and_then(|w| {
        kamaji_model::maintenance::window("maintenance_window", &w.start, w.duration_hours, &w.days)
            .map_err(|e| errs.extend(e))
            .ok()
    });
    let mut exclusions = Vec::new();
    for (i, x) in spec.maintenance_exclusions.iter().enumerate() {
        match kamaji_model::maintenance::exclusion(
            &format!("maintenance_exclusion[{i}]"),
            &x.name,
            &x.start,
            &x.end,
            &x.scope,
        ) {
            Ok(x) => exclusions.push(x),
            Err(e) => errs.extend(e),
        }
    }
    if let Err(e) = kamaji_model::maintenance::exclusion_names(
        "maintenance_exclusion",
        spec.maintenance_exclusions.iter().map(|x| x.name.as_str()),
    ) {
        errs.push(e);
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Maintenance {
        channel,
        window,
        exclusions,
    })
}

/// Whether `r` (absent: generation 0, completed) is a started rotation, and its generation.
pub fn rotation_state(r: Option<&CredentialRotation>) -> (u32, bool) {
    r.map_or((0, false), |r| (r.generation, r.phase == "started"))
}

#[cfg(test)]
mod tests;
