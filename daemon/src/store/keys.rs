//! Where each record lives in the state etcd; only the store builds these keys.
//!
//! Layout (all under `/kamajid/v1/`): `tenants/<name>`, `pki/<name>` (the tenant's sealed PKI,
//! written with its record when it changes), `datastores/<name>` (spec),
//! `status/datastores/<name>` (last probe, written by the leader), `placements/<datastore>/<tenant>`
//! (one key per placed tenant, written with the tenant record), `reservations/<datastore>` (what
//! the placed tenants reserve there), `backups/<id>` (a tenant backup's record; the archive is in
//! the backup store), `leader`. Every prefix ends in '/', so `a` never covers
//! `ab`.

use kamaji_core::ids::{DatastoreName, TenantName};

pub const ROOT: &str = "/kamajid/v1/";

pub fn tenants() -> String {
    format!("{ROOT}tenants/")
}
pub fn tenant(name: &TenantName) -> String {
    format!("{}{name}", tenants())
}
pub fn pkis() -> String {
    format!("{ROOT}pki/")
}
pub fn pki(tenant: &TenantName) -> String {
    format!("{}{tenant}", pkis())
}
pub fn datastores() -> String {
    format!("{ROOT}datastores/")
}
pub fn datastore(name: &DatastoreName) -> String {
    format!("{}{name}", datastores())
}
pub fn statuses() -> String {
    format!("{ROOT}status/datastores/")
}
pub fn datastore_status(name: &DatastoreName) -> String {
    format!("{}{name}", statuses())
}
pub fn placements(datastore: &DatastoreName) -> String {
    format!("{ROOT}placements/{datastore}/")
}
pub fn placement(datastore: &DatastoreName, tenant: &TenantName) -> String {
    format!("{}{tenant}", placements(datastore))
}
pub fn reservation(datastore: &DatastoreName) -> String {
    format!("{ROOT}reservations/{datastore}")
}
pub fn leader() -> String {
    format!("{ROOT}leader")
}
pub fn backups() -> String {
    format!("{ROOT}backups/")
}
pub fn backup(id: &str) -> String {
    format!("{}{id}", backups())
}
