//! Sinks: where a statement's rows leave the engine.
//!
//! A sink table's `connector` picks its `SinkConnector` from
//! `registry::connectors()`: the connector checks the table's options into a
//! [`SinkSpec`] (all `engine check` needs), and the spec opens a [`Sink`] for
//! each run. A sink that makes output visible only with a checkpoint (staged
//! lake files, a Kafka transaction) returns a [`Committer`] beside it: the
//! sink prepares at the barrier ([`Sink::pre_commit`]), the committer makes it
//! visible once the checkpoint is written.
//!
//! Adding a sink: a folder here with its config, sink and committer, and one
//! line in `registry.rs`.

pub(crate) mod kafka;
pub mod lake;
pub mod memory;
pub(crate) mod registry;

use std::any::Any;
use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use engine_sql::{TableDef, WindowKind};

use crate::checkpoint::{Committer, Snapshot};
pub(crate) use crate::connector::option_error;
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::{Due, Metrics};
use crate::resources::Resources;
use crate::source::SourceSpec;

/// A sink table's checked options: what `engine check` validates, and what
/// opens the sink when the job runs.
#[async_trait::async_trait]
pub trait SinkSpec: Send + Sync + std::fmt::Debug {
    /// Where the rows go, for `engine check` and logs (never a secret).
    fn describe(&self) -> String;

    /// The spec as [`Any`], for code that knows a connector (the catalog
    /// reads lake tables, the embedded broker creates Kafka topics).
    fn as_any(&self) -> &dyn Any;

    /// Checks what only the whole job tells (e.g. that `exactly_once` has
    /// checkpoints and one consumer group to commit) and sets up what this
    /// sink shares with the rest of the job in `job.resources` (the Kafka
    /// transaction the sources' offsets go into too). Called once per sink
    /// table, before any source or sink opens.
    async fn prepare(&self, _job: &JobContext<'_>) -> Result<()> {
        Ok(())
    }

    /// Connects the sink for one statement's rows.
    async fn open(&self, ctx: SinkContext<'_>) -> Result<OpenedSink>;

    /// Which of a windowed statement's rows it takes (`sink.revisions`).
    fn revisions(&self) -> Revisions {
        Revisions::All
    }
}

/// Which of a windowed statement's rows a sink table takes: option
/// `sink.revisions`, `all` (topics' default) or `final` (lakes' default).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revisions {
    /// Every row: early rows (`EMIT EVERY`, `EMIT ON UPDATE`) and
    /// corrections (`ALLOW LATENESS`) besides the final one; readers upsert by
    /// key and `window_start`.
    All,
    /// One row per window, in its last revision, once no later one can come
    /// (after the window's end plus its allowed lateness).
    Final,
}

impl Revisions {
    /// Reads `sink.revisions` from `o`, `default` when absent.
    pub fn from_options(
        o: &mut engine_sql::Options,
        default: Self,
    ) -> Result<Self, engine_sql::LineError> {
        Ok(match o.get("sink.revisions") {
            None => default,
            Some(_) => match o.one_of("sink.revisions", &["all", "final"])?.as_str() {
                "final" => Self::Final,
                _ => Self::All,
            },
        })
    }

    /// The operator output these rows are on.
    pub fn output(self) -> &'static str {
        match self {
            Self::All => crate::operator::MAIN,
            Self::Final => crate::operator::FINAL,
        }
    }
}

/// What a sink sees of the whole job when it is checked.
pub struct JobContext<'a> {
    /// The job file's name, for messages.
    pub job: &'a str,
    /// This sink's table.
    pub table: &'a str,
    /// The job takes checkpoints.
    pub checkpoints: bool,
    /// The job runs as a lane of `--scale-out` (one source partition).
    pub lane: bool,
    /// Every source table's spec, by name.
    pub sources: &'a BTreeMap<String, Box<dyn SourceSpec>>,
    /// Every sink table's spec, by name.
    pub sinks: &'a BTreeMap<String, Box<dyn SinkSpec>>,
    /// The job's resources (e.g. the Kafka connectors' transaction).
    pub resources: &'a Resources,
    /// The job's counters.
    pub metrics: &'a Arc<Metrics>,
}

/// What a sink is opened with.
pub struct SinkContext<'a> {
    /// The sink table.
    pub table: &'a TableDef,
    /// The window of the statement feeding it, if windowed.
    pub window: Option<WindowKind>,
    /// The statement's allowed lateness (`ALLOW LATENESS`, ms): a window's
    /// last row comes this long after the watermark passed its end.
    pub lateness_ms: i64,
    /// With checkpoints: how its output is named and staged.
    pub checkpoints: Option<CheckpointScope>,
    /// The job's counters.
    pub metrics: Arc<Metrics>,
    /// The job's shared resources.
    pub resources: &'a Resources,
}

/// How a checkpointed run names what it stages.
#[derive(Debug, Clone, Default)]
pub struct CheckpointScope {
    /// The first checkpoint epoch of this run.
    pub first_epoch: u64,
    /// The lane (`p3` under `--scale-out`; empty for a job run whole).
    pub lane: String,
    /// Lane and state-dir generation, as names carry them (`p3-g1a2b3c4d`).
    pub scope: String,
}

/// An open sink, and its commit phase if it has one.
pub struct OpenedSink {
    /// Takes the rows.
    pub sink: Box<dyn Sink>,
    /// Makes prepared output visible once a checkpoint is written.
    pub committer: Option<Arc<dyn Committer>>,
}

/// A running sink. Rows come already in the table's columns (see [`SinkWriter`]).
#[async_trait::async_trait]
pub trait Sink: Send {
    /// Writes rows (buffered; durable after [`Sink::flush`] or with the next
    /// checkpoint). Rows it cannot place come back as (row, reason); the
    /// rest are written. Rows `due` (closed by a watermark) are observed in
    /// `engine_emit_latency_seconds` once the sink acknowledges them.
    async fn write(&mut self, batch: RecordBatch, due: Option<Due>)
        -> Result<Vec<(usize, String)>>;

    /// How far event time has come (e.g. lake files roll and partitions commit by it).
    async fn handle_watermark(&mut self, _watermark: EventTime) -> Result<()> {
        Ok(())
    }

    /// The barrier of checkpoint `epoch`: make what was written durable or
    /// staged, and return the state to restore from plus what the commit
    /// phase makes visible. What is prepared stays with the sink until a
    /// checkpoint covering it commits: a snapshot carries everything not yet
    /// committed, so a checkpoint that never completes loses nothing.
    async fn pre_commit(&mut self, epoch: u64) -> Result<Snapshot>;

    /// Continues from its snapshot in the checkpoint restored.
    async fn restore(&mut self, _snapshot: &Snapshot) -> Result<()> {
        Ok(())
    }

    /// The input has ended (a bounded run): make everything durable and complete.
    async fn end_of_data(&mut self) -> Result<()> {
        self.flush().await
    }

    /// Makes everything written so far durable (a stop without checkpoints).
    async fn flush(&mut self) -> Result<()>;
}

/// A sink table's rows on their way in: cast to the table's columns as SQL's
/// `INSERT` does, rows that cannot be (and those the sink cannot place)
/// returned with the reason instead of stopping the job.
pub struct SinkWriter {
    /// The sink table's name.
    pub name: String,
    schema: SchemaRef,
    sink: Box<dyn Sink>,
}

impl SinkWriter {
    /// Writes into `sink` for table `table`.
    pub fn new(table: &TableDef, sink: Box<dyn Sink>) -> Self {
        Self {
            name: table.name.clone(),
            schema: table.schema(),
            sink,
        }
    }

    /// The sink.
    pub fn sink(&mut self) -> &mut dyn Sink {
        self.sink.as_mut()
    }

    /// Writes `batch` (due at `due`, see [`Sink::write`]); returns the rows
    /// (indices in `batch`) not written, with the reason.
    pub async fn write(
        &mut self,
        batch: &RecordBatch,
        due: Option<Due>,
    ) -> Result<Vec<(usize, String)>> {
        let (batch, mut rejected) = conform_rows(batch, &self.schema, &self.name)?;
        if batch.num_rows() == 0 {
            return Ok(rejected);
        }
        let given = batch.num_rows() + rejected.len();
        let more = self.sink.write(batch, due).await?;
        if !more.is_empty() {
            // Indices of the conformed batch back to the rows given.
            let kept: Vec<usize> = (0..given)
                .filter(|i| !rejected.iter().any(|(r, _)| r == i))
                .collect();
            rejected.extend(more.into_iter().map(|(row, why)| (kept[row], why)));
        }
        rejected.sort_unstable();
        Ok(rejected)
    }
}

/// What a sink prepared for checkpoints not yet committed, shared by the
/// sink (which adds at each barrier) and its committer (which drops what a
/// commit covered). A snapshot carries all of it, tagged with the barrier
/// it was prepared at, so a checkpoint that never completes is covered by
/// the next, and a commit skips what an earlier commit already made visible
/// (the final snapshot of a stopping job can be taken before the commit of
/// the checkpoint in flight).
#[derive(Debug)]
pub struct Uncommitted<T>(Arc<std::sync::Mutex<Pending<T>>>);

#[derive(Debug)]
struct Pending<T> {
    prepared: Vec<(u64, Vec<T>)>,
    committed_through: u64,
}

impl<T> Clone for Uncommitted<T> {
    fn clone(&self) -> Self {
        Self(Arc::clone(&self.0))
    }
}

impl<T> Default for Uncommitted<T> {
    fn default() -> Self {
        Self(Arc::new(std::sync::Mutex::new(Pending {
            prepared: Vec::new(),
            committed_through: 0,
        })))
    }
}

impl<T: Clone> Uncommitted<T> {
    /// Adds `items` prepared at barrier `epoch`; returns everything not yet
    /// committed, by the barrier it was prepared at, oldest first.
    pub fn prepare(&self, epoch: u64, items: Vec<T>) -> Vec<(u64, Vec<T>)> {
        let mut p = self.0.lock().expect("no panics while locked");
        p.prepared.push((epoch, items));
        p.prepared.clone()
    }

    /// Checkpoint `epoch` committed: what was prepared up to it is done.
    pub fn committed(&self, epoch: u64) {
        let mut p = self.0.lock().expect("no panics while locked");
        p.prepared.retain(|(e, _)| *e > epoch);
        p.committed_through = p.committed_through.max(epoch);
    }

    /// The newest checkpoint this process committed (0: none yet): what was
    /// prepared at it or before is visible already.
    pub fn committed_through(&self) -> u64 {
        self.0
            .lock()
            .expect("no panics while locked")
            .committed_through
    }
}

/// Rows a sink keeps until a commit makes them visible (`exactly_once`
/// Kafka, memory): its snapshot holds one Arrow IPC blob per barrier.
impl Uncommitted<RecordBatch> {
    /// Adds `rows` prepared at barrier `epoch`; the snapshot of every row not yet committed.
    pub fn snapshot_rows(&self, epoch: u64, rows: Vec<RecordBatch>) -> Result<Snapshot> {
        let mut snapshot = Snapshot::default();
        for (at, rows) in self.prepare(epoch, rows) {
            if let Some(bytes) = crate::checkpoint::batches_to_ipc(&rows)? {
                snapshot.blobs.insert(rows_blob(at), bytes.into());
            }
        }
        Ok(snapshot)
    }
}

/// The rows sink `sink`'s snapshot in checkpoint `epoch` holds that were
/// prepared after barrier `visible` (those at or before it were made
/// visible by an earlier commit).
pub fn rows_after(
    snapshot: &Snapshot,
    visible: u64,
    sink: &str,
    epoch: u64,
) -> Result<Vec<RecordBatch>> {
    let mut rows = Vec::new();
    for (name, bytes) in &snapshot.blobs {
        match rows_blob_epoch(name) {
            Some(at) if at > visible => {
                rows.extend(crate::checkpoint::batches_from_ipc(bytes.clone())?)
            }
            Some(_) => {}
            None => {
                return Err(EngineError::Execution(format!(
                    "checkpoint {epoch} of sink `{sink}` holds an unknown file `{name}`"
                )))
            }
        }
    }
    Ok(rows)
}

/// The blob holding the rows prepared at barrier `epoch`.
fn rows_blob(epoch: u64) -> String {
    format!("rows-{epoch:020}.arrow")
}

/// The barrier a blob named by [`rows_blob`] was prepared at.
fn rows_blob_epoch(name: &str) -> Option<u64> {
    name.strip_prefix("rows-")?
        .strip_suffix(".arrow")?
        .parse()
        .ok()
}

/// The barrier of a stopping job's final snapshot: after every other.
pub const FINAL_BARRIER: u64 = u64::MAX;

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
