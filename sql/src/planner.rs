//! Plans each `INSERT` of a job on DataFusion and splits it for streaming.

use std::sync::Arc;

use arrow::compute::can_cast_types;
use arrow::datatypes::Schema;
use datafusion::datasource::MemTable;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::clauses::late_row_schema;
use crate::error::{Result, SqlError};
use crate::job::{InsertDef, JobFile};
use crate::physical::StreamPlan;
use crate::window::{
    with_window_columns, FoundWindow, WINDOW_END, WINDOW_FINAL, WINDOW_REVISION, WINDOW_START,
};

/// Physical optimizer rules that assume a finite, already-complete input:
/// merging the partial and final aggregate (we run them at different times),
/// and answering `count(*)` from table statistics (our table is a placeholder).
const BATCH_ONLY_RULES: &[&str] = &["CombinePartialFinalAggregate", "AggregateStatistics"];

/// One computation of a job: an `INSERT`, or all the `INSERT ... SELECT * FROM view`
/// statements of one view, which share it.
#[derive(Debug, Clone)]
pub struct PlannedStatement {
    /// The first `INSERT` of the computation (its line, source, query and window).
    pub insert: InsertDef,
    /// Every sink the rows go to, in file order. `INSERT` is positional: rows
    /// are cast to each sink's columns in order.
    pub sinks: Vec<String>,
    /// The physical plan, split for streaming. Its output has the query's own
    /// column types; the planner checked they cast to every sink's.
    pub plan: StreamPlan,
}

impl PlannedStatement {
    /// The window, when the statement aggregates over one.
    pub fn window(&self) -> Option<&FoundWindow> {
        self.insert.window.as_ref()
    }

    /// Its name in late rows and logs: the view's, else the sink table's.
    pub fn name(&self) -> &str {
        self.insert.view.as_deref().unwrap_or(&self.insert.sink)
    }
}

/// A DataFusion session configured for running plans one batch at a time.
pub fn streaming_session() -> SessionContext {
    let config = SessionConfig::new()
        .with_target_partitions(1)
        .with_batch_size(8192)
        .with_information_schema(false);
    let rules = PhysicalOptimizer::new()
        .rules
        .into_iter()
        .filter(|r| !BATCH_ONLY_RULES.contains(&r.name()))
        .collect();
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_physical_optimizer_rules(rules)
        .build();
    SessionContext::new_with_state(state)
}

/// Plans every `INSERT` of `job`; those reading the same view become one statement.
pub async fn plan_job(job: &JobFile) -> Result<Vec<PlannedStatement>> {
    let mut planned: Vec<PlannedStatement> = Vec::with_capacity(job.inserts.len());
    for insert in &job.inserts {
        let shared = insert.view.as_ref().and_then(|v| {
            planned
                .iter_mut()
                .find(|p| p.insert.view.as_ref() == Some(v))
        });
        let statement = match shared {
            Some(statement) => statement,
            None => {
                planned.push(plan_insert(job, insert).await?);
                check_late_columns(job, insert)?;
                planned.last_mut().expect("just pushed")
            }
        };
        if statement.sinks.contains(&insert.sink) {
            let at = SqlError {
                file: job.file.clone(),
                line: insert.line,
                message: format!(
                    "sink `{}` is written twice from view `{}`",
                    insert.sink,
                    insert.view.as_deref().unwrap_or_default()
                ),
            };
            return Err(at);
        }
        check_sink_columns(job, insert, &statement.plan)?;
        statement.sinks.push(insert.sink.clone());
    }
    Ok(planned)
}

/// `INSERT` is positional: the query's columns must cast to the sink's, in order.
fn check_sink_columns(job: &JobFile, insert: &InsertDef, plan: &StreamPlan) -> Result<()> {
    check_columns(
        job,
        insert.line,
        &insert.sink,
        &plan.output_schema(),
        "the SELECT",
    )
}

/// `LATE DATA TO` writes the source's columns and [`LATE_COLUMNS`], cast
/// positionally like an `INSERT`.
fn check_late_columns(job: &JobFile, insert: &InsertDef) -> Result<()> {
    let (Some(late), Some(source)) = (&insert.clauses.late_data_to, job.table(&insert.source))
    else {
        return Ok(());
    };
    let rows = late_row_schema(&source.schema());
    check_columns(
        job,
        insert.clauses.line,
        late,
        &Arc::new(rows),
        "LATE DATA TO",
    )
}

/// Rows of schema `output` (from `what`) must cast to table `sink`'s columns, in order.
fn check_columns(
    job: &JobFile,
    line: usize,
    sink: &str,
    output: &arrow::datatypes::SchemaRef,
    what: &str,
) -> Result<()> {
    let at = |message: String| SqlError {
        file: job.file.clone(),
        line,
        message,
    };
    let sink = job
        .table(sink)
        .ok_or_else(|| at(format!("no table `{sink}`")))?;
    let (output, sink_schema) = (Arc::clone(output), sink.schema());
    if output.fields().len() != sink_schema.fields().len() {
        let names = |s: &Schema| {
            s.fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(at(format!(
            "{what} gives {} columns ({}) but sink `{}` has {} ({})",
            output.fields().len(),
            names(&output),
            sink.name,
            sink_schema.fields().len(),
            names(&sink_schema),
        )));
    }
    for (from, to) in output.fields().iter().zip(sink_schema.fields()) {
        if !can_cast_types(from.data_type(), to.data_type()) {
            return Err(at(format!(
                "column `{}` of {what} is {} and cannot be written to `{}.{}` ({})",
                from.name(),
                from.data_type(),
                sink.name,
                to.name(),
                to.data_type()
            )));
        }
    }
    Ok(())
}

/// Plans the query of one `INSERT` of `job` (its sink is added by [`plan_job`]).
async fn plan_insert(job: &JobFile, insert: &InsertDef) -> Result<PlannedStatement> {
    let at = |message: String| SqlError {
        file: job.file.clone(),
        line: insert.line,
        message,
    };
    let df = |e: datafusion::error::DataFusionError| at(e.strip_backtrace().to_string());
    let source = job
        .table(&insert.source)
        .ok_or_else(|| at(format!("no table `{}`", insert.source)))?;

    // A windowed statement reads the source extended with the window columns,
    // which the engine's window operator fills in.
    let mut input_schema = source.schema();
    if let Some(window) = &insert.window {
        let pseudo = [WINDOW_FINAL, WINDOW_REVISION];
        let added = [WINDOW_START, WINDOW_END].into_iter();
        for name in added.chain(pseudo.into_iter().filter(|_| window.revision_columns)) {
            if source.column(name).is_some() {
                return Err(at(format!(
                    "source `{}` has a column `{name}`, which its window would hide",
                    source.name
                )));
            }
        }
        input_schema = Arc::new(with_window_columns(&input_schema, window.revision_columns));
    }

    let ctx = streaming_session();
    let table = MemTable::try_new(Arc::clone(&input_schema), vec![vec![]]).map_err(df)?;
    ctx.register_table(source.name.as_str(), Arc::new(table))
        .map_err(df)?;
    let query = ctx
        .state()
        .create_logical_plan(&insert.query.to_string())
        .await
        .map_err(df)?;

    if insert.window.is_none() && has_aggregate(&query) {
        return Err(at(format!(
            "an aggregate over a stream never ends: group by a window, e.g. GROUP BY ..., TUMBLE({}, INTERVAL '1' MINUTE)",
            source.watermark.as_ref().map(|w| w.column.as_str()).unwrap_or("ts")
        )));
    }

    let physical = ctx.state().create_physical_plan(&query).await.map_err(df)?;
    let plan = StreamPlan::try_new(physical, input_schema).map_err(df)?;
    Ok(PlannedStatement {
        insert: insert.clone(),
        sinks: Vec::new(),
        plan,
    })
}

fn has_aggregate(plan: &LogicalPlan) -> bool {
    matches!(plan, LogicalPlan::Aggregate(_)) || plan.inputs().into_iter().any(has_aggregate)
}
