//! Aggregates over event-time windows, on DataFusion's own accumulators.
//!
//! Every kind works the same way underneath: the operator labels each input
//! row with a `window_start` / `window_end`, DataFusion's `Partial`
//! aggregate turns rows into accumulator state rows grouped by key and
//! label, the operator keeps them (plain Arrow batches, checkpointed as
//! they are) and decides which state rows make up a window and when it is
//! complete, and DataFusion's `Final` aggregate (and the projection above
//! it, e.g. VWAP = sum(price*size) / sum(size)) computes the window's rows.
//! What differs between kinds is only that labelling and lifecycle:
//!
//! | kind | a row's label | a window is | emitted when the watermark passes |
//! |---|---|---|---|
//! | TUMBLE / HOP | each window it falls in (a copy per window) | its label | its end (+ lateness for corrections) |
//! | CUMULATE | its period's start, its step's end | the period's steps so far | each step's end |
//! | SESSION | `[ts, ts + gap)` | labels of one key that touch, merged | the session's end |
//!
//! # Layout
//! - this file: the kinds' registry ([`for_window`]) and what they share;
//! - `fixed/`: TUMBLE and HOP, with emit policies, lateness and revisions;
//! - `cumulate`: CUMULATE, by steps folded into a running period state;
//! - `session/`: SESSION, per key, merged as rows bridge sessions;
//! - `late`: rows that reached no window (count, log, `LATE DATA TO`).

mod cumulate;
mod fixed;
mod late;
mod session;

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, Scalar, TimestampMillisecondArray};
use arrow::compute::{filter_record_batch, kernels::cmp::eq, max, min};
use arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::collect;
use engine_sql::{ddl::UTC, with_window_columns, PlannedStatement, StreamPlan, WindowKind};

use super::{split_failed, Collector, Operator, RejectedRow};
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::StatementMetrics;

/// The operator of a windowed statement, by its window's kind: the one
/// place a new kind is registered.
pub(crate) fn for_window(
    planned: &PlannedStatement,
    kind: WindowKind,
    metrics: StatementMetrics,
) -> Result<Box<dyn Operator>> {
    Ok(match kind {
        WindowKind::Fixed(_) => Box::new(fixed::WindowAggregate::new(planned, metrics)?),
        WindowKind::Cumulate(spec) => {
            Box::new(cumulate::CumulateAggregate::new(planned, spec, metrics)?)
        }
        WindowKind::Session(spec) => {
            Box::new(session::SessionAggregate::new(planned, spec, metrics)?)
        }
    })
}

/// Where a windowed statement's columns are, in its input and its state rows.
pub(super) struct Columns {
    /// The event-time column of the input.
    pub time: usize,
    /// How many of the input's columns are the source's (the window's follow).
    pub source: usize,
    /// `window_start` and `window_end` among the state rows' columns.
    pub state_start: usize,
    pub state_end: usize,
    /// The state columns of the group key, less the window's.
    pub key: Vec<usize>,
}

impl Columns {
    /// The columns of `planned`, a windowed statement without revision pseudo-columns.
    pub fn of(planned: &PlannedStatement) -> Result<Self> {
        let plan = &planned.plan;
        let missing =
            |what: &str| EngineError::Internal(format!("windowed plan has no {what} column"));
        let window = planned.window().ok_or_else(|| missing("window"))?;
        let time = plan
            .input_schema()
            .index_of(&window.time_column)
            .map_err(|_| missing(&window.time_column))?;
        let state = plan.state_schema().ok_or_else(|| missing("state"))?;
        let index = |name: &str| state.index_of(name).map_err(|_| missing(name));
        let (state_start, state_end) = (
            index(engine_sql::WINDOW_START)?,
            index(engine_sql::WINDOW_END)?,
        );
        Ok(Self {
            time,
            source: plan.input_schema().fields().len() - 2,
            state_start,
            state_end,
            key: (0..plan.group_count())
                .filter(|&c| c != state_start && c != state_end)
                .collect(),
        })
    }
}

/// A TIMESTAMP(ms) column of state or input rows (window bounds, event times).
pub(super) fn times(batch: &RecordBatch, column: usize) -> Result<&TimestampMillisecondArray> {
    batch
        .column(column)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .ok_or_else(|| EngineError::Internal(format!("column {column} is not TIMESTAMP(ms)")))
}

/// The event times of a statement's input rows (never null: the source rejects such rows).
pub(super) fn event_times(batch: &RecordBatch, column: usize) -> Result<&[i64]> {
    let ts = times(batch, column)?;
    if ts.null_count() > 0 {
        return Err(EngineError::Internal(
            "null event time reached a window (the source must reject it)".into(),
        ));
    }
    Ok(ts.values())
}

/// State batches a window (or step, or the sessions) keeps before they are folded.
pub(super) const MAX_STATE_BATCHES: usize = 64;

/// `times` as a column of window bounds.
pub(super) fn time_column(times: Vec<i64>) -> ArrayRef {
    Arc::new(TimestampMillisecondArray::from(times).with_timezone(UTC))
}

/// Splits rows by the value of a time column, in time order.
pub(super) fn split_by_time(
    batch: RecordBatch,
    column: usize,
) -> Result<Vec<(EventTime, RecordBatch)>> {
    let values = times(&batch, column)?;
    let (lo, hi) = (
        min(values).unwrap_or_default(),
        max(values).unwrap_or_default(),
    );
    if lo == hi {
        return Ok(vec![(lo, batch)]);
    }
    let mut distinct: Vec<i64> = values.values().to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    distinct
        .into_iter()
        .map(|t| {
            let key = Scalar::new(TimestampMillisecondArray::from(vec![t]).with_timezone(UTC));
            Ok((t, filter_record_batch(&batch, &eq(values, &key)?)?))
        })
        .collect()
}

/// `batch` (the source's rows) with window labels `starts` / `ends` added,
/// as the statement's plan reads its input.
pub(super) fn labelled(
    batch: &RecordBatch,
    starts: Vec<i64>,
    ends: Vec<i64>,
) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    columns.push(time_column(starts));
    columns.push(time_column(ends));
    let schema = with_window_columns(batch.schema().as_ref(), false);
    Ok(RecordBatch::try_new(Arc::new(schema), columns)?)
}

/// State rows with their window labels replaced by `starts` / `ends`.
pub(super) fn relabelled(
    state: &RecordBatch,
    columns: &Columns,
    starts: ArrayRef,
    ends: ArrayRef,
) -> Result<RecordBatch> {
    let mut arrays = state.columns().to_vec();
    arrays[columns.state_start] = starts;
    arrays[columns.state_end] = ends;
    Ok(RecordBatch::try_new(state.schema(), arrays)?)
}

/// The state rows of labelled input rows, and the rows the query could not
/// compute (found by bisection, only when a batch fails), without their labels.
pub(super) async fn partial_states(
    plan: &StreamPlan,
    task_ctx: &Arc<TaskContext>,
    labelled: RecordBatch,
    source_columns: usize,
) -> Result<(Vec<RecordBatch>, Vec<RejectedRow>)> {
    let mut failed = Collector::default();
    let mut work = vec![labelled];
    let mut states = Vec::new();
    while let Some(piece) = work.pop() {
        match collect(plan.partial_over(piece.clone())?, Arc::clone(task_ctx)).await {
            Ok(rows) => states.extend(rows.into_iter().filter(|s| s.num_rows() > 0)),
            Err(e) => split_failed(piece, e, &mut work, &mut failed)?,
        }
    }
    let rejected = failed
        .take_rejected()
        .into_iter()
        .map(|r| RejectedRow {
            row: r
                .row
                .project(&(0..source_columns).collect::<Vec<_>>())
                .unwrap_or(r.row),
            error: r.error,
        })
        .collect();
    Ok((states, rejected))
}

/// The output rows of one or more windows' state rows (labelled with their
/// windows' bounds).
pub(super) async fn final_rows(
    plan: &StreamPlan,
    task_ctx: &Arc<TaskContext>,
    states: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    if states.iter().all(|s| s.num_rows() == 0) {
        return Ok(Vec::new());
    }
    let rows = collect(plan.final_over(states)?, Arc::clone(task_ctx)).await?;
    Ok(rows.into_iter().filter(|b| b.num_rows() > 0).collect())
}

/// State rows merged to one per group and label.
pub(super) async fn reduced(
    plan: &StreamPlan,
    task_ctx: &Arc<TaskContext>,
    states: Vec<RecordBatch>,
) -> Result<Vec<RecordBatch>> {
    if states.len() <= 1 {
        return Ok(states);
    }
    let rows = collect(plan.reduce_over(states)?, Arc::clone(task_ctx)).await?;
    Ok(rows.into_iter().filter(|b| b.num_rows() > 0).collect())
}
