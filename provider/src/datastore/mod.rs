//! Resource `kamaji_datastore`: registers an etcd cluster with kamajid as a home for tenants.
//!
//! - Plan: every input is checked locally (names, URLs, PEM, key/certificate pairs, quota,
//!   labels); a datastore that already exists under the name is reported at plan, with the
//!   import command. `name` and the client CA force replacement; everything else updates in place.
//! - Keys are write-only: kamajid returns their SHA-256 only, kept in private state. Refresh
//!   keeps the key in state while its fingerprint matches; after `terraform import` the keys are
//!   unknown to state and the next apply records them (an in-place update, never a replacement).
//! - A datastore removed outside Terraform reads as gone and is planned for creation.

mod resource;
mod schema;
mod state;

pub use schema::schema;
pub use state::{phase_name, DatastoreState};

use crate::client::Shared;
use crate::plan_memo::{NameSet, PlannedDatastores};

pub struct DatastoreResource {
    pub client: Shared,
    pub own_names: NameSet,
    /// Tenant clusters this plan destroys, see [`crate::plan_memo`].
    pub tenants_leaving: NameSet,
    /// Datastores this plan registers or relabels, see [`crate::plan_memo`].
    pub arriving: PlannedDatastores,
}
