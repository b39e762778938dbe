//! Command-line interface: one subcommand per file.

mod catalog;
mod check;
mod ingest;
mod kafka;
mod produce;
mod query;
mod run;
mod tail;
mod ui;

use tokio_util::sync::CancellationToken;

use clap::{Parser, Subcommand};

/// A real-time market-data stream-processing engine: streaming SQL over Kafka,
/// to derived topics and a Parquet lake.
#[derive(Debug, Parser)]
#[command(name = "engine", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object per line: timestamp, level, target, fields) for log shippers.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// The format of log lines (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a job file until stopped (Ctrl-C), or to the end of its input with --bounded.
    Run(run::RunArgs),
    /// Parse and plan a job file, print its plan, and exit (connects to nothing).
    Check(check::CheckArgs),
    /// Simulate a market: trades to a Kafka topic or a JSON-lines file.
    Produce(produce::ProduceArgs),
    /// Live trades from a market-data provider's websocket to a Kafka topic (or a file).
    Ingest(ingest::IngestArgs),
    /// Print the records of a topic (e.g. ohlc_1m) as they arrive.
    Tail(tail::TailArgs),
    /// Print the Athena DDL (or Glue table input) of a job's lake tables.
    Catalog(catalog::CatalogArgs),
    /// Run Athena-style SQL over the lake locally (tables from the jobs' lake sinks).
    Query(query::QueryArgs),
    /// Serve the live candle page of a derived topic (e.g. ohlc_1m) for a job that runs elsewhere.
    Ui(ui::UiArgs),
}

impl Command {
    /// Runs the subcommand.
    pub async fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Run(args) => args.run().await,
            Command::Ui(args) => args.run().await,
            Command::Check(args) => args.run().await,
            Command::Produce(args) => args.run().await,
            Command::Ingest(args) => args.run().await,
            Command::Tail(args) => args.run().await,
            Command::Catalog(args) => args.run().await,
            Command::Query(args) => args.run().await,
        }
    }
}

/// A shutdown signal that Ctrl-C (or SIGTERM) cancels, so a command can stop
/// cleanly (flush, close, report) instead of dying mid-write.
pub(crate) fn stop_on_ctrl_c() -> CancellationToken {
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C: stopping cleanly (Ctrl-C again to exit at once)");
            on_signal.cancel();
            // A broker that is down can make a clean stop wait (for a flush): a
            // second Ctrl-C is the user saying not to.
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("second Ctrl-C: exiting without waiting for the clean stop");
                std::process::exit(130);
            }
        }
    });
    stop
}
