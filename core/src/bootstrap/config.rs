//! The configuration `kubeadm join` reads from a tenant: the discovery kubeconfig in
//! `cluster-info`, `ClusterConfiguration` and the kubelet configuration.

use serde_json::{json, Value};

use super::{host_port, Inputs};

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
        "clusterName": i.cluster_name.as_str(),
        "kubernetesVersion": i.spec.kubernetes_version.tag(),
        "controlPlaneEndpoint": host_port(i.endpoint),
        "certificatesDir": "/etc/kubernetes/pki",
        "imageRepository": "registry.k8s.io",
        "networking": {"dnsDomain": i.dns_domain, "serviceSubnet": i.spec.network.service_cidr, "podSubnet": i.spec.network.pod_cidr},
        "dns": {"disabled": !i.spec.addons.coredns},
        "proxy": {"disabled": !i.spec.addons.kube_proxy},
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
        "clusterDNS": [i.spec.network.dns_service_ip],
        "clusterDomain": i.dns_domain,
        "rotateCertificates": true,
        "staticPodPath": "/etc/kubernetes/manifests",
    })
}
