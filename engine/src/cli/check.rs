//! `engine check JOB.sql`: validate and explain without running.

use std::path::PathBuf;

use clap::Args;
use engine::Job;

/// Arguments of `engine check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The job file.
    pub job: PathBuf,
}

impl CheckArgs {
    /// Parses, plans and prints the job.
    pub async fn run(self) -> anyhow::Result<()> {
        let job = Job::load(&self.job).await?;
        print!("{}", job.explain());
        println!("{}: ok", self.job.display());
        Ok(())
    }
}
