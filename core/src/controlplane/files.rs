//! The files the components read, by directory of [`Layout`](super::flags::Layout): the
//! Kubernetes runtime mounts them as Secrets, the process runtime writes them to disk.

use super::{config, Tenant};
use crate::pki::{kubeconfig, TenantPki};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantFiles {
    pub pki: Vec<(&'static str, String)>,
    pub etcd_pki: Vec<(&'static str, String)>,
    pub kubeconfigs: Vec<(&'static str, String)>,
    /// The apiserver's configuration files; their change restarts it (see [`Self::config_sha256`]).
    pub config: Vec<(&'static str, String)>,
}

impl TenantFiles {
    /// Hex SHA-256 of the configuration files: what the apiserver reads only at start, so a
    /// change rolls it.
    pub fn config_sha256(&self) -> String {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        for (name, content) in &self.config {
            h.update(name.as_bytes());
            h.update([0]);
            h.update(content.as_bytes());
            h.update([0]);
        }
        hex::encode(h.finalize())
    }
}

/// The files of tenant `t`; `local_server` is the URL the controller-manager and scheduler
/// reach their apiserver at, `socket` the konnectivity server's.
pub fn files(t: &Tenant<'_>, pki: &TenantPki, local_server: &str, socket: &str) -> TenantFiles {
    let cluster = t.name.as_str();
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    let mut config_files = vec![(
        "encryption-config.yaml",
        pretty(&config::encryption(t.spec, pki)),
    )];
    if let Some(a) = config::authentication(t.spec) {
        config_files.push(("authentication-config.yaml", pretty(&a)));
    }
    if let Some(p) = config::audit_policy(t.spec) {
        config_files.push(("audit-policy.yaml", p));
    }
    if t.spec.network.konnectivity {
        config_files.push((
            super::konnectivity::EGRESS_CONFIG,
            pretty(&super::konnectivity::egress_selector(socket)),
        ));
    }
    TenantFiles {
        config: config_files,
        pki: vec![
            // The CA that signs (the controller-manager's CSR signer), and every CA trusted.
            ("ca.crt", pki.ca.cert.clone()),
            ("ca.key", pki.ca.key.clone()),
            ("ca-bundle.crt", pki.ca_bundle()),
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
            ("sa.pub", pki.service_account_pubs()),
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
                    cluster,
                    local_server,
                    &pki.ca_bundle(),
                    "system:kube-controller-manager",
                    &pki.controller_manager,
                ),
            ),
            (
                "scheduler.conf",
                kubeconfig(
                    cluster,
                    local_server,
                    &pki.ca_bundle(),
                    "system:kube-scheduler",
                    &pki.scheduler,
                ),
            ),
        ],
    }
}
