//! `engine catalog JOB.sql`: the Athena DDL (or Glue table input) of a job's
//! lake tables, so analysts can query them without a crawler.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, ValueEnum};
use engine::catalog::CatalogTable;
use engine::Job;

/// Arguments of `engine catalog`.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// Job files whose lake sinks to describe (their paths must be s3://, e.g. LAKE_URL=s3://bucket/lake).
    #[arg(required = true)]
    pub jobs: Vec<PathBuf>,
    /// Glue database the tables go in.
    #[arg(long, default_value = "market")]
    pub database: String,
    /// `ddl`: Athena `CREATE EXTERNAL TABLE`; `glue-json`: input for `aws glue create-table --cli-input-json`.
    #[arg(long, value_enum, default_value_t = Format::Ddl)]
    pub format: Format,
    /// Only this table (e.g. with `--format glue-json`, which takes one table per call).
    #[arg(long)]
    pub table: Option<String>,
    /// First day that partition projection enumerates (yyyy-MM-dd).
    #[arg(long, default_value = "2020-01-01")]
    pub since: String,
}

/// What `engine catalog` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Athena DDL.
    Ddl,
    /// Glue `CreateTable` JSON.
    GlueJson,
}

impl CatalogArgs {
    /// Prints each lake table of the jobs.
    pub async fn run(self) -> anyhow::Result<()> {
        let mut tables = Vec::new();
        for path in &self.jobs {
            let job = Job::load(path).await?;
            for (config, schema) in job.lake_tables() {
                let table = CatalogTable::from_lake(&config, &schema, &self.database, &self.since)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
                tables.push(table);
            }
        }
        if let Some(name) = &self.table {
            let names: Vec<String> = tables.iter().map(|t| t.name.clone()).collect();
            tables.retain(|t| &t.name == name);
            if tables.is_empty() {
                bail!("--table `{name}`: the jobs' lake tables are {names:?}");
            }
        }
        if tables.is_empty() {
            bail!("no lake sink (connector = 'lake') in the job files");
        }
        if self.format == Format::GlueJson && tables.len() > 1 {
            let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
            bail!("--format glue-json describes one table per call; choose one with --table (of {names:?})");
        }
        for (i, table) in tables.iter().enumerate() {
            match self.format {
                Format::Ddl => {
                    if i > 0 {
                        println!();
                    }
                    print!("{}", table.athena_ddl());
                }
                Format::GlueJson => {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&table.glue_table_input())?
                    )
                }
            }
        }
        Ok(())
    }
}
