//! Add-ons kamajid installs in a tenant, on by default: kube-proxy and CoreDNS at versions
//! matching the tenant's Kubernetes.

use serde_json::{json, Value};

use super::{
    cluster_role, cluster_role_binding, config_map, group, meta, role, role_binding, Inputs,
    NODE_TOKEN_GROUP,
};
use crate::spec::Version;

/// CoreDNS release kubeadm ships with each Kubernetes minor.
pub fn coredns_version(kubernetes_version: Version) -> &'static str {
    match kubernetes_version.minor {
        0..=32 => "v1.11.3",
        33 => "v1.12.0",
        34 => "v1.12.1",
        _ => "v1.13.1",
    }
}

pub(super) fn kube_proxy(i: &Inputs<'_>) -> Vec<Value> {
    let config = json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": "/var/lib/kube-proxy/kubeconfig.conf"},
        "clusterCIDR": i.spec.network.pod_cidr,
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
                            "image": format!("registry.k8s.io/kube-proxy:{}", i.spec.kubernetes_version.tag()),
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

pub(super) fn coredns(i: &Inputs<'_>) -> Vec<Value> {
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
                            "image": format!("registry.k8s.io/coredns/coredns:{}", coredns_version(i.spec.kubernetes_version)),
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
                "clusterIP": i.spec.network.dns_service_ip,
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                    {"name": "metrics", "port": 9153, "protocol": "TCP", "targetPort": 9153},
                ],
            },
        }),
    ]
}

#[cfg(test)]
mod tests {
    use super::super::render;
    use super::super::testing::*;
    use super::*;

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
        assert_eq!(
            coredns_version(crate::spec::Version::parse("1.33.1").unwrap()),
            "v1.12.0"
        );
    }
}
