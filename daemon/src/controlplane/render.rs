//! The admin-cluster objects of one tenant: a Namespace, Secrets (PKI, etcd client, component
//! kubeconfigs), a Deployment running kube-apiserver, kube-controller-manager and
//! kube-scheduler, a Service, a NetworkPolicy and a PodDisruptionBudget.
//!
//! Every object carries the owner labels (`kamaji.io/tenant`, `kamaji.io/tenant-id`,
//! `app.kubernetes.io/managed-by=kamajid`), so cleanup is exact. Rendering is deterministic:
//! the same tenant gives the same objects, so server-side apply of an unchanged tenant is a
//! no-op and never restarts its pods. Every object passes the upstream schemas strictly (tested).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, HTTPGetAction, Namespace, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, Secret, SecretVolumeSource,
    SecurityContext, Service, ServicePort, ServiceSpec, TopologySpreadConstraint, Volume,
    VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::ByteString;
use kamaji_proto::v1::{self, ServiceType, TenantClusterSpec};

use super::flags::{self, FlagInputs, Layout};
use crate::pki::{kubeconfig, TenantPki};

pub const LABEL_TENANT: &str = "kamaji.io/tenant";
pub const LABEL_TENANT_ID: &str = "kamaji.io/tenant-id";
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "kamajid");
pub const ANNOTATION_SERVING_CERT: &str = "kamaji.io/serving-cert-sha256";
pub const DEPLOYMENT: &str = "control-plane";
pub const SERVICE: &str = "kube-apiserver";
/// Runs as this user; the upstream images need no root.
const NON_ROOT: i64 = 65532;

/// One tenant to render.
#[derive(Debug, Clone)]
pub struct Tenant<'a> {
    pub name: &'a str,
    pub id: &'a str,
    /// Validated spec.
    pub spec: &'a TenantClusterSpec,
    pub etcd_endpoints: &'a [String],
    /// PEM CA of the datastore's servers.
    pub etcd_ca_certificate: &'a str,
    pub dns_domain: &'a str,
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

pub fn namespace_name(tenant: &str) -> String {
    format!("tenant-{tenant}")
}

/// The owner labels every object of a tenant carries.
pub fn owner_labels(t: &Tenant<'_>) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_TENANT.to_owned(), t.name.to_owned()),
        (LABEL_TENANT_ID.to_owned(), t.id.to_owned()),
        (MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned()),
    ])
}

fn pod_labels(t: &Tenant<'_>) -> BTreeMap<String, String> {
    let mut l = owner_labels(t);
    l.insert("app.kubernetes.io/component".into(), "control-plane".into());
    l
}

fn meta(t: &Tenant<'_>, name: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace_name(t.name)),
        labels: Some(owner_labels(t)),
        ..Default::default()
    }
}

fn secret(t: &Tenant<'_>, name: &str, files: &[(&'static str, String)]) -> Secret {
    Secret {
        metadata: meta(t, name),
        type_: Some("Opaque".into()),
        data: Some(
            files
                .iter()
                .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The files the components read, by directory of [`Layout`]: the Kubernetes runtime mounts
/// them as Secrets, the process runtime writes them to disk. `local_server` is the URL the
/// controller-manager and scheduler reach their apiserver at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantFiles {
    pub pki: Vec<(&'static str, String)>,
    pub etcd_pki: Vec<(&'static str, String)>,
    pub kubeconfigs: Vec<(&'static str, String)>,
}

pub fn files(t: &Tenant<'_>, pki: &TenantPki, local_server: &str) -> TenantFiles {
    TenantFiles {
        pki: vec![
            ("ca.crt", pki.ca.cert.clone()),
            ("ca.key", pki.ca.key.clone()),
            ("apiserver.crt", pki.apiserver.cert.clone()),
            ("apiserver.key", pki.apiserver.key.clone()),
            (
                "apiserver-kubelet-client.crt",
                pki.apiserver_kubelet_client.cert.clone(),
            ),
            (
                "apiserver-kubelet-client.key",
                pki.apiserver_kubelet_client.key.clone(),
            ),
            ("front-proxy-ca.crt", pki.front_proxy_ca.cert.clone()),
            (
                "front-proxy-client.crt",
                pki.front_proxy_client.cert.clone(),
            ),
            ("front-proxy-client.key", pki.front_proxy_client.key.clone()),
            ("sa.key", pki.service_account_key.clone()),
            ("sa.pub", pki.service_account_pub.clone()),
        ],
        etcd_pki: vec![
            ("ca.crt", t.etcd_ca_certificate.to_owned()),
            ("client.crt", pki.etcd_client.cert.clone()),
            ("client.key", pki.etcd_client.key.clone()),
        ],
        kubeconfigs: vec![
            (
                "controller-manager.conf",
                kubeconfig(
                    t.name,
                    local_server,
                    &pki.ca.cert,
                    "system:kube-controller-manager",
                    &pki.controller_manager,
                ),
            ),
            (
                "scheduler.conf",
                kubeconfig(
                    t.name,
                    local_server,
                    &pki.ca.cert,
                    "system:kube-scheduler",
                    &pki.scheduler,
                ),
            ),
        ],
    }
}

fn resources(
    r: Option<&v1::ResourceRequirements>,
    default_cpu: &str,
    default_mem: &str,
) -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_owned());
    let r = r.cloned().unwrap_or_default();
    let pick = |v: &str, d: &str| {
        if v.is_empty() {
            d.to_owned()
        } else {
            v.to_owned()
        }
    };
    let mut requests = BTreeMap::from([
        ("cpu".to_owned(), q(&pick(&r.cpu_request, default_cpu))),
        (
            "memory".to_owned(),
            q(&pick(&r.memory_request, default_mem)),
        ),
    ]);
    requests.retain(|_, v| !v.0.is_empty());
    let mut limits = BTreeMap::new();
    if !r.cpu_limit.is_empty() {
        limits.insert("cpu".to_owned(), q(&r.cpu_limit));
    }
    if !r.memory_limit.is_empty() {
        limits.insert("memory".to_owned(), q(&r.memory_limit));
    }
    ResourceRequirements {
        requests: Some(requests),
        limits: (!limits.is_empty()).then_some(limits),
        ..Default::default()
    }
}

fn https_probe(path: &str, port: i32, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::Int(port),
            scheme: Some("HTTPS".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(5),
        ..Default::default()
    }
}

fn hardened() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

fn component(
    name: &str,
    image: &str,
    args: Vec<String>,
    port: i32,
    health: &str,
    res: ResourceRequirements,
    mounts: Vec<VolumeMount>,
) -> Container {
    Container {
        name: name.into(),
        image: Some(image.into()),
        command: Some(vec![name.into()]),
        args: Some(args),
        ports: Some(vec![ContainerPort {
            name: Some("https".into()),
            container_port: port,
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        startup_probe: Some(https_probe(health, port, 5, 60)),
        liveness_probe: Some(https_probe(health, port, 10, 6)),
        resources: Some(res),
        security_context: Some(hardened()),
        volume_mounts: Some(mounts),
        ..Default::default()
    }
}

/// Renders every object of tenant `t` with its PKI.
pub fn render(t: &Tenant<'_>, pki: &TenantPki) -> Rendered {
    let ns = namespace_name(t.name);
    let net = t.spec.network.clone().unwrap_or_default();
    let port = i32::try_from(net.port).unwrap_or(6443);
    let version = format!("v{}", t.spec.kubernetes_version.trim_start_matches('v'));
    let layout = Layout::pod();
    let inputs = FlagInputs {
        tenant_id: t.id,
        etcd_endpoints: t.etcd_endpoints,
        dns_domain: t.dns_domain,
        layout: &layout,
        ports: flags::Ports::pod(t.spec),
        health_bind_address: "0.0.0.0",
        advertise_address: None,
    };
    let files = files(t, pki, &format!("https://localhost:{port}"));
    let secrets = vec![
        secret(t, "pki", &files.pki),
        secret(t, "etcd-pki", &files.etcd_pki),
        secret(t, "kubeconfigs", &files.kubeconfigs),
    ];

    let res = t.spec.resources.clone().unwrap_or_default();
    let pki_mounts = vec![
        mount("pki", &layout.pki_dir),
        mount("etcd-pki", &layout.etcd_pki_dir),
    ];
    let mut apiserver = component(
        "kube-apiserver",
        &format!("registry.k8s.io/kube-apiserver:{version}"),
        flags::apiserver(t.spec, &inputs),
        port,
        "/livez",
        resources(res.apiserver.as_ref(), "250m", "512Mi"),
        pki_mounts.clone(),
    );
    apiserver.readiness_probe = Some(https_probe("/readyz", port, 5, 3));
    let mut cm_mounts = pki_mounts;
    cm_mounts.push(mount("kubeconfigs", &layout.kubeconfig_dir));
    let controller_manager = component(
        "kube-controller-manager",
        &format!("registry.k8s.io/kube-controller-manager:{version}"),
        flags::controller_manager(t.spec, t.name, &inputs),
        10257,
        "/healthz",
        resources(res.controller_manager.as_ref(), "100m", "128Mi"),
        cm_mounts,
    );
    let scheduler = component(
        "kube-scheduler",
        &format!("registry.k8s.io/kube-scheduler:{version}"),
        flags::scheduler(t.spec, &inputs),
        10259,
        "/healthz",
        resources(res.scheduler.as_ref(), "50m", "64Mi"),
        vec![mount("kubeconfigs", &layout.kubeconfig_dir)],
    );
    let secret_volume = |name: &str| Volume {
        name: name.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(name.into()),
            default_mode: Some(0o440),
            ..Default::default()
        }),
        ..Default::default()
    };
    let selector = LabelSelector {
        match_labels: Some(owner_labels(t)),
        ..Default::default()
    };
    let spread = |key: &str| TopologySpreadConstraint {
        max_skew: 1,
        topology_key: key.into(),
        when_unsatisfiable: "ScheduleAnyway".into(),
        label_selector: Some(selector.clone()),
        ..Default::default()
    };
    let deployment = Deployment {
        metadata: meta(t, DEPLOYMENT),
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(t.spec.replicas).unwrap_or(1)),
            revision_history_limit: Some(3),
            selector: selector.clone(),
            // Never below the desired replicas during a rollout: one extra pod at a time.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_unavailable: Some(IntOrString::Int(0)),
                    max_surge: Some(IntOrString::Int(1)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels(t)),
                    // Pods read certificates at start: a re-issued serving certificate rolls them.
                    annotations: Some(BTreeMap::from([(
                        ANNOTATION_SERVING_CERT.to_owned(),
                        crate::pki::fingerprint(&pki.apiserver.cert),
                    )])),
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    automount_service_account_token: Some(false),
                    enable_service_links: Some(false),
                    security_context: Some(PodSecurityContext {
                        run_as_non_root: Some(true),
                        run_as_user: Some(NON_ROOT),
                        run_as_group: Some(NON_ROOT),
                        fs_group: Some(NON_ROOT),
                        seccomp_profile: Some(SeccompProfile {
                            type_: "RuntimeDefault".into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    topology_spread_constraints: Some(vec![
                        spread("topology.kubernetes.io/zone"),
                        spread("kubernetes.io/hostname"),
                    ]),
                    containers: vec![apiserver, controller_manager, scheduler],
                    volumes: Some(vec![
                        secret_volume("pki"),
                        secret_volume("etcd-pki"),
                        secret_volume("kubeconfigs"),
                    ]),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    };

    let service_type = match ServiceType::try_from(net.service_type).unwrap_or_default() {
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
        ServiceType::ClusterIp | ServiceType::Unspecified => "ClusterIP",
    };
    let service = Service {
        metadata: meta(t, SERVICE),
        spec: Some(ServiceSpec {
            type_: Some(service_type.into()),
            selector: Some(owner_labels(t)),
            ports: Some(vec![ServicePort {
                name: Some("https".into()),
                port,
                target_port: Some(IntOrString::String("https".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    // Only the tenant API port is reachable; the components' health ports are for the kubelet.
    let network_policy = NetworkPolicy {
        metadata: meta(t, "kube-apiserver-ingress"),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector.clone()),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                ports: Some(vec![NetworkPolicyPort {
                    port: Some(IntOrString::Int(port)),
                    protocol: Some("TCP".into()),
                    ..Default::default()
                }]),
                ..Default::default()
            }]),
            ..Default::default()
        }),
    };
    let pdb = PodDisruptionBudget {
        metadata: meta(t, DEPLOYMENT),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(selector),
            ..Default::default()
        }),
        ..Default::default()
    };
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ns),
            labels: Some({
                let mut l = owner_labels(t);
                l.insert(
                    "pod-security.kubernetes.io/enforce".into(),
                    "restricted".into(),
                );
                l
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    Rendered {
        namespace,
        secrets,
        deployment,
        service,
        network_policy,
        pdb,
    }
}

impl Rendered {
    /// Every object as JSON, in apply order (Namespace first).
    pub fn to_json(&self) -> Vec<serde_json::Value> {
        let mut out = vec![serde_json::to_value(&self.namespace).unwrap_or_default()];
        out.extend(
            self.secrets
                .iter()
                .map(|s| serde_json::to_value(s).unwrap_or_default()),
        );
        out.push(serde_json::to_value(&self.deployment).unwrap_or_default());
        out.push(serde_json::to_value(&self.service).unwrap_or_default());
        out.push(serde_json::to_value(&self.network_policy).unwrap_or_default());
        out.push(serde_json::to_value(&self.pdb).unwrap_or_default());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::{mint, new_ca, TenantPkiSpec};
    use kamaji_proto::v1::{ComponentResources, Network};

    fn spec(service_type: ServiceType) -> TenantClusterSpec {
        TenantClusterSpec {
            kubernetes_version: "1.35.2".into(),
            replicas: 3,
            network: Some(Network {
                service_cidr: "10.96.0.0/12".into(),
                pod_cidr: "10.244.0.0/16".into(),
                dns_service_ip: "10.96.0.10".into(),
                port: 6443,
                service_type: service_type as i32,
                ..Default::default()
            }),
            resources: Some(ComponentResources {
                apiserver: Some(v1::ResourceRequirements {
                    cpu_request: "500m".into(),
                    memory_limit: "2Gi".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn rendered(service_type: ServiceType) -> Rendered {
        let s = Box::leak(Box::new(spec(service_type)));
        let eps = Box::leak(Box::new(vec!["https://10.0.0.1:2379".to_owned()]));
        let etcd_ca = new_ca("etcd").unwrap();
        let pki = mint(
            &TenantPkiSpec {
                tenant_id: "acme-1a2b3".into(),
                service_cidr: "10.96.0.0/12".into(),
                dns_domain: "cluster.local".into(),
                external_sans: vec![],
            },
            &etcd_ca,
        )
        .unwrap();
        let t = Tenant {
            name: "acme",
            id: "acme-1a2b3",
            spec: s,
            etcd_endpoints: eps,
            etcd_ca_certificate: Box::leak(Box::new(etcd_ca.cert.clone())),
            dns_domain: "cluster.local",
        };
        render(&t, &pki)
    }

    #[test]
    fn every_object_is_owned_by_the_tenant_and_lives_in_its_namespace() {
        let r = rendered(ServiceType::LoadBalancer);
        for obj in r.to_json() {
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
    fn the_deployment_runs_the_three_components_at_the_tenant_version_without_dropping_below_replicas(
    ) {
        let r = rendered(ServiceType::NodePort);
        let d = r.deployment.spec.as_ref().unwrap();
        assert_eq!(d.replicas, Some(3));
        let ru = d
            .strategy
            .as_ref()
            .unwrap()
            .rolling_update
            .as_ref()
            .unwrap();
        assert_eq!(
            (ru.max_unavailable.clone(), ru.max_surge.clone()),
            (Some(IntOrString::Int(0)), Some(IntOrString::Int(1)))
        );
        let pod = d.template.spec.as_ref().unwrap();
        let images: Vec<_> = pod
            .containers
            .iter()
            .map(|c| c.image.clone().unwrap())
            .collect();
        assert_eq!(
            images,
            [
                "registry.k8s.io/kube-apiserver:v1.35.2",
                "registry.k8s.io/kube-controller-manager:v1.35.2",
                "registry.k8s.io/kube-scheduler:v1.35.2"
            ]
        );
        let api = &pod.containers[0];
        assert!(api
            .args
            .as_ref()
            .unwrap()
            .contains(&"--etcd-prefix=/acme-1a2b3".to_owned()));
        assert!(
            api.readiness_probe.is_some()
                && api.liveness_probe.is_some()
                && api.startup_probe.is_some()
        );
        let res = api.resources.as_ref().unwrap();
        assert_eq!(
            res.requests.as_ref().unwrap()["cpu"],
            Quantity("500m".into())
        );
        assert_eq!(
            res.limits.as_ref().unwrap()["memory"],
            Quantity("2Gi".into())
        );
        assert!(pod.containers[1]
            .args
            .as_ref()
            .unwrap()
            .contains(&"--controllers=*,bootstrapsigner,tokencleaner".to_owned()));
        assert_eq!(
            r.service.spec.as_ref().unwrap().type_.as_deref(),
            Some("NodePort")
        );
        assert_eq!(
            r.pdb.spec.as_ref().unwrap().max_unavailable,
            Some(IntOrString::Int(1))
        );
    }

    #[test]
    fn rendering_is_deterministic_for_the_same_pki() {
        let s = spec(ServiceType::ClusterIp);
        let eps = vec!["https://e:2379".to_owned()];
        let etcd_ca = new_ca("etcd").unwrap();
        let pki = mint(
            &TenantPkiSpec {
                tenant_id: "a-1".into(),
                service_cidr: "10.96.0.0/12".into(),
                dns_domain: "cluster.local".into(),
                external_sans: vec![],
            },
            &etcd_ca,
        )
        .unwrap();
        let t = Tenant {
            name: "a",
            id: "a-1",
            spec: &s,
            etcd_endpoints: &eps,
            etcd_ca_certificate: &etcd_ca.cert,
            dns_domain: "cluster.local",
        };
        assert_eq!(render(&t, &pki).to_json(), render(&t, &pki).to_json());
    }

    /// Every rendered object passes `kubernetes-validate --strict` for each admin-cluster
    /// version we support (installed by scripts/install-deps.sh).
    #[test]
    fn rendered_objects_pass_the_upstream_schemas_strictly() {
        let dir = tempfile::tempdir().unwrap();
        for (i, st) in [
            ServiceType::ClusterIp,
            ServiceType::NodePort,
            ServiceType::LoadBalancer,
        ]
        .into_iter()
        .enumerate()
        {
            let docs: Vec<String> = rendered(st)
                .to_json()
                .iter()
                .map(|v| serde_json::to_string_pretty(v).unwrap())
                .collect();
            std::fs::write(
                dir.path().join(format!("tenant-{i}.yaml")),
                docs.join("\n---\n"),
            )
            .unwrap();
        }
        let files: Vec<_> = (0..3)
            .map(|i| dir.path().join(format!("tenant-{i}.yaml")))
            .collect();
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
