//! `kamajid-dev`: a local, secured environment (state etcd, etcd datastores, kamajid) until
//! interrupted; see [`kamaji_testkit::dev`].

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,h2=warn,tower=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match kamaji_testkit::dev::run_dev(kamaji_testkit::dev::DevConfig::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kamajid-dev: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
