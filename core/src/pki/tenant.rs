//! A tenant's PKI as Kubernetes expects it: minted once, its leaves renewed before they expire,
//! its serving and etcd client certificates re-issued when the names or the datastore change,
//! and its CA and service-account key rotated in two phases.

use std::collections::BTreeSet;

use kamaji_model::net::Cidr;
use rcgen::KeyPair;
use time::Duration;

use super::encryption::EncryptionKey;
use super::inspect::{fingerprint, names, normalize_name, not_after};
use super::kubeconfig::kubeconfig;
use super::sign::{first_service_ip, new_ca, sign_for, Leaf, Usage};
use super::{Pem, PkiError};

/// What a tenant's PKI depends on.
#[derive(Debug, Clone)]
pub struct TenantPkiSpec {
    /// Immutable tenant id: the etcd user and key prefix.
    pub tenant_id: crate::ids::TenantId,
    pub service_cidr: Cidr,
    pub dns_domain: String,
    /// Names and addresses the apiserver is reached by from outside (endpoint, extra SANs).
    pub external_sans: Vec<String>,
    /// How long leaf certificates are valid.
    pub leaf_validity: Duration,
}

/// Every certificate and key a tenant control plane needs.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct TenantPki {
    pub ca: Pem,
    pub apiserver: Pem,
    pub apiserver_kubelet_client: Pem,
    pub front_proxy_ca: Pem,
    pub front_proxy_client: Pem,
    /// Signs and verifies service-account tokens (ES256).
    pub service_account_key: String,
    pub service_account_pub: String,
    /// For the datastore, signed by its client CA; CN is the tenant id.
    pub etcd_client: Pem,
    pub admin: Pem,
    pub controller_manager: Pem,
    pub scheduler: Pem,
    /// Keys that encrypt the tenant's objects at rest, the one that encrypts first; older ones
    /// stay, readable, until every object is rewritten with the newest. Absent from PKIs minted
    /// before encryption at rest: the lifecycle adds one.
    #[serde(default)]
    pub encryption_keys: Vec<EncryptionKey>,
    /// Resources besides Secrets whose stored objects may be encrypted: what the configuration
    /// encrypts now and what it encrypted before the last rewrite. Those no longer asked for are
    /// still read with the keys (and written plain) until the rewrite that follows.
    #[serde(default)]
    pub encrypted_resources: Vec<String>,
    /// The CA and service-account key a started credential rotation replaces: still trusted,
    /// and still the issuer of what others verify against the CA they hold (the serving and
    /// kubelet-client certificates), until the rotation completes.
    #[serde(default)]
    pub previous: Option<Previous>,
}

/// What a credential rotation replaced, kept until it completes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Previous {
    pub ca: Pem,
    pub service_account_pub: String,
}

impl TenantPki {
    /// The CAs to trust, the current one first: with the one a started rotation replaces.
    pub fn ca_bundle(&self) -> String {
        match &self.previous {
            Some(p) => format!("{}{}", self.ca.cert, p.ca.cert),
            None => self.ca.cert.clone(),
        }
    }

    /// The public keys service-account tokens verify with: the current one, and while a
    /// rotation is started the one it replaces (tokens signed before keep working).
    pub fn service_account_pubs(&self) -> String {
        match &self.previous {
            Some(p) => format!("{}{}", self.service_account_pub, p.service_account_pub),
            None => self.service_account_pub.clone(),
        }
    }

    /// A kubeconfig of cluster `cluster` at `server` as its admin (`system:masters`), trusting
    /// every CA of the bundle.
    pub fn admin_kubeconfig(&self, cluster: &str, server: &str) -> String {
        kubeconfig(
            cluster,
            server,
            &self.ca_bundle(),
            "kubernetes-admin",
            &self.admin,
        )
    }

    /// The CA that signs what others verify with the CA they already hold (the serving
    /// certificate for clients, the kubelet-client certificate for kubelets): the previous one
    /// while a rotation is started, so nobody holding only it is cut off before completion.
    pub fn outward_ca(&self) -> &Pem {
        self.previous.as_ref().map_or(&self.ca, |p| &p.ca)
    }

    /// Phase one of a credential rotation: a new CA and service-account key; the old ones stay
    /// trusted ([`Self::previous`]); the client certificates the apiserver verifies are signed
    /// again by the new CA. Does nothing while a rotation is already started.
    pub fn start_rotation(&mut self, spec: &TenantPkiSpec) -> Result<(), PkiError> {
        if self.previous.is_some() {
            return Ok(());
        }
        let sa = KeyPair::generate()?;
        let old_ca = std::mem::replace(&mut self.ca, new_ca("kubernetes")?);
        self.previous = Some(Previous {
            ca: old_ca,
            service_account_pub: std::mem::replace(
                &mut self.service_account_pub,
                sa.public_key_pem(),
            ),
        });
        self.service_account_key = sa.serialize_pem();
        for (pem, cn, orgs) in [
            (&mut self.admin, "kubernetes-admin", &["system:masters"][..]),
            (
                &mut self.controller_manager,
                "system:kube-controller-manager",
                &[],
            ),
            (&mut self.scheduler, "system:kube-scheduler", &[]),
        ] {
            *pem = sign_for(
                &self.ca,
                &Leaf {
                    cn,
                    orgs,
                    sans: &[],
                    usage: Usage::Client,
                },
                spec.leaf_validity,
            )?;
        }
        Ok(())
    }

    /// Phase two: the old CA and service-account key are withdrawn; the serving and
    /// kubelet-client certificates are signed by the new CA. Credentials signed by the old
    /// ones stop working.
    pub fn complete_rotation(&mut self, spec: &TenantPkiSpec) -> Result<(), PkiError> {
        if self.previous.take().is_none() {
            return Ok(());
        }
        reissue_apiserver(self, spec)?;
        reissue_kubelet_client(self, spec)
    }
}

/// The apiserver's SANs: in-cluster names, the first service IP, loopback (components in the
/// same pod reach it there), and every external name.
pub fn apiserver_sans(spec: &TenantPkiSpec) -> Result<Vec<String>, PkiError> {
    let mut sans = vec![
        "kubernetes".to_owned(),
        "kubernetes.default".to_owned(),
        "kubernetes.default.svc".to_owned(),
        format!("kubernetes.default.svc.{}", spec.dns_domain),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        first_service_ip(&spec.service_cidr)?.to_string(),
    ];
    for s in &spec.external_sans {
        if !sans.contains(s) {
            sans.push(s.clone());
        }
    }
    Ok(sans)
}

/// Mints a tenant's whole PKI. `etcd_client_ca` is the datastore's client CA.
pub fn mint(spec: &TenantPkiSpec, etcd_client_ca: &Pem) -> Result<TenantPki, PkiError> {
    let ca = new_ca("kubernetes")?;
    let front_proxy_ca = new_ca("front-proxy-ca")?;
    let sa = KeyPair::generate()?;
    let mut pki = TenantPki {
        apiserver: ca.clone(),
        apiserver_kubelet_client: ca.clone(),
        front_proxy_client: ca.clone(),
        service_account_key: sa.serialize_pem(),
        service_account_pub: sa.public_key_pem(),
        etcd_client: ca.clone(),
        admin: ca.clone(),
        controller_manager: ca.clone(),
        scheduler: ca.clone(),
        ca,
        front_proxy_ca,
        encryption_keys: Vec::new(),
        encrypted_resources: Vec::new(),
        previous: None,
    };
    renew_leaves(&mut pki, spec, etcd_client_ca)?;
    Ok(pki)
}

/// Signs every leaf certificate of `pki` again, with the same CAs and fresh keys, valid for
/// `spec.leaf_validity`: what kamajid does before they expire. Everything that trusts the CAs
/// (kubeconfigs, joined nodes) keeps working; holders of an old leaf keep it until it expires.
pub fn renew_leaves(
    pki: &mut TenantPki,
    spec: &TenantPkiSpec,
    etcd_client_ca: &Pem,
) -> Result<(), PkiError> {
    let validity = spec.leaf_validity;
    let client = |ca: &Pem, cn: &str, orgs: &[&str]| {
        sign_for(
            ca,
            &Leaf {
                cn,
                orgs,
                sans: &[],
                usage: Usage::Client,
            },
            validity,
        )
    };
    reissue_apiserver(pki, spec)?;
    reissue_kubelet_client(pki, spec)?;
    pki.front_proxy_client = client(&pki.front_proxy_ca, "front-proxy-client", &[])?;
    reissue_etcd_client(pki, spec, etcd_client_ca)?;
    pki.admin = client(&pki.ca, "kubernetes-admin", &["system:masters"])?;
    pki.controller_manager = client(&pki.ca, "system:kube-controller-manager", &[])?;
    pki.scheduler = client(&pki.ca, "system:kube-scheduler", &[])?;
    Ok(())
}

impl TenantPki {
    /// The leaf certificates, those [`renew_leaves`] signs again.
    fn leaves(&self) -> [&Pem; 7] {
        [
            &self.apiserver,
            &self.apiserver_kubelet_client,
            &self.front_proxy_client,
            &self.etcd_client,
            &self.admin,
            &self.controller_manager,
            &self.scheduler,
        ]
    }

    /// Hex SHA-256 over the leaf certificates, the trusted CAs and the service-account keys:
    /// changes when any is re-issued, renewed or rotated.
    pub fn credentials_fingerprint(&self) -> String {
        let mut all: String = self.leaves().iter().map(|p| p.cert.as_str()).collect();
        all.push_str(&self.ca_bundle());
        all.push_str(&self.service_account_pubs());
        fingerprint(&all)
    }
}

/// When the first of `pki`'s leaf certificates expires (unix seconds); 0 if none parses.
pub fn leaves_expire_at(pki: &TenantPki) -> i64 {
    pki.leaves()
        .iter()
        .filter_map(|p| not_after(&p.cert))
        .min()
        .unwrap_or(0)
}

/// Whether the serving certificate names exactly what `spec` asks for: no name missing and none
/// left over from an earlier spec.
pub fn serves_exactly(cert_pem: &str, spec: &TenantPkiSpec) -> Result<bool, PkiError> {
    let want: BTreeSet<String> = apiserver_sans(spec)?
        .iter()
        .map(|n| normalize_name(n))
        .collect();
    Ok(names(cert_pem) == want)
}

/// Re-signs the apiserver serving certificate for `spec` (same CA, fresh key): for an
/// endpoint only known once the admin cluster gave the Service an address.
pub fn reissue_apiserver(pki: &mut TenantPki, spec: &TenantPkiSpec) -> Result<(), PkiError> {
    pki.apiserver = sign_for(
        pki.outward_ca(),
        &Leaf {
            cn: "kube-apiserver",
            orgs: &[],
            sans: &apiserver_sans(spec)?,
            usage: Usage::Server,
        },
        spec.leaf_validity,
    )?;
    Ok(())
}

/// Re-signs the certificate the apiserver presents to kubelets, by the CA they trust.
fn reissue_kubelet_client(pki: &mut TenantPki, spec: &TenantPkiSpec) -> Result<(), PkiError> {
    pki.apiserver_kubelet_client = sign_for(
        pki.outward_ca(),
        &Leaf {
            cn: "kube-apiserver-kubelet-client",
            orgs: &["system:masters"],
            sans: &[],
            usage: Usage::Client,
        },
        spec.leaf_validity,
    )?;
    Ok(())
}

/// Re-signs the tenant's etcd client certificate with `etcd_client_ca` (fresh key): for a move
/// to a datastore that trusts another client CA.
pub fn reissue_etcd_client(
    pki: &mut TenantPki,
    spec: &TenantPkiSpec,
    etcd_client_ca: &Pem,
) -> Result<(), PkiError> {
    pki.etcd_client = sign_for(
        etcd_client_ca,
        &Leaf {
            cn: spec.tenant_id.as_str(),
            orgs: &[],
            sans: &[],
            usage: Usage::Client,
        },
        spec.leaf_validity,
    )?;
    Ok(())
}
