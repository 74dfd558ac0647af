//! kamaji-testkit: what kamaji's tests and demo stand on, kept out of the kamajid library.
//!
//! - [`devenv`]: real etcd processes on loopback, secured as kamajid requires of datastores
//!   (TLS, client-certificate auth, auth on), and the dev PKI they trust.
//! - [`kube_double`]: a Kubernetes API test double, for the daemon suites' tenant apiservers and
//!   the 1000-tenant bench: where a real control plane per tenant cannot run. Every acceptance
//!   suite runs the real programs instead.
//! - [`dev`]: `kamajid-dev`, the local environment of `make demo`.

pub mod dev;
pub mod devenv;
pub mod kube_double;
