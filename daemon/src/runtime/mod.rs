//! Where tenant control planes run: the lifecycle's [`Runtime`](kamaji_core::lifecycle::ports::Runtime)
//! port, over pods in an admin cluster ([`kubernetes`], production) or supervised local
//! processes on one host ([`process`]). The lifecycle drives either and does not know which.

pub mod kubernetes;
pub mod process;

use kamaji_core::spec::TenantSpec;
use kamaji_proto::errors::FieldError;

/// What a control-plane runtime can run, judged when a tenant is written (and at plan): a spec
/// it cannot run as written is refused on the attribute at fault, never silently degraded or
/// left to fail after the apply's timeout.
pub trait Capabilities: Send + Sync {
    fn refuses(&self, spec: &TenantSpec) -> Vec<FieldError>;
}

impl Capabilities for kubernetes::KubeRuntime {
    fn refuses(&self, _spec: &TenantSpec) -> Vec<FieldError> {
        Vec::new()
    }
}

impl Capabilities for process::ProcessRuntime {
    fn refuses(&self, spec: &TenantSpec) -> Vec<FieldError> {
        let mut errs = Vec::new();
        if !spec.network.authorized_networks.is_empty() {
            errs.push(FieldError::new(
                "network.authorized_networks",
                "the process runtime cannot enforce it: its apiservers listen on this host's ports \
                 for every address. Fence the port range with the host's firewall and leave this \
                 unset, or run kamajid with --runtime=kubernetes",
            ));
        }
        if let Err(e) = self.binaries(&spec.kubernetes_version.to_string()) {
            errs.push(FieldError::new("kubernetes_version", e.detail));
        }
        if let Some(why) = self.family_mismatch(&spec.network.service_cidr) {
            errs.push(FieldError::new("network.service_cidr", why));
        }
        if spec.network.konnectivity {
            if let Err(e) = self.konnectivity_binary() {
                errs.push(FieldError::new("network.konnectivity", e.detail));
            }
        }
        errs
    }
}
