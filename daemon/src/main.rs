use clap::Parser;
use kamajid::config::{Cli, Command, LogFormat};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,h2=warn,tower=warn".into());
    let log = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => log.json().init(),
        LogFormat::Text => log
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let result = match cli.command {
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
