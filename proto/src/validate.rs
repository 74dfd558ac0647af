//! The input contract of the v1 API, as pure functions.
//!
//! Each check takes the field name it reports under, so the same function serves the provider
//! (at `terraform plan`, attribute by attribute, skipping values not yet known) and the daemon
//! (on every write, over a whole spec). Messages say what is wrong and what is allowed, and never
//! echo key material.

use std::collections::HashMap;

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::errors::FieldError;
use crate::v1::DatastoreSpec;

use kamaji_model::Check;

pub use kamaji_model::ids::dns_label;

/// etcd client URLs. Only https is allowed: a datastore must verify client certificates, which
/// plain http cannot carry.
pub fn endpoints(field: &str, values: &[String]) -> Check {
    if values.is_empty() {
        return Err(FieldError::new(
            field,
            "at least one etcd endpoint is required",
        ));
    }
    let mut seen = std::collections::HashSet::new();
    for v in values {
        let url = url::Url::parse(v).map_err(|e| {
            FieldError::new(
                field,
                format!("{v:?} is not a URL ({e}); expected https://host:port"),
            )
        })?;
        if url.scheme() != "https" {
            return Err(FieldError::new(
                field,
                format!(
                    "{v:?} uses scheme {:?}; only https is allowed because the datastore must \
                     authenticate clients by certificate",
                    url.scheme()
                ),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(FieldError::new(
                field,
                format!("{v:?} has no host; expected https://host:port"),
            ));
        }
        if url.port().is_none() {
            return Err(FieldError::new(
                field,
                format!(
                    "{v:?} has no port; etcd has no default https port, write https://host:2379"
                ),
            ));
        }
        if !matches!(url.path(), "" | "/") || url.query().is_some() || !url.username().is_empty() {
            return Err(FieldError::new(
                field,
                format!("{v:?} must be only scheme, host and port (no path, query or user)"),
            ));
        }
        if !seen.insert(v.trim_end_matches('/')) {
            return Err(FieldError::new(field, format!("{v:?} is listed twice")));
        }
    }
    Ok(())
}

/// One or more PEM certificates, each of which parses as X.509.
pub fn certificates(field: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, FieldError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| {
            FieldError::new(
                field,
                format!("is not valid PEM ({e}); expected one or more CERTIFICATE blocks"),
            )
        })?;
    if certs.is_empty() {
        return Err(FieldError::new(field, "contains no PEM CERTIFICATE block"));
    }
    for (i, der) in certs.iter().enumerate() {
        x509_parser::parse_x509_certificate(der).map_err(|e| {
            FieldError::new(
                field,
                format!("certificate #{} does not parse as X.509: {e}", i + 1),
            )
        })?;
    }
    Ok(certs)
}

/// A PEM private key (PKCS#8, SEC1 or PKCS#1) of a type TLS can use.
pub fn private_key(field: &str, pem: &str) -> Result<PrivateKeyDer<'static>, FieldError> {
    let key = PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|_| {
        FieldError::new(
            field,
            "is not a PEM private key; expected a PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY block",
        )
    })?;
    rustls::crypto::ring::sign::any_supported_type(&key).map_err(|_| {
        FieldError::new(
            field,
            "is a private key of an unsupported type; use ECDSA P-256/P-384, Ed25519 or RSA",
        )
    })?;
    Ok(key)
}

/// The first certificate of `cert_pem` is currently valid and `key_pem` is its private key.
/// Errors are reported under `key_field` when the pair does not match.
pub fn key_pair(cert_field: &str, cert_pem: &str, key_field: &str, key_pem: &str) -> Check {
    let certs = certificates(cert_field, cert_pem)?;
    let key = private_key(key_field, key_pem)?;
    not_expired(cert_field, &certs[0])?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|_| FieldError::new(key_field, "is a private key of an unsupported type"))?;
    CertifiedKey::new(certs, signer).keys_match().map_err(|_| {
        FieldError::new(
            key_field,
            format!("is not the private key of the certificate in {cert_field}"),
        )
    })
}

fn not_expired(field: &str, der: &CertificateDer<'_>) -> Check {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| FieldError::new(field, format!("does not parse as X.509: {e}")))?;
    if cert.validity().is_valid() {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!(
                "certificate is not valid now (valid from {} to {})",
                cert.validity().not_before,
                cert.validity().not_after
            ),
        ))
    }
}

/// The first certificate of `pem` is a CA (basicConstraints CA:TRUE), as a signer must be.
pub fn ca_certificate(field: &str, pem: &str) -> Check {
    let certs = certificates(field, pem)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&certs[0])
        .map_err(|e| FieldError::new(field, format!("does not parse as X.509: {e}")))?;
    match cert.basic_constraints() {
        Ok(Some(bc)) if bc.value.ca => Ok(()),
        _ => Err(FieldError::new(
            field,
            "is not a CA certificate (basicConstraints CA:TRUE is required to sign tenants' certificates)",
        )),
    }
}

/// The subject CN of the first certificate in `pem`, which etcd takes as the user name.
pub fn common_name(pem: &str) -> Option<String> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()?
        .as_str()
        .ok()?
        .to_owned();
    Some(cn)
}

/// Hex SHA-256 of the first certificate's SubjectPublicKeyInfo: what `kubeadm join
/// --discovery-token-ca-cert-hash sha256:<hash>` pins the cluster CA by.
pub fn ca_cert_hash(pem: &str) -> Option<String> {
    let der = CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()?
        .ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(hex::encode(Sha256::digest(
        cert.tbs_certificate.subject_pki.raw,
    )))
}

pub fn quota_bytes(field: &str, value: i64) -> Check {
    if value > 0 {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must be a positive number of bytes, got {value}"),
        ))
    }
}

pub fn max_tenants(field: &str, value: i64) -> Check {
    if (1..=i64::from(u32::MAX)).contains(&value) {
        Ok(())
    } else {
        Err(FieldError::new(
            field,
            format!("must be at least 1 when set, got {value}"),
        ))
    }
}

/// Kubernetes label syntax: keys `[prefix/]name`, values up to 63 characters.
pub fn labels<'a>(field: &str, labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> Check {
    fn name_ok(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
    }
    fn prefix_ok(s: &str) -> bool {
        kamaji_model::ids::is_subdomain(s)
    }
    for (k, v) in labels {
        let key_ok = match k.split_once('/') {
            Some((prefix, name)) => prefix_ok(prefix) && name_ok(name),
            None => name_ok(k),
        };
        if !key_ok {
            return Err(FieldError::new(
                field,
                format!(
                    "label key {k:?} is invalid: use an optional DNS subdomain prefix and '/', then 1 to 63 \
                     alphanumerics, '-', '_' or '.', starting and ending with an alphanumeric"
                ),
            ));
        }
        if !(v.is_empty() || name_ok(v)) {
            return Err(FieldError::new(
                field,
                format!(
                    "label value {v:?} (key {k:?}) is invalid: use at most 63 alphanumerics, '-', '_' or '.', \
                     starting and ending with an alphanumeric"
                ),
            ));
        }
    }
    Ok(())
}

/// Every check of a datastore registration, collected (not stopped at the first), in attribute
/// order.
pub fn datastore(name: &str, spec: &DatastoreSpec) -> Vec<FieldError> {
    let checks = [
        dns_label("name", name),
        endpoints("endpoints", &spec.endpoints),
        certificates("ca_certificate", &spec.ca_certificate).map(drop),
        key_pair(
            "client_certificate",
            &spec.client_certificate,
            "client_key",
            &spec.client_key,
        ),
        ca_certificate("client_ca_certificate", &spec.client_ca_certificate),
        key_pair(
            "client_ca_certificate",
            &spec.client_ca_certificate,
            "client_ca_key",
            &spec.client_ca_key,
        ),
        quota_bytes("quota_bytes", spec.quota_bytes),
        spec.max_tenants
            .map_or(Ok(()), |m| max_tenants("max_tenants", i64::from(m))),
        labels(
            "labels",
            spec.labels.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ),
    ];
    let mut errors: Vec<FieldError> = Vec::new();
    for e in checks.into_iter().filter_map(Result::err) {
        if !errors.iter().any(|seen| seen.field == e.field) {
            errors.push(e);
        }
    }
    errors
}

/// Whether `selector` matches `labels` (every selector entry present with the same value).
pub fn selector_matches(
    selector: &HashMap<String, String>,
    labels: &HashMap<String, String>,
) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// Hex SHA-256 of a PEM text, surrounding whitespace ignored. Lets a client tell whether the key
/// it holds is the one kamajid stored without the key ever being returned.
pub fn pem_fingerprint(pem: &str) -> String {
    hex::encode(Sha256::digest(pem.trim().as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};

    fn ca() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn leaf() -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let p = CertificateParams::new(vec!["root".to_string()]).unwrap();
        (p.self_signed(&key).unwrap().pem(), key.serialize_pem())
    }

    fn spec() -> DatastoreSpec {
        let (ca, ca_key) = ca();
        let (cert, key) = leaf();
        DatastoreSpec {
            endpoints: vec!["https://127.0.0.1:2379".into()],
            ca_certificate: ca.clone(),
            client_certificate: cert,
            client_key: key,
            client_ca_certificate: ca,
            client_ca_key: ca_key,
            quota_bytes: crate::DEFAULT_QUOTA_BYTES,
            max_tenants: None,
            labels: HashMap::from([("zone".into(), "a".into())]),
            schedulable: true,
            drain: false,
        }
    }

    fn fields(errs: Vec<FieldError>) -> Vec<String> {
        errs.into_iter().map(|e| e.field).collect()
    }

    #[test]
    fn a_good_spec_passes() {
        assert_eq!(datastore("etcd-a", &spec()), vec![]);
    }

    #[test]
    fn names_must_be_dns_labels() {
        for good in ["a", "etcd-1", &"x".repeat(63)] {
            assert!(dns_label("name", good).is_ok(), "{good}");
        }
        for bad in ["", "Etcd", "-a", "a-", "a_b", "a.b", &"x".repeat(64)] {
            let e = dns_label("name", bad).unwrap_err();
            assert_eq!(e.field, "name");
            assert!(e.message.contains("DNS-1123"), "{}", e.message);
        }
    }

    #[test]
    fn endpoints_must_be_https_with_a_port() {
        let check = |v: &[&str]| {
            endpoints(
                "endpoints",
                &v.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
            )
        };
        assert!(check(&["https://10.0.0.1:2379", "https://etcd-b:2379/"]).is_ok());
        assert!(check(&[]).unwrap_err().message.contains("at least one"));
        assert!(check(&["http://10.0.0.1:2379"])
            .unwrap_err()
            .message
            .contains("only https"));
        assert!(check(&["https://10.0.0.1"])
            .unwrap_err()
            .message
            .contains("no port"));
        assert!(check(&["not a url"])
            .unwrap_err()
            .message
            .contains("not a URL"));
        assert!(check(&["https://a:1/x"])
            .unwrap_err()
            .message
            .contains("no path"));
        assert!(check(&["https://a:1", "https://a:1"])
            .unwrap_err()
            .message
            .contains("twice"));
    }

    #[test]
    fn keys_must_match_their_certificates() {
        let mut s = spec();
        s.client_key = leaf().1;
        let errs = datastore("etcd-a", &s);
        assert_eq!(fields(errs.clone()), ["client_key"]);
        assert!(errs[0]
            .message
            .contains("not the private key of the certificate in client_certificate"));
        // The message never carries the key itself.
        assert!(!errs[0].message.contains("PRIVATE KEY"));
    }

    #[test]
    fn garbage_pem_and_non_ca_signers_are_named() {
        let mut s = spec();
        s.ca_certificate = "hello".into();
        s.client_ca_certificate = leaf().0;
        s.quota_bytes = 0;
        s.max_tenants = Some(0);
        s.labels.insert("bad key!".into(), "v".into());
        assert_eq!(
            fields(datastore("etcd-a", &s)),
            // The old CA key no longer matches the replaced certificate: reported too.
            [
                "ca_certificate",
                "client_ca_certificate",
                "client_ca_key",
                "quota_bytes",
                "max_tenants",
                "labels"
            ]
        );
    }

    #[test]
    fn label_syntax_follows_kubernetes() {
        let ok = |k: &str, v: &str| labels("labels", [(k, v)]).is_ok();
        assert!(ok("zone", "eu-1"));
        assert!(ok("kamaji.io/tier", ""));
        assert!(!ok("kamaji.io/", "x"));
        assert!(!ok("Bad_Prefix/x", "y"));
        assert!(!ok("zone", "-bad"));
        assert!(!ok("zone", &"v".repeat(64)));
    }

    #[test]
    fn common_name_is_read_from_the_certificate() {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(rcgen::DnType::CommonName, "root");
        let pem = p.self_signed(&key).unwrap().pem();
        assert_eq!(common_name(&pem).as_deref(), Some("root"));
    }

    #[test]
    fn fingerprint_ignores_surrounding_whitespace_only() {
        assert_eq!(pem_fingerprint("abc\n"), pem_fingerprint("  abc"));
        assert_ne!(pem_fingerprint("abc"), pem_fingerprint("abd"));
    }

    /// kubeadm's documented recipe: `openssl x509 -pubkey | openssl pkey -pubin -outform der |
    /// sha256`, run for real so the two computations are independent.
    #[test]
    fn ca_cert_hash_matches_the_openssl_recipe() {
        use std::io::Write;
        use std::process::{Command, Stdio};
        let (pem, _) = ca();
        let pipe = |args: &[&str], input: &[u8]| {
            let mut child = Command::new("openssl")
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("openssl is installed by scripts/install-deps.sh");
            child.stdin.take().unwrap().write_all(input).unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success());
            out.stdout
        };
        let pubkey = pipe(&["x509", "-pubkey", "-noout"], pem.as_bytes());
        let der = pipe(&["pkey", "-pubin", "-outform", "der"], &pubkey);
        let digest = pipe(&["dgst", "-sha256", "-r"], &der);
        let expected = String::from_utf8(digest).unwrap();
        let expected = expected.split_whitespace().next().unwrap();
        assert_eq!(ca_cert_hash(&pem).as_deref(), Some(expected));
        assert_eq!(ca_cert_hash("not a certificate"), None);
    }
}
