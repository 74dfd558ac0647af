//! terraform-provider-kamaji: Terraform/OpenTofu resources for kamaji datastores and tenant
//! clusters, served over tfplugin6 and backed by kamajid's gRPC API.

mod bootstrap_token_resource;
mod client;
mod datastore;
mod datastore_data_source;
mod datastores_data_source;
mod docs;
mod duration;
mod listing;
mod log;
mod number;
mod plan_memo;
mod provider;
mod schema;
mod tenant_backup_resource;
mod tenant_backups_data_source;
mod tenant_cluster;
mod tenant_cluster_data_source;
mod tenant_clusters_data_source;
mod tenant_restore_resource;

fn main() -> std::process::ExitCode {
    // `terraform-provider-kamaji docs <repo root>` writes the registry documentation.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("docs") {
        let root = std::path::PathBuf::from(args.get(2).map(String::as_str).unwrap_or("."));
        return match docs::generate(&root) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("terraform-provider-kamaji docs: {e}");
                std::process::ExitCode::FAILURE
            }
        };
    }
    // tf-provider appends a Rust backtrace to every diagnostic when backtraces are enabled;
    // users must never see one. RUST_LIB_BACKTRACE takes precedence over RUST_BACKTRACE.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
    log::init();
    let _ = rustls_provider();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("terraform-provider-kamaji: starting the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tf_provider::serve(
        "kamaji",
        provider::KamajiProvider::default(),
    )) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("terraform-provider-kamaji: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Our client and tf-provider's plugin server both use rustls; pin the ring provider.
fn rustls_provider() -> Result<(), std::sync::Arc<rustls::crypto::CryptoProvider>> {
    rustls::crypto::ring::default_provider().install_default()
}
