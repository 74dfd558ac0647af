//! End-to-end harness: real etcd processes, a real `kamajid serve` process, and the real
//! `terraform` CLI using the freshly built provider through `dev_overrides`.
//!
//! Each [`Harness`] owns a temp directory with its PKI, a secured state etcd and a kamajid on a
//! random port; each [`Workdir`] is a Terraform root module with its own state. Tests check both
//! what Terraform says (plan JSON, state JSON, diagnostics) and what kamajid holds.

pub mod admin_cluster;
pub mod chart;
pub mod k8s;
pub mod node;
pub mod oidc;
pub mod shard;
pub mod tunnel;

mod harness;
mod hcl;
mod host;
mod terraform;

pub use harness::*;
pub use hcl::*;
pub use host::*;
pub use terraform::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;

pub use kamaji_core::pki::{issue, new_ca, Pem};
pub use kamaji_testkit::devenv::{free_port, DevPki, EtcdProcess, EtcdSecurity};
pub use kamaji_testkit::kube_double;

pub const TOKEN: &str = "acceptance-token-0123456789abcdef";

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

/// `release` when `KAMAJI_BUILD_PROFILE=release` (benchmarks), else `debug` (tests).
fn release() -> bool {
    std::env::var("KAMAJI_BUILD_PROFILE").is_ok_and(|p| p == "release")
}

/// Where cargo puts the binaries under test.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
        .join(if release() { "release" } else { "debug" })
}

/// Builds kamajid and the provider once per test binary, so tests never run stale binaries.
pub fn ensure_built() {
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        // cargo test sets CARGO_PKG_* and friends for the test; build scripts that watch them
        // would rebuild under the outer cargo's feet.
        for (k, _) in std::env::vars() {
            if k.starts_with("CARGO_") && k != "CARGO_HOME" && k != "CARGO_TARGET_DIR" {
                cmd.env_remove(k);
            }
        }
        cmd.current_dir(workspace())
            // The same selection as `make build`, so features unify alike and nothing rebuilds.
            .args(["build", "--quiet", "--workspace", "--bins"]);
        if release() {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build");
        assert!(status.success(), "building kamajid and the provider failed");
    });
}

/// Adds the harness token to every call.
#[derive(Clone, Copy)]
pub struct Bearer;

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        let auth = format!("Bearer {TOKEN}")
            .parse()
            .map_err(|_| tonic::Status::internal("token"))?;
        req.metadata_mut().insert("authorization", auth);
        Ok(req)
    }
}

/// Writes a terraform CLI config that installs the freshly built provider via dev_overrides.
pub fn write_cli_config(dir: &Path) -> PathBuf {
    let path = dir.join("terraformrc");
    let rc = format!(
        "provider_installation {{\n  dev_overrides {{\n    \"kamaji/kamaji\" = \"{}\"\n  }}\n  direct {{}}\n}}\n",
        bin_dir().display()
    );
    std::fs::write(&path, rc).expect("terraformrc");
    path
}
