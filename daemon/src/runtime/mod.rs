//! Where tenant control planes run: the lifecycle's [`Runtime`](kamaji_core::lifecycle::ports::Runtime)
//! port, over pods in an admin cluster ([`kubernetes`], production) or supervised local
//! processes on one host ([`process`]). The lifecycle drives either and does not know which.

pub mod kubernetes;
pub mod process;

use kamaji_core::spec::TenantSpec;
use kamaji_proto::errors::FieldError;

use crate::config::RuntimeKind;

/// What `kind` cannot do for `spec`, by attribute: refused when the tenant is written (and at
/// plan), never silently ignored.
pub fn unsupported(kind: RuntimeKind, spec: &TenantSpec) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if kind == RuntimeKind::Process && !spec.network.authorized_networks.is_empty() {
        errs.push(FieldError::new(
            "network.authorized_networks",
            "the process runtime cannot enforce it: its apiservers listen on this host's ports for \
             every address. Fence the port range with the host's firewall and leave this unset, \
             or run kamajid with --runtime=kubernetes",
        ));
    }
    errs
}
