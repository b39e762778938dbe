//! Athena-style SQL over the lake, run locally with DataFusion: every lake
//! sink table of the job files is registered under its Athena name (the last
//! segment of its path), as a Hive-partitioned Parquet listing table whose
//! partition columns (`dt`, `hour`) are strings, as in Athena. Filters on
//! them prune whole directories before any file is opened.
//!
//! ```text
//!  jobs/*.sql --lake sinks--> ListingTable `ohlc_1m` (s3://... or a directory)
//!                             ListingTable `trades`
//!  "SELECT ... FROM ohlc_1m WHERE dt = '2025-11-20'" --DataFusion--> RecordBatches
//! ```

mod output;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::table_name;
use crate::error::{EngineError, Result};
use crate::sink::lake::{LakeSinkConfig, PartitionScheme};
use crate::storage as store;
use crate::Job;

pub use output::{escape_control, write_results, OutputFormat};

/// The Glue database Athena queries name (`market.ohlc_1m`); also the default schema.
pub const DATABASE: &str = "market";

/// A DataFusion session with the lake's tables registered.
pub struct LakeQuery {
    ctx: SessionContext,
    tables: Vec<(String, String)>,
}

impl LakeQuery {
    /// A session with no tables; tables resolve unqualified or as `market.<table>`.
    pub fn new() -> Self {
        let config = SessionConfig::new()
            .with_default_catalog_and_schema("awsdatacatalog", DATABASE)
            .with_create_default_catalog_and_schema(true)
            .with_information_schema(true);
        Self {
            ctx: SessionContext::new_with_config(config),
            tables: Vec::new(),
        }
    }

    /// Registers the lake tables of every `*.sql` job file in `dir`, `${VAR}`
    /// in them from the environment (so `LAKE_URL` says where the lake is).
    pub async fn from_job_dir(dir: &Path) -> Result<Self> {
        let mut jobs: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| {
                EngineError::Execution(format!(
                    "reading job directory `{}`: {e} (name another with --jobs)",
                    dir.display()
                ))
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "sql"))
            .collect();
        jobs.sort();
        let mut query = Self::new();
        for path in &jobs {
            for (config, schema) in Job::load(path).await?.lake_tables() {
                query.register(&config, schema)?;
            }
        }
        Ok(query)
    }

    /// Registers one lake table: Parquet files under its path, partition
    /// columns as strings.
    pub fn register(&mut self, config: &LakeSinkConfig, schema: SchemaRef) -> Result<()> {
        let name = table_name(&config.path).ok_or_else(|| {
            EngineError::Execution(format!(
                "table `{}`: the last segment of `{}` is not a table name",
                config.table, config.path
            ))
        })?;
        if let Some((_, path)) = self.tables.iter().find(|(n, _)| *n == name) {
            if *path == config.path {
                return Ok(()); // the same table written by two jobs
            }
            return Err(EngineError::Execution(format!(
                "two lake tables are named `{name}`: `{path}` and `{}`",
                config.path
            )));
        }
        let location = format!("{}/", config.path.trim_end_matches('/'));
        if let Some(rest) = location.strip_prefix("s3://") {
            let bucket = rest.split('/').next().unwrap_or_default();
            let url = url::Url::parse(&format!("s3://{bucket}"))
                .map_err(|e| EngineError::store(format!("`{location}`"), e))?;
            self.ctx
                .register_object_store(&url, store::open(&format!("s3://{bucket}"))?.store);
        }
        let partition_cols = match config.partitioning {
            PartitionScheme::None => vec![],
            PartitionScheme::Day => vec![("dt".to_string(), DataType::Utf8)],
            PartitionScheme::DayHour => vec![
                ("dt".to_string(), DataType::Utf8),
                ("hour".to_string(), DataType::Utf8),
            ],
        };
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(partition_cols);
        let url = ListingTableUrl::parse(&location)?;
        let table = ListingTable::try_new(
            ListingTableConfig::new(url)
                .with_listing_options(options)
                .with_schema(schema),
        )?;
        self.ctx.register_table(name.as_str(), Arc::new(table))?;
        self.tables.push((name, config.path.clone()));
        Ok(())
    }

    /// The registered tables: Athena name and location.
    pub fn tables(&self) -> &[(String, String)] {
        &self.tables
    }

    /// Runs one query (`SELECT`, `WITH`, `EXPLAIN`, `SHOW`) and collects its
    /// rows. It is a read tool: DDL (`CREATE ...`), DML (`INSERT`, `COPY ... TO`)
    /// and statements (`SET`) are refused, so nothing it runs can add a file
    /// to a live lake table outside its checkpoints, or write anywhere else.
    pub async fn run(&self, sql: &str) -> Result<Vec<RecordBatch>> {
        let read_only = datafusion::execution::context::SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = self
            .ctx
            .sql_with_options(sql, read_only)
            .await
            .map_err(|e| {
                let message = e.strip_backtrace();
                let refused = [
                    "DDL not supported",
                    "DML not supported",
                    "Statement not supported",
                ]
                .iter()
                .any(|r| message.contains(r));
                match refused {
                    true => EngineError::Execution(format!(
                        "{message} (engine query only reads: SELECT, WITH, EXPLAIN, SHOW)"
                    )),
                    false => EngineError::from(e),
                }
            })?;
        Ok(df.collect().await?)
    }
}

impl Default for LakeQuery {
    fn default() -> Self {
        Self::new()
    }
}
