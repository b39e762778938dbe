//! `engine run JOB.sql [--bounded]`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::Args;
use engine::{Job, RunOptions};

/// Arguments of `engine run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The job file (e.g. jobs/ohlc_1m.sql).
    pub job: PathBuf,
    /// Read each source up to the end offsets seen at start, emit all windows, flush, commit and exit.
    #[arg(long)]
    pub bounded: bool,
}

impl RunArgs {
    /// Runs the job; Ctrl-C stops it cleanly (sinks flushed, files closed).
    pub async fn run(self) -> anyhow::Result<()> {
        let job = Job::load(&self.job).await?;
        let stop = Arc::new(AtomicBool::new(false));
        let on_signal = Arc::clone(&stop);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                tracing::info!("stopping: flushing sinks");
                on_signal.store(true, Ordering::Relaxed);
            }
        });
        let report = job
            .run(
                RunOptions {
                    bounded: self.bounded,
                },
                stop,
            )
            .await?;
        eprintln!("{}", report.metrics.summary());
        Ok(())
    }
}
