//! A tenant's control plane as pure values: the component flags ([`flags`]) and Go runtime
//! settings ([`goruntime`]), the files the
//! components read ([`files`]), and the objects the Kubernetes runtime applies to the admin
//! cluster, one module per kind ([`namespace`], [`secrets`], [`deployment`], [`exposure`],
//! [`disruption`]). Nothing here does I/O.
//!
//! Every object carries the owner labels (`kamaji.io/tenant`, `kamaji.io/tenant-id`,
//! `app.kubernetes.io/managed-by=kamajid`), so cleanup is exact. Rendering is deterministic:
//! the same tenant gives the same objects, so server-side apply of an unchanged tenant is a
//! no-op and never restarts its pods. Every object passes the upstream schemas strictly (tested).

pub mod config;
pub mod deployment;
pub mod disruption;
pub mod exposure;
pub mod files;
pub mod flags;
pub mod goruntime;
pub mod konnectivity;
pub mod namespace;
pub mod secrets;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Namespace, Secret, Service};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::ids::{TenantId, TenantName};
use crate::pki::TenantPki;
use crate::spec::TenantSpec;

/// The server-side apply field manager of everything kamajid writes, in the admin cluster and
/// inside tenants.
pub const FIELD_MANAGER: &str = "kamajid";
pub const LABEL_TENANT: &str = "kamaji.io/tenant";
pub const LABEL_TENANT_ID: &str = "kamaji.io/tenant-id";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kamajid");
pub const ANNOTATION_CERTIFICATES: &str = "kamaji.io/certificates-sha256";
pub const ANNOTATION_CONFIG: &str = "kamaji.io/config-sha256";
pub const DEPLOYMENT: &str = "control-plane";
pub const SERVICE: &str = "kube-apiserver";

/// One tenant to render.
#[derive(Debug, Clone)]
pub struct Tenant<'a> {
    pub name: &'a TenantName,
    pub id: &'a TenantId,
    pub spec: &'a TenantSpec,
    pub etcd_endpoints: &'a [String],
    /// PEM CA of the datastore's servers.
    pub etcd_ca_certificate: &'a str,
    pub dns_domain: &'a str,
    /// Where kamajid publishes tenants' service-account issuers (`--service-account-issuer-base-url`);
    /// a tenant with `public_issuer` is the issuer `<base>/<id>` ([`flags::service_account_issuer`]).
    pub issuer_base: Option<&'a str>,
    /// Whether the address clients reach the API server at is known (recorded, or given as
    /// `endpoint_address`). Until it is, the Deployment runs no pods: its serving certificate
    /// is re-issued for that address as soon as the runtime gives it, and pods started before
    /// would only be replaced, a rollout a full admin cluster has no room for.
    pub address_known: bool,
}

/// Everything applied for a tenant, in apply order.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub namespace: Namespace,
    pub secrets: Vec<Secret>,
    pub deployment: Deployment,
    pub service: Service,
    pub network_policy: NetworkPolicy,
    pub pdb: PodDisruptionBudget,
}

/// The owner labels every object of a tenant carries.
pub fn owner_labels(t: &Tenant<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_TENANT.to_owned(), t.name.to_string()),
        (LABEL_TENANT_ID.to_owned(), t.id.to_string()),
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
    ])
}

/// Metadata of object `name` in the tenant's namespace.
fn meta(t: &Tenant<'_>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(t.name.namespace()),
        labels: Some(owner_labels(t)),
        ..Default::default()
    }
}

/// Renders every object of tenant `t` with its PKI.
pub fn render(t: &Tenant<'_>, pki: &TenantPki) -> Rendered {
    Rendered {
        namespace: namespace::namespace(t),
        secrets: secrets::secrets(t, pki),
        deployment: deployment::deployment(t, pki),
        service: exposure::service(t),
        network_policy: exposure::network_policy(t),
        pdb: disruption::pdb(t),
    }
}

impl Rendered {
    /// Every object as JSON, in apply order (Namespace first).
    pub fn to_json(&self) -> Result<Vec<serde_json::Value>, serde_json::Error> {
        let mut out = vec![serde_json::to_value(&self.namespace)?];
        for s in &self.secrets {
            out.push(serde_json::to_value(s)?);
        }
        out.push(serde_json::to_value(&self.deployment)?);
        out.push(serde_json::to_value(&self.service)?);
        out.push(serde_json::to_value(&self.network_policy)?);
        out.push(serde_json::to_value(&self.pdb)?);
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! One tenant to render, for the tests of every object kind.
    use super::*;
    use crate::pki::{mint, new_ca, TenantPkiSpec};
    use crate::spec::{
        Addons, Network, PerComponent, Placement, Requirements, ServiceType, Version,
    };

    pub fn spec(service_type: ServiceType) -> TenantSpec {
        TenantSpec {
            kubernetes_version: Version::parse("1.35.2").unwrap(),
            replicas: 3,
            placement: Placement::Any,
            network: Network {
                service_cidr: "10.96.0.0/12".parse().unwrap(),
                pod_cidr: "10.244.0.0/16".parse().unwrap(),
                dns_service_ip: "10.96.0.10".parse().unwrap(),
                port: 6443,
                service_type,
                endpoint_address: None,
                extra_sans: vec![],
                authorized_networks: vec![],
                konnectivity: false,
            },
            resources: PerComponent {
                apiserver: Requirements {
                    cpu_request: Some("500m".into()),
                    memory_limit: Some("2Gi".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
            admission_plugins: vec![],
            extra_args: Default::default(),
            labels: Default::default(),
            deletion_protection: false,
            addons: Addons::default(),
            encryption: Default::default(),
            oidc: vec![],
            audit: None,
            credential_rotation: Default::default(),
            storage_quota_bytes: None,
            write_budget_bytes_per_second: None,
            hibernated: false,
            public_issuer: false,
            maintenance: Default::default(),
            restore_from: None,
            restore_keep_identity: false,
            backup_schedule: None,
        }
    }

    /// A fresh PKI for tenant `acme-1a2b3`.
    pub fn pki() -> crate::pki::TenantPki {
        mint(
            &TenantPkiSpec {
                tenant_id: TenantId::parse("acme-1a2b3").unwrap(),
                service_cidr: "10.96.0.0/12".parse().unwrap(),
                dns_domain: "cluster.local".into(),
                external_sans: vec![],
                leaf_validity: crate::pki::LEAF_VALIDITY,
            },
            &new_ca("etcd").unwrap(),
        )
        .unwrap()
    }

    /// Renders tenant `acme` (id `acme-1a2b3`) of `spec` with a fresh PKI.
    pub fn rendered(spec: &TenantSpec) -> Rendered {
        rendered_with(spec, true)
    }

    /// [`rendered`], with its address known or not yet.
    pub fn rendered_with(spec: &TenantSpec, address_known: bool) -> Rendered {
        let etcd_ca = new_ca("etcd").unwrap();
        let name = TenantName::parse("acme").unwrap();
        let id = TenantId::parse("acme-1a2b3").unwrap();
        let eps = vec!["https://10.0.0.1:2379".to_owned()];
        render(
            &Tenant {
                name: &name,
                id: &id,
                spec,
                etcd_endpoints: &eps,
                etcd_ca_certificate: &etcd_ca.cert,
                dns_domain: "cluster.local",
                issuer_base: None,
                address_known,
            },
            &pki(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use crate::spec::ServiceType;

    #[test]
    fn every_object_is_owned_by_the_tenant_and_lives_in_its_namespace() {
        let r = rendered(&spec(ServiceType::LoadBalancer));
        for obj in r.to_json().unwrap() {
            let labels = &obj["metadata"]["labels"];
            assert_eq!(labels[LABEL_TENANT], "acme", "{obj}");
            assert_eq!(labels[LABEL_TENANT_ID], "acme-1a2b3");
            assert_eq!(labels["app.kubernetes.io/managed-by"], "kamajid");
            if obj["kind"] != "Namespace" {
                assert_eq!(
                    obj["metadata"]["namespace"], "tenant-acme",
                    "{}",
                    obj["kind"]
                );
            }
        }
    }

    #[test]
    fn rendering_is_deterministic_for_the_same_pki() {
        let s = spec(ServiceType::ClusterIp);
        let etcd_ca = crate::pki::new_ca("etcd").unwrap();
        let (name, id) = (
            TenantName::parse("a").unwrap(),
            TenantId::parse("a-1").unwrap(),
        );
        let pki = crate::pki::mint(
            &crate::pki::TenantPkiSpec {
                tenant_id: id.clone(),
                service_cidr: "10.96.0.0/12".parse().unwrap(),
                dns_domain: "cluster.local".into(),
                external_sans: vec![],
                leaf_validity: crate::pki::LEAF_VALIDITY,
            },
            &etcd_ca,
        )
        .unwrap();
        let eps = vec!["https://e:2379".to_owned()];
        let t = Tenant {
            name: &name,
            id: &id,
            spec: &s,
            etcd_endpoints: &eps,
            etcd_ca_certificate: &etcd_ca.cert,
            dns_domain: "cluster.local",
            issuer_base: None,
            address_known: true,
        };
        assert_eq!(
            render(&t, &pki).to_json().unwrap(),
            render(&t, &pki).to_json().unwrap()
        );
    }

    #[test]
    fn no_pod_runs_until_the_address_clients_use_is_known() {
        let s = spec(ServiceType::LoadBalancer);
        let replicas = |known| rendered_with(&s, known).deployment.spec.unwrap().replicas;
        assert_eq!(replicas(false), Some(0));
        assert_eq!(replicas(true), Some(3));
    }

    #[test]
    fn a_hibernated_tenant_runs_no_pod() {
        let mut s = spec(ServiceType::LoadBalancer);
        s.hibernated = true;
        let d = rendered_with(&s, true).deployment;
        assert_eq!(d.spec.unwrap().replicas, Some(0));
    }

    /// Every rendered object passes `kubernetes-validate --strict` for each admin-cluster
    /// version we support (installed by scripts/install-deps.sh).
    #[test]
    fn rendered_objects_pass_the_upstream_schemas_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let mut files = Vec::new();
        for (i, st) in [
            ServiceType::ClusterIp,
            ServiceType::NodePort,
            ServiceType::LoadBalancer,
        ]
        .into_iter()
        .enumerate()
        {
            let docs: Vec<String> = rendered(&spec(st))
                .to_json()
                .unwrap()
                .iter()
                .map(|v| serde_json::to_string_pretty(v).unwrap())
                .collect();
            let file = dir.path().join(format!("tenant-{i}.yaml"));
            std::fs::write(&file, docs.join("\n---\n")).unwrap();
            files.push(file);
        }
        for version in ["1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"] {
            let out = std::process::Command::new("kubernetes-validate")
                .args(["--strict", "--quiet", "--kubernetes-version", version])
                .args(&files)
                .output()
                .expect("kubernetes-validate is not installed: run scripts/install-deps.sh");
            assert!(
                out.status.success(),
                "Kubernetes {version}:\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}
