//! The gRPC API: TLS, bearer-token auth on every call, and the services.
//!
//! Handlers only translate: they parse requests into validated values, call the store and the
//! datastore prober, and map errors to statuses once ([`store_status`]). Field-level errors
//! carry a google.rpc.BadRequest naming the attribute.

pub mod auth;
pub mod backups;
pub mod bootstrap_tokens;
pub mod datastores;
pub mod tenants;

use tonic::Status;

use crate::store::StoreError;

/// The one place store errors become statuses.
pub fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::Etcd { .. } => {
            Status::unavailable(format!("kamajid's state store is unavailable: {e}"))
        }
        StoreError::Corrupt { .. } => Status::internal(e.to_string()),
        StoreError::AlreadyExists { .. } => Status::already_exists(e.to_string()),
        StoreError::Conflict { .. } => Status::aborted(e.to_string()),
        StoreError::HasTenants { .. } => Status::failed_precondition(e.to_string()),
    }
}
