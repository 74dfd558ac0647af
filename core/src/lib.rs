//! kamaji-core: what kamaji decides, without touching the world.
//!
//! Nothing here opens a connection or a file: no tonic, etcd-client or kube. The daemon's
//! adapters (its etcd store, the Kubernetes and process runtimes, the client of a tenant's own
//! apiserver) implement the traits the lifecycle asks of the world, and its gRPC layer parses
//! requests into these types once.
//!
//! Layout, inward to outward:
//! - [`ids`] and [`spec`] (from `kamaji-model`, shared with the provider): typed names and the
//!   typed tenant spec every step reads.
//! - [`etcd_keys`]: a tenant's key prefix and the range it covers in a shared etcd;
//!   [`etcd_release`]: etcd releases whose auth checks a shared datastore cannot rely on.
//! - [`kek`]: sealing secrets bound to the record they belong to (AES-256-GCM).
//! - [`pki`]: a tenant's certificates and kubeconfigs (rcgen).
//! - [`placement`]: choosing a datastore by capacity, labels and policy; [`shard`]: keeping a
//!   shared etcd healthy (compaction, defragmentation, recovery from `NOSPACE`).
//! - [`usage`]: what each tenant keeps in a shared etcd, kept current from the shard's events;
//!   [`limits`]: its storage quota and write budget, metered, and the walls that enforce them.
//! - [`controlplane`]: component flags, files and the admin-cluster objects of a tenant.
//! - [`maintenance`]: automatic upgrades: release channels' targets, maintenance windows and
//!   exclusions, one tenant of a datastore at a time.
//! - [`bootstrap`]: the objects inside a tenant that `kubeadm join` needs, and bootstrap tokens.

pub use kamaji_model::{ids, spec};

pub mod backup;
pub mod bootstrap;
pub mod controlplane;
pub mod datastore;
pub mod etcd_keys;
pub mod etcd_release;
pub mod kek;
pub mod lifecycle;
pub mod limits;
pub mod maintenance;
pub mod pki;
pub mod placement;
pub mod shard;
pub mod tenant;
pub mod usage;
