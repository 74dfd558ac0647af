use clap::Parser;
use kamajid::config::{Cli, Command, LogFormat};
use tokio::sync::watch;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let (args, renamed) =
        kamajid::config::with_renamed_env(std::env::args_os().collect(), |k| std::env::var(k).ok());
    let cli = Cli::parse_from(args);
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
    for warning in renamed {
        tracing::warn!("{warning}");
    }
    let result = match cli.command {
        Command::Reference => {
            print!("{}", kamajid::config::flags_markdown());
            Ok(())
        }
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
