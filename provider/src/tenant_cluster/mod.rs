//! Resource `kamaji_tenant_cluster`: a managed Kubernetes control plane.
//!
//! - Plan: every known input is checked with the same contract kamajid applies; a version
//!   change must move one minor up (or a patch up) unless the cluster is being replaced anyway;
//!   placement, the network plan and the certificate names force replacement; destroying (or
//!   replacing) a cluster with `deletion_protection` is refused at plan.
//! - Apply: kamajid's writes return at once; the provider follows the tenant with Watch until it
//!   is Ready at the new generation, within `timeouts`. A create that times out leaves the
//!   cluster in state, tainted, so nothing is lost and the next apply replaces it.
//! - A cluster deleted outside Terraform reads as gone and is planned for creation.

mod from_api;
mod plan;
mod refresh;
mod report;
mod resource;
mod schema;
mod state;
mod to_api;
mod wait;

pub use from_api::rfc3339;
pub use report::{phase_name, status_message};
pub use schema::schema;
pub use state::*;

use crate::client::Shared;
use crate::plan_memo::{NameSet, PlannedDatastores};

pub struct TenantClusterResource {
    pub client: Shared,
    pub own_names: NameSet,
    /// Tenants this plan destroys, shared with the datastore resource.
    pub leaving: NameSet,
    /// Datastores this plan registers, see [`crate::plan_memo`].
    pub datastores_arriving: PlannedDatastores,
    /// Tenant clusters this plan creates (bootstrap tokens may name them).
    pub arriving: NameSet,
    /// One List for the reads of a refresh, see [`refresh`].
    pub listing: std::sync::Arc<refresh::Listing>,
}
