//! Statements without aggregates: DataFusion runs the plan over each batch.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::collect;
use engine_sql::{streaming_session, StreamPlan};

use super::{split_failed, Collector, Operator};
use crate::error::Result;

/// A filter/projection statement.
pub struct StatelessQuery {
    plan: StreamPlan,
    task_ctx: Arc<TaskContext>,
}

impl StatelessQuery {
    /// Runs `plan` batch by batch.
    pub fn new(plan: StreamPlan) -> Self {
        Self {
            plan,
            task_ctx: streaming_session().task_ctx(),
        }
    }
}

#[async_trait::async_trait]
impl Operator for StatelessQuery {
    /// The statement's rows for one input batch; rows whose values the query
    /// cannot compute are set apart (by bisection, only when the batch fails).
    async fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let mut work = vec![batch];
        while let Some(piece) = work.pop() {
            let plan = self.plan.stateless_over(piece.clone())?;
            match collect(plan, Arc::clone(&self.task_ctx)).await {
                Ok(rows) => rows.into_iter().for_each(|b| out.emit(b)),
                Err(e) => split_failed(piece, e, &mut work, out)?,
            }
        }
        Ok(())
    }
}
