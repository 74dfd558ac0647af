//! The Secrets the control-plane pods mount: the tenant PKI, its etcd client identity, and the
//! components' kubeconfigs.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;

use super::files::files;
use super::{meta, Tenant};
use crate::pki::TenantPki;

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

/// `pki`, `etcd-pki`, `kubeconfigs` and `config`; inside a pod the components reach their
/// apiserver on localhost.
pub fn secrets(t: &Tenant<'_>, pki: &TenantPki) -> Vec<Secret> {
    let f = files(
        t,
        pki,
        &format!("https://localhost:{}", t.spec.network.port),
        &super::flags::Layout::pod().konnectivity_socket,
    );
    vec![
        secret(t, "pki", &f.pki),
        secret(t, "etcd-pki", &f.etcd_pki),
        secret(t, "kubeconfigs", &f.kubeconfigs),
        secret(t, "config", &f.config),
    ]
}
