//! kamajid: the daemon behind terraform-provider-kamaji.
//!
//! Layout, inward to outward:
//! - [`kek`], [`etcd`]: sealing secrets; connecting to etcd.
//! - [`store`]: kamajid's own durable records in etcd, every write compare-and-swap.
//! - [`datastore`]: the etcd shards tenants live on: records, probes, the health loop, and
//!   per-tenant isolation (user, role and key prefix).
//! - [`placement`]: the pure choice of a datastore for a new tenant (capacity-aware).
//! - [`leader`]: lease-held leadership so several replicas can run; background work runs on one.
//! - [`api`]: the gRPC services (TLS, bearer tokens), translating requests into the above.
//! - [`server`]: wiring; [`config`]: flags and environment; [`devenv`]: a local secured
//!   environment (etcd processes, certificates) for demos and tests.

pub mod api;
pub mod bootstrap;
pub mod config;
pub mod controlplane;
pub mod datastore;
pub mod devenv;
pub mod etcd;
pub mod kek;
pub mod leader;
pub mod pki;
pub mod placement;
pub mod reconcile;
pub mod runtime;
pub mod server;
pub mod store;
pub mod tenant;
