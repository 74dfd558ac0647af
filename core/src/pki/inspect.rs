//! Certificates read back: issuer, expiry, names, fingerprints. What kamajid checks before
//! trusting what it stored, and what the tests assert with.

use std::collections::BTreeSet;
use std::net::IpAddr;

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
