//! What a tenant cluster needs inside itself before `kubeadm join` can add workers, rendered
//! purely from the tenant spec (tested by value), then applied by [`apply`] with server-side
//! apply through the tenant's own apiserver.
//!
//! Mirrors what `kubeadm init` writes (phases `bootstrap-token`, `upload-config`, `addon`):
//! - `kube-public/cluster-info` (endpoint and CA) and the Role that lets anonymous discovery read it;
//!   the controller-manager's bootstrap signer adds a JWS per token, which `kubeadm join` checks;
//! - the bindings that let bootstrap tokens create node CSRs and have them auto-approved, and
//!   nodes renew their own client certificates;
//! - `kube-system/kubeadm-config` and `kube-system/kubelet-config`, which `kubeadm join` reads,
//!   and the Roles that let joining nodes read them;
//! - the apiserver's access to kubelets and the `kubeadm:cluster-admins` binding;
//! - optional add-ons, on by default: CoreDNS and kube-proxy at versions matching the tenant.
//!
//! Bootstrap tokens are `kube-system/bootstrap-token-<id>` Secrets, as kubeadm writes them.

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::{ApiResource, GroupVersionKind};
use rand::Rng;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::controlplane::render::MANAGED_BY;
use crate::runtime::kubernetes::FIELD_MANAGER;

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
    pub cluster_name: &'a str,
    /// `https://host:port`, what workers join.
    pub endpoint: &'a str,
    pub ca_pem: &'a str,
    /// `1.35.2`.
    pub kubernetes_version: &'a str,
    pub service_cidr: &'a str,
    pub pod_cidr: &'a str,
    pub dns_service_ip: &'a str,
    pub dns_domain: &'a str,
    pub coredns: bool,
    pub kube_proxy: bool,
}

/// CoreDNS release kubeadm ships with each Kubernetes minor.
pub fn coredns_version(kubernetes_version: &str) -> &'static str {
    let minor: u32 = kubernetes_version
        .trim_start_matches('v')
        .split('.')
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or(0);
    match minor {
        0..=32 => "v1.11.3",
        33 => "v1.12.0",
        34 => "v1.12.1",
        _ => "v1.13.1",
    }
}

/// `host:port` of an `https://host:port` endpoint, as `kubeadm join` takes it.
pub fn host_port(endpoint: &str) -> &str {
    endpoint
        .trim_start_matches("https://")
        .trim_end_matches('/')
}

fn meta(name: &str, namespace: Option<&str>) -> Value {
    let mut m = json!({"name": name, "labels": {MANAGED_BY.0: MANAGED_BY.1}});
    if let Some(ns) = namespace {
        m["namespace"] = json!(ns);
    }
    m
}

fn role(ns: &str, name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta(name, Some(ns)), "rules": rules})
}

fn role_binding(ns: &str, name: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": meta(name, Some(ns)),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": role}, "subjects": subjects})
}

fn cluster_role(name: &str, rules: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": meta(name, None), "rules": rules})
}

fn cluster_role_binding(name: &str, role: &str, subjects: Value) -> Value {
    json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": meta(name, None),
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role}, "subjects": subjects})
}

fn group(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": name})
}

fn user(name: &str) -> Value {
    json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": name})
}

fn config_map(ns: &str, name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta(name, Some(ns)), "data": data})
}

/// The discovery kubeconfig `kubeadm join` fetches anonymously: cluster only, no user.
pub fn cluster_info_kubeconfig(endpoint: &str, ca_pem: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem.as_bytes());
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {endpoint}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n"
    )
}

/// `ClusterConfiguration` as `kubeadm join` reads it from `kube-system/kubeadm-config`.
/// JSON is valid YAML, and kubeadm decodes it with a YAML decoder.
pub fn cluster_configuration(i: &Inputs<'_>) -> Value {
    json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "clusterName": i.cluster_name,
        "kubernetesVersion": format!("v{}", i.kubernetes_version),
        "controlPlaneEndpoint": host_port(i.endpoint),
        "certificatesDir": "/etc/kubernetes/pki",
        "imageRepository": "registry.k8s.io",
        "networking": {"dnsDomain": i.dns_domain, "serviceSubnet": i.service_cidr, "podSubnet": i.pod_cidr},
        "dns": {"disabled": !i.coredns},
        "proxy": {"disabled": !i.kube_proxy},
    })
}

/// The kubelet configuration every joining node starts with (`kube-system/kubelet-config`).
pub fn kubelet_configuration(i: &Inputs<'_>) -> Value {
    json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true, "cacheTTL": "0s"},
            "x509": {"clientCAFile": "/etc/kubernetes/pki/ca.crt"},
        },
        "authorization": {"mode": "Webhook", "webhook": {"cacheAuthorizedTTL": "0s", "cacheUnauthorizedTTL": "0s"}},
        "cgroupDriver": "systemd",
        "clusterDNS": [i.dns_service_ip],
        "clusterDomain": i.dns_domain,
        "rotateCertificates": true,
        "staticPodPath": "/etc/kubernetes/manifests",
    })
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
            json!({"kubeconfig": cluster_info_kubeconfig(i.endpoint, i.ca_pem)}),
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
            json!({"ClusterConfiguration": pretty(&cluster_configuration(i))}),
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
            json!({"kubelet": pretty(&kubelet_configuration(i))}),
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
    if i.kube_proxy {
        objs.extend(kube_proxy(i));
    }
    if i.coredns {
        objs.extend(coredns(i));
    }
    objs
}

/// The objects of the add-ons `i` turns off: removed so that turning one off takes it away
/// (a CNI that replaces kube-proxy, a DNS of the user's own).
pub fn disabled_addons(i: &Inputs<'_>) -> Vec<Value> {
    let mut objs = Vec::new();
    if !i.kube_proxy {
        objs.extend(kube_proxy(i));
    }
    if !i.coredns {
        objs.extend(coredns(i));
    }
    objs
}

fn kube_proxy(i: &Inputs<'_>) -> Vec<Value> {
    let config = json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"},
        "clusterCIDR": i.pod_cidr,
    });
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt\n    server: {}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    namespace: default\n    user: default\n  name: default\ncurrent-context: default\nusers:\n- name: default\n  user:\n    tokenFile: /var/run/secrets/kubernetes.io/serviceaccount/token\n",
        i.endpoint
    );
    let labels = json!({"k8s-app": "kube-proxy"});
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("kube-proxy", Some("kube-system"))}),
        cluster_role_binding(
            "kubeadm:node-proxier",
            "system:node-proxier",
            json!([{"kind": "ServiceAccount", "name": "kube-proxy", "namespace": "kube-system"}]),
        ),
        config_map(
            "kube-system",
            "kube-proxy",
            json!({"config.conf": serde_json::to_string_pretty(&config).unwrap_or_default(), "kubeconfig.conf": kubeconfig}),
        ),
        role(
            "kube-system",
            "kube-proxy",
            json!([{"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["kube-proxy"], "verbs": ["get"]}]),
        ),
        role_binding(
            "kube-system",
            "kube-proxy",
            "kube-proxy",
            json!([group(NODE_TOKEN_GROUP)]),
        ),
        json!({
            "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": meta("kube-proxy", Some("kube-system")),
            "spec": {
                "selector": {"matchLabels": labels},
                "updateStrategy": {"type": "RollingUpdate"},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "priorityClassName": "system-node-critical",
                        "serviceAccountName": "kube-proxy",
                        "hostNetwork": true,
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "tolerations": [{"operator": "Exists"}],
                        "containers": [{
                            "name": "kube-proxy",
                            "image": format!("registry.k8s.io/kube-proxy:v{}", i.kubernetes_version),
                            "command": ["/usr/local/bin/kube-proxy", "--config=/var/lib/kube-proxy/config.conf", "--hostname-override=$(NODE_NAME)"],
                            "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                            "securityContext": {"privileged": true},
                            "volumeMounts": [
                                {"name": "kube-proxy", "mountPath": "/var/lib/kube-proxy"},
                                {"name": "xtables-lock", "mountPath": "/run/xtables.lock"},
                                {"name": "lib-modules", "mountPath": "/lib/modules", "readOnly": true},
                            ],
                        }],
                        "volumes": [
                            {"name": "kube-proxy", "configMap": {"name": "kube-proxy"}},
                            {"name": "xtables-lock", "hostPath": {"path": "/run/xtables.lock", "type": "FileOrCreate"}},
                            {"name": "lib-modules", "hostPath": {"path": "/lib/modules"}},
                        ],
                    },
                },
            },
        }),
    ]
}

fn coredns(i: &Inputs<'_>) -> Vec<Value> {
    let corefile = format!(
        ".:53 {{\n    errors\n    health {{\n       lameduck 5s\n    }}\n    ready\n    kubernetes {} in-addr.arpa ip6.arpa {{\n       pods insecure\n       fallthrough in-addr.arpa ip6.arpa\n       ttl 30\n    }}\n    prometheus :9153\n    forward . /etc/resolv.conf {{\n       max_concurrent 1000\n    }}\n    cache 30\n    loop\n    reload\n    loadbalance\n}}\n",
        i.dns_domain
    );
    let labels = json!({"k8s-app": "kube-dns"});
    vec![
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("coredns", Some("kube-system"))}),
        cluster_role(
            "system:coredns",
            json!([
                {"apiGroups": [""], "resources": ["endpoints", "services", "pods", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ]),
        ),
        cluster_role_binding(
            "system:coredns",
            "system:coredns",
            json!([{"kind": "ServiceAccount", "name": "coredns", "namespace": "kube-system"}]),
        ),
        config_map("kube-system", "coredns", json!({"Corefile": corefile})),
        json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta("coredns", Some("kube-system")),
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "priorityClassName": "system-cluster-critical",
                        "serviceAccountName": "coredns",
                        "nodeSelector": {"kubernetes.io/os": "linux"},
                        "tolerations": [
                            {"key": "CriticalAddonsOnly", "operator": "Exists"},
                            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
                        ],
                        "containers": [{
                            "name": "coredns",
                            "image": format!("registry.k8s.io/coredns/coredns:{}", coredns_version(i.kubernetes_version)),
                            "args": ["-conf", "/etc/coredns/Corefile"],
                            "resources": {"limits": {"memory": "170Mi"}, "requests": {"cpu": "100m", "memory": "70Mi"}},
                            "ports": [
                                {"name": "dns", "containerPort": 53, "protocol": "UDP"},
                                {"name": "dns-tcp", "containerPort": 53, "protocol": "TCP"},
                                {"name": "metrics", "containerPort": 9153, "protocol": "TCP"},
                            ],
                            "livenessProbe": {"httpGet": {"path": "/health", "port": 8080, "scheme": "HTTP"}, "initialDelaySeconds": 60, "timeoutSeconds": 5, "failureThreshold": 5},
                            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8181, "scheme": "HTTP"}},
                            "securityContext": {
                                "allowPrivilegeEscalation": false,
                                "capabilities": {"add": ["NET_BIND_SERVICE"], "drop": ["ALL"]},
                                "readOnlyRootFilesystem": true,
                            },
                            "volumeMounts": [{"name": "config-volume", "mountPath": "/etc/coredns", "readOnly": true}],
                        }],
                        "dnsPolicy": "Default",
                        "volumes": [{"name": "config-volume", "configMap": {"name": "coredns", "items": [{"key": "Corefile", "path": "Corefile"}]}}],
                    },
                },
            },
        }),
        json!({
            "apiVersion": "v1", "kind": "Service", "metadata": meta("kube-dns", Some("kube-system")),
            "spec": {
                "selector": labels,
                "clusterIP": i.dns_service_ip,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
            },
        }),
    ]
}

/// A new kubeadm token `<id>.<secret>`: `[a-z0-9]{6}` and `[a-z0-9]{16}`.
pub fn new_token() -> (String, String) {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
            .collect()
    };
    (pick(6), pick(16))
}

/// The Secret kubeadm writes for a node-join token.
pub fn token_secret(id: &str, secret: &str, expires: OffsetDateTime, description: &str) -> Value {
    let mut data = json!({
        "token-id": id,
        "token-secret": secret,
        "expiration": rfc3339(expires),
        "usage-bootstrap-authentication": "true",
        "usage-bootstrap-signing": "true",
        "auth-extra-groups": NODE_TOKEN_GROUP,
    });
    if !description.is_empty() {
        data["description"] = json!(description);
    }
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": meta(&format!("{TOKEN_PREFIX}{id}"), Some("kube-system")),
        "type": TOKEN_SECRET_TYPE,
        "stringData": data,
    })
}

pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .unwrap_or(t)
        .format(&Rfc3339)
        .unwrap_or_default()
}

pub fn parse_rfc3339(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok()
}

/// The command a worker runs to join.
pub fn join_command(endpoint: &str, token: &str, ca_cert_hash_hex: &str) -> String {
    format!(
        "kubeadm join {} --token {token} --discovery-token-ca-cert-hash sha256:{ca_cert_hash_hex}",
        host_port(endpoint)
    )
}

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("connecting to the tenant apiserver at {endpoint}: {detail}")]
    Connect { endpoint: String, detail: String },
    #[error("applying {kind} {name} in the tenant: {detail}")]
    Apply {
        kind: String,
        name: String,
        detail: String,
    },
    #[error("{0}")]
    Call(String),
}

/// A client for the tenant's own apiserver, trusting only the tenant CA.
pub async fn connect(kubeconfig: &str, endpoint: &str) -> Result<kube::Client, BootstrapError> {
    let err = |e: &dyn std::fmt::Display| BootstrapError::Connect {
        endpoint: endpoint.to_owned(),
        detail: e.to_string(),
    };
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).map_err(|e| err(&e))?;
    let mut cfg =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| err(&e))?;
    cfg.connect_timeout = Some(std::time::Duration::from_secs(5));
    cfg.read_timeout = Some(std::time::Duration::from_secs(15));
    kube::Client::try_from(cfg).map_err(|e| err(&e))
}

/// Plural resource name and scope of each kind bootstrap writes.
fn resource_of(obj: &Value) -> Option<(ApiResource, Option<String>, String)> {
    let api_version = obj["apiVersion"].as_str()?;
    let kind = obj["kind"].as_str()?;
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let plural = match kind {
        "ConfigMap" => "configmaps",
        "Secret" => "secrets",
        "ServiceAccount" => "serviceaccounts",
        "Service" => "services",
        "Role" => "roles",
        "RoleBinding" => "rolebindings",
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        "Deployment" => "deployments",
        "DaemonSet" => "daemonsets",
        _ => return None,
    };
    let gvk = GroupVersionKind::gvk(group, version, kind);
    Some((
        ApiResource::from_gvk_with_plural(&gvk, plural),
        obj["metadata"]["namespace"].as_str().map(str::to_owned),
        obj["metadata"]["name"].as_str()?.to_owned(),
    ))
}

fn api_for(client: &kube::Client, ar: &ApiResource, ns: Option<&str>) -> Api<DynamicObject> {
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, ar),
        None => Api::all_with(client.clone(), ar),
    }
}

/// Server-side applies `objects` in order; re-applying unchanged objects changes nothing, and
/// applying over drift restores kamajid's fields.
pub async fn apply(client: &kube::Client, objects: &[Value]) -> Result<(), BootstrapError> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for obj in objects {
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let Some((ar, ns, name)) = resource_of(obj) else {
            return Err(BootstrapError::Apply {
                kind,
                name: String::new(),
                detail: "kind not known to bootstrap".into(),
            });
        };
        api_for(client, &ar, ns.as_deref())
            .patch(&name, &params, &Patch::Apply(obj))
            .await
            .map_err(|e| BootstrapError::Apply {
                kind,
                name,
                detail: e.to_string(),
            })?;
    }
    Ok(())
}

/// Deletes `objects` (in reverse order); missing ones are fine.
pub async fn remove(client: &kube::Client, objects: &[Value]) -> Result<(), BootstrapError> {
    for obj in objects.iter().rev() {
        let kind = obj["kind"].as_str().unwrap_or_default().to_owned();
        let Some((ar, ns, name)) = resource_of(obj) else {
            continue;
        };
        match api_for(client, &ar, ns.as_deref())
            .delete(&name, &Default::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => {
                return Err(BootstrapError::Apply {
                    kind,
                    name,
                    detail: format!("removing: {e}"),
                })
            }
        }
    }
    Ok(())
}

fn secrets_api(client: &kube::Client) -> Api<k8s_openapi::api::core::v1::Secret> {
    Api::namespaced(client.clone(), "kube-system")
}

/// A token as kamajid reports it; never carries the secret half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub id: String,
    pub description: String,
    pub expires: Option<OffsetDateTime>,
    pub usages: Vec<String>,
    pub groups: Vec<String>,
}

fn token_info(s: &k8s_openapi::api::core::v1::Secret) -> Option<TokenInfo> {
    if s.type_.as_deref() != Some(TOKEN_SECRET_TYPE) {
        return None;
    }
    let data = s.data.clone().unwrap_or_default();
    let mut string_data = s.string_data.clone().unwrap_or_default();
    for (k, v) in data {
        string_data
            .entry(k)
            .or_insert_with(|| String::from_utf8_lossy(&v.0).into_owned());
    }
    let get = |k: &str| string_data.get(k).cloned().unwrap_or_default();
    let id = get("token-id");
    if id.is_empty() {
        return None;
    }
    let mut usages: Vec<String> = string_data
        .iter()
        .filter(|(k, v)| k.starts_with("usage-bootstrap-") && v.as_str() == "true")
        .map(|(k, _)| k.trim_start_matches("usage-bootstrap-").to_owned())
        .collect();
    usages.sort();
    let groups = get("auth-extra-groups")
        .split(',')
        .filter(|g| !g.is_empty())
        .map(str::to_owned)
        .collect();
    Some(TokenInfo {
        id,
        description: get("description"),
        expires: parse_rfc3339(&get("expiration")),
        usages,
        groups,
    })
}

/// The token `id`, if it exists and has not expired (the controller-manager's token cleaner
/// deletes expired ones, but not at the second).
pub async fn get_token(
    client: &kube::Client,
    id: &str,
    now: OffsetDateTime,
) -> Result<Option<TokenInfo>, BootstrapError> {
    let s = secrets_api(client)
        .get_opt(&format!("{TOKEN_PREFIX}{id}"))
        .await
        .map_err(|e| BootstrapError::Call(format!("reading bootstrap token {id}: {e}")))?;
    Ok(s.as_ref()
        .and_then(token_info)
        .filter(|t| t.expires.is_none_or(|e| e > now)))
}

pub async fn list_tokens(
    client: &kube::Client,
    now: OffsetDateTime,
) -> Result<Vec<TokenInfo>, BootstrapError> {
    let list = secrets_api(client)
        .list(&kube::api::ListParams::default().fields(&format!("type={TOKEN_SECRET_TYPE}")))
        .await
        .map_err(|e| BootstrapError::Call(format!("listing bootstrap tokens: {e}")))?;
    let mut out: Vec<TokenInfo> = list
        .items
        .iter()
        .filter_map(token_info)
        .filter(|t| t.expires.is_none_or(|e| e > now))
        .collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// Deletes token `id`; deleting a missing token is not an error.
pub async fn delete_token(client: &kube::Client, id: &str) -> Result<(), BootstrapError> {
    match secrets_api(client)
        .delete(&format!("{TOKEN_PREFIX}{id}"), &Default::default())
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(BootstrapError::Call(format!(
            "deleting bootstrap token {id}: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::rbac::v1::{ClusterRoleBinding, Role, RoleBinding};

    fn inputs(coredns: bool, kube_proxy: bool) -> Inputs<'static> {
        Inputs {
            cluster_name: "acme",
            endpoint: "https://203.0.113.10:6443",
            ca_pem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            kubernetes_version: "1.35.2",
            service_cidr: "10.96.0.0/16",
            pod_cidr: "10.244.0.0/16",
            dns_service_ip: "10.96.0.10",
            dns_domain: "cluster.local",
            coredns,
            kube_proxy,
        }
    }

    fn find<'a>(objs: &'a [Value], kind: &str, ns: Option<&str>, name: &str) -> &'a Value {
        objs.iter()
            .find(|o| {
                o["kind"] == kind
                    && o["metadata"]["name"] == name
                    && o["metadata"]["namespace"].as_str() == ns
            })
            .unwrap_or_else(|| panic!("{kind} {ns:?}/{name} not rendered"))
    }

    /// (binding kind, namespace, name) → (role, subjects as "Kind:name").
    fn binding(objs: &[Value], kind: &str, ns: Option<&str>, name: &str) -> (String, Vec<String>) {
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

    #[test]
    fn cluster_info_lets_anonymous_discovery_find_the_endpoint_and_ca() {
        let objs = render(&inputs(true, true));
        let ci = find(&objs, "ConfigMap", Some("kube-public"), "cluster-info");
        let kc = ci["data"]["kubeconfig"].as_str().unwrap();
        let parsed = kube::config::Kubeconfig::from_yaml(kc).unwrap();
        let cluster = parsed.clusters[0].cluster.clone().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://203.0.113.10:6443"));
        use base64::Engine;
        let ca = base64::engine::general_purpose::STANDARD
            .decode(cluster.certificate_authority_data.unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(ca).unwrap(), inputs(true, true).ca_pem);
        assert!(parsed.auth_infos.is_empty(), "discovery carries no user");

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

    #[test]
    fn addons_follow_the_tenant_version_and_can_be_left_out() {
        let objs = render(&inputs(true, true));
        let ds = find(&objs, "DaemonSet", Some("kube-system"), "kube-proxy");
        assert_eq!(
            ds["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.k8s.io/kube-proxy:v1.35.2"
        );
        let dns = find(&objs, "Deployment", Some("kube-system"), "coredns");
        assert_eq!(
            dns["spec"]["template"]["spec"]["containers"][0]["image"],
            "registry.k8s.io/coredns/coredns:v1.13.1"
        );
        assert_eq!(
            find(&objs, "Service", Some("kube-system"), "kube-dns")["spec"]["clusterIP"],
            "10.96.0.10"
        );
        let cm = find(&objs, "ConfigMap", Some("kube-system"), "coredns");
        assert!(cm["data"]["Corefile"]
            .as_str()
            .unwrap()
            .contains("kubernetes cluster.local in-addr.arpa ip6.arpa"));

        let bare = render(&inputs(false, false));
        assert!(bare.iter().all(|o| !matches!(
            o["kind"].as_str(),
            Some("DaemonSet" | "Deployment" | "Service")
        )));
        let kc = find(&bare, "ConfigMap", Some("kube-system"), "kubeadm-config");
        let cc: Value =
            serde_json::from_str(kc["data"]["ClusterConfiguration"].as_str().unwrap()).unwrap();
        assert_eq!(cc["dns"]["disabled"], true);
        assert_eq!(cc["proxy"]["disabled"], true);
        assert_eq!(coredns_version("1.33.1"), "v1.12.0");
    }

    #[test]
    fn token_secrets_are_what_kubeadm_writes() {
        let (id, secret) = new_token();
        assert!(id.len() == 6 && secret.len() == 16);
        assert!(format!("{id}{secret}")
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_ne!(new_token(), new_token());
        let at = OffsetDateTime::from_unix_timestamp(1_900_000_000).unwrap();
        let s = token_secret("abcdef", "0123456789abcdef", at, "workers of acme");
        assert_eq!(s["metadata"]["name"], "bootstrap-token-abcdef");
        assert_eq!(s["metadata"]["namespace"], "kube-system");
        assert_eq!(s["type"], "bootstrap.kubernetes.io/token");
        let d = &s["stringData"];
        assert_eq!(d["token-id"], "abcdef");
        assert_eq!(d["token-secret"], "0123456789abcdef");
        assert_eq!(d["expiration"], "2030-03-17T17:46:40Z");
        assert_eq!(d["usage-bootstrap-authentication"], "true");
        assert_eq!(d["usage-bootstrap-signing"], "true");
        assert_eq!(d["auth-extra-groups"], NODE_TOKEN_GROUP);
        assert_eq!(d["description"], "workers of acme");
        assert_eq!(parse_rfc3339("2030-03-17T17:46:40Z"), Some(at));

        let typed: k8s_openapi::api::core::v1::Secret = serde_json::from_value(s).unwrap();
        let info = token_info(&typed).unwrap();
        assert_eq!(info.usages, vec!["authentication", "signing"]);
        assert_eq!(info.groups, vec![NODE_TOKEN_GROUP]);
        assert_eq!(info.expires, Some(at));
        assert_eq!(
            join_command("https://203.0.113.10:6443", "abcdef.0123456789abcdef", "ab12"),
            "kubeadm join 203.0.113.10:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:ab12"
        );
    }

    /// Every object bootstrap writes into a tenant passes `kubernetes-validate --strict` for
    /// each Kubernetes version tenants may run.
    #[test]
    fn bootstrap_objects_pass_the_upstream_schemas_strictly() {
        let dir = tempfile::tempdir().unwrap();
        let mut objs = render(&inputs(true, true));
        objs.push(token_secret(
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
