//! Certificates: the small signing primitives, and a tenant's whole PKI as Kubernetes expects it.
//!
//! Pure (no I/O): the same inputs give certificates with the same names, SANs and usages, which
//! the tests read back with an X.509 parser. Keys are ECDSA P-256 everywhere Kubernetes accepts
//! it (all of these): fast to generate, small to store.
//!
//! Names follow kubeadm, so a tenant cluster is no different from a kubeadm one to its users and
//! to `kubeadm join`: CA `kubernetes`, apiserver `kube-apiserver` with the in-cluster names and
//! the first service IP, `kube-apiserver-kubelet-client` and the admin in `system:masters`,
//! components as `system:kube-controller-manager` and `system:kube-scheduler`, front proxy
//! `front-proxy-client` under its own CA. The etcd client certificate's CN is the tenant id: that
//! is the etcd user isolation creates (see [`crate::etcd_keys`]).

//!
//! - [`sign`]: CAs and leaf certificates; [`tenant`]: a tenant's PKI, minted, renewed and
//!   rotated; [`encryption`]: its keys for encryption at rest; [`inspect`]: reading certificates
//!   back; [`kubeconfig`](fn@kubeconfig): credentials as a kubeconfig.

mod encryption;
mod inspect;
pub mod issuer;
mod kubeconfig;
mod sign;
mod tenant;

pub use encryption::EncryptionKey;
pub use inspect::*;
pub use kubeconfig::kubeconfig;
pub use sign::*;
pub use tenant::*;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("generating or signing a certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("service CIDR {0:?} is not an IPv4 or IPv6 network (e.g. 10.96.0.0/12)")]
    ServiceCidr(String),
}

/// A certificate and its private key, PEM.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

impl std::fmt::Debug for Pem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pem")
            .field("cert_len", &self.cert.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
