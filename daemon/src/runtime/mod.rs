//! Where tenant control planes run: the lifecycle's [`Runtime`](kamaji_core::lifecycle::ports::Runtime)
//! port, over pods in an admin cluster ([`kubernetes`], production) or supervised local
//! processes on one host ([`process`]). The lifecycle drives either and does not know which.

pub mod kubernetes;
pub mod process;
