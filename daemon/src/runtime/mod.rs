//! Where tenant control planes run. The reconcile core drives a [`Runtime`] and does not know
//! which one: pods in an admin cluster (production) or supervised local processes (one host).
//!
//! Contract: `apply` and `delete` are idempotent (a resumed reconcile calls them again);
//! `apply` of an unchanged tenant changes nothing; `delete` returns only once nothing of the
//! tenant is left to remove, or says it is still going so the caller comes back.

pub mod kubernetes;
pub mod process;

use std::future::Future;

use crate::controlplane::render::Tenant;
use crate::pki::TenantPki;

/// What the runtime reports about one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuntimeStatus {
    /// Every desired replica runs the desired version and the apiserver answers `/readyz`.
    pub ready: bool,
    /// `https://host:port` the tenant apiserver is reached at, once known.
    pub endpoint: Option<String>,
    /// Human-readable reason when not ready.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{op} tenant {tenant}: {detail}")]
pub struct RuntimeError {
    pub op: &'static str,
    pub tenant: String,
    pub detail: String,
}

pub trait Runtime: Send + Sync + 'static {
    /// Creates or updates everything tenant `t` runs on.
    fn apply(
        &self,
        t: &Tenant<'_>,
        pki: &TenantPki,
    ) -> impl Future<Output = Result<(), RuntimeError>> + Send;
    fn status(
        &self,
        t: &Tenant<'_>,
    ) -> impl Future<Output = Result<RuntimeStatus, RuntimeError>> + Send;
    /// Removes everything of the tenant. `Ok(true)` when nothing is left.
    fn delete(&self, tenant: &str) -> impl Future<Output = Result<bool, RuntimeError>> + Send;
}
