//! The control-plane Deployment: kube-apiserver, kube-controller-manager and kube-scheduler in
//! one pod, replicated, spread over zones and hosts, hardened (non-root, read-only root, no
//! capabilities), rolled without ever dropping below the desired replicas.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, HTTPGetAction, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource,
    SecurityContext, TopologySpreadConstraint, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::files::files;
use super::flags::{self, FlagInputs, Layout, Ports};
use super::goruntime;
use super::konnectivity as knp;
use super::{meta, owner_labels, Tenant, ANNOTATION_CERTIFICATES, ANNOTATION_CONFIG, DEPLOYMENT};
use crate::pki::TenantPki;
use crate::spec::Requirements;

/// Runs as this user; the upstream images need no root.
const NON_ROOT: i64 = 65532;

fn resources(r: &Requirements, default_cpu: &str, default_mem: &str) -> ResourceRequirements {
    let q = |s: &str| Quantity(s.to_owned());
    let requests = BTreeMap::from([
        (
            "cpu".to_owned(),
            q(r.cpu_request.as_deref().unwrap_or(default_cpu)),
        ),
        (
            "memory".to_owned(),
            q(r.memory_request.as_deref().unwrap_or(default_mem)),
        ),
    ]);
    let mut limits = BTreeMap::new();
    if let Some(c) = &r.cpu_limit {
        limits.insert("cpu".to_owned(), q(c));
    }
    if let Some(m) = &r.memory_limit {
        limits.insert("memory".to_owned(), q(m));
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

/// One component container: the upstream image at the tenant's version, its flags as args.
struct Component<'a> {
    name: &'a str,
    args: Vec<String>,
    port: u32,
    health: &'a str,
    requirements: &'a Requirements,
    default_cpu: &'a str,
    default_memory: &'a str,
    mounts: Vec<VolumeMount>,
}

impl Component<'_> {
    fn container(self, t: &Tenant<'_>) -> Container {
        let port = i32::try_from(self.port).unwrap_or(i32::MAX);
        Container {
            name: self.name.into(),
            image: Some(format!(
                "registry.k8s.io/{}:{}",
                self.name,
                t.spec.kubernetes_version.tag()
            )),
            command: Some(vec![self.name.into()]),
            args: Some(self.args),
            env: Some(
                goruntime::env(self.requirements)
                    .into_iter()
                    .map(|(name, value)| EnvVar {
                        name,
                        value: Some(value),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ports: Some(vec![ContainerPort {
                name: Some("https".into()),
                container_port: port,
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            startup_probe: Some(https_probe(self.health, port, 5, 60)),
            liveness_probe: Some(https_probe(self.health, port, 10, 6)),
            resources: Some(resources(
                self.requirements,
                self.default_cpu,
                self.default_memory,
            )),
            security_context: Some(hardened()),
            volume_mounts: Some(self.mounts),
            // A component that fails at start says why in its log: the kubelet puts the log's
            // tail in the termination message, where kamajid reads it (runtime::kubernetes).
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            ..Default::default()
        }
    }
}

/// The konnectivity server beside the apiserver: agents dial its port `konnectivity` (the
/// Service's too); its health is plain HTTP.
fn konnectivity_container(layout: &Layout, replicas: u32, mounts: Vec<VolumeMount>) -> Container {
    let health = Probe {
        http_get: Some(HTTPGetAction {
            path: Some("/healthz".into()),
            port: IntOrString::Int(i32::try_from(knp::POD_PORTS.health).unwrap_or(8134)),
            scheme: Some("HTTP".into()),
            ..Default::default()
        }),
        period_seconds: Some(10),
        failure_threshold: Some(6),
        timeout_seconds: Some(5),
        ..Default::default()
    };
    Container {
        name: "konnectivity-server".into(),
        image: Some(format!("{}:{}", knp::SERVER_IMAGE, knp::VERSION)),
        command: Some(vec!["/proxy-server".into()]),
        args: Some(knp::server(layout, knp::POD_PORTS, "0.0.0.0", replicas)),
        ports: Some(vec![ContainerPort {
            name: Some("konnectivity".into()),
            container_port: i32::try_from(knp::POD_PORTS.agent).unwrap_or(8132),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]),
        liveness_probe: Some(health.clone()),
        readiness_probe: Some(health),
        resources: Some(resources(&Requirements::default(), "20m", "32Mi")),
        security_context: Some(hardened()),
        volume_mounts: Some(mounts),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

pub fn deployment(t: &Tenant<'_>, pki: &TenantPki) -> Deployment {
    let layout = Layout::pod();
    let ports = Ports::pod(t.spec);
    let inputs = FlagInputs {
        tenant_id: t.id,
        etcd_endpoints: t.etcd_endpoints,
        dns_domain: t.dns_domain,
        layout: &layout,
        ports,
        health_bind_address: "0.0.0.0",
        advertise_address: None,
        leader_election: true,
        issuer_base: t.issuer_base,
    };
    let res = &t.spec.resources;
    let pki_mounts = vec![
        mount("pki", &layout.pki_dir),
        mount("etcd-pki", &layout.etcd_pki_dir),
    ];
    let mut api_mounts = pki_mounts.clone();
    api_mounts.push(mount("config", &layout.config_dir));
    let tunnel = t.spec.network.konnectivity;
    // The konnectivity server's socket, which the apiserver dials.
    let socket_mount = VolumeMount {
        name: "konnectivity".into(),
        mount_path: knp::POD_SOCKET_DIR.into(),
        ..Default::default()
    };
    if tunnel {
        api_mounts.push(socket_mount.clone());
    }
    let mut apiserver = Component {
        name: "kube-apiserver",
        args: flags::apiserver(t.spec, &inputs),
        port: ports.apiserver,
        health: "/livez",
        requirements: &res.apiserver,
        default_cpu: "250m",
        default_memory: "512Mi",
        mounts: api_mounts,
    }
    .container(t);
    apiserver.readiness_probe = Some(https_probe(
        "/readyz",
        i32::try_from(ports.apiserver).unwrap_or(i32::MAX),
        5,
        3,
    ));
    let mut cm_mounts = pki_mounts;
    cm_mounts.push(mount("kubeconfigs", &layout.kubeconfig_dir));
    let controller_manager = Component {
        name: "kube-controller-manager",
        args: flags::controller_manager(t.spec, t.name, &inputs),
        port: ports.controller_manager,
        health: "/healthz",
        requirements: &res.controller_manager,
        default_cpu: "100m",
        default_memory: "128Mi",
        mounts: cm_mounts,
    }
    .container(t);
    let scheduler = Component {
        name: "kube-scheduler",
        args: flags::scheduler(t.spec, &inputs),
        port: ports.scheduler,
        health: "/healthz",
        requirements: &res.scheduler,
        default_cpu: "50m",
        default_memory: "64Mi",
        mounts: vec![mount("kubeconfigs", &layout.kubeconfig_dir)],
    }
    .container(t);
    let konnectivity_server = tunnel.then(|| {
        konnectivity_container(
            &layout,
            t.spec.replicas,
            vec![
                mount("pki", &layout.pki_dir),
                mount("kubeconfigs", &layout.kubeconfig_dir),
                socket_mount,
            ],
        )
    });
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
    let mut pod_labels = owner_labels(t);
    pod_labels.insert("app.kubernetes.io/component".into(), "control-plane".into());
    let topology_spread_constraints = vec![
        spread("topology.kubernetes.io/zone"),
        spread("kubernetes.io/hostname"),
    ];
    Deployment {
        metadata: meta(t, DEPLOYMENT),
        spec: Some(DeploymentSpec {
            // Hibernated: the Deployment, its Secrets and Service stay; only the pods go.
            replicas: Some(if t.address_known && !t.spec.hibernated {
                i32::try_from(t.spec.replicas).unwrap_or(1)
            } else {
                0
            }),
            revision_history_limit: Some(3),
            selector,
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
                    labels: Some(pod_labels),
                    // Pods read their client certificates and configuration at start: a
                    // re-issued or renewed certificate, or a new configuration, rolls them.
                    annotations: Some(BTreeMap::from([
                        (
                            ANNOTATION_CERTIFICATES.to_owned(),
                            pki.credentials_fingerprint(),
                        ),
                        (
                            ANNOTATION_CONFIG.to_owned(),
                            files(t, pki, "", &Layout::pod().konnectivity_socket).config_sha256(),
                        ),
                    ])),
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
                    topology_spread_constraints: Some(topology_spread_constraints),
                    containers: [apiserver, controller_manager, scheduler]
                        .into_iter()
                        .chain(konnectivity_server)
                        .collect(),
                    volumes: Some(
                        [
                            secret_volume("pki"),
                            secret_volume("etcd-pki"),
                            secret_volume("kubeconfigs"),
                            secret_volume("config"),
                        ]
                        .into_iter()
                        .chain(tunnel.then(|| Volume {
                            name: "konnectivity".into(),
                            empty_dir: Some(Default::default()),
                            ..Default::default()
                        }))
                        .collect(),
                    ),
                    ..Default::default()
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use crate::spec::ServiceType;
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

    #[test]
    fn the_deployment_runs_the_three_components_at_the_tenant_version_without_dropping_below_replicas(
    ) {
        let r = rendered(&spec(ServiceType::NodePort));
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
            res.requests.as_ref().unwrap()["memory"],
            Quantity("512Mi".into()),
            "kamajid's default where the spec names none"
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
    }

    #[test]
    fn a_tunnel_adds_the_konnectivity_server_beside_the_apiserver_sharing_its_socket() {
        let mut s = spec(ServiceType::LoadBalancer);
        s.network.konnectivity = true;
        let r = rendered(&s);
        let pod = r
            .deployment
            .spec
            .as_ref()
            .unwrap()
            .template
            .spec
            .clone()
            .unwrap();
        let server = pod
            .containers
            .iter()
            .find(|c| c.name == "konnectivity-server")
            .expect("a konnectivity server container");
        assert_eq!(
            server.image.as_deref(),
            Some("registry.k8s.io/kas-network-proxy/proxy-server:v0.36.0")
        );
        assert!(server
            .args
            .as_ref()
            .unwrap()
            .contains(&"--server-count=3".to_owned()));
        let mounts_socket = |c: &k8s_openapi::api::core::v1::Container| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == "konnectivity" && m.mount_path == "/run/konnectivity")
        };
        assert!(mounts_socket(server) && mounts_socket(&pod.containers[0]));
        assert!(pod.containers[0].args.as_ref().unwrap().contains(
            &"--egress-selector-config-file=/etc/kubernetes/config/egress-selector.yaml".to_owned()
        ));
        let ports: Vec<_> = r
            .service
            .spec
            .unwrap()
            .ports
            .unwrap()
            .into_iter()
            .map(|p| p.port)
            .collect();
        assert_eq!(ports, [6443, 8132]);
        // Off: three containers, no socket volume, one Service port.
        let off = rendered(&spec(ServiceType::LoadBalancer));
        let pod = off.deployment.spec.unwrap().template.spec.unwrap();
        assert_eq!(pod.containers.len(), 3);
        assert!(pod
            .volumes
            .unwrap()
            .iter()
            .all(|v| v.name != "konnectivity"));
    }
}
