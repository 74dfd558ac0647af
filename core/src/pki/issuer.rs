//! A tenant's service-account issuer as OpenID Connect publishes it: the discovery document and
//! the JSON Web Key Set that verify the tokens its apiserver signs. Cloud IAMs, Vault and any
//! OIDC library fetch these two to trust a workload's projected token (what EKS's
//! `identity.oidc.issuer` and GKE's and AKS's per-cluster issuers publish).

use base64::Engine;
use serde_json::{json, Value};
use sha2::Digest;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::TenantPki;

/// Where the discovery document is, under the issuer URL.
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
/// Where the key set is, under the issuer URL (the apiserver's own discovery names this path).
pub const JWKS_PATH: &str = "/openid/v1/jwks";

/// A service-account public key that cannot be published as a JWK.
#[derive(Debug, thiserror::Error)]
#[error("service-account public key {index}: {detail}")]
pub struct JwkError {
    pub index: usize,
    pub detail: String,
}

/// The issuer's discovery document.
pub fn discovery(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}{JWKS_PATH}"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
}

/// The key set: every service-account key whose tokens the apiserver accepts (the current one
/// and, while a credential rotation is started, the previous one), each under the key id the
/// apiserver writes into its tokens' headers.
pub fn jwks(pki: &TenantPki) -> Result<Value, JwkError> {
    let pems = pki.service_account_pubs();
    let keys = x509_parser::pem::Pem::iter_from_buffer(pems.as_bytes())
        .enumerate()
        .map(|(index, p)| {
            let err = |detail: String| JwkError { index, detail };
            let p = p.map_err(|e| err(e.to_string()))?;
            jwk(&p.contents).map_err(err)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(json!({ "keys": keys }))
}

/// One P-256 key (all kamajid mints) as a JWK. Its `kid` is what Kubernetes computes: base64url
/// (no padding) of the SHA-256 of the key's DER SubjectPublicKeyInfo.
fn jwk(spki_der: &[u8]) -> Result<Value, String> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(spki_der).map_err(|e| e.to_string())?;
    let point = match spki.parsed() {
        Ok(PublicKey::EC(p)) => p.data().to_vec(),
        Ok(_) => return Err("not an EC key: only P-256 keys are published".into()),
        Err(e) => return Err(e.to_string()),
    };
    // Uncompressed P-256: 0x04, then X and Y of 32 bytes each.
    if point.len() != 65 || point[0] != 4 {
        return Err(format!(
            "an EC point of {} bytes is not an uncompressed P-256 key",
            point.len()
        ));
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    Ok(json!({
        "use": "sig",
        "kty": "EC",
        "kid": b64.encode(sha2::Sha256::digest(spki_der)),
        "crv": "P-256",
        "alg": "ES256",
        "x": b64.encode(&point[1..33]),
        "y": b64.encode(&point[33..65]),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pki::tests::spec;
    use crate::pki::{mint, new_ca};

    fn etcd_ca() -> crate::pki::Pem {
        new_ca("etcd").unwrap()
    }

    #[test]
    fn the_key_set_holds_each_accepted_key_once_and_both_during_a_rotation() {
        let mut pki = mint(&spec(), &etcd_ca()).unwrap();
        let one = jwks(&pki).unwrap();
        let keys = one["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1);
        let k = &keys[0];
        assert_eq!(
            (k["kty"].as_str(), k["crv"].as_str()),
            (Some("EC"), Some("P-256"))
        );
        for f in ["x", "y"] {
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(k[f].as_str().unwrap())
                .unwrap();
            assert_eq!(raw.len(), 32, "{f}");
        }
        assert_eq!(
            k["kid"].as_str().unwrap().len(),
            43,
            "base64url of 32 bytes, no padding"
        );

        pki.start_rotation(&spec()).unwrap();
        let two = jwks(&pki).unwrap();
        let kids: Vec<_> = two["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].clone())
            .collect();
        assert_eq!(kids.len(), 2);
        assert!(
            kids.contains(&k["kid"]),
            "the previous key is still published"
        );
        assert_ne!(kids[0], kids[1]);
    }

    #[test]
    fn the_discovery_document_names_the_issuer_and_its_key_set() {
        let d = discovery("https://oidc.example.com/acme-x1y2z");
        assert_eq!(d["issuer"], "https://oidc.example.com/acme-x1y2z");
        assert_eq!(
            d["jwks_uri"],
            "https://oidc.example.com/acme-x1y2z/openid/v1/jwks"
        );
    }
}
