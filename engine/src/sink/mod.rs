//! Sinks: where a statement's rows leave the engine.

pub mod kafka;
pub mod lake;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use engine_sql::{SqlError, TableDef};

use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::Metrics;

/// The sink of one statement.
pub enum Sink {
    /// JSON records to a Kafka topic.
    Kafka(kafka::KafkaSink),
    /// Hive-partitioned Parquet files on an object store.
    Lake(lake::LakeSink),
}

/// A sink's checked configuration, built without connecting (for `engine check`).
#[derive(Debug, Clone)]
pub enum SinkConfig {
    /// `connector = 'kafka'`.
    Kafka(kafka::KafkaSinkConfig),
    /// `connector = 'lake'` or `'filesystem'`.
    Lake(lake::LakeSinkConfig),
}

impl SinkConfig {
    /// Reads the options of sink table `table`; `file` names the job file for errors.
    pub fn from_table(file: &str, table: &TableDef) -> Result<Self> {
        let at = |(line, message): (usize, String)| {
            EngineError::Config(SqlError { file: file.to_string(), line, message: format!("table `{}`: {message}", table.name) })
        };
        match table.connector.as_str() {
            "kafka" => Ok(SinkConfig::Kafka(kafka::KafkaSinkConfig::from_table(table).map_err(at)?)),
            "lake" | "filesystem" => Ok(SinkConfig::Lake(lake::LakeSinkConfig::from_table(table).map_err(at)?)),
            other => Err(at((table.line, format!("unknown sink connector '{other}' (known: 'kafka', 'lake', 'filesystem')")))),
        }
    }

    /// Where the rows go, for logs.
    pub fn describe(&self) -> String {
        match self {
            SinkConfig::Kafka(c) => format!("kafka topic `{}` on {}", c.topic, c.client.bootstrap_servers),
            SinkConfig::Lake(c) => format!("parquet under {}", c.path),
        }
    }
}

impl Sink {
    /// Connects the sink.
    pub async fn open(config: SinkConfig, table: &TableDef, metrics: Arc<Metrics>) -> Result<Self> {
        Ok(match config {
            SinkConfig::Kafka(c) => Sink::Kafka(kafka::KafkaSink::new(c, metrics)?),
            SinkConfig::Lake(c) => Sink::Lake(lake::LakeSink::open(c, table.schema(), metrics).await?),
        })
    }

    /// Writes rows (buffered; durable after [`Sink::flush`]).
    pub async fn write(&mut self, batch: RecordBatch) -> Result<()> {
        match self {
            Sink::Kafka(s) => s.write(batch).await,
            Sink::Lake(s) => s.write(batch).await,
        }
    }

    /// Tells the sink how far event time has come (lake files roll by time).
    pub async fn handle_watermark(&mut self, watermark: EventTime) -> Result<()> {
        match self {
            Sink::Kafka(_) => Ok(()),
            Sink::Lake(s) => s.handle_watermark(watermark).await,
        }
    }

    /// Makes everything written so far durable.
    pub async fn flush(&mut self) -> Result<()> {
        match self {
            Sink::Kafka(s) => s.flush().await,
            Sink::Lake(s) => s.flush().await,
        }
    }
}
