//! Operators: what a statement does to the stream between source and sink.
//!
//! Each planned statement (an `INSERT`, or the `INSERT`s sharing one view)
//! becomes one [`Operator`]. Like Arroyo's `ArrowOperator`, it gets batches,
//! signals in stream order and timer ticks, with default methods for what it
//! does not care about, and emits through a [`Collector`] with named outputs,
//! to which sinks attach:
//!
//! - [`MAIN`]: every row the statement emits, early and corrected revisions
//!   of a window's row included (topics take this one);
//! - [`FINAL`]: each row once, in its last revision, when no later one can
//!   come (lakes take this one);
//! - [`LATE`]: input rows too late for every window they belong to
//!   (`LATE DATA TO`).
//!
//! # Layout
//! - `stateless`: statements without aggregates;
//! - `window/`: windowed aggregates (one module per window kind), emit
//!   policies, lateness and late rows.

mod stateless;
mod window;

use std::collections::BTreeMap;

use arrow::record_batch::RecordBatch;
use engine_sql::PlannedStatement;

use crate::checkpoint::Snapshot;

pub(crate) use stateless::StatelessQuery;

use crate::error::Result;
use crate::message::EventTime;
use crate::metrics::StatementMetrics;

/// A row a statement could not compute (a value no cast or arithmetic of the
/// query can take, such as a size of `1e31` cast to `DECIMAL(38, 8)`): it is
/// dead-lettered with the error, and the statement goes on with the others.
#[derive(Debug, Clone)]
pub struct RejectedRow {
    /// The row, in the statement's input schema (one row).
    pub row: RecordBatch,
    /// Why, as DataFusion said it.
    pub error: String,
}

/// The main output of an operator: every row it emits, revisions included.
pub const MAIN: &str = "main";

/// The output of rows in their last revision, once no later one can come.
pub const FINAL: &str = "final";

/// The output of input rows too late for every window they belong to.
pub const LATE: &str = "late";

/// Where an operator puts what it emits: rows by output name, and the input
/// rows it could not compute.
#[derive(Debug, Default)]
pub struct Collector {
    outputs: BTreeMap<&'static str, Vec<RecordBatch>>,
    rejected: Vec<RejectedRow>,
}

impl Collector {
    /// Emits rows that are final as they are (no revision of them will
    /// follow): on [`MAIN`] and [`FINAL`] both. Empty batches are dropped.
    pub fn emit(&mut self, batch: RecordBatch) {
        self.emit_to(FINAL, batch.clone());
        self.emit_to(MAIN, batch);
    }

    /// Emits `batch` on output `output`.
    pub fn emit_to(&mut self, output: &'static str, batch: RecordBatch) {
        if batch.num_rows() > 0 {
            self.outputs.entry(output).or_default().push(batch);
        }
    }

    /// Sets apart an input row the operator could not compute.
    pub fn reject(&mut self, row: RejectedRow) {
        self.rejected.push(row);
    }

    /// Takes what was emitted on `output`.
    pub fn take(&mut self, output: &str) -> Vec<RecordBatch> {
        self.outputs.remove(output).unwrap_or_default()
    }

    /// Takes the rows set apart.
    pub fn take_rejected(&mut self) -> Vec<RejectedRow> {
        std::mem::take(&mut self.rejected)
    }
}

/// A statement's computation over the stream. Only `process_batch` is
/// required; a stateless operator keeps every other default.
#[async_trait::async_trait]
pub trait Operator: Send {
    /// Handles a batch of the statement's input.
    async fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()>;

    /// Event time has reached `watermark`: emit what it completes.
    async fn handle_watermark(
        &mut self,
        _watermark: EventTime,
        _out: &mut Collector,
    ) -> Result<()> {
        Ok(())
    }

    /// How often the operator wants [`Operator::handle_tick`] (processing
    /// time); `None`: never.
    fn tick_interval(&self) -> Option<std::time::Duration> {
        None
    }

    /// A tick of its processing-time timer.
    async fn handle_tick(&mut self, _out: &mut Collector) -> Result<()> {
        Ok(())
    }

    /// A bounded input ended: everything still open is complete now.
    async fn handle_end_of_data(&mut self, _out: &mut Collector) -> Result<()> {
        Ok(())
    }

    /// Whether the last call left rows to emit: an operator that would emit
    /// a great many at once (a watermark passing a day of CUMULATE windows)
    /// gives them out in parts, so they are never all in memory together.
    /// Its caller then calls [`Operator::emit_pending`] (forwarding each
    /// part) until this is false, before anything else.
    fn has_pending(&self) -> bool {
        false
    }

    /// Emits the next part of what is pending.
    async fn emit_pending(&mut self, _out: &mut Collector) -> Result<()> {
        Ok(())
    }

    /// Its state for a checkpoint (opaque to the coordinator).
    fn snapshot(&self) -> Result<Snapshot> {
        Ok(Snapshot::default())
    }

    /// Continues from a [`Operator::snapshot`] (called on a fresh operator).
    async fn restore(&mut self, _snapshot: &Snapshot) -> Result<()> {
        Ok(())
    }
}

/// Whether `e` is caused by the values of some rows (an Arrow cast,
/// overflow, division or parse that fails), so that the rows at fault can be
/// set apart, rather than by the plan or the engine. There is deliberately no
/// "every row failed" rule: a batch of one trade, or of two bad ones, is
/// ordinary, and stopping the job on it would stop it on every restart.
pub(crate) fn is_row_error(e: &datafusion::error::DataFusionError) -> bool {
    use arrow::error::ArrowError;
    use datafusion::error::DataFusionError;
    match e.find_root() {
        DataFusionError::ArrowError(a, _) => matches!(
            a.as_ref(),
            ArrowError::CastError(_)
                | ArrowError::ComputeError(_)
                | ArrowError::ArithmeticOverflow(_)
                | ArrowError::DivideByZero
                | ArrowError::ParseError(_)
                | ArrowError::InvalidArgumentError(_)
        ),
        _ => false,
    }
}

/// Bisection over a batch that failed: the next pieces to try, in row
/// order, are pushed onto `work` (a stack, so the left half comes first); a
/// single row that fails is rejected. Errors not caused by rows are returned.
pub(crate) fn split_failed(
    batch: RecordBatch,
    error: datafusion::error::DataFusionError,
    work: &mut Vec<RecordBatch>,
    out: &mut Collector,
) -> Result<()> {
    if !is_row_error(&error) {
        return Err(error.into());
    }
    if batch.num_rows() <= 1 {
        out.reject(RejectedRow {
            row: batch,
            error: crate::decode::excerpt(&error.strip_backtrace().to_string(), 1024),
        });
        return Ok(());
    }
    let half = batch.num_rows() / 2;
    work.push(batch.slice(half, batch.num_rows() - half));
    work.push(batch.slice(0, half));
    Ok(())
}

/// The operator of a planned statement: a window aggregate when it groups
/// by an event-time window, else a stateless query.
pub fn for_statement(
    planned: &PlannedStatement,
    metrics: StatementMetrics,
) -> Result<Box<dyn Operator>> {
    Ok(match planned.window() {
        Some(w) => window::for_window(planned, w.kind, metrics)?,
        None => Box::new(StatelessQuery::new(planned.plan.clone())),
    })
}
