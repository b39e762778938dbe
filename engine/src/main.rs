//! The `engine` binary: `engine run JOB.sql`, `engine check JOB.sql`.

mod cli;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    engine::logs::init(cli.log_format == cli::LogFormat::Json);
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
