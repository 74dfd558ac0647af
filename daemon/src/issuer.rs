//! Tenants' public service-account issuers (`--issuer-listen`): for each tenant with
//! `public_issuer`, the OpenID Connect discovery document and the key set of the issuer
//! `<--service-account-issuer-base-url>/<uid>`, read-only and unauthenticated, as a cloud's IAM,
//! Vault or an OIDC library fetch them to verify the tenant's service-account tokens.
//!
//! - `GET /<uid>/.well-known/openid-configuration`
//! - `GET /<uid>/openid/v1/jwks`: the current service-account key and, while a credential
//!   rotation is started, the previous one (tokens signed by either still verify).
//!
//! Anything else, a tenant without `public_issuer`, or a uid no tenant has, is 404: the endpoint
//! says nothing about which tenants exist. Only public keys leave kamajid.

use std::net::SocketAddr;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use kamaji_core::ids::{TenantId, TenantName};
use kamaji_core::kek::Kek;
use kamaji_core::pki::issuer;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::store::Store;

/// What the issuer endpoint reads.
#[derive(Clone)]
pub struct Issuers {
    pub store: Store,
    pub kek: Kek,
    /// `--service-account-issuer-base-url`, without a trailing slash.
    pub base: String,
}

/// How long a client may keep a document: a rotation's new key is published the moment the
/// apiserver starts signing with it, and OIDC clients fetch again on an unknown key id.
const MAX_AGE_SECONDS: u32 = 60;

/// The name a tenant id was minted from (`<name>-<5 characters>`), if it has that shape.
fn name_of(uid: &str) -> Option<TenantName> {
    let (name, suffix) = uid.rsplit_once('-')?;
    (suffix.len() == 5).then_some(())?;
    TenantName::parse(name).ok()
}

impl Issuers {
    /// The issuer of tenant `uid` and its sealed PKI opened, if it publishes one.
    async fn published(
        &self,
        uid: &str,
    ) -> Result<Option<(String, kamaji_core::pki::TenantPki)>, String> {
        let (Some(name), Ok(id)) = (name_of(uid), TenantId::parse(uid)) else {
            return Ok(None);
        };
        let Some(v) = self
            .store
            .tenant_record(&name)
            .await
            .map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        let rec = v.value;
        if rec.uid != id || rec.deleting {
            return Ok(None);
        }
        let spec = self.store.wire_spec(&rec).map_err(|e| e.to_string())?;
        if !spec.public_issuer {
            return Ok(None);
        }
        let Some(pki) =
            kamaji_core::lifecycle::open_pki(&self.kek, &rec).map_err(|e| e.to_string())?
        else {
            return Ok(None);
        };
        Ok(Some((format!("{}/{uid}", self.base), pki)))
    }
}

fn json(body: &serde_json::Value) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CACHE_CONTROL,
                format!("public, max-age={MAX_AGE_SECONDS}"),
            ),
        ],
        body.to_string(),
    )
        .into_response()
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn failed(uid: &str, e: &str) -> Response {
    tracing::warn!(uid, error = %e, "serving a service-account issuer");
    (StatusCode::SERVICE_UNAVAILABLE, "try again later\n").into_response()
}

async fn discovery(Path(uid): Path<String>, State(s): State<Issuers>) -> Response {
    match s.published(&uid).await {
        Ok(Some((url, _))) => json(&issuer::discovery(&url)),
        Ok(None) => not_found(),
        Err(e) => failed(&uid, &e),
    }
}

async fn jwks(Path(uid): Path<String>, State(s): State<Issuers>) -> Response {
    match s.published(&uid).await {
        Ok(Some((_, pki))) => match issuer::jwks(&pki) {
            Ok(keys) => json(&keys),
            Err(e) => failed(&uid, &e.to_string()),
        },
        Ok(None) => not_found(),
        Err(e) => failed(&uid, &e),
    }
}

/// The routes, for [`serve`] and tests.
pub fn router(issuers: Issuers) -> Router {
    Router::new()
        .route(
            &format!("/{{uid}}{}", issuer::DISCOVERY_PATH),
            get(discovery),
        )
        .route(&format!("/{{uid}}{}", issuer::JWKS_PATH), get(jwks))
        .with_state(issuers)
}

/// Binds the issuer endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the issuers on `listener` until `shutdown` flips.
pub async fn serve(listener: TcpListener, issuers: Issuers, mut shutdown: watch::Receiver<bool>) {
    let stop = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
    };
    if let Err(e) = axum::serve(listener, router(issuers))
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::warn!(error = %e, "serving service-account issuers");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_names_its_tenant_only_when_it_has_the_minted_shape() {
        assert_eq!(
            name_of("acme-1a2b3").map(|n| n.to_string()),
            Some("acme".into())
        );
        assert_eq!(
            name_of("my-team-1a2b3").map(|n| n.to_string()),
            Some("my-team".into())
        );
        assert_eq!(name_of("acme"), None);
        assert_eq!(name_of("acme-1a2b"), None);
    }
}
