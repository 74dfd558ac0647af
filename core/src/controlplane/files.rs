//! The files the components read, by directory of [`Layout`](super::flags::Layout): the
//! Kubernetes runtime mounts them as Secrets, the process runtime writes them to disk.

use super::Tenant;
use crate::pki::{kubeconfig, TenantPki};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantFiles {
    pub pki: Vec<(&'static str, String)>,
    pub etcd_pki: Vec<(&'static str, String)>,
    pub kubeconfigs: Vec<(&'static str, String)>,
}

/// The files of tenant `t`; `local_server` is the URL the controller-manager and scheduler
/// reach their apiserver at.
pub fn files(t: &Tenant<'_>, pki: &TenantPki, local_server: &str) -> TenantFiles {
    let cluster = t.name.as_str();
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
                    cluster,
                    local_server,
                    &pki.ca.cert,
                    "system:kube-controller-manager",
                    &pki.controller_manager,
                ),
            ),
            (
                "scheduler.conf",
                kubeconfig(
                    cluster,
                    local_server,
                    &pki.ca.cert,
                    "system:kube-scheduler",
                    &pki.scheduler,
                ),
            ),
        ],
    }
}
