//! The BootstrapTokens service: kubeadm node-join tokens, kept where kubeadm keeps them (as
//! `kube-system/bootstrap-token-<id>` Secrets inside the tenant), so the tenant's own
//! controller-manager signs discovery with them and deletes them when they expire. kamajid keeps
//! no copy: the secret half is returned by Create only.

use std::sync::Arc;

use kamaji_core::bootstrap::tokens::{self, TokenInfo};
use kamaji_core::pki::TenantPki;
use kamaji_core::tenant::TenantRecord;
use kamaji_proto::errors::{field_status, FieldError};
use kamaji_proto::v1::{self, bootstrap_tokens_server::BootstrapTokens};
use time::OffsetDateTime;
use tonic::{Code, Request, Response, Status};
use tracing::info;

use super::tenants::service_status;
use crate::service::{ServiceError, TenantService};
use crate::tenant_client::{self, admin_client};
use crate::wire;

/// Token lifetimes accepted: a minute to a year (kubeadm's default is a day).
pub const TTL_SECONDS: std::ops::RangeInclusive<i64> = 60..=365 * 24 * 3600;
pub const DESCRIPTION_MAX: usize = 256;

pub struct BootstrapTokenApi {
    pub service: Arc<TenantService>,
}

fn field(code: Code, name: &str, message: impl Into<String>) -> Status {
    field_status(code, &[FieldError::new(name, message)])
}

/// Checks a create request; every problem is reported on the attribute at fault.
pub fn check_create(req: &v1::CreateBootstrapTokenRequest) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if req.tenant_cluster.is_empty() {
        errors.push(FieldError::new("tenant_cluster", "is required"));
    }
    if !TTL_SECONDS.contains(&req.ttl_seconds) {
        errors.push(FieldError::new(
            "ttl",
            format!(
                "{} s is out of range: a token lives from 1 minute to 365 days (8760h)",
                req.ttl_seconds
            ),
        ));
    }
    if req.description.len() > DESCRIPTION_MAX {
        errors.push(FieldError::new(
            "description",
            format!(
                "is {} characters long; at most {DESCRIPTION_MAX}",
                req.description.len()
            ),
        ));
    }
    if req.description.chars().any(char::is_control) {
        errors.push(FieldError::new(
            "description",
            "must not contain control characters (newlines, tabs)",
        ));
    }
    errors
}

/// Refuses what cannot be a token id, naming the field.
fn check_id(id: &str) -> Result<(), Status> {
    if token_id_ok(id) {
        return Ok(());
    }
    Err(field(
        Code::InvalidArgument,
        "id",
        format!("{id:?} is not a token id: 6 characters a-z, 0-9"),
    ))
}

fn token_id_ok(id: &str) -> bool {
    id.len() == 6
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

fn to_proto(tenant: &str, t: &TokenInfo, ca_cert_hash: &str) -> v1::BootstrapToken {
    v1::BootstrapToken {
        tenant_cluster: tenant.to_owned(),
        id: t.id.clone(),
        token: String::new(),
        description: t.description.clone(),
        expire_time: t.expires.map(|e| prost_types::Timestamp {
            seconds: e.unix_timestamp(),
            nanos: 0,
        }),
        usages: t.usages.clone(),
        groups: t.groups.clone(),
        ca_cert_hash: format!("sha256:{ca_cert_hash}"),
        join_command: String::new(),
    }
}

impl BootstrapTokenApi {
    /// The tenant, its PKI and a client for its apiserver; tokens need it Ready. Errors about
    /// the tenant point at `tenant_cluster`.
    async fn tenant(&self, name: &str) -> Result<(TenantRecord, TenantPki, kube::Client), Status> {
        let tenant = wire::tenant_name(name)
            .map_err(|e| field(Code::InvalidArgument, "tenant_cluster", e.detail))?;
        let (rec, pki) = self.service.ready(&tenant).await.map_err(|e| match e {
            ServiceError::NotFound(_) => field(Code::NotFound, "tenant_cluster", e.to_string()),
            ServiceError::NotReady(..) => {
                field(Code::FailedPrecondition, "tenant_cluster", e.to_string())
            }
            e => service_status(e),
        })?;
        let client = admin_client(&rec, &pki)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        Ok((rec, pki, client))
    }

    fn hash(pki: &TenantPki) -> String {
        kamaji_proto::validate::ca_cert_hash(&pki.ca.cert).unwrap_or_default()
    }
}

#[tonic::async_trait]
impl BootstrapTokens for BootstrapTokenApi {
    async fn create_bootstrap_token(
        &self,
        req: Request<v1::CreateBootstrapTokenRequest>,
    ) -> Result<Response<v1::BootstrapToken>, Status> {
        let req = req.into_inner();
        let errors = check_create(&req);
        if !errors.is_empty() {
            return Err(field_status(Code::InvalidArgument, &errors));
        }
        let (rec, pki, client) = self.tenant(&req.tenant_cluster).await?;
        let (id, secret) = tokens::new_token();
        let expires = OffsetDateTime::now_utc() + time::Duration::seconds(req.ttl_seconds);
        let obj = tokens::token_secret(&id, &secret, expires, &req.description);
        tenant_client::apply(&client, std::slice::from_ref(&obj))
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        info!(tenant = %rec.name, token_id = %id, "bootstrap token created");
        let hash = Self::hash(&pki);
        let token = format!("{id}.{secret}");
        let info = TokenInfo {
            id,
            description: req.description,
            expires: tokens::parse_rfc3339(&tokens::rfc3339(expires)),
            usages: vec!["authentication".into(), "signing".into()],
            groups: vec![kamaji_core::bootstrap::NODE_TOKEN_GROUP.into()],
        };
        let mut out = to_proto(rec.name.as_str(), &info, &hash);
        out.join_command =
            tokens::join_command(rec.endpoint.as_deref().unwrap_or_default(), &token, &hash);
        out.token = token;
        Ok(Response::new(out))
    }

    async fn get_bootstrap_token(
        &self,
        req: Request<v1::GetBootstrapTokenRequest>,
    ) -> Result<Response<v1::BootstrapToken>, Status> {
        let req = req.into_inner();
        check_id(&req.id)?;
        let (rec, pki, client) = self.tenant(&req.tenant_cluster).await?;
        let found = tenant_client::get_token(&client, &req.id, OffsetDateTime::now_utc())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        match found {
            Some(t) => Ok(Response::new(to_proto(
                rec.name.as_str(),
                &t,
                &Self::hash(&pki),
            ))),
            None => Err(field(
                Code::NotFound,
                "id",
                format!(
                    "bootstrap token {:?} of tenant cluster {:?} does not exist or has expired",
                    req.id,
                    rec.name.as_str()
                ),
            )),
        }
    }

    async fn list_bootstrap_tokens(
        &self,
        req: Request<v1::ListBootstrapTokensRequest>,
    ) -> Result<Response<v1::ListBootstrapTokensResponse>, Status> {
        let req = req.into_inner();
        let (rec, pki, client) = self.tenant(&req.tenant_cluster).await?;
        let hash = Self::hash(&pki);
        let tokens = tenant_client::list_tokens(&client, OffsetDateTime::now_utc())
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?
            .iter()
            .map(|t| to_proto(rec.name.as_str(), t, &hash))
            .collect();
        Ok(Response::new(v1::ListBootstrapTokensResponse { tokens }))
    }

    async fn delete_bootstrap_token(
        &self,
        req: Request<v1::DeleteBootstrapTokenRequest>,
    ) -> Result<Response<v1::DeleteBootstrapTokenResponse>, Status> {
        let req = req.into_inner();
        check_id(&req.id)?;
        let (rec, _, client) = self.tenant(&req.tenant_cluster).await?;
        tenant_client::delete_token(&client, &req.id)
            .await
            .map_err(|e| Status::unavailable(e.to_string()))?;
        info!(tenant = %rec.name, token_id = %req.id, "bootstrap token deleted");
        Ok(Response::new(v1::DeleteBootstrapTokenResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_requests_are_checked_per_attribute() {
        let ok = v1::CreateBootstrapTokenRequest {
            tenant_cluster: "acme".into(),
            ttl_seconds: 3600,
            description: "workers".into(),
        };
        assert!(check_create(&ok).is_empty());
        let fields = |r: v1::CreateBootstrapTokenRequest| -> Vec<String> {
            check_create(&r).into_iter().map(|e| e.field).collect()
        };
        assert_eq!(
            fields(v1::CreateBootstrapTokenRequest {
                ttl_seconds: 59,
                ..ok.clone()
            }),
            ["ttl"]
        );
        assert_eq!(
            fields(v1::CreateBootstrapTokenRequest {
                ttl_seconds: 366 * 24 * 3600,
                ..ok.clone()
            }),
            ["ttl"]
        );
        assert_eq!(
            fields(v1::CreateBootstrapTokenRequest {
                tenant_cluster: String::new(),
                description: "a\nb".into(),
                ..ok.clone()
            }),
            ["tenant_cluster", "description"]
        );
        assert!(token_id_ok("abc123") && !token_id_ok("ABC123") && !token_id_ok("abc12"));
    }
}
