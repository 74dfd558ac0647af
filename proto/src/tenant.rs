//! The input contract of tenant clusters: versions and how they may move, network settings,
//! resources, flags. Pure, shared by the provider (at plan) and kamajid (on every write).

use std::net::IpAddr;

use crate::errors::FieldError;
use crate::v1::{
    Audit, Authentication, CredentialRotation, Encryption, Network, ResourceRequirements,
    ServiceType, TenantClusterSpec,
};
use crate::validate::{dns_label, labels};

type Check = Result<(), FieldError>;

/// Kubernetes minors kamajid runs control planes for.
pub const SUPPORTED_MINORS: std::ops::RangeInclusive<u32> = 33..=37;
/// Longest tenant name: leaves room in the namespace (`tenant-<name>`) and generated names.
pub const MAX_NAME_LEN: usize = 50;
pub const MAX_REPLICAS: u32 = 9;

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

/// A Kubernetes release, `1.<minor>.<patch>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub minor: u32,
    pub patch: u32,
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "1.{}.{}", self.minor, self.patch)
    }
}

fn supported() -> String {
    format!(
        "1.{}.x to 1.{}.x",
        SUPPORTED_MINORS.start(),
        SUPPORTED_MINORS.end()
    )
}

/// Parses `1.35.4` (a leading `v` is accepted) and checks the minor is supported.
pub fn version(field: &str, v: &str) -> Result<Version, FieldError> {
    let bad = || {
        FieldError::new(
            field,
            format!(
                "{v:?} is not a Kubernetes version such as \"1.35.4\"; supported: {}",
                supported()
            ),
        )
    };
    let parts: Vec<&str> = v.strip_prefix('v').unwrap_or(v).split('.').collect();
    let [major, minor, patch] = parts.as_slice() else {
        return Err(bad());
    };
    // Release numbers as Kubernetes writes them: digits, no leading zero ("035" names no release;
    // kube-apiserver would never report it, so the binaries would never be found).
    let num = |s: &str| {
        s.parse::<u32>().ok().filter(|_| {
            !s.is_empty()
                && s.bytes().all(|b| b.is_ascii_digit())
                && (s == "0" || !s.starts_with('0'))
        })
    };
    let (Some(1), Some(minor), Some(patch)) = (num(major), num(minor), num(patch)) else {
        return Err(bad());
    };
    if !SUPPORTED_MINORS.contains(&minor) {
        return Err(FieldError::new(
            field,
            format!(
                "Kubernetes 1.{minor} is not supported; supported: {}",
                supported()
            ),
        ));
    }
    Ok(Version { minor, patch })
}

/// An in-place version change: patch moves in either direction within a minor are refused
/// downward, minors move up one at a time, as Kubernetes' version skew policy requires.
pub fn upgrade(field: &str, from: Version, to: Version) -> Check {
    if to < from {
        return Err(FieldError::new(
            field,
            format!(
                "cannot downgrade from {from} to {to}; Kubernetes control planes only move forward"
            ),
        ));
    }
    if to.minor > from.minor + 1 {
        return Err(FieldError::new(
            field,
            format!("cannot upgrade from {from} to {to} in one step; upgrade one minor at a time (next: 1.{}.x)", from.minor + 1),
        ));
    }
    Ok(())
}

/// An IPv4 or IPv6 network in CIDR notation, with room for at least 16 addresses.
pub fn cidr(field: &str, v: &str) -> Result<(IpAddr, u32), FieldError> {
    let bad = || {
        FieldError::new(
            field,
            format!("{v:?} is not a network in CIDR notation such as \"10.96.0.0/12\""),
        )
    };
    let (ip, bits) = v.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let bits: u32 = bits.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 28 } else { 124 };
    if bits > max {
        return Err(FieldError::new(
            field,
            format!("{v:?} is too small; use a prefix of /{max} or shorter"),
        ));
    }
    let host_bits = if ip.is_ipv4() { 32 - bits } else { 128 - bits };
    let host_part = match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)) & ((1u128 << host_bits) - 1),
        IpAddr::V6(a) => u128::from(a) & ((1u128 << host_bits) - 1),
    };
    if host_part != 0 {
        return Err(FieldError::new(
            field,
            format!("{v:?} has host bits set; write the network address"),
        ));
    }
    Ok((ip, bits))
}

fn contains(net: (IpAddr, u32), ip: IpAddr) -> bool {
    match (net.0, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let mask = if net.1 == 0 {
                0
            } else {
                u32::MAX << (32 - net.1)
            };
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let mask = if net.1 == 0 {
                0
            } else {
                u128::MAX << (128 - net.1)
            };
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// Why kube-apiserver never gives `ip` (inside `net`) to a Service, if it does not: the network
/// address, an IPv4 range's broadcast address, and the first address, which is the
/// `kubernetes` Service's own.
fn reserved_service_ip(net: (IpAddr, u32), ip: IpAddr) -> Option<&'static str> {
    let (base, host_bits, value) = match (net.0, ip) {
        (IpAddr::V4(n), IpAddr::V4(a)) => (
            u128::from(u32::from(n)),
            32 - net.1,
            u128::from(u32::from(a)),
        ),
        (IpAddr::V6(n), IpAddr::V6(a)) => (u128::from(n), 128 - net.1, u128::from(a)),
        _ => return None,
    };
    let offset = value - base;
    let last = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    match offset {
        0 => Some("the network address"),
        1 => Some("the first address, which the `kubernetes` Service takes,"),
        o if o == last && ip.is_ipv4() => Some("the broadcast address"),
        _ => None,
    }
}

fn overlap(a: (IpAddr, u32), b: (IpAddr, u32)) -> bool {
    contains(a, b.0) || contains(b, a.0)
}

/// A DNS name or an IP address, as a certificate SAN or an endpoint host.
pub fn host(field: &str, v: &str) -> Check {
    if v.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = !v.is_empty()
        && v.len() <= 253
        && v.split('.')
            .all(|l| dns_label("", &l.to_ascii_lowercase()).is_ok());
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{v:?} is neither an IP address nor a DNS name"),
        ))
    }
}

/// A Kubernetes resource quantity such as `250m`, `1`, `1.5`, `512Mi`, `2G` or `1e3`.
pub fn quantity(field: &str, v: &str) -> Check {
    if quantity_value(v).is_some() {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{v:?} is not a Kubernetes quantity such as \"250m\", \"2\", \"512Mi\", \"1Gi\" \
                 or \"1e3\""
            ),
        ))
    }
}

/// The value of a Kubernetes quantity (`<number><suffix>`, the suffix binary such as `Mi`,
/// decimal such as `k` or `m`, or an exponent such as `e3`), if `v` is one.
pub fn quantity_value(v: &str) -> Option<f64> {
    const SUFFIXES: [(&str, f64); 14] = [
        ("", 1.0),
        ("m", 1e-3),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("P", 1e15),
        ("E", 1e18),
        ("Ki", 1024.0),
        ("Mi", 1048576.0),
        ("Gi", 1073741824.0),
        ("Ti", 1099511627776.0),
        ("Pi", 1125899906842624.0),
        ("Ei", 1152921504606846976.0),
    ];
    let split = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(v.len());
    let (num, suffix) = v.split_at(split);
    let num_ok =
        !num.is_empty() && num.matches('.').count() <= 1 && num != "." && !num.starts_with('.');
    if !num_ok {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    if let Some((_, m)) = SUFFIXES.iter().find(|(s, _)| *s == suffix) {
        return Some(n * m);
    }
    // A decimal exponent: `e3`, `E-2`.
    let exp = suffix.strip_prefix(['e', 'E'])?;
    let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(n * 10f64.powi(exp.parse::<i32>().ok()?))
}

/// Flags kamajid sets itself: overriding them would break isolation, PKI or wiring.
pub const MANAGED_FLAGS: &[&str] = &[
    "etcd-servers",
    // Another etcd for some resources, or another storage: both would leave the tenant's prefix.
    "etcd-servers-overrides",
    "storage-backend",
    // kamajid compacts the shared etcd; the apiserver's own compactor cannot (its key is outside
    // the tenant's role) and would only retry a refused request every interval.
    "etcd-compaction-interval",
    "etcd-prefix",
    "etcd-cafile",
    "etcd-certfile",
    "etcd-keyfile",
    "tls-cert-file",
    "tls-private-key-file",
    "client-ca-file",
    "service-account-key-file",
    "service-account-signing-key-file",
    "service-account-private-key-file",
    "service-account-issuer",
    "secure-port",
    "kubeconfig",
    "authentication-kubeconfig",
    "authorization-kubeconfig",
    "cluster-signing-cert-file",
    "cluster-signing-key-file",
    "root-ca-file",
    "requestheader-client-ca-file",
    "proxy-client-cert-file",
    "proxy-client-key-file",
    "kubelet-client-certificate",
    "kubelet-client-key",
    "service-cluster-ip-range",
    "enable-admission-plugins",
    // encryption {}, authentication {} and audit {} set these:
    "encryption-provider-config",
    "encryption-provider-config-automatic-reload",
    "authentication-config",
    "oidc-issuer-url",
    "oidc-client-id",
    "oidc-ca-file",
    "oidc-username-claim",
    "oidc-username-prefix",
    "oidc-groups-claim",
    "oidc-groups-prefix",
    "audit-policy-file",
    "audit-log-path",
];

/// Extra flags for one component: names without leading dashes, not managed by kamajid.
pub fn extra_args<'a>(
    field: &str,
    args: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Check {
    for (k, _) in args {
        let name_ok = !k.is_empty()
            && k.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !k.starts_with('-');
        if !name_ok {
            return Err(FieldError::new(field, format!("{k:?} is not a flag name; write it without leading dashes, e.g. \"audit-log-maxage\"")));
        }
        if MANAGED_FLAGS.contains(&k.as_str()) {
            return Err(FieldError::new(
                field,
                format!("--{k} is set by kamajid and cannot be overridden"),
            ));
        }
    }
    Ok(())
}

/// Admission plugin names are CamelCase identifiers (`NodeRestriction`, `PodSecurity`).
pub fn admission_plugins(field: &str, plugins: &[String]) -> Check {
    admission_plugins_for(field, plugins, None)
}

/// The admission plugins kube-apiserver knows, per minor (from each version's `--help`; a test
/// of the acceptance suite reads them off the real binaries of tools/k8s-build/VERSIONS).
pub const ADMISSION_PLUGINS: &[(u32, &[&str])] = &[
    (
        36,
        &[
            "AlwaysAdmit",
            "AlwaysDeny",
            "AlwaysPullImages",
            "CertificateApproval",
            "CertificateSigning",
            "CertificateSubjectRestriction",
            "ClusterTrustBundleAttest",
            "DefaultIngressClass",
            "DefaultStorageClass",
            "DefaultTolerationSeconds",
            "DenyServiceExternalIPs",
            "EventRateLimit",
            "ExtendedResourceToleration",
            "ImagePolicyWebhook",
            "JobValidation",
            "LimitPodHardAntiAffinityTopology",
            "LimitRanger",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionWebhook",
            "NamespaceAutoProvision",
            "NamespaceExists",
            "NamespaceLifecycle",
            "NodeDeclaredFeatureValidator",
            "NodeRestriction",
            "OwnerReferencesPermissionEnforcement",
            "PersistentVolumeClaimResize",
            "PodGroupProtection",
            "PodGroupWorkloadExists",
            "PodNodeSelector",
            "PodResizeValidator",
            "PodSecurity",
            "PodTolerationRestriction",
            "PodTopologyLabels",
            "Priority",
            "ResourceQuota",
            "RuntimeClass",
            "ServiceAccount",
            "StorageObjectInUseProtection",
            "TaintNodesByCondition",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionWebhook",
        ],
    ),
    (
        37,
        &[
            "AlwaysAdmit",
            "AlwaysDeny",
            "AlwaysPullImages",
            "CertificateApproval",
            "CertificateSigning",
            "CertificateSubjectRestriction",
            "ClusterTrustBundleAttest",
            "DefaultIngressClass",
            "DefaultStorageClass",
            "DefaultTolerationSeconds",
            "DenyServiceExternalIPs",
            "EventRateLimit",
            "ExtendedResourceToleration",
            "ImagePolicyWebhook",
            "LimitPodHardAntiAffinityTopology",
            "LimitRanger",
            "MutatingAdmissionPolicy",
            "MutatingAdmissionWebhook",
            "NamespaceAutoProvision",
            "NamespaceExists",
            "NamespaceLifecycle",
            "NodeDeclaredFeatureValidator",
            "NodeRestriction",
            "OwnerReferencesPermissionEnforcement",
            "PersistentVolumeClaimResize",
            "PodGroupProtection",
            "PodNodeSelector",
            "PodResizeValidator",
            "PodSecurity",
            "PodTolerationRestriction",
            "PodTopologyLabels",
            "Priority",
            "ResourceQuota",
            "RuntimeClass",
            "ServiceAccount",
            "StorageObjectInUseProtection",
            "TaintNodesByCondition",
            "ValidatingAdmissionPolicy",
            "ValidatingAdmissionWebhook",
        ],
    ),
];

/// Plugins kube-apiserver knows that a tenant cannot turn on, and why.
const REFUSED_PLUGINS: &[(&str, &str)] = &[
    (
        "AlwaysDeny",
        "it refuses every request, kamajid's own included",
    ),
    (
        "EventRateLimit",
        "it needs an admission configuration file (--admission-control-config-file), which \
         kamajid does not give the apiserver",
    ),
    (
        "ImagePolicyWebhook",
        "it needs an admission configuration file (--admission-control-config-file), which \
         kamajid does not give the apiserver",
    ),
];

/// The admission plugins a tenant asks for, judged against those of its Kubernetes `minor` when
/// kamajid knows them (else against every version's it knows).
pub fn admission_plugins_for(field: &str, plugins: &[String], minor: Option<u32>) -> Check {
    let known: Vec<&str> = match minor.and_then(|m| ADMISSION_PLUGINS.iter().find(|(n, _)| *n == m))
    {
        Some((_, list)) => list.to_vec(),
        None => ADMISSION_PLUGINS
            .iter()
            .flat_map(|(_, l)| l.iter().copied())
            .collect(),
    };
    for p in plugins {
        if let Some((_, why)) = REFUSED_PLUGINS.iter().find(|(n, _)| n == p) {
            return Err(FieldError::new(
                field,
                format!("{p} cannot be enabled: {why}"),
            ));
        }
        if !known.contains(&p.as_str()) {
            let close: Vec<&str> = known
                .iter()
                .copied()
                .filter(|k| k.eq_ignore_ascii_case(p))
                .collect();
            let version = minor.map_or(String::new(), |m| format!(" of Kubernetes 1.{m}"));
            return Err(FieldError::new(
                field,
                if close.is_empty() {
                    format!(
                        "{p:?} is not an admission plugin{version}; it has {}",
                        known.join(", ")
                    )
                } else {
                    format!(
                        "{p:?} is not an admission plugin{version}; did you mean {}?",
                        close[0]
                    )
                },
            ));
        }
    }
    Ok(())
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
        if overlap(s, p) {
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
                if !contains(s, ip) {
                    errs.push(FieldError::new(
                        "network.dns_service_ip",
                        format!("{ip} is outside service_cidr {}", n.service_cidr),
                    ));
                } else if let Some(why) = reserved_service_ip(s, ip) {
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

/// Control-plane replicas: 1 to [`MAX_REPLICAS`]. Takes the number as written (a client may
/// hold `-1`), so the message shows what the user wrote.
pub fn replicas(field: &str, n: i64) -> Check {
    if (1..=i64::from(MAX_REPLICAS)).contains(&n) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{n} is not between 1 and {MAX_REPLICAS}"),
        ))
    }
}

/// Smallest storage quota a tenant may set: a fresh cluster alone keeps about half a MiB.
pub const MIN_STORAGE_QUOTA_BYTES: i64 = 1024 * 1024;

/// A tenant's storage quota, as written (0, on the wire, means the reservation).
pub fn storage_quota(field: &str, n: i64) -> Check {
    if (MIN_STORAGE_QUOTA_BYTES..=crate::RECOMMENDED_MAX_QUOTA_BYTES).contains(&n) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{n} is not between {MIN_STORAGE_QUOTA_BYTES} (1 MiB) and {} (8 GiB, etcd's \
                 recommended maximum for a whole datastore)",
                crate::RECOMMENDED_MAX_QUOTA_BYTES
            ),
        ))
    }
}

/// Smallest and largest write budget a tenant may set, bytes per second.
pub const MIN_WRITE_BUDGET: i64 = 1024;
pub const MAX_WRITE_BUDGET: i64 = 1 << 30;

/// A tenant's write budget, as written (0, on the wire, means the default).
pub fn write_budget(field: &str, n: i64) -> Check {
    if (MIN_WRITE_BUDGET..=MAX_WRITE_BUDGET).contains(&n) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{n} is not between {MIN_WRITE_BUDGET} (1 KiB/s) and {MAX_WRITE_BUDGET} (1 GiB/s); \
                 leave it out for the default, the reservation written again every 5 minutes"
            ),
        ))
    }
}

/// A TCP port, as written.
pub fn port(field: &str, n: i64) -> Check {
    if (1..=65535).contains(&n) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{n} is not a TCP port (1 to 65535)"),
        ))
    }
}

/// Days audit logs are kept, as written: 1 to 3650.
pub fn audit_max_age(field: &str, n: i64) -> Check {
    if (1..=3650).contains(&n) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("{n} is not between 1 and 3650 days"),
        ))
    }
}

/// An encryption key rotation, as written: a whole number from 0.
pub fn key_rotation(field: &str, n: i64) -> Check {
    if (0..=i64::from(u32::MAX)).contains(&n) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{n} is not a rotation number: a whole number from 0 (raise it by one to rotate)"
            ),
        ))
    }
}

/// A change of the key rotation: forward only, since an older key may already be retired.
pub fn key_rotation_change(field: &str, from: u32, to: u32) -> Check {
    if to >= from {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "{to} is below {from}, the rotation in effect: keys only move forward (raise it to rotate again)"
            ),
        ))
    }
}

/// Phases of a credential rotation.
pub const ROTATION_PHASES: [&str; 2] = ["started", "completed"];

/// Whether `r` (absent: generation 0, completed) is a started rotation, and its generation.
pub fn rotation_state(r: Option<&CredentialRotation>) -> (u32, bool) {
    r.map_or((0, false), |r| (r.generation, r.phase == "started"))
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

/// A change of the credential rotation: one generation at a time, started before completed.
pub fn credential_rotation_change(from: (u32, bool), to: (u32, bool)) -> Check {
    let generation = "credential_rotation.generation";
    let phase = "credential_rotation.phase";
    let ((f, f_started), (t, t_started)) = (from, to);
    let err = |field: &str, m: String| Err(FieldError::new(field, m));
    if t < f {
        return err(
            generation,
            format!("{t} is below {f}, the rotation in effect: generations only move forward"),
        );
    }
    if t > f + 1 {
        return err(
            generation,
            format!(
                "{t} skips ahead of {f}: one rotation at a time, raise it to {}",
                f + 1
            ),
        );
    }
    if t == f + 1 && f_started {
        return err(generation, format!(
            "rotation {f} is still started: complete it (phase = \"completed\") before starting rotation {t}"
        ));
    }
    if t == f + 1 && !t_started {
        return err(phase, format!(
            "rotation {t} must be started first (phase = \"started\"): move clients and nodes to the new credentials, then complete it"
        ));
    }
    if t == f && !f_started && t_started {
        return err(phase, format!(
            "rotation {f} is completed and cannot start again: raise generation to {} to rotate again",
            f + 1
        ));
    }
    Ok(())
}

/// A network that may reach the apiserver: any prefix length, host bits clear.
pub fn authorized_network(field: &str, v: &str) -> Check {
    let bad = || {
        FieldError::new(
            field,
            format!("{v:?} is not a network in CIDR notation such as \"203.0.113.0/24\""),
        )
    };
    let (ip, bits) = v.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let bits: u32 = bits.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return Err(bad());
    }
    let host_bits = max - bits;
    let value = match ip {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    };
    let mask = if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    if value & mask != 0 {
        return Err(FieldError::new(
            field,
            format!("{v:?} has host bits set; write the network address"),
        ));
    }
    Ok(())
}

/// Audit presets: what each event records.
pub const AUDIT_PRESETS: [&str; 3] = ["metadata", "request", "request_response"];

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

/// Why `policy` is not an audit policy kube-apiserver loads: an `audit.k8s.io/v1` `Policy`
/// (YAML or JSON) with at least one rule, each with a level it knows.
pub fn audit_policy(policy: &str) -> Result<(), String> {
    const LEVELS: [&str; 4] = ["None", "Metadata", "Request", "RequestResponse"];
    const STAGES: [&str; 4] = [
        "RequestReceived",
        "ResponseStarted",
        "ResponseComplete",
        "Panic",
    ];
    let doc: serde_json::Value =
        serde_yaml_ng::from_str(policy).map_err(|e| format!("does not parse as YAML: {e}"))?;
    if doc["apiVersion"] != "audit.k8s.io/v1" || doc["kind"] != "Policy" {
        return Err(
            "is not an audit.k8s.io/v1 Policy document (apiVersion: audit.k8s.io/v1, kind: Policy)"
                .into(),
        );
    }
    let rules = doc["rules"]
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or("has no rules: kube-apiserver refuses a policy without one")?;
    for (i, r) in rules.iter().enumerate() {
        let level = r["level"].as_str().unwrap_or_default();
        if !LEVELS.contains(&level) {
            return Err(format!(
                "rules[{i}].level is {:?}; it must be one of {}",
                r["level"],
                LEVELS.join(", ")
            ));
        }
        for stage in r["omitStages"].as_array().into_iter().flatten() {
            if !stage.as_str().is_some_and(|s| STAGES.contains(&s)) {
                return Err(format!(
                    "rules[{i}].omitStages has {stage}; stages are {}",
                    STAGES.join(", ")
                ));
            }
        }
    }
    for stage in doc["omitStages"].as_array().into_iter().flatten() {
        if !stage.as_str().is_some_and(|s| STAGES.contains(&s)) {
            return Err(format!(
                "omitStages has {stage}; stages are {}",
                STAGES.join(", ")
            ));
        }
    }
    Ok(())
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
    let mut seen = std::collections::HashSet::new();
    errs.retain(|e| seen.insert(e.field.clone()));
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{ComponentResources, ExtraArgs};

    fn good() -> TenantClusterSpec {
        TenantClusterSpec {
            kubernetes_version: "1.35.4".into(),
            replicas: 2,
            network: Some(Network {
                service_cidr: "10.96.0.0/12".into(),
                pod_cidr: "10.244.0.0/16".into(),
                dns_service_ip: "10.96.0.10".into(),
                port: 6443,
                service_type: ServiceType::LoadBalancer as i32,
                endpoint_address: String::new(),
                extra_sans: vec!["api.acme.example".into()],
                authorized_networks: vec!["203.0.113.0/24".into(), "2001:db8::/32".into()],
            }),
            ..Default::default()
        }
    }

    #[test]
    fn authorized_networks_are_networks_with_host_bits_clear() {
        for ok in [
            "0.0.0.0/0",
            "10.0.0.0/8",
            "192.0.2.7/32",
            "::/0",
            "2001:db8::/32",
        ] {
            assert!(authorized_network("n", ok).is_ok(), "{ok}");
        }
        for (bad, says) in [
            ("10.0.0.1/8", "host bits"),
            ("10.0.0.0", "CIDR notation"),
            ("10.0.0.0/33", "CIDR notation"),
            ("example.com/24", "CIDR notation"),
        ] {
            let e = authorized_network("network.authorized_networks", bad).unwrap_err();
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
        let mut s = good();
        s.network.as_mut().unwrap().authorized_networks = vec!["10.1.2.3/16".into()];
        assert_eq!(fields(&s), ["network.authorized_networks"]);
    }

    #[test]
    fn encryption_oidc_and_audit_settings_name_what_is_wrong() {
        let mut s = good();
        s.encryption = Some(Encryption {
            resources: vec![
                "configmaps".into(),
                "deployments.apps".into(),
                "*.apps".into(),
            ],
            key_rotation: 3,
        });
        s.authentication = Some(Authentication {
            oidc: vec![crate::v1::OidcIssuer {
                issuer_url: "https://idp.example/realms/a".into(),
                client_id: "kamaji".into(),
                ..Default::default()
            }],
        });
        s.audit = Some(Audit {
            preset: "metadata".into(),
            max_age_days: 30,
            ..Default::default()
        });
        assert_eq!(fields(&s), Vec::<String>::new());

        s.encryption.as_mut().unwrap().resources = vec!["Config Maps".into()];
        let o = &mut s.authentication.as_mut().unwrap().oidc;
        o[0].issuer_url = "http://idp.example".into();
        o[0].client_id = " ".into();
        s.audit = Some(Audit {
            preset: "everything".into(),
            max_age_days: 0,
            ..Default::default()
        });
        let mut f = fields(&s);
        f.sort();
        assert_eq!(
            f,
            [
                "audit.max_age_days",
                "audit.preset",
                "authentication.oidc[0].client_id",
                "authentication.oidc[0].issuer_url",
                "encryption.resources"
            ]
        );
        s = good();
        s.audit = Some(Audit {
            preset: "metadata".into(),
            policy: "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []".into(),
            max_age_days: 1,
        });
        assert_eq!(fields(&s), ["audit.policy"], "preset or policy, not both");
        assert!(key_rotation_change("encryption.key_rotation", 2, 1)
            .unwrap_err()
            .message
            .contains("only move forward"));
        assert!(key_rotation_change("encryption.key_rotation", 1, 1).is_ok());
    }

    /// What a skeptical user found the apiserver refusing after plan had accepted it, and the
    /// valid values plan refused: each judged at plan now, on its attribute.
    #[test]
    fn what_kube_apiserver_refuses_is_refused_at_plan_and_what_it_takes_is_taken() {
        let message = |s: &TenantClusterSpec, f: &str| {
            tenant_cluster("acme", s)
                .into_iter()
                .find(|e| e.field == f)
                .map(|e| e.message)
                .unwrap_or_else(|| panic!("{f} not refused"))
        };
        let issuer = |f: &dyn Fn(&mut crate::v1::OidcIssuer)| {
            let mut s = good();
            let mut o = crate::v1::OidcIssuer {
                issuer_url: "https://idp.example".into(),
                client_id: "kamaji".into(),
                ..Default::default()
            };
            f(&mut o);
            s.authentication = Some(Authentication { oidc: vec![o] });
            s
        };
        let f = "authentication.oidc[0].issuer_url";
        assert!(message(
            &issuer(&|o| o.issuer_url = "https://user:pw@idp.example".into()),
            f
        )
        .contains("user or a password"));
        assert!(message(
            &issuer(&|o| o.issuer_url = "https://kubernetes.default.svc.cluster.local".into()),
            f
        )
        .contains("service-account issuer"));
        assert!(message(
            &issuer(&|o| o.groups_prefix = "oidc:".into()),
            "authentication.oidc[0].groups_prefix"
        )
        .contains("needs groups_claim"));
        assert!(message(
            &issuer(&|o| o.username_prefix = "system:".into()),
            "authentication.oidc[0].username_prefix"
        )
        .contains("reserves"));
        assert!(tenant_cluster(
            "acme",
            &issuer(&|o| {
                o.groups_claim = "groups".into();
                o.groups_prefix = "oidc:".into();
            })
        )
        .is_empty());

        let policy = |p: &str| {
            let mut s = good();
            s.audit = Some(Audit {
                policy: p.into(),
                max_age_days: 1,
                ..Default::default()
            });
            s
        };
        for (bad, says) in [
            (
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: [",
                "does not parse",
            ),
            (
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules: []",
                "no rules",
            ),
            (
                "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything",
                "rules[0].level",
            ),
            (
                "# audit.k8s.io/v1 Policy\nkind: Policie",
                "not an audit.k8s.io/v1 Policy",
            ),
        ] {
            assert!(
                message(&policy(bad), "audit.policy").contains(says),
                "{bad}"
            );
        }
        assert!(tenant_cluster(
            "acme",
            &policy("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n  omitStages: [RequestReceived]")
        )
        .is_empty());

        let plugins = |v: &str, p: &str| {
            let mut s = good();
            s.kubernetes_version = v.into();
            s.admission_plugins = vec![p.into()];
            s
        };
        assert!(message(&plugins("1.37.2", "Foo"), "admission_plugins")
            .contains("is not an admission plugin of Kubernetes 1.37"));
        assert!(
            message(&plugins("1.37.2", "podsecurity"), "admission_plugins")
                .contains("did you mean PodSecurity")
        );
        assert!(
            message(&plugins("1.37.2", "JobValidation"), "admission_plugins").contains("1.37"),
            "gone in 1.37"
        );
        assert!(tenant_cluster("acme", &plugins("1.36.3", "JobValidation")).is_empty());
        assert!(
            message(&plugins("1.37.2", "EventRateLimit"), "admission_plugins")
                .contains("configuration file")
        );
        assert!(tenant_cluster("acme", &plugins("1.37.2", "AlwaysPullImages")).is_empty());

        let mut s = good();
        s.resources = Some(crate::v1::ComponentResources {
            apiserver: Some(ResourceRequirements {
                memory_request: "2Gi".into(),
                memory_limit: "1e9".into(),
                cpu_request: "1e0".into(),
                cpu_limit: "2".into(),
            }),
            ..Default::default()
        });
        assert_eq!(fields(&s), ["resources.apiserver.memory_request"]);
        assert!(
            message(&s, "resources.apiserver.memory_request").contains("more than memory_limit")
        );
        assert_eq!(quantity_value("1e3"), Some(1000.0));
        assert_eq!(quantity_value("1.5Gi"), Some(1.5 * 1073741824.0));
        assert_eq!(quantity_value("1e"), None);

        let mut s = good();
        s.network.as_mut().unwrap().extra_sans = vec!["*.example.com".into(), "10.0.0.1".into()];
        assert!(tenant_cluster("acme", &s).is_empty());
        s.network.as_mut().unwrap().extra_sans = vec!["*.*.example.com".into()];
        assert_eq!(fields(&s), ["network.extra_sans"]);
    }

    #[test]
    fn storage_quotas_are_refused_outside_1_mib_to_8_gib_and_0_means_the_reservation() {
        let mut s = good();
        for ok in [
            0,
            MIN_STORAGE_QUOTA_BYTES,
            64 << 20,
            crate::RECOMMENDED_MAX_QUOTA_BYTES,
        ] {
            s.storage_quota_bytes = ok;
            assert!(fields(&s).is_empty(), "{ok}");
        }
        for bad in [-1, 1000, crate::RECOMMENDED_MAX_QUOTA_BYTES + 1] {
            s.storage_quota_bytes = bad;
            assert_eq!(fields(&s), ["storage_quota_bytes"], "{bad}");
        }
    }

    #[test]
    fn credential_rotations_go_one_generation_at_a_time_started_before_completed() {
        let field = |from, to| credential_rotation_change(from, to).map_err(|e| e.field);
        assert_eq!(field((0, false), (1, true)), Ok(()), "start");
        assert_eq!(field((1, true), (1, false)), Ok(()), "complete");
        assert_eq!(field((1, false), (1, false)), Ok(()), "nothing");
        let gen = Err("credential_rotation.generation".to_owned());
        let phase = Err("credential_rotation.phase".to_owned());
        assert_eq!(field((1, false), (0, false)), gen, "back");
        assert_eq!(field((0, false), (2, true)), gen, "skip");
        assert_eq!(
            field((1, true), (2, true)),
            gen,
            "another before completing"
        );
        assert_eq!(
            field((0, false), (1, false)),
            phase,
            "completed without the overlap"
        );
        assert_eq!(
            field((1, false), (1, true)),
            phase,
            "restart a completed one"
        );
        let mut s = good();
        s.credential_rotation = Some(CredentialRotation {
            generation: 1,
            phase: "begun".into(),
        });
        assert_eq!(fields(&s), ["credential_rotation.phase"]);
    }

    fn fields(spec: &TenantClusterSpec) -> Vec<String> {
        tenant_cluster("acme", spec)
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_good_spec_passes() {
        assert_eq!(fields(&good()), Vec::<String>::new());
    }

    #[test]
    fn versions_parse_and_only_supported_minors_pass() {
        assert_eq!(
            version("v", "1.35.4").unwrap(),
            Version {
                minor: 35,
                patch: 4
            }
        );
        assert_eq!(
            version("v", "v1.34.0").unwrap(),
            Version {
                minor: 34,
                patch: 0
            }
        );
        for bad in ["1.35", "2.35.0", "1.35.x", "", "1.35.4-rc.1", "1..0"] {
            assert!(
                version("v", bad)
                    .unwrap_err()
                    .message
                    .contains("not a Kubernetes version"),
                "{bad}"
            );
        }
        assert!(version("v", "1.22.0")
            .unwrap_err()
            .message
            .contains("not supported"));
    }

    #[test]
    fn the_dns_ip_must_be_one_the_apiserver_can_give_a_service() {
        let net = |cidr: &str, dns: &str| Network {
            service_cidr: cidr.into(),
            pod_cidr: "10.244.0.0/16".into(),
            dns_service_ip: dns.into(),
            port: 6443,
            service_type: ServiceType::ClusterIp as i32,
            ..Default::default()
        };
        for (cidr, dns, why) in [
            ("10.96.0.0/12", "10.96.0.0", "the network address"),
            ("10.96.0.0/12", "10.96.0.1", "the first address"),
            ("10.96.0.0/12", "10.111.255.255", "the broadcast address"),
            ("fd00::/108", "fd00::", "the network address"),
            ("fd00::/108", "fd00::1", "the first address"),
        ] {
            let errs = network(&net(cidr, dns));
            assert!(
                errs.iter()
                    .any(|e| e.field == "network.dns_service_ip" && e.message.contains(why)),
                "{cidr} {dns}: {errs:?}"
            );
        }
        for (cidr, dns) in [
            ("10.96.0.0/12", "10.96.0.10"),
            ("fd00::/108", "fd00::a"),
            ("172.0.0.0/8", "172.0.0.10"),
        ] {
            assert!(network(&net(cidr, dns)).is_empty(), "{cidr} {dns}");
        }
    }

    #[test]
    fn versions_with_leading_zeros_are_refused() {
        for v in ["1.035.2", "01.35.2", "1.35.02", "1.35.00"] {
            let e = version("kubernetes_version", v).unwrap_err();
            assert!(
                e.message.contains("is not a Kubernetes version"),
                "{v}: {e:?}"
            );
        }
        assert_eq!(
            version("v", "1.35.0").unwrap(),
            Version {
                minor: 35,
                patch: 0
            }
        );
    }

    #[test]
    fn upgrades_move_one_minor_forward_at_a_time() {
        let v = |s| version("v", s).unwrap();
        assert!(upgrade("v", v("1.34.2"), v("1.34.5")).is_ok());
        assert!(upgrade("v", v("1.34.2"), v("1.35.0")).is_ok());
        assert!(upgrade("v", v("1.34.2"), v("1.36.0"))
            .unwrap_err()
            .message
            .contains("one minor at a time"));
        assert!(upgrade("v", v("1.35.0"), v("1.34.9"))
            .unwrap_err()
            .message
            .contains("cannot downgrade"));
        assert!(upgrade("v", v("1.35.3"), v("1.35.2"))
            .unwrap_err()
            .message
            .contains("cannot downgrade"));
    }

    #[test]
    fn network_mistakes_name_the_nested_field() {
        let mut s = good();
        let n = s.network.as_mut().unwrap();
        n.pod_cidr = "10.96.0.0/16".into();
        n.dns_service_ip = "192.168.0.10".into();
        n.port = 0;
        n.extra_sans = vec!["not a name".into()];
        assert_eq!(
            fields(&s),
            [
                "network.pod_cidr",
                "network.dns_service_ip",
                "network.port",
                "network.extra_sans"
            ]
        );
        let mut s = good();
        s.network.as_mut().unwrap().service_cidr = "10.96.0.1/12".into();
        assert!(tenant_cluster("acme", &s)[0].message.contains("host bits"));
        let mut s = good();
        s.network.as_mut().unwrap().service_type = 0;
        assert_eq!(fields(&s), ["network.service_type"]);
    }

    #[test]
    fn quantities_flags_plugins_and_placement_inputs_are_checked() {
        let mut s = good();
        s.resources = Some(ComponentResources {
            apiserver: Some(ResourceRequirements {
                cpu_request: "250m".into(),
                memory_request: "lots".into(),
                ..Default::default()
            }),
            ..Default::default()
        });
        s.extra_args = Some(ExtraArgs {
            apiserver: [("etcd-prefix".into(), "/x".into())].into(),
            ..Default::default()
        });
        s.admission_plugins = vec!["nodeRestriction".into()];
        s.datastore = "etcd-a".into();
        s.datastore_selector = [("tier".into(), "gold".into())].into();
        s.replicas = 0;
        assert_eq!(
            fields(&s),
            [
                "replicas",
                "datastore_selector",
                "resources.apiserver.memory_request",
                "admission_plugins",
                "extra_args.apiserver"
            ]
        );
        assert!(tenant_cluster("acme", &s)
            .iter()
            .any(|e| e.message.contains("--etcd-prefix is set by kamajid")));
        for q in ["250m", "1", "1.5", "512Mi", "2G", "0"] {
            assert!(quantity("q", q).is_ok(), "{q}");
        }
        for q in ["", "m", "1.2.3", "12mb", ".5", "-1"] {
            assert!(quantity("q", q).is_err(), "{q}");
        }
    }

    #[test]
    fn long_names_are_refused() {
        assert_eq!(tenant_cluster(&"a".repeat(51), &good())[0].field, "name");
        assert!(tenant_cluster(&"a".repeat(50), &good()).is_empty());
    }
}
