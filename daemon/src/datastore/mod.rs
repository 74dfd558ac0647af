//! The etcd datastores tenants live on, as seen from kamajid: checking one before it may hold
//! tenants and on every health tick ([`probe`]), the leader's loop that keeps their status
//! current ([`health`]) and keeps them healthy ([`upkeep`]: compaction, defragmentation,
//! recovery from `NOSPACE`), fencing tenants into their own prefix of one ([`isolation`]) and
//! measuring what each tenant keeps there ([`usage`]), moving a tenant's keys to another
//! ([`transfer`]). What is recorded about each is in
//! [`kamaji_core::datastore`].

pub mod health;
pub mod isolation;
pub mod probe;
pub mod transfer;
pub mod upkeep;
pub mod usage;
