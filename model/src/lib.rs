//! kamaji-model: what a tenant cluster is, and every rule about it, once.
//!
//! The provider (at `terraform plan`) and kamajid (on every write) judge input with the same
//! functions, so they reach the same verdict; kamajid's core works on the typed values. Nothing
//! here does I/O or knows the wire: `kamaji-proto` converts the v1 messages into these types
//! (and only there), which keeps the generated API and tonic out of kamajid's core.
//!
//! - [`ids`]: typed names and the DNS-1123 rule; [`version`]: Kubernetes releases;
//!   [`net`]: networks in CIDR notation; [`quantity`]: resource quantities.
//! - [`flags`]: the flags kamajid manages and the admission plugins per minor; [`audit`]: audit
//!   policies; [`bounds`]: the ranges numbers fall in.
//! - [`spec`]: the typed tenant spec and the defaults clients fill in.
//! - [`change`]: what may change in place, and how; [`maintenance`]: release channels,
//!   maintenance windows and exclusions.

pub mod audit;
pub mod backup;
pub mod bounds;
pub mod change;
pub mod error;
pub mod flags;
pub mod ids;
pub mod maintenance;
pub mod net;
pub mod quantity;
pub mod spec;
pub mod version;

pub use error::{Check, FieldError};
