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

use std::collections::BTreeSet;
use std::net::IpAddr;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use kamaji_model::net::Cidr;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

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

const CA_YEARS: i64 = 10;
/// How long leaf certificates are valid by default; kamajid renews them before they expire.
pub const LEAF_VALIDITY: Duration = Duration::days(365);

/// A new self-signed CA.
pub fn new_ca(cn: &str) -> Result<Pem, PkiError> {
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(Vec::<String>::new())?;
    p.distinguished_name.push(DnType::CommonName, cn);
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + Duration::days(365 * CA_YEARS);
    Ok(Pem {
        cert: p.self_signed(&key)?.pem(),
        key: key.serialize_pem(),
    })
}

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    Server,
    Client,
    ServerAndClient,
}

/// A leaf certificate to sign.
#[derive(Debug, Clone)]
pub struct Leaf<'a> {
    pub cn: &'a str,
    pub orgs: &'a [&'a str],
    /// DNS names and IP addresses (parsed as IPs when they are).
    pub sans: &'a [String],
    pub usage: Usage,
}

/// Signs `leaf` with `ca` for [`LEAF_VALIDITY`]; the leaf gets a fresh key.
pub fn sign(ca: &Pem, leaf: &Leaf<'_>) -> Result<Pem, PkiError> {
    sign_for(ca, leaf, LEAF_VALIDITY)
}

/// Signs `leaf` with `ca`, valid for `validity` from now; the leaf gets a fresh key.
pub fn sign_for(ca: &Pem, leaf: &Leaf<'_>, validity: Duration) -> Result<Pem, PkiError> {
    let issuer = Issuer::from_ca_cert_pem(&ca.cert, KeyPair::from_pem(&ca.key)?)?;
    let key = KeyPair::generate()?;
    let mut p = CertificateParams::new(leaf.sans.to_vec())?;
    p.distinguished_name.push(DnType::CommonName, leaf.cn);
    for o in leaf.orgs {
        p.distinguished_name.push(DnType::OrganizationName, *o);
    }
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = match leaf.usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::ServerAndClient => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    let now = OffsetDateTime::now_utc();
    p.not_before = now - Duration::hours(1);
    p.not_after = now + validity;
    Ok(Pem {
        cert: p.signed_by(&key, &issuer)?.pem(),
        key: key.serialize_pem(),
    })
}

/// A certificate for TLS server and client use, without organisation: what dev etcd and
/// kamajid serving certificates need.
pub fn issue(ca: &Pem, cn: &str, sans: &[&str]) -> Result<Pem, PkiError> {
    let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
    sign(
        ca,
        &Leaf {
            cn,
            orgs: &[],
            sans: &sans,
            usage: Usage::ServerAndClient,
        },
    )
}

/// The first address of a service range: the in-cluster `kubernetes` Service IP.
pub fn first_service_ip(cidr: &Cidr) -> Result<IpAddr, PkiError> {
    cidr.first_host()
        .ok_or_else(|| PkiError::ServiceCidr(cidr.to_string()))
}

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

/// A 32-byte secretbox key, base64, named by the rotation it belongs to. Debug never shows it.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EncryptionKey {
    pub rotation: u32,
    pub secret: String,
}

impl std::fmt::Debug for EncryptionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncryptionKey")
            .field("rotation", &self.rotation)
            .finish_non_exhaustive()
    }
}

impl EncryptionKey {
    /// A new random key for `rotation`.
    pub fn generate(rotation: u32) -> Self {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::thread_rng().fill_bytes(&mut key);
        Self {
            rotation,
            secret: B64.encode(key),
        }
    }

    /// Its name in the encryption configuration (and in each value it encrypts).
    pub fn name(&self) -> String {
        format!("key-{}", self.rotation)
    }
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
        self.apiserver_kubelet_client = sign_for(
            &self.ca,
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

    /// Makes the key of `rotation` the one that encrypts, generating it when it is new; older
    /// keys stay behind it. Whether anything changed.
    pub fn ensure_encryption_key(&mut self, rotation: u32) -> bool {
        if self
            .encryption_keys
            .first()
            .is_some_and(|k| k.rotation == rotation)
        {
            return false;
        }
        self.encryption_keys.retain(|k| k.rotation != rotation);
        self.encryption_keys
            .insert(0, EncryptionKey::generate(rotation));
        true
    }

    /// Adds `resources` to those that may hold encrypted objects. Whether anything changed.
    pub fn note_encrypted_resources(&mut self, resources: &[String]) -> bool {
        let before = self.encrypted_resources.len();
        for r in resources {
            if !self.encrypted_resources.contains(r) {
                self.encrypted_resources.push(r.clone());
            }
        }
        self.encrypted_resources.sort();
        before != self.encrypted_resources.len()
    }

    /// Once every object is written again: drops every key but the one that encrypts, and the
    /// resources no longer encrypted. Whether anything changed.
    pub fn retire_after_rewrite(&mut self, resources: &[String]) -> bool {
        let before = (self.encryption_keys.len(), self.encrypted_resources.clone());
        self.encryption_keys.truncate(1);
        self.encrypted_resources.retain(|r| resources.contains(r));
        before != (self.encryption_keys.len(), self.encrypted_resources.clone())
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
    pki.apiserver = sign_for(
        pki.outward_ca(),
        &Leaf {
            cn: "kube-apiserver",
            orgs: &[],
            sans: &apiserver_sans(spec)?,
            usage: Usage::Server,
        },
        validity,
    )?;
    pki.apiserver_kubelet_client = client(
        pki.outward_ca(),
        "kube-apiserver-kubelet-client",
        &["system:masters"],
    )?;
    pki.front_proxy_client = client(&pki.front_proxy_ca, "front-proxy-client", &[])?;
    pki.etcd_client = client(etcd_client_ca, spec.tenant_id.as_str(), &[])?;
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

/// Whether `cert_pem` is signed by the key of `ca_pem` and names it as issuer.
pub fn issued_by(cert_pem: &str, ca_pem: &str) -> bool {
    let parse = |pem: &str| {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .ok()
            .map(|(_, p)| p)
    };
    let (Some(leaf), Some(ca)) = (parse(cert_pem), parse(ca_pem)) else {
        return false;
    };
    let (Ok(leaf), Ok(ca)) = (leaf.parse_x509(), ca.parse_x509()) else {
        return false;
    };
    leaf.issuer() == ca.subject() && leaf.verify_signature(Some(ca.public_key())).is_ok()
}

/// A certificate's expiry (unix seconds).
pub fn not_after(cert_pem: &str) -> Option<i64> {
    let (_, p) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).ok()?;
    let cert = p.parse_x509().ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Hex SHA-256 of a PEM text: tells two certificates apart without revealing anything.
pub fn fingerprint(pem: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(pem.as_bytes()))
}

/// The names a certificate is valid for, normalized as [`normalize_name`] does; empty when
/// `cert_pem` does not parse.
pub fn names(cert_pem: &str) -> BTreeSet<String> {
    let Ok((_, p)) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()) else {
        return BTreeSet::new();
    };
    let Ok(cert) = p.parse_x509() else {
        return BTreeSet::new();
    };
    let Ok(Some(sans)) = cert.subject_alternative_name() else {
        return BTreeSet::new();
    };
    sans.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
            x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                4 => <[u8; 4]>::try_from(*b)
                    .ok()
                    .map(|o| IpAddr::from(o).to_string()),
                16 => <[u8; 16]>::try_from(*b)
                    .ok()
                    .map(|o| IpAddr::from(o).to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

/// One spelling per name: IP addresses in canonical form (brackets dropped), DNS names in
/// lower case, so `2001:DB8::1` and `[2001:db8::1]` compare equal.
pub fn normalize_name(name: &str) -> String {
    match name
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        Ok(ip) => ip.to_string(),
        Err(_) => name.to_ascii_lowercase(),
    }
}

/// Whether the serving certificate `cert_pem` names `host` (a DNS name or an IP address).
pub fn covers(cert_pem: &str, host: &str) -> bool {
    names(cert_pem).contains(&normalize_name(host))
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

/// A kubeconfig for `user` with embedded credentials. Its `server` is the URL the holder uses.
pub fn kubeconfig(cluster: &str, server: &str, ca_pem: &str, user: &str, creds: &Pem) -> String {
    let b = |s: &str| B64.encode(s.as_bytes());
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: {cluster}\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\n\
         contexts:\n- name: {user}@{cluster}\n  context:\n    cluster: {cluster}\n    user: {user}\n\
         current-context: {user}@{cluster}\npreferences: {{}}\nusers:\n- name: {user}\n  user:\n    client-certificate-data: {}\n    client-key-data: {}\n",
        b(ca_pem),
        b(&creds.cert),
        b(&creds.key)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;
    use x509_parser::pem::parse_x509_pem;

    struct Cert {
        der: Vec<u8>,
    }

    impl Cert {
        fn new(pem: &str) -> Self {
            let (_, p) = parse_x509_pem(pem.as_bytes()).unwrap();
            Self { der: p.contents }
        }
        fn with<R>(
            &self,
            f: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> R,
        ) -> R {
            let (_, c) = x509_parser::parse_x509_certificate(&self.der).unwrap();
            f(&c)
        }
        fn cn(&self) -> String {
            self.with(|c| {
                c.subject()
                    .iter_common_name()
                    .next()
                    .unwrap()
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
        }
        fn orgs(&self) -> Vec<String> {
            self.with(|c| {
                c.subject()
                    .iter_organization()
                    .map(|o| o.as_str().unwrap().to_owned())
                    .collect()
            })
        }
        fn sans(&self) -> Vec<String> {
            self.with(|c| {
                c.subject_alternative_name()
                    .unwrap()
                    .map(|s| {
                        s.value
                            .general_names
                            .iter()
                            .map(|n| match n {
                                GeneralName::DNSName(d) => d.to_string(),
                                GeneralName::IPAddress(ip) if ip.len() == 4 => {
                                    IpAddr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string()
                                }
                                other => format!("{other:?}"),
                            })
                            .collect()
                    })
                    .unwrap_or_default()
            })
        }
        fn server_auth(&self) -> bool {
            self.with(|c| {
                c.extended_key_usage()
                    .unwrap()
                    .is_some_and(|e| e.value.server_auth)
            })
        }
        fn client_auth(&self) -> bool {
            self.with(|c| {
                c.extended_key_usage()
                    .unwrap()
                    .is_some_and(|e| e.value.client_auth)
            })
        }
        fn is_ca(&self) -> bool {
            self.with(|c| c.basic_constraints().unwrap().is_some_and(|b| b.value.ca))
        }
        fn signed_by(&self, ca: &Cert) -> bool {
            let (_, issuer) = x509_parser::parse_x509_certificate(&ca.der).unwrap();
            self.with(|c| {
                c.verify_signature(Some(issuer.public_key())).is_ok()
                    && c.issuer() == issuer.subject()
            })
        }
    }

    fn spec() -> TenantPkiSpec {
        TenantPkiSpec {
            tenant_id: crate::ids::TenantId::parse("acme-7f3k2").unwrap(),
            service_cidr: "10.96.0.0/12".parse().unwrap(),
            dns_domain: "cluster.local".into(),
            external_sans: vec!["203.0.113.10".into(), "api.acme.example".into()],
            leaf_validity: LEAF_VALIDITY,
        }
    }

    #[test]
    fn every_certificate_chains_to_its_ca_with_the_names_kubernetes_expects() {
        let etcd_ca = new_ca("etcd client CA").unwrap();
        let pki = mint(&spec(), &etcd_ca).unwrap();
        let ca = Cert::new(&pki.ca.cert);
        let fp_ca = Cert::new(&pki.front_proxy_ca.cert);
        let etcd = Cert::new(&etcd_ca.cert);
        assert!(ca.is_ca() && fp_ca.is_ca());
        assert_eq!(
            (ca.cn(), fp_ca.cn()),
            ("kubernetes".into(), "front-proxy-ca".into())
        );

        // (certificate, issuer, CN, O, server?, client?)
        let table = [
            (&pki.apiserver, &ca, "kube-apiserver", vec![], true, false),
            (
                &pki.apiserver_kubelet_client,
                &ca,
                "kube-apiserver-kubelet-client",
                vec!["system:masters"],
                false,
                true,
            ),
            (
                &pki.admin,
                &ca,
                "kubernetes-admin",
                vec!["system:masters"],
                false,
                true,
            ),
            (
                &pki.controller_manager,
                &ca,
                "system:kube-controller-manager",
                vec![],
                false,
                true,
            ),
            (
                &pki.scheduler,
                &ca,
                "system:kube-scheduler",
                vec![],
                false,
                true,
            ),
            (
                &pki.front_proxy_client,
                &fp_ca,
                "front-proxy-client",
                vec![],
                false,
                true,
            ),
            (&pki.etcd_client, &etcd, "acme-7f3k2", vec![], false, true),
        ];
        for (pem, issuer, cn, orgs, server, client) in table {
            let c = Cert::new(&pem.cert);
            assert_eq!(c.cn(), cn);
            assert_eq!(c.orgs(), orgs, "{cn}");
            assert!(c.signed_by(issuer), "{cn} does not chain to its CA");
            assert!(!c.is_ca(), "{cn} must not be a CA");
            assert_eq!(
                (c.server_auth(), c.client_auth()),
                (server, client),
                "{cn} usages"
            );
            // Each certificate has its own key, matching it.
            kamaji_proto::validate::key_pair("cert", &pem.cert, "key", &pem.key).unwrap();
        }
        assert!(
            !Cert::new(&pki.admin.cert).signed_by(&fp_ca),
            "a front-proxy CA must not vouch for the admin"
        );
    }

    #[test]
    fn the_apiserver_certificate_covers_every_name_it_is_reached_by() {
        let pki = mint(&spec(), &new_ca("etcd").unwrap()).unwrap();
        let sans = Cert::new(&pki.apiserver.cert).sans();
        for want in [
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
            "127.0.0.1",
            "10.96.0.1",
            "203.0.113.10",
            "api.acme.example",
        ] {
            assert!(
                sans.iter().any(|s| s == want),
                "{want} missing from {sans:?}"
            );
        }
    }

    #[test]
    fn a_serving_certificate_is_reissued_exactly_when_its_names_change() {
        let mut pki = mint(&spec(), &new_ca("etcd").unwrap()).unwrap();
        assert!(serves_exactly(&pki.apiserver.cert, &spec()).unwrap());
        let first = pki.apiserver.clone();

        let mut more = spec();
        more.external_sans.push("2001:DB8::1".into());
        assert!(!serves_exactly(&pki.apiserver.cert, &more).unwrap());
        reissue_apiserver(&mut pki, &more).unwrap();
        assert!(serves_exactly(&pki.apiserver.cert, &more).unwrap());
        assert!(covers(&pki.apiserver.cert, "[2001:db8::1]"));
        assert!(covers(&pki.apiserver.cert, "API.acme.example"));
        assert_ne!(pki.apiserver.key, first.key, "a re-issue gets a fresh key");
        assert!(
            Cert::new(&pki.apiserver.cert).signed_by(&Cert::new(&pki.ca.cert)),
            "same CA"
        );

        // A name taken out of the spec is a change too: the old certificate still carries it.
        let mut fewer = spec();
        fewer.external_sans.retain(|s| s != "api.acme.example");
        assert!(!serves_exactly(&first.cert, &fewer).unwrap());
        reissue_apiserver(&mut pki, &fewer).unwrap();
        assert!(!covers(&pki.apiserver.cert, "api.acme.example"));
        assert!(covers(&pki.apiserver.cert, "203.0.113.10"));
    }

    #[test]
    fn service_account_keys_pair_and_the_first_service_ip_is_computed() {
        let pki = mint(&spec(), &new_ca("etcd").unwrap()).unwrap();
        let key = KeyPair::from_pem(&pki.service_account_key).unwrap();
        assert_eq!(key.public_key_pem(), pki.service_account_pub);
        assert_eq!(
            first_service_ip(&"10.96.0.0/12".parse().unwrap())
                .unwrap()
                .to_string(),
            "10.96.0.1"
        );
        assert_eq!(
            first_service_ip(&"10.100.7.0/24".parse().unwrap())
                .unwrap()
                .to_string(),
            "10.100.7.1"
        );
        assert_eq!(
            first_service_ip(&"fd00:10:96::/112".parse().unwrap())
                .unwrap()
                .to_string(),
            "fd00:10:96::1"
        );
        assert!(first_service_ip(&"10.96.0.0/32".parse().unwrap()).is_err());
    }

    #[test]
    fn kubeconfigs_embed_the_server_ca_and_credentials() {
        let ca = new_ca("kubernetes").unwrap();
        let admin = sign(
            &ca,
            &Leaf {
                cn: "kubernetes-admin",
                orgs: &["system:masters"],
                sans: &[],
                usage: Usage::Client,
            },
        )
        .unwrap();
        let kc = kubeconfig(
            "acme",
            "https://203.0.113.10:6443",
            &ca.cert,
            "kubernetes-admin",
            &admin,
        );
        assert!(kc.contains("server: https://203.0.113.10:6443"));
        assert!(kc.contains(&format!(
            "certificate-authority-data: {}",
            B64.encode(&ca.cert)
        )));
        assert!(kc.contains(&format!("client-key-data: {}", B64.encode(&admin.key))));
        assert!(kc.contains("current-context: kubernetes-admin@acme"));
    }
}
