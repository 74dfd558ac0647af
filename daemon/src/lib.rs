//! kamajid: the daemon behind terraform-provider-kamaji, the adapters around
//! [`kamaji_core`]: what the core decides is carried out here, over the network and files.
//!
//! Layout, outward in:
//! - [`server`]: wiring (`serve(cfg, listener, shutdown)`); [`config`]: flags and environment.
//! - [`api`]: the gRPC services (TLS, bearer tokens). They parse requests (the input contract,
//!   then [`wire`]), call a service, and map errors to statuses once.
//! - [`service`]: the tenant clusters service, every rule about writing a tenant's desired state.
//! - [`wire`]: the v1 messages and the core's types, converted in one place.
//! - The lifecycle's ports, implemented: [`store`] (`Records`: kamajid's records in etcd; it owns
//!   the key layout), [`datastore::isolation`] (`Isolation`: a tenant's user and role on a shared
//!   etcd), [`runtime`] (`Runtime`: pods in an admin cluster, or local processes) and
//!   [`tenant_client`] (`TenantObjects`: what kamajid keeps inside a tenant, and its tokens).
//! - [`datastore`]: probing datastores and the leader's health loop; [`leader`]: the lease that
//!   lets several replicas run with one doing background work; [`etcd`]: connecting to etcd;
//!   [`observe`]: the plain-HTTP port probes (and operators) watch it through.

pub mod api;
pub mod backup;
pub mod config;
pub mod datastore;
pub mod etcd;
pub mod issuer;
pub mod leader;
pub mod metrics;
pub mod observe;
pub mod reload;
pub mod runtime;
pub mod server;
pub mod service;
pub mod store;
pub mod tenant_client;
pub mod wire;
