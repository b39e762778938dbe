//! `WITH (...)` options of a lake sink table.

use std::time::Duration;

use arrow::datatypes::DataType;
use engine_sql::{LineError, TableDef, WINDOW_START};

/// Which Hive partition columns a table has, derived from event time (UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionScheme {
    /// No partitions: files directly under the table path.
    None,
    /// `dt=YYYY-MM-DD`.
    Day,
    /// `dt=YYYY-MM-DD/hour=HH`.
    DayHour,
}

/// Parquet compression codec (Athena reads both).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Snappy (default): fast, what Athena's own CTAS writes.
    Snappy,
    /// Zstandard: smaller files.
    Zstd,
}

/// A lake sink table's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LakeSinkConfig {
    /// Table name.
    pub table: String,
    /// `path`: the table location, `s3://bucket/prefix`, `file:///abs/dir` or a local directory.
    pub path: String,
    /// `partition_by`: `dt` (default), `dt,hour`, or `none`.
    pub partitioning: PartitionScheme,
    /// `partition_time_field`: the TIMESTAMP column partitions come from
    /// (default `window_start` when present, else the first TIMESTAMP column).
    pub partition_time_field: Option<usize>,
    /// `rolling.file_size`: a file is closed once this big (default 128MB, against small files).
    pub file_size: u64,
    /// `rolling.interval`: a file is closed once open this long, so a quiet market still closes files (default 5min).
    pub rollover: Duration,
    /// `parquet.compression`: `snappy` (default) or `zstd`.
    pub compression: Compression,
    /// `sink.revisions`: one row per window in its last revision (default),
    /// or every revision (early rows and corrections too).
    pub revisions: crate::sink::Revisions,
}

impl LakeSinkConfig {
    /// Reads and checks the options of `table`; unknown options are errors.
    pub fn from_table(table: &TableDef) -> Result<Self, LineError> {
        let mut o = table.options.clone();
        let path = o.required("path", table.line)?;
        o.one_of("format", &["parquet"])?;
        let partitioning = match o
            .one_of("partition_by", &["dt", "dt,hour", "none"])?
            .as_str()
        {
            "none" => PartitionScheme::None,
            "dt,hour" => PartitionScheme::DayHour,
            _ => PartitionScheme::Day,
        };
        for key in ["dt", "hour"] {
            if table.column(key).is_some() && partitioning != PartitionScheme::None {
                return Err((
                    table.line,
                    format!("column `{key}` clashes with the partition column of the same name"),
                ));
            }
        }
        let is_time = |i: &usize| matches!(table.columns[*i].data_type, DataType::Timestamp(..));
        let partition_time_field = match o.get("partition_time_field") {
            Some(name) => match table.columns.iter().position(|c| c.name == name) {
                Some(i) if is_time(&i) => Some(i),
                _ => {
                    return Err((
                        o.line_of("partition_time_field", table.line),
                        format!("partition_time_field `{name}` is not a TIMESTAMP column"),
                    ))
                }
            },
            None => table
                .columns
                .iter()
                .position(|c| c.name == WINDOW_START)
                .filter(is_time)
                .or_else(|| (0..table.columns.len()).find(is_time)),
        };
        if partition_time_field.is_none() && partitioning != PartitionScheme::None {
            return Err((
                table.line,
                "partitioned by time but has no TIMESTAMP column (use partition_by = 'none')"
                    .to_string(),
            ));
        }
        let config = Self {
            table: table.name.clone(),
            path,
            partitioning,
            partition_time_field,
            file_size: o.bytes("rolling.file_size", 128 << 20)?,
            rollover: o.duration("rolling.interval", Duration::from_secs(300))?,
            compression: match o
                .one_of("parquet.compression", &["snappy", "zstd"])?
                .as_str()
            {
                "zstd" => Compression::Zstd,
                _ => Compression::Snappy,
            },
            revisions: crate::sink::Revisions::from_options(&mut o, crate::sink::Revisions::Final)?,
        };
        o.reject_unknown("lake")?;
        Ok(config)
    }
}
