//! CAs and leaf certificates: the small signing primitives everything else is made of.

use std::net::IpAddr;

use kamaji_model::net::Cidr;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::{Duration, OffsetDateTime};

use super::{Pem, PkiError};

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
