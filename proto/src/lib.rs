//! The kamajid v1 API shared by the daemon and the provider: the generated messages and
//! services, and the conversions between the wire and `kamaji-model`'s typed values.
//!
//! - [`v1`]: messages and the tonic clients and servers generated from `kamaji/v1/*.proto`.
//! - [`tenant`]: a v1 tenant spec judged by the model's rules field by field, parsed into the
//!   typed spec ([`tenant::parse`]), and the changes allowed between two ([`tenant::change`]).
//!   The provider calls these at `terraform plan`, kamajid on every write: one implementation
//!   keeps the two from disagreeing.
//! - [`validate`]: the same for datastore registrations (certificates, keys, endpoints, labels).
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

pub use kamaji_model::bounds::{DEFAULT_QUOTA_BYTES, RECOMMENDED_MAX_QUOTA_BYTES};
