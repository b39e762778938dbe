//! The `engine` binary: `engine run JOB.sql`, `engine check JOB.sql`.

mod cli;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    let levels = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // sqlparser logs the statements it parses at debug level: a job file's
    // text after `${VAR}` substitution, passwords included; tungstenite logs
    // the URL it connects to and every frame it sends at debug and trace
    // level, a provider's token and keys included. Never shown, at any RUST_LOG.
    let no_secrets = tracing_subscriber::filter::filter_fn(|meta| {
        let target = meta.target();
        !(target.starts_with("sqlparser")
            || ((target.starts_with("tungstenite") || target.starts_with("tokio_tungstenite"))
                && *meta.level() > tracing::Level::INFO))
    });
    let lines = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let lines = match cli.log_format {
        cli::LogFormat::Text => lines.boxed(),
        cli::LogFormat::Json => lines.json().flatten_event(true).boxed(),
    };
    tracing_subscriber::registry()
        .with(lines.with_filter(levels).with_filter(no_secrets))
        .init();
    match cli.command.run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            let chain = engine::Chain(e.as_ref());
            match cli.log_format {
                cli::LogFormat::Text => eprintln!("error: {chain}"),
                // A log shipper reads stderr as JSON lines: the error is one too.
                cli::LogFormat::Json => tracing::error!(error = %chain, "the command failed"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}
