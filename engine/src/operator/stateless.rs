//! Statements without aggregates: DataFusion runs the plan over each batch.

use std::sync::Arc;

use arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::collect;
use engine_sql::{streaming_session, StreamPlan};

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

    /// The statement's rows for one input batch.
    pub async fn process_batch(&mut self, batch: RecordBatch) -> Result<Vec<RecordBatch>> {
        let out = collect(self.plan.stateless_over(batch)?, Arc::clone(&self.task_ctx)).await?;
        Ok(out.into_iter().filter(|b| b.num_rows() > 0).collect())
    }
}
