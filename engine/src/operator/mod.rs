//! Operators: what a statement does to the stream between source and sink.
//!
//! Each planned statement (an `INSERT`, or the `INSERT`s sharing one view) becomes one operator. Like Arroyo's `ArrowOperator`, it gets
//! batches and signals in stream order and returns the rows to write.

mod aggregate;
mod assign;
mod stateless;

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use engine_sql::PlannedStatement;

pub use aggregate::WindowAggregate;
pub use assign::assign_windows;
pub use stateless::StatelessQuery;

use crate::error::Result;
use crate::message::EventTime;
use crate::metrics::Metrics;

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

/// What a batch gave: rows for the sinks, and rows rejected.
#[derive(Debug, Default)]
pub struct Processed {
    /// Rows ready for the sinks.
    pub rows: Vec<RecordBatch>,
    /// Input rows the statement could not compute.
    pub rejected: Vec<RejectedRow>,
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
    rejected: &mut Vec<RejectedRow>,
) -> Result<()> {
    if !is_row_error(&error) {
        return Err(error.into());
    }
    if batch.num_rows() <= 1 {
        rejected.push(RejectedRow {
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

/// The operator of one statement.
pub enum Operator {
    /// Filters and projections, row by row.
    Stateless(StatelessQuery),
    /// An aggregate over event-time windows.
    Window(WindowAggregate),
}

impl Operator {
    /// The operator for a planned statement.
    pub fn for_statement(planned: &PlannedStatement, metrics: Arc<Metrics>) -> Result<Self> {
        Ok(match planned.window() {
            Some(window) => {
                Operator::Window(WindowAggregate::new(planned.plan.clone(), window, metrics)?)
            }
            None => Operator::Stateless(StatelessQuery::new(planned.plan.clone())),
        })
    }

    /// Handles a batch; returns the rows ready for the sink, and the input
    /// rows the statement could not compute.
    pub async fn process_batch(&mut self, batch: RecordBatch) -> Result<Processed> {
        match self {
            Operator::Stateless(op) => op.process_batch(batch).await,
            Operator::Window(op) => op.process_batch(batch).await.map(|rejected| Processed {
                rows: Vec::new(),
                rejected,
            }),
        }
    }

    /// Handles a watermark; returns the rows it completes.
    pub async fn handle_watermark(&mut self, watermark: EventTime) -> Result<Vec<RecordBatch>> {
        match self {
            Operator::Stateless(_) => Ok(Vec::new()),
            Operator::Window(op) => op.handle_watermark(watermark).await,
        }
    }

    /// The state a checkpoint keeps (`None` for stateless statements).
    pub fn snapshot(&self) -> Option<(Option<EventTime>, Vec<RecordBatch>)> {
        match self {
            Operator::Stateless(_) => None,
            Operator::Window(op) => Some(op.snapshot()),
        }
    }

    /// Restores checkpointed state into a fresh operator.
    pub async fn restore(
        &mut self,
        watermark: Option<EventTime>,
        rows: Vec<RecordBatch>,
    ) -> Result<()> {
        match self {
            Operator::Stateless(_) => Ok(()),
            Operator::Window(op) => op.restore(watermark, rows).await,
        }
    }

    /// Handles the end of a bounded input: everything still open is complete now.
    pub async fn handle_end_of_data(&mut self) -> Result<Vec<RecordBatch>> {
        match self {
            Operator::Stateless(_) => Ok(Vec::new()),
            Operator::Window(op) => op.handle_end_of_data().await,
        }
    }
}
