//! A tenant's control plane, as pure values: the component flags ([`flags`]) and the objects
//! the Kubernetes runtime applies to the admin cluster ([`render`]). Nothing here does I/O.

pub mod flags;
pub mod render;
