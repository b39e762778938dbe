//! `engine query "SQL"`: Athena-style SQL over the lake, run locally.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use engine::query::{write_results, LakeQuery, OutputFormat};

/// Arguments of `engine query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// The SQL (one statement), e.g. "SELECT * FROM ohlc_1m WHERE dt = '2025-11-20' LIMIT 10".
    #[arg(conflicts_with = "file", required_unless_present = "file")]
    pub sql: Option<String>,
    /// Read the SQL from this file instead (e.g. sql/athena/latest_candle.sql).
    #[arg(short, long, value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Directory of job files whose lake tables are queried (their paths follow LAKE_URL).
    #[arg(long, default_value = "jobs")]
    pub jobs: PathBuf,
    /// Output: an aligned table, CSV or JSON lines.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

/// `--format` of `engine query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// An aligned table.
    Table,
    /// CSV with a header.
    Csv,
    /// One JSON object per row.
    Json,
}

impl QueryArgs {
    /// Registers the lake tables, runs the statement, prints its rows.
    pub async fn run(self) -> anyhow::Result<()> {
        let sql = match (&self.sql, &self.file) {
            (Some(sql), _) => sql.clone(),
            (None, Some(path)) => std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
            (None, None) => bail!("give the SQL, or a file with -f"),
        };
        let query = LakeQuery::from_job_dir(&self.jobs).await?;
        let batches = query.run(&sql).await.map_err(|e| {
            let tables: Vec<&str> = query.tables().iter().map(|(n, _)| n.as_str()).collect();
            anyhow::anyhow!("{e} (lake tables: {})", tables.join(", "))
        })?;
        let format = match self.format {
            Format::Table => OutputFormat::Table,
            Format::Csv => OutputFormat::Csv,
            Format::Json => OutputFormat::Json,
        };
        write_results(&batches, format, &mut std::io::stdout().lock())?;
        Ok(())
    }
}
