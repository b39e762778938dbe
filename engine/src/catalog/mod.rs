//! The Glue Data Catalog side of the lake: each lake sink table described as
//! Athena DDL or as a Glue `TableInput`, with partition projection, so the
//! tables are queryable the moment data lands (no crawler, no `MSCK REPAIR`).
//!
//! ```text
//!  job file --lake sinks--> CatalogTable --athena_ddl()--------> CREATE EXTERNAL TABLE ...
//!                                        \--glue_table_input()--> aws glue create-table --cli-input-json
//! ```

mod athena;
mod glue;
mod types;

use std::collections::BTreeMap;

use arrow::datatypes::Schema;

use crate::error::{EngineError, Result};
use crate::sink::lake::{Compression, LakeSinkConfig, PartitionScheme};

pub use types::athena_type;

/// The Athena name of the lake table at `path`: its last segment
/// (`s3://lake/ohlc_1m` -> `ohlc_1m`), if that is lower-case letters, digits and `_`.
pub fn table_name(path: &str) -> Option<String> {
    let name = path.trim_end_matches('/').rsplit('/').next()?;
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    valid.then(|| name.to_string())
}

/// A lake table as the catalog sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CatalogTable {
    /// Glue database.
    pub database: String,
    /// Table name: the last segment of the sink's path (`.../ohlc_1m` -> `ohlc_1m`).
    pub name: String,
    /// `s3://bucket/prefix/table/`, with the trailing slash Athena expects.
    pub location: String,
    /// Data columns: name and Athena type.
    pub columns: Vec<(String, String)>,
    /// Partition columns, all strings: `dt`, or `dt` and `hour`.
    pub partition_keys: Vec<&'static str>,
    /// `SNAPPY` or `ZSTD`.
    pub compression: &'static str,
    /// First day partition projection enumerates (`yyyy-MM-dd`).
    pub since: String,
}

impl CatalogTable {
    /// Describes the lake sink `config` with columns `schema` in `database`;
    /// projection enumerates days from `since`.
    pub fn from_lake(
        config: &LakeSinkConfig,
        schema: &Schema,
        database: &str,
        since: &str,
    ) -> Result<Self> {
        let at = |m: String| EngineError::Catalog(format!("table `{}`: {m}", config.table));
        if !config.path.starts_with("s3://") {
            return Err(at(format!(
                "path `{}` is not on S3; Athena reads s3:// locations only (set LAKE_URL=s3://bucket/prefix)",
                config.path
            )));
        }
        let location = format!("{}/", config.path.trim_end_matches('/'));
        let name = table_name(&config.path).ok_or_else(|| {
            at(format!(
                "the last segment of `{}` names the Athena table, and must be lower-case letters, digits and `_`",
                config.path
            ))
        })?;
        if chrono::NaiveDate::parse_from_str(since, "%Y-%m-%d").is_err() {
            return Err(EngineError::Catalog(format!(
                "--since `{since}`: expected a date such as 2020-01-01"
            )));
        }
        let columns = schema
            .fields()
            .iter()
            .map(|f| {
                athena_type(f.data_type())
                    .map(|t| (f.name().to_lowercase(), t))
                    .ok_or_else(|| {
                        at(format!(
                            "column `{}` has type {}, which Athena cannot read from Parquet",
                            f.name(),
                            f.data_type()
                        ))
                    })
            })
            .collect::<Result<_>>()?;
        Ok(Self {
            database: database.to_string(),
            name,
            location,
            columns,
            partition_keys: match config.partitioning {
                PartitionScheme::None => vec![],
                PartitionScheme::Day => vec!["dt"],
                PartitionScheme::DayHour => vec!["dt", "hour"],
            },
            compression: match config.compression {
                Compression::Snappy => "SNAPPY",
                Compression::Zstd => "ZSTD",
            },
            since: since.to_string(),
        })
    }

    /// Table properties: the format, and partition projection for every
    /// partition column (Athena requires all of them projected).
    pub fn parameters(&self) -> BTreeMap<String, String> {
        let mut p: BTreeMap<String, String> = [
            ("classification", "parquet"),
            ("parquet.compression", self.compression),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if self.partition_keys.is_empty() {
            return p;
        }
        let mut set = |k: &str, v: &str| p.insert(k.to_string(), v.to_string());
        set("projection.enabled", "true");
        let mut template = self.location.clone();
        for key in &self.partition_keys {
            template.push_str(&format!("{key}=${{{key}}}/"));
            match *key {
                "dt" => {
                    set("projection.dt.type", "date");
                    set("projection.dt.format", "yyyy-MM-dd");
                    set("projection.dt.range", &format!("{},NOW", self.since));
                    set("projection.dt.interval", "1");
                    set("projection.dt.interval.unit", "DAYS");
                }
                _ => {
                    set("projection.hour.type", "integer");
                    set("projection.hour.range", "0,23");
                    set("projection.hour.digits", "2");
                }
            }
        }
        set("storage.location.template", &template);
        p
    }
}
