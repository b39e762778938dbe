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

    /// Handles a batch; returns the rows ready for the sink.
    pub async fn process_batch(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        match self {
            Operator::Stateless(op) => op.process_batch(batch).await,
            Operator::Window(op) => op.process_batch(batch).await.map(|()| Vec::new()),
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
        self.handle_watermark(EventTime::MAX).await
    }
}
