//! Component flags: the ones kamajid sets itself (which a tenant's `extra_args` cannot
//! override, and which the control-plane rendering must set: a test ties the two), and the
//! admission plugins kube-apiserver knows, per minor.

use crate::error::{Check, FieldError};

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
