//! Sinks: where a statement's rows leave the engine.

pub mod kafka;
pub mod lake;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use engine_sql::{SqlError, TableDef};

use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::Metrics;

/// A sink table: its columns and where its rows go.
pub struct Sink {
    name: String,
    schema: SchemaRef,
    target: Target,
}

/// Where a sink's rows go.
enum Target {
    /// JSON records to a Kafka topic.
    Kafka(kafka::KafkaSink),
    /// Hive-partitioned Parquet files on an object store (boxed: it is large).
    Lake(Box<lake::LakeSink>),
}

/// A sink's part of a checkpoint.
pub enum SinkCheckpoint {
    /// Everything written is durable; nothing to record.
    Flushed,
    /// A lake sink's staged and open files.
    Lake(crate::checkpoint::SinkState),
    /// An `exactly_once` Kafka sink's rows since the last checkpoint, to send
    /// in the checkpoint's transaction.
    Transaction(Vec<RecordBatch>),
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
            EngineError::Config(SqlError {
                file: file.to_string(),
                line,
                message: format!("table `{}`: {message}", table.name),
            })
        };
        match table.connector.as_str() {
            "kafka" => Ok(SinkConfig::Kafka(
                kafka::KafkaSinkConfig::from_table(table).map_err(at)?,
            )),
            "lake" | "filesystem" => Ok(SinkConfig::Lake(
                lake::LakeSinkConfig::from_table(table).map_err(at)?,
            )),
            other => Err(at((
                table.line,
                format!("unknown sink connector '{other}' (known: 'kafka', 'lake', 'filesystem')"),
            ))),
        }
    }

    /// Where the rows go, for logs.
    pub fn describe(&self) -> String {
        match self {
            SinkConfig::Kafka(c) => format!(
                "kafka topic `{}` on {}",
                c.topic, c.client.bootstrap_servers
            ),
            SinkConfig::Lake(c) => format!("parquet under {}", c.path),
        }
    }
}

impl Sink {
    /// Connects the sink of table `table`.
    pub async fn open(config: SinkConfig, table: &TableDef, metrics: Arc<Metrics>) -> Result<Self> {
        let target = match config {
            SinkConfig::Kafka(c) => {
                let open = tokio::task::spawn_blocking(move || kafka::KafkaSink::new(c, metrics));
                Target::Kafka(
                    open.await.map_err(|e| {
                        EngineError::Internal(format!("opening a Kafka sink: {e}"))
                    })??,
                )
            }
            SinkConfig::Lake(c) => Target::Lake(Box::new(
                lake::LakeSink::open(c, table.schema(), metrics).await?,
            )),
        };
        Ok(Self {
            name: table.name.clone(),
            schema: table.schema(),
            target,
        })
    }

    /// Writes rows (buffered; durable after [`Sink::flush`]), cast to the
    /// table's columns by position, as SQL's `INSERT` does. Rows that cannot
    /// be written (a value that does not cast to its column, a NULL in a
    /// `NOT NULL` column, a lake row without a partition time) are not
    /// written: their indices in `batch` come back with the reason.
    pub async fn write(&mut self, batch: &RecordBatch) -> Result<Vec<(usize, String)>> {
        let (batch, mut rejected) = conform_rows(batch, &self.schema, &self.name)?;
        let (batch, more) = match &self.target {
            Target::Lake(s) => s.reject_unplaceable(batch)?,
            Target::Kafka(_) => (batch, Vec::new()),
        };
        if !more.is_empty() {
            // Indices of the conformed batch back to the rows given.
            let kept: Vec<usize> = (0..batch.num_rows() + more.len() + rejected.len())
                .filter(|i| !rejected.iter().any(|(r, _)| r == i))
                .collect();
            rejected.extend(more.into_iter().map(|(row, why)| (kept[row], why)));
        }
        rejected.sort_unstable();
        if batch.num_rows() > 0 {
            match &mut self.target {
                Target::Kafka(s) => s.write(batch).await?,
                Target::Lake(s) => s.write(batch).await?,
            }
        }
        Ok(rejected)
    }

    /// Tells the sink how far event time has come (lake files roll by time).
    pub async fn handle_watermark(&mut self, watermark: EventTime) -> Result<()> {
        match &mut self.target {
            Target::Kafka(_) => Ok(()),
            Target::Lake(s) => s.handle_watermark(watermark).await,
        }
    }

    /// For a lake sink whose partitions come from a HOP window's start: the
    /// partition's last windows close `lag_ms` after its end, so it commits then.
    pub fn set_partition_commit_lag(&mut self, lag_ms: i64) {
        if let Target::Lake(s) = &mut self.target {
            s.set_commit_lag(lag_ms);
        }
    }

    /// The name of the column a lake sink partitions by, if it is one.
    pub fn partition_time_column(&self) -> Option<&str> {
        match &self.target {
            Target::Lake(s) => s.partition_time_column(),
            Target::Kafka(_) => None,
        }
    }

    /// The sink table's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A lake sink's store and table prefix.
    pub fn lake_location(&self) -> Option<&lake::store::Location> {
        match &self.target {
            Target::Lake(s) => Some(s.location()),
            Target::Kafka(_) => None,
        }
    }

    /// Takes part in checkpoints from epoch `epoch` on (lake files are staged),
    /// as lane `lane` of the job (empty: the job runs as one lane), naming
    /// files in `scope` (lane and the state dir's generation).
    pub fn enable_checkpoints(&mut self, epoch: u64, lane: &str, scope: &str) {
        if let Target::Lake(s) = &mut self.target {
            s.enable_checkpoints(epoch, lane, scope);
        }
    }

    /// The sink's part of checkpoint `epoch`: a Kafka sink makes its records
    /// durable or, in `exactly_once` mode, hands them over for the
    /// checkpoint's transaction; a lake sink returns its state.
    pub async fn checkpoint(&mut self, epoch: u64) -> Result<SinkCheckpoint> {
        match &mut self.target {
            Target::Kafka(s) => match s.take_pending() {
                Some(rows) => Ok(SinkCheckpoint::Transaction(rows)),
                None => s.flush().await.map(|()| SinkCheckpoint::Flushed),
            },
            Target::Lake(s) => s.checkpoint(epoch).await.map(SinkCheckpoint::Lake),
        }
    }

    /// Continues a lake sink from a checkpoint.
    pub async fn restore(&mut self, state: &crate::checkpoint::SinkState) -> Result<()> {
        match &mut self.target {
            Target::Kafka(_) => Ok(()),
            Target::Lake(s) => s.restore(state).await,
        }
    }

    /// The input has ended (bounded run): makes everything durable and, in the
    /// lake, marks every partition written complete.
    pub async fn end_of_data(&mut self) -> Result<()> {
        match &mut self.target {
            Target::Kafka(s) => s.flush().await,
            Target::Lake(s) => s.end_of_data().await,
        }
    }

    /// Makes everything written so far durable.
    pub async fn flush(&mut self) -> Result<()> {
        match &mut self.target {
            Target::Kafka(s) => s.flush().await,
            Target::Lake(s) => s.flush().await,
        }
    }
}

/// `batch` cast to `schema` as [`conform`] does, less the rows that cannot
/// be: a value whose cast fails, or a NULL in a column that may not hold
/// one. Those come back as (row index in `batch`, reason); `sink` names the
/// table in the reasons. Rows are found with safe casts (NULL where a cast
/// fails), so the common case costs one cast.
pub fn conform_rows(
    batch: &RecordBatch,
    schema: &SchemaRef,
    sink: &str,
) -> Result<(RecordBatch, Vec<(usize, String)>)> {
    if let Ok(b) = conform(batch, schema) {
        return Ok((b, Vec::new()));
    }
    let safe = arrow::compute::CastOptions {
        safe: true,
        ..Default::default()
    };
    let mut reasons: Vec<Option<String>> = vec![None; batch.num_rows()];
    let mut columns = Vec::with_capacity(schema.fields().len());
    for (c, f) in batch.columns().iter().zip(schema.fields()) {
        let cast = arrow::compute::cast_with_options(c, f.data_type(), &safe).map_err(|e| {
            EngineError::Execution(format!("writing to `{sink}`.`{}`: {e}", f.name()))
        })?;
        for (row, reason) in reasons.iter_mut().enumerate() {
            if reason.is_some() || !cast.is_null(row) {
                continue;
            }
            if c.is_valid(row) {
                let value = arrow::util::display::array_value_to_string(c, row).unwrap_or_default();
                *reason = Some(format!(
                    "value {} cannot be written to `{sink}`.`{}` ({})",
                    crate::decode::excerpt(&value, 64),
                    f.name(),
                    f.data_type()
                ));
            } else if !f.is_nullable() {
                *reason = Some(format!(
                    "`{sink}`.`{}` is NOT NULL but the row has no value",
                    f.name()
                ));
            }
        }
        columns.push(cast);
    }
    let keep: arrow::array::BooleanArray = reasons.iter().map(|r| Some(r.is_none())).collect();
    let columns = columns
        .iter()
        .map(|c| arrow::compute::filter(c, &keep))
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    let good = RecordBatch::try_new(Arc::clone(schema), columns)
        .map_err(|e| EngineError::Execution(format!("writing to `{sink}`: {e}")))?;
    let rejected = reasons
        .into_iter()
        .enumerate()
        .filter_map(|(row, r)| r.map(|r| (row, r)))
        .collect();
    Ok((good, rejected))
}

/// `batch` with its columns cast, in order, to `schema`'s types and names.
/// A null in a `NOT NULL` column is an error, never a silently wrong row.
pub fn conform(
    batch: &RecordBatch,
    schema: &SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if batch
        .schema()
        .fields()
        .iter()
        .zip(schema.fields())
        .all(|(a, b)| a.data_type() == b.data_type())
    {
        return RecordBatch::try_new(Arc::clone(schema), batch.columns().to_vec());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(c, f)| cast(c, f.data_type()))
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns)
}
