//! What a tenant cluster needs inside itself before `kubeadm join` can add workers, rendered
//! purely from the tenant spec (tested by value), then applied with server-side apply through the tenant's own apiserver
//! (the daemon's tenant client).
//!
//! Mirrors what `kubeadm init` writes (phases `bootstrap-token`, `upload-config`, `addon`):
//! - `kube-public/cluster-info` (endpoint and CA) and the Role that lets anonymous discovery read it;
//!   the controller-manager's bootstrap signer adds a JWS per token, which `kubeadm join` checks;
//! - the bindings that let bootstrap tokens create node CSRs and have them auto-approved, and
//!   nodes renew their own client certificates;
//! - `kube-system/kubeadm-config` and `kube-system/kubelet-config`, which `kubeadm join` reads,
//!   and the Roles that let joining nodes read them;
//! - the apiserver's access to kubelets and the `kubeadm:cluster-admins` binding;
//! - optional add-ons, on by default: CoreDNS and kube-proxy at versions matching the tenant;
//! - while the tenant keeps more than its storage quota, the policy that refuses new objects
//!   ([`quota`]).
//!
//! Bootstrap tokens are `kube-system/bootstrap-token-<id>` Secrets, as kubeadm writes them.

pub mod addons;
pub mod config;
pub mod konnectivity;
pub mod quota;
pub mod tokens;

use serde_json::{json, Value};

use crate::controlplane::MANAGED_BY;
use crate::ids::TenantName;
use crate::spec::TenantSpec;

/// The group every kubeadm-style node token authenticates into.
pub const NODE_TOKEN_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
pub const TOKEN_SECRET_TYPE: &str = "bootstrap.kubernetes.io/token";
pub const TOKEN_PREFIX: &str = "bootstrap-token-";
/// Client certificates in this group are cluster admins (kubeadm ≥ 1.29).
pub const CLUSTER_ADMINS_GROUP: &str = "kubeadm:cluster-admins";
/// CN of the certificate the apiserver presents to kubelets (see `pki`).
pub const APISERVER_KUBELET_CLIENT: &str = "kube-apiserver-kubelet-client";

/// The tenant as bootstrap sees it.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub cluster_name: &'a TenantName,
    /// `https://host:port`, what workers join.
    pub endpoint: &'a str,
    pub ca_pem: &'a str,
    pub spec: &'a TenantSpec,
    pub dns_domain: &'a str,
    /// `host:port` the Konnectivity agents dial, once the runtime reports it.
    pub tunnel: Option<&'a str>,
}

/// `host:port` of an `https://host:port` endpoint, as `kubeadm join` takes it.
pub fn host_port(endpoint: &str) -> &str {
    endpoint
        .trim_start_matches("https://")
        .trim_end_matches('/')
}

pub(super) fn meta(name: &str, namespace: Option<&str>) -> Value {
    let mut m = json!({"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1}});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

pub(super) fn role(ns: &str, name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(name, Some(ns)), "rules": rules})
}

pub(super) fn role_binding(ns: &str, name: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(name, Some(ns)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}, "subjects": subjects})
}

pub(super) fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(name, None), "rules": rules})
}

pub(super) fn cluster_role_binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(name, None),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": subjects})
}

pub(super) fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

pub(super) fn user(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

pub(super) fn config_map(ns: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, Some(ns)), "data": data})
}

/// Every object bootstrap applies, in apply order (RBAC before what it guards is harmless
/// either way; add-ons last).
pub fn render(i: &Inputs<'_>) -> Vec<Value> {
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let joining = json!([group(NODE_TOKEN_GROUP), group("system:nodes")]);
    let mut objs = vec![
        config_map(
            "kube-public",
            "cluster-info",
            json!({"kubeconfig": config::cluster_info_kubeconfig(i.endpoint, i.ca_pem)}),
        ),
        role(
            "kube-public",
            "kubeadm:bootstrap-signer-clusterinfo",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["cluster-info"], "verbs": ["get"]}]),
        ),
        role_binding(
            "kube-public",
            "kubeadm:bootstrap-signer-clusterinfo",
            "kubeadm:bootstrap-signer-clusterinfo",
            json!([user("system:anonymous")]),
        ),
        cluster_role_binding(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            json!([group(NODE_TOKEN_GROUP)]),
        ),
        cluster_role_binding(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            json!([group(NODE_TOKEN_GROUP)]),
        ),
        cluster_role_binding(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            json!([group("system:nodes")]),
        ),
        cluster_role(
            "kubeadm:get-nodes",
            json!([{"apiGroups": [""], "resources": ["nodes"], "verbs": ["get"]}]),
        ),
        cluster_role_binding(
            "kubeadm:get-nodes",
            "kubeadm:get-nodes",
            json!([group(NODE_TOKEN_GROUP)]),
        ),
        cluster_role_binding(
            "kubeadm:apiserver-kubelet-client",
            "system:kubelet-api-admin",
            json!([user(APISERVER_KUBELET_CLIENT)]),
        ),
        cluster_role_binding(
            "kubeadm:cluster-admins",
            "cluster-admin",
            json!([group(CLUSTER_ADMINS_GROUP)]),
        ),
        config_map(
            "kube-system",
            "kubeadm-config",
            json!({"ClusterConfiguration": pretty(&config::cluster_configuration(i))}),
        ),
        role(
            "kube-system",
            "kubeadm:nodes-kubeadm-config",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kubeadm-config"], "verbs": ["get"]}]),
        ),
        role_binding(
            "kube-system",
            "kubeadm:nodes-kubeadm-config",
            "kubeadm:nodes-kubeadm-config",
            joining.clone(),
        ),
        config_map(
            "kube-system",
            "kubelet-config",
            json!({"kubelet": pretty(&config::kubelet_configuration(i))}),
        ),
        role(
            "kube-system",
            "kubeadm:kubelet-config",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kubelet-config"], "verbs": ["get"]}]),
        ),
        role_binding(
            "kube-system",
            "kubeadm:kubelet-config",
            "kubeadm:kubelet-config",
            joining,
        ),
    ];
    if i.spec.addons.kube_proxy {
        objs.extend(addons::kube_proxy(i));
    }
    if i.spec.addons.coredns {
        objs.extend(addons::coredns(i));
    }
    if let (true, Some(tunnel)) = (i.spec.network.konnectivity, i.tunnel) {
        objs.extend(konnectivity::agent(i, tunnel));
    }
    objs
}

/// The objects of the add-ons `i` turns off: removed so that turning one off takes it away
/// (a CNI that replaces kube-proxy, a DNS of the user's own).
pub fn disabled_addons(i: &Inputs<'_>) -> Vec<Value> {
    let mut objs = Vec::new();
    if !i.spec.addons.kube_proxy {
        objs.extend(addons::kube_proxy(i));
    }
    if !i.spec.addons.coredns {
        objs.extend(addons::coredns(i));
    }
    if !i.spec.network.konnectivity {
        objs.extend(konnectivity::agent(i, ""));
    }
    objs
}

#[cfg(test)]
pub(crate) mod testing {
    //! A tenant to bootstrap, and readers of what was rendered, for the tests of each part.
    use super::*;
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, RoleBinding};

    pub fn inputs(coredns: bool, kube_proxy: bool) -> Inputs<'static> {
        let mut spec = crate::controlplane::testing::spec(crate::spec::ServiceType::LoadBalancer);
        spec.network.service_cidr = "10.96.0.0/16".parse().unwrap();
        spec.addons = crate::spec::Addons {
            coredns,
            kube_proxy,
        };
        Inputs {
            cluster_name: Box::leak(Box::new(TenantName::parse("acme").unwrap())),
            endpoint: "https://203.0.113.10:6443",
            ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            spec: Box::leak(Box::new(spec)),
            dns_domain: "cluster.local",
            tunnel: None,
        }
    }

    pub fn find<'a>(objs: &'a [Value], kind: &str, ns: Option<&str>, name: &str) -> &'a Value {
        objs.iter()
            .find(|o| {
                o["kind"] == kind
                    && o["metadata"]["name"] == name
                    && o["metadata"]["namespace"].as_str() == ns
            })
            .unwrap_or_else(|| panic!("{kind} {ns:?}/{name} not rendered"))
    }

    /// (binding kind, namespace, name) → (role, subjects as "Kind:name").
    pub fn binding(
        objs: &[Value],
        kind: &str,
        ns: Option<&str>,
        name: &str,
    ) -> (String, Vec<String>) {
        let v = find(objs, kind, ns, name).clone();
        let (role, subjects) = if kind == "RoleBinding" {
            let b: RoleBinding = serde_json::from_value(v).unwrap();
            (b.role_ref, b.subjects.unwrap_or_default())
        } else {
            let b: ClusterRoleBinding = serde_json::from_value(v).unwrap();
            (b.role_ref, b.subjects.unwrap_or_default())
        };
        (
            role.name,
            subjects
                .into_iter()
                .map(|s| format!("{}:{}", s.kind, s.name))
                .collect(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use k8s_openapi::api::rbac::v1::Role;
    use time::OffsetDateTime;

    #[test]
    fn cluster_info_lets_anonymous_discovery_find_the_endpoint_and_ca() {
        let objs = render(&inputs(true, true));
        let ci = find(&objs, "ConfigMap", Some("kube-public"), "cluster-info");
        let kc = ci["data"]["kubeconfig"].as_str().unwrap();
        assert!(
            kc.contains("    server: https://203.0.113.10:6443\n"),
            "{kc}"
        );
        use base64::Engine;
        let ca_line = kc
            .lines()
            .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
            .unwrap();
        let ca = base64::engine::general_purpose::STANDARD
            .decode(ca_line)
            .unwrap();
        assert_eq!(String::from_utf8(ca).unwrap(), inputs(true, true).ca_pem);
        assert!(
            kc.contains("users: null"),
            "discovery carries no user: {kc}"
        );

        let role: Role = serde_json::from_value(
            find(
                &objs,
                "Role",
                Some("kube-public"),
                "kubeadm:bootstrap-signer-clusterinfo",
            )
            .clone(),
        )
        .unwrap();
        let rule = &role.rules.unwrap()[0];
        assert_eq!(rule.verbs, vec!["get"]);
        assert_eq!(
            rule.resources.as_deref(),
            Some(&["configmaps".to_owned()][..])
        );
        assert_eq!(
            rule.resource_names.as_deref(),
            Some(&["cluster-info".to_owned()][..])
        );
        assert_eq!(
            binding(
                &objs,
                "RoleBinding",
                Some("kube-public"),
                "kubeadm:bootstrap-signer-clusterinfo"
            ),
            (
                "kubeadm:bootstrap-signer-clusterinfo".into(),
                vec!["User:system:anonymous".into()]
            )
        );
    }

    #[test]
    fn tokens_may_create_csrs_that_are_auto_approved_and_nodes_rotate_their_certificates() {
        let objs = render(&inputs(true, true));
        let token = format!("Group:{NODE_TOKEN_GROUP}");
        for (name, role, subject) in [
            (
                "kubeadm:kubelet-bootstrap",
                "system:node-bootstrapper",
                token.as_str(),
            ),
            (
                "kubeadm:node-autoapprove-bootstrap",
                "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
                token.as_str(),
            ),
            (
                "kubeadm:node-autoapprove-certificate-rotation",
                "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
                "Group:system:nodes",
            ),
            ("kubeadm:get-nodes", "kubeadm:get-nodes", token.as_str()),
            (
                "kubeadm:apiserver-kubelet-client",
                "system:kubelet-api-admin",
                "User:kube-apiserver-kubelet-client",
            ),
            (
                "kubeadm:cluster-admins",
                "cluster-admin",
                "Group:kubeadm:cluster-admins",
            ),
        ] {
            assert_eq!(
                binding(&objs, "ClusterRoleBinding", None, name),
                (role.to_owned(), vec![subject.to_owned()]),
                "{name}"
            );
        }
    }

    #[test]
    fn joining_nodes_can_read_the_kubeadm_and_kubelet_configs_kubeadm_join_fetches() {
        let i = inputs(true, true);
        let objs = render(&i);
        let both = vec![
            format!("Group:{NODE_TOKEN_GROUP}"),
            "Group:system:nodes".to_owned(),
        ];
        for (cm, role) in [
            ("kubeadm-config", "kubeadm:nodes-kubeadm-config"),
            ("kubelet-config", "kubeadm:kubelet-config"),
        ] {
            let r: Role =
                serde_json::from_value(find(&objs, "Role", Some("kube-system"), role).clone())
                    .unwrap();
            assert_eq!(
                r.rules.unwrap()[0].resource_names.as_deref(),
                Some(&[cm.to_owned()][..])
            );
            assert_eq!(
                binding(&objs, "RoleBinding", Some("kube-system"), role),
                (role.to_owned(), both.clone())
            );
        }
        let kc = find(&objs, "ConfigMap", Some("kube-system"), "kubeadm-config");
        let cc: Value =
            serde_json::from_str(kc["data"]["ClusterConfiguration"].as_str().unwrap()).unwrap();
        assert_eq!(cc["kind"], "ClusterConfiguration");
        assert_eq!(cc["kubernetesVersion"], "v1.35.2");
        assert_eq!(cc["controlPlaneEndpoint"], "203.0.113.10:6443");
        assert_eq!(cc["networking"]["serviceSubnet"], "10.96.0.0/16");
        assert_eq!(cc["networking"]["podSubnet"], "10.244.0.0/16");
        assert_eq!(cc["networking"]["dnsDomain"], "cluster.local");
        let kl = find(&objs, "ConfigMap", Some("kube-system"), "kubelet-config");
        let k: Value = serde_json::from_str(kl["data"]["kubelet"].as_str().unwrap()).unwrap();
        assert_eq!(k["kind"], "KubeletConfiguration");
        assert_eq!(k["clusterDNS"], json!(["10.96.0.10"]));
        assert_eq!(k["clusterDomain"], "cluster.local");
        assert_eq!(k["authentication"]["anonymous"]["enabled"], false);
        assert_eq!(k["authorization"]["mode"], "Webhook");
    }

    /// Every object bootstrap writes into a tenant passes `kubernetes-validate --strict` for
    /// each Kubernetes version tenants may run.
    #[test]
    fn bootstrap_objects_pass_the_upstream_schemas_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let mut objs = render(&inputs(true, true));
        objs.push(tokens::token_secret(
            "abcdef",
            "0123456789abcdef",
            OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap(),
            "d",
        ));
        let docs: Vec<String> = objs
            .iter()
            .map(|v| serde_json::to_string_pretty(v).unwrap())
            .collect();
        let file = dir.path().join("bootstrap.yaml");
        std::fs::write(&file, docs.join("\n---\n")).unwrap();
        for version in ["1.33.0", "1.34.0", "1.35.0", "1.36.0", "1.37.0"] {
            let out = std::process::Command::new("kubernetes-validate")
                .args(["--strict", "--quiet", "--kubernetes-version", version])
                .arg(&file)
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
