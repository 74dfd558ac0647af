//! The kamajid v1 API shared by the daemon and the provider.
//!
//! - [`v1`]: messages and the tonic clients and servers generated from `kamaji/v1/*.proto`.
//! - [`validate`]: the input contract. The provider checks it at `terraform plan`, the daemon
//!   checks it again on every write; one implementation keeps the two from disagreeing.
//! - [`errors`]: how a field-level error travels in a gRPC status (google.rpc.BadRequest).
//!
//! The provider and the daemon depend on this crate and on nothing of each other.

pub mod errors;
pub mod tenant;
pub mod validate;

/// Generated code for package `kamaji.v1`.
#[allow(clippy::all, missing_docs)]
pub mod v1 {
    tonic::include_proto!("kamaji.v1");
}

/// Default storage quota of a datastore: etcd's own default backend quota (2 GiB).
pub const DEFAULT_QUOTA_BYTES: i64 = 2 * 1024 * 1024 * 1024;
/// etcd's recommended maximum backend size (8 GiB); larger quotas are allowed but warned about.
pub const RECOMMENDED_MAX_QUOTA_BYTES: i64 = 8 * 1024 * 1024 * 1024;
