//! Plans each `INSERT` of a job on DataFusion and splits it for streaming.

use std::sync::Arc;

use arrow::datatypes::{Field, Schema};
use datafusion::datasource::MemTable;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{cast, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::ddl::timestamp_type;
use crate::error::{Result, SqlError};
use crate::job::{InsertDef, JobFile};
use crate::physical::StreamPlan;
use crate::window::{FoundWindow, WINDOW_END, WINDOW_START};

/// Physical optimizer rules that assume a finite, already-complete input:
/// merging the partial and final aggregate (we run them at different times),
/// and answering `count(*)` from table statistics (our table is a placeholder).
const BATCH_ONLY_RULES: &[&str] = &["CombinePartialFinalAggregate", "AggregateStatistics"];

/// One `INSERT`, planned.
#[derive(Debug, Clone)]
pub struct PlannedInsert {
    /// The statement as parsed.
    pub insert: InsertDef,
    /// Its physical plan, split for streaming.
    pub plan: StreamPlan,
}

impl PlannedInsert {
    /// The window, when the statement aggregates over one.
    pub fn window(&self) -> Option<&FoundWindow> {
        self.insert.window.as_ref()
    }
}

/// A DataFusion session configured for running plans one batch at a time.
pub fn streaming_session() -> SessionContext {
    let config = SessionConfig::new().with_target_partitions(1).with_batch_size(8192).with_information_schema(false);
    let rules = PhysicalOptimizer::new().rules.into_iter().filter(|r| !BATCH_ONLY_RULES.contains(&r.name())).collect();
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_physical_optimizer_rules(rules)
        .build();
    SessionContext::new_with_state(state)
}

/// Plans every `INSERT` of `job`.
pub async fn plan_job(job: &JobFile) -> Result<Vec<PlannedInsert>> {
    let mut planned = Vec::with_capacity(job.inserts.len());
    for insert in &job.inserts {
        planned.push(plan_insert(job, insert).await?);
    }
    Ok(planned)
}

/// Plans one `INSERT` of `job`.
pub async fn plan_insert(job: &JobFile, insert: &InsertDef) -> Result<PlannedInsert> {
    let at = |message: String| SqlError { file: job.file.clone(), line: insert.line, message };
    let df = |e: datafusion::error::DataFusionError| at(e.strip_backtrace().to_string());
    let source = job.table(&insert.source).ok_or_else(|| at(format!("no table `{}`", insert.source)))?;
    let sink = job.table(&insert.sink).ok_or_else(|| at(format!("no table `{}`", insert.sink)))?;

    // A windowed statement reads the source extended with the window columns,
    // which the engine's window operator fills in.
    let mut fields: Vec<Field> = source.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    if insert.window.is_some() {
        for name in [WINDOW_START, WINDOW_END] {
            if source.column(name).is_some() {
                return Err(at(format!("source `{}` has a column `{name}`, which its window would hide", source.name)));
            }
            fields.push(Field::new(name, timestamp_type(), false));
        }
    }
    let input_schema = Arc::new(Schema::new(fields));

    let ctx = streaming_session();
    let table = MemTable::try_new(Arc::clone(&input_schema), vec![vec![]]).map_err(df)?;
    ctx.register_table(source.name.as_str(), Arc::new(table)).map_err(df)?;
    let query = ctx.state().create_logical_plan(&insert.query.to_string()).await.map_err(df)?;

    if insert.window.is_none() && has_aggregate(&query) {
        return Err(at(format!(
            "an aggregate over a stream never ends: group by a window, e.g. GROUP BY ..., TUMBLE({}, INTERVAL '1' MINUTE)",
            source.watermark.as_ref().map(|w| w.column.as_str()).unwrap_or("ts")
        )));
    }

    // INSERT is positional, as in SQL: cast each column to the sink's type and name.
    let sink_schema = sink.schema();
    let columns = query.schema().columns();
    if columns.len() != sink_schema.fields().len() {
        let names = |it: Vec<String>| it.join(", ");
        return Err(at(format!(
            "the SELECT gives {} columns ({}) but sink `{}` has {} ({})",
            columns.len(),
            names(columns.iter().map(|c| c.name.clone()).collect()),
            sink.name,
            sink_schema.fields().len(),
            names(sink_schema.fields().iter().map(|f| f.name().clone()).collect()),
        )));
    }
    let casts: Vec<Expr> = columns
        .into_iter()
        .zip(sink_schema.fields())
        .map(|(c, f)| cast(Expr::Column(c), f.data_type().clone()).alias(f.name()))
        .collect();
    let logical = LogicalPlanBuilder::from(query).project(casts).and_then(|b| b.build()).map_err(df)?;
    let physical = ctx.state().create_physical_plan(&logical).await.map_err(df)?;
    let plan = StreamPlan::try_new(physical, input_schema).map_err(df)?;
    Ok(PlannedInsert { insert: insert.clone(), plan })
}

fn has_aggregate(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Aggregate(_)) || plan.inputs().into_iter().any(has_aggregate)
}
