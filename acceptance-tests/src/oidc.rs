//! A small OpenID Connect issuer on loopback over TLS, for the tenant apiserver's JWT
//! authenticator to discover and trust: it serves the discovery document and its signing key
//! (ES256), and signs ID tokens with whatever claims a test gives. A test double only in that it
//! is not a full identity provider: the apiserver talks to it exactly as to Dex or Keycloak.

use std::sync::Arc;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{issue, new_ca};

pub struct Issuer {
    /// `https://127.0.0.1:<port>`, the `iss` of its tokens.
    pub url: String,
    /// PEM CA of its serving certificate.
    pub ca_pem: String,
    key: EcdsaKeyPair,
    kid: String,
}

impl Issuer {
    /// Starts serving on a free loopback port; runs until the test's runtime ends.
    pub async fn start(kid: &str) -> Self {
        let ca = new_ca("oidc test CA").expect("ca");
        let serving = issue(&ca, "oidc", &["127.0.0.1"]).expect("serving cert");
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("signing key");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("signing key");
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("https://{}", tcp.local_addr().expect("addr"));
        // The public key is the uncompressed point 04 || x || y.
        let point = key.public_key().as_ref();
        let jwks = json!({"keys": [{
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": kid,
            "x": B64URL.encode(&point[1..33]), "y": B64URL.encode(&point[33..65]),
        }]});
        let discovery = json!({
            "issuer": url,
            "jwks_uri": format!("{url}/keys"),
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("tls versions")
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(serving.cert.as_bytes()).expect("cert")],
            PrivateKeyDer::from_pem_slice(serving.key.as_bytes()).expect("key"),
        )
        .expect("tls config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = tcp.accept().await else {
                    continue;
                };
                let (acceptor, jwks, discovery) =
                    (acceptor.clone(), jwks.clone(), discovery.clone());
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(stream).await else {
                        return;
                    };
                    let mut buf = vec![0u8; 8192];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let request = String::from_utf8_lossy(&buf[..n]);
                    let path = request.split_whitespace().nth(1).unwrap_or("");
                    let (status, body) = match path {
                        "/.well-known/openid-configuration" => ("200 OK", discovery.to_string()),
                        "/keys" => ("200 OK", jwks.to_string()),
                        _ => ("404 Not Found", "{}".to_owned()),
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(response.as_bytes()).await;
                    let _ = s.shutdown().await;
                });
            }
        });
        Self {
            url,
            ca_pem: ca.cert,
            key,
            kid: kid.to_owned(),
        }
    }

    /// An ID token for `sub` with `audience`, valid ten minutes, carrying `extra` claims too.
    pub fn token(&self, sub: &str, audience: &str, extra: Value) -> String {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut claims = json!({
            "iss": self.url, "sub": sub, "aud": audience,
            "iat": now, "nbf": now - 60, "exp": now + 600,
        });
        if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64URL.encode(header.to_string()),
            B64URL.encode(claims.to_string())
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("sign");
        format!("{input}.{}", B64URL.encode(sig.as_ref()))
    }
}

/// A kubeconfig that signs in with `token` only (no client certificate, which would win).
pub fn token_kubeconfig(server: &str, ca_pem: &str, token: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD;
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: t\n  cluster:\n    server: {server}\n    certificate-authority-data: {}\nusers:\n- name: u\n  user:\n    token: {token}\ncontexts:\n- name: t\n  context:\n    cluster: t\n    user: u\ncurrent-context: t\n",
        b64.encode(ca_pem)
    )
}
