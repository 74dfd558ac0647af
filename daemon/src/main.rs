use clap::Parser;
use kamajid::config::{Cli, Command};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,h2=warn,tower=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match Cli::parse().command {
        Command::Serve(cfg) => {
            let (tx, rx) = watch::channel(false);
            tokio::spawn(async move {
                kamajid::server::wait_for_signal().await;
                let _ = tx.send(true);
            });
            match kamajid::server::bind(cfg.listen).await {
                Ok(listener) => kamajid::server::serve(*cfg, listener, rx)
                    .await
                    .map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            }
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kamajid: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
