//! A v1 tenant spec parsed into the model's typed spec: judged by every rule first when it comes
//! from a user ([`parse`]), converted as it is when it comes from the store ([`from_stored`]).
//! Defaults the wire leaves implicit are applied here, once.

use std::str::FromStr;

use kamaji_model::ids::DatastoreName;
use kamaji_model::spec::{
    Addons, Audit, AuditPolicy, CredentialRotation, Encryption, Network, OidcIssuer, PerComponent,
    Placement, Requirements, ServiceType, TenantSpec, Version,
};

use crate::errors::FieldError;
use crate::v1;

/// A spec a user sent, judged by every rule ([`super::tenant_cluster`], one error per field)
/// and then typed: what the provider checks at plan and kamajid on every write.
pub fn parse(name: &str, v: &v1::TenantClusterSpec) -> Result<TenantSpec, Vec<FieldError>> {
    let errors = super::tenant_cluster(name, v);
    if !errors.is_empty() {
        return Err(errors);
    }
    from_stored(v).map_err(|e| vec![e])
}

fn typed<T: FromStr>(field: &str, v: &str) -> Result<T, FieldError>
where
    T::Err: std::fmt::Display,
{
    v.parse()
        .map_err(|e| FieldError::new(field, format!("{v:?}: {e}")))
}

fn opt(s: &str) -> Option<String> {
    (!s.is_empty()).then(|| s.to_owned())
}

fn requirements(r: Option<&v1::ResourceRequirements>) -> Requirements {
    let r = r.cloned().unwrap_or_default();
    Requirements {
        cpu_request: opt(&r.cpu_request),
        memory_request: opt(&r.memory_request),
        cpu_limit: opt(&r.cpu_limit),
        memory_limit: opt(&r.memory_limit),
    }
}

/// The typed spec of a wire spec, converted without judging it: how a stored record (which the
/// contract passed when it was written, perhaps under older rules) is read. A value that cannot
/// be converted at all is an error naming its field, never a default.
pub fn from_stored(v: &v1::TenantClusterSpec) -> Result<TenantSpec, FieldError> {
    let version = Version::parse(&v.kubernetes_version).ok_or_else(|| {
        FieldError::new(
            "kubernetes_version",
            format!("{:?} is not a Kubernetes version", v.kubernetes_version),
        )
    })?;
    let net = v
        .network
        .clone()
        .ok_or_else(|| FieldError::new("network", "is required"))?;
    let placement = if !v.datastore.is_empty() {
        Placement::Named(
            DatastoreName::parse(&v.datastore)
                .map_err(|e| FieldError::new("datastore", e.to_string()))?,
        )
    } else if !v.datastore_selector.is_empty() {
        Placement::Selector(v.datastore_selector.clone().into_iter().collect())
    } else {
        Placement::Any
    };
    let service_type = match v1::ServiceType::try_from(net.service_type) {
        Ok(v1::ServiceType::ClusterIp) => ServiceType::ClusterIp,
        Ok(v1::ServiceType::NodePort) => ServiceType::NodePort,
        Ok(v1::ServiceType::LoadBalancer) => ServiceType::LoadBalancer,
        _ => return Err(FieldError::new("network.service_type", "is not set")),
    };
    let res = v.resources.clone().unwrap_or_default();
    let x = v.extra_args.clone().unwrap_or_default();
    Ok(TenantSpec {
        kubernetes_version: version,
        replicas: v.replicas,
        placement,
        network: Network {
            service_cidr: typed("network.service_cidr", &net.service_cidr)?,
            pod_cidr: typed("network.pod_cidr", &net.pod_cidr)?,
            dns_service_ip: typed("network.dns_service_ip", &net.dns_service_ip)?,
            port: u16::try_from(net.port).map_err(|_| {
                FieldError::new("network.port", format!("{} is not a TCP port", net.port))
            })?,
            service_type,
            endpoint_address: opt(&net.endpoint_address),
            extra_sans: net.extra_sans,
            authorized_networks: net
                .authorized_networks
                .iter()
                .map(|n| typed("network.authorized_networks", n))
                .collect::<Result<_, _>>()?,
            konnectivity: net.konnectivity,
        },
        resources: PerComponent {
            apiserver: requirements(res.apiserver.as_ref()),
            controller_manager: requirements(res.controller_manager.as_ref()),
            scheduler: requirements(res.scheduler.as_ref()),
        },
        admission_plugins: v.admission_plugins.clone(),
        extra_args: PerComponent {
            apiserver: x.apiserver.into_iter().collect(),
            controller_manager: x.controller_manager.into_iter().collect(),
            scheduler: x.scheduler.into_iter().collect(),
        },
        labels: v.labels.clone().into_iter().collect(),
        deletion_protection: v.deletion_protection,
        // Absent means all on.
        addons: v.addons.map_or_else(Addons::default, |a| Addons {
            coredns: a.coredns,
            kube_proxy: a.kube_proxy,
        }),
        encryption: v
            .encryption
            .clone()
            .map_or_else(Encryption::default, |e| Encryption {
                resources: e.resources,
                key_rotation: e.key_rotation,
            }),
        oidc: v
            .authentication
            .clone()
            .map(|a| a.oidc.into_iter().map(oidc_issuer).collect())
            .unwrap_or_default(),
        audit: v.audit.as_ref().map(audit).transpose()?,
        credential_rotation: {
            let (generation, started) = super::rotation_state(v.credential_rotation.as_ref());
            CredentialRotation {
                generation,
                started,
            }
        },
        storage_quota_bytes: (v.storage_quota_bytes > 0).then_some(v.storage_quota_bytes),
        write_budget_bytes_per_second: (v.write_budget_bytes_per_second > 0)
            .then_some(v.write_budget_bytes_per_second),
        hibernated: v.hibernated,
        public_issuer: v.public_issuer,
        maintenance: super::maintenance(v).map_err(|mut e| e.remove(0))?,
        restore_from: backup_id("restore_from", &v.restore_from)?,
        restore_keep_identity: v.restore_keep_identity,
        backup_schedule: v
            .backup_schedule
            .as_ref()
            .map(|b| {
                kamaji_model::backup::schedule(
                    "backup_schedule",
                    &b.interval,
                    b.retention_count,
                    &b.retention_max_age,
                )
                .map_err(|mut e| e.remove(0))
            })
            .transpose()?,
    })
}

fn oidc_issuer(o: v1::OidcIssuer) -> OidcIssuer {
    OidcIssuer {
        issuer_url: o.issuer_url,
        client_id: o.client_id,
        username_claim: opt(&o.username_claim).unwrap_or_else(|| "sub".into()),
        username_prefix: o.username_prefix,
        groups_claim: opt(&o.groups_claim),
        groups_prefix: o.groups_prefix,
        ca_certificate: opt(&o.ca_certificate),
    }
}

fn audit(a: &v1::Audit) -> Result<Audit, FieldError> {
    let policy = if !a.policy.trim().is_empty() {
        AuditPolicy::Custom(a.policy.clone())
    } else {
        AuditPolicy::Preset(match a.preset.as_str() {
            "metadata" => "Metadata",
            "request" => "Request",
            "request_response" => "RequestResponse",
            other => {
                return Err(FieldError::new(
                    "audit.preset",
                    format!("{other:?} is not a preset"),
                ))
            }
        })
    };
    Ok(Audit {
        policy,
        max_age_days: a.max_age_days,
    })
}

/// A backup id as a user writes it: empty for none.
pub(super) fn backup_id(field: &str, v: &str) -> Result<Option<String>, FieldError> {
    if v.is_empty() {
        return Ok(None);
    }
    let ok = v.len() <= 120
        && v.starts_with(|c: char| c.is_ascii_lowercase())
        && v.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        return Err(FieldError::new(
            field,
            format!("{v:?} is not a backup id (the id of a kamaji_tenant_backup, such as \"prod-20261206101500-1a2b\")"),
        ));
    }
    Ok(Some(v.to_owned()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn security_settings_parse_with_their_defaults() {
        let t = from_stored(&super::super::cases::full()).unwrap();
        assert_eq!(
            t.network.authorized_networks,
            ["203.0.113.0/24".parse().unwrap()]
        );
        assert_eq!(t.encryption.key_rotation, 2);
        assert_eq!(
            t.oidc[0].username_claim, "sub",
            "the claim when none is named"
        );
        assert_eq!(t.oidc[0].groups_claim.as_deref(), Some("groups"));
        assert_eq!(t.oidc[0].ca_certificate, None);
        let audit = t.audit.unwrap();
        assert_eq!(audit.policy, AuditPolicy::Preset("RequestResponse"));
        assert_eq!(audit.max_age_days, 7);
        let mut none = super::super::cases::full();
        none.encryption = None;
        none.audit = None;
        none.authentication = None;
        let t = from_stored(&none).unwrap();
        assert_eq!(
            t.encryption,
            Encryption::default(),
            "Secrets only, rotation 0"
        );
        assert!(t.oidc.is_empty() && t.audit.is_none());
    }

    #[test]
    fn a_wire_spec_parses_into_the_typed_one_with_defaults_applied_once() {
        let t = from_stored(&super::super::cases::full()).unwrap();
        assert_eq!(t.kubernetes_version.to_string(), "1.35.1");
        assert_eq!(
            t.placement,
            Placement::Selector([("tier".to_owned(), "gold".to_owned())].into())
        );
        assert_eq!(t.network.service_type, ServiceType::LoadBalancer);
        assert_eq!(t.network.endpoint_address.as_deref(), Some("203.0.113.7"));
        assert_eq!(t.resources.apiserver.cpu_request.as_deref(), Some("1"));
        assert_eq!(t.resources.apiserver.memory_request, None);
        assert_eq!(t.addons, Addons::default(), "absent add-ons are all on");
        let mut off = super::super::cases::full();
        off.addons = Some(v1::Addons {
            coredns: true,
            kube_proxy: false,
        });
        assert!(!from_stored(&off).unwrap().addons.kube_proxy);
        let mut bad = super::super::cases::full();
        bad.network = None;
        assert_eq!(from_stored(&bad).unwrap_err().field, "network");
    }
}
