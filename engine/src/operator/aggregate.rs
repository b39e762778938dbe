//! Aggregates over event-time windows, on DataFusion's own accumulators.
//!
//! Each input batch gets its window columns, then DataFusion's `Partial`
//! aggregate turns it into accumulator state rows keyed by group and window.
//! State rows wait per window (a `BTreeMap` by window end, as in Arroyo's
//! tumbling window) until the watermark passes the window's end; then the
//! `Final` aggregate merges them and the projection above it computes the
//! output (e.g. VWAP = sum(price*size) / sum(size)). State rows are plain
//! Arrow batches, so they can be checkpointed as they are.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, Scalar, TimestampMillisecondArray};
use arrow::compute::{filter_record_batch, kernels::cmp::eq, max, min};
use arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::collect;
use engine_sql::{ddl::UTC, streaming_session, FoundWindow, StreamPlan, WindowSpec, WINDOW_END};

use super::assign::assign_windows;
use super::{split_failed, Collector, Operator, RejectedRow};
use crate::checkpoint::{batches_from_ipc, batches_to_ipc, Snapshot};
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::Metrics;

/// State batches a window keeps before they are folded into one.
const MAX_STATE_BATCHES: usize = 64;

/// A windowed `GROUP BY`.
pub struct WindowAggregate {
    plan: StreamPlan,
    spec: WindowSpec,
    time_column: usize,
    state_window_end: usize,
    /// Open windows by end time: their accumulator state rows.
    windows: BTreeMap<EventTime, Vec<RecordBatch>>,
    /// Windows ending at or before this are emitted; rows for them are late.
    watermark: Option<EventTime>,
    task_ctx: Arc<TaskContext>,
    metrics: Arc<Metrics>,
    /// Batches that had late rows, to thin out the warnings.
    late_batches: u64,
}

/// Rejected rows without their window columns, a HOP row once rather than
/// once per window: its copies are adjacent and fail alike, so a run of `n`
/// equal rejections stands for `ceil(n / copies)` records.
fn without_window_copies(rejected: Vec<RejectedRow>, copies: usize) -> Vec<RejectedRow> {
    let mut runs: Vec<(RejectedRow, usize)> = Vec::with_capacity(rejected.len());
    for r in rejected {
        let width = r.row.num_columns().saturating_sub(2);
        let row = match r.row.project(&(0..width).collect::<Vec<_>>()) {
            Ok(row) => row,
            Err(_) => r.row,
        };
        match runs.last_mut() {
            Some((last, n)) if last.row == row && last.error == r.error => *n += 1,
            _ => runs.push((
                RejectedRow {
                    row,
                    error: r.error,
                },
                1,
            )),
        }
    }
    runs.into_iter()
        .flat_map(|(r, n)| std::iter::repeat_n(r, n.div_ceil(copies.max(1))))
        .collect()
}

/// A stopped operator's windows are no longer open here (a lane that moves
/// to another process counts them there once restored).
impl Drop for WindowAggregate {
    fn drop(&mut self) {
        self.metrics.open_windows.fetch_sub(
            self.windows.len() as i64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
}

impl WindowAggregate {
    /// An operator for `plan`, windowed by `window`.
    pub fn new(plan: StreamPlan, window: &FoundWindow, metrics: Arc<Metrics>) -> Result<Self> {
        let missing =
            |what: &str| EngineError::Internal(format!("windowed plan has no {what} column"));
        let time_column = plan
            .input_schema()
            .index_of(&window.time_column)
            .map_err(|_| missing(&window.time_column))?;
        let state_schema = plan.state_schema().ok_or_else(|| missing("state"))?;
        let state_window_end = state_schema
            .index_of(WINDOW_END)
            .map_err(|_| missing(WINDOW_END))?;
        Ok(Self {
            plan,
            spec: window.spec,
            time_column,
            state_window_end,
            windows: BTreeMap::new(),
            watermark: None,
            task_ctx: streaming_session().task_ctx(),
            metrics,
            late_batches: 0,
        })
    }

    /// Folds a batch into the state of the windows it touches; returns the
    /// rows the query could not compute (each input row once).
    async fn fold(&mut self, batch: RecordBatch) -> Result<Vec<RejectedRow>> {
        let (windowed, late) = assign_windows(&batch, self.time_column, self.spec, self.watermark)?;
        let copies = self.spec.windows_per_record() as usize;
        if late > 0 {
            let total = self
                .metrics
                .late_rows
                .fetch_add(late, std::sync::atomic::Ordering::Relaxed)
                + late;
            self.late_batches += 1;
            // Every batch with late rows at first, then every 1000th, so a flood of late
            // data cannot flood the log; the counter has the exact number.
            if self.late_batches <= 20 || self.late_batches.is_multiple_of(1000) {
                tracing::warn!(
                    late_rows = late,
                    late_rows_total = total,
                    watermark = self.watermark,
                    "rows arrived after their window closed; dropped and counted"
                );
            }
        }
        if windowed.num_rows() == 0 {
            return Ok(Vec::new());
        }
        // Rows whose values the query cannot compute are set apart by
        // bisection (only when the batch fails); the others are folded in.
        let mut failed = Collector::default();
        let mut work = vec![windowed];
        while let Some(piece) = work.pop() {
            let plan = self.plan.partial_over(piece.clone())?;
            match collect(plan, Arc::clone(&self.task_ctx)).await {
                Ok(states) => {
                    for state in states {
                        self.add_state(state).await?;
                    }
                }
                Err(e) => split_failed(piece, e, &mut work, &mut failed)?,
            }
        }
        Ok(without_window_copies(failed.take_rejected(), copies))
    }

    /// Emits, in window order, every window the watermark has passed.
    async fn close_until(&mut self, watermark: EventTime) -> Result<Vec<RecordBatch>> {
        if self.watermark.is_some_and(|w| watermark <= w) {
            return Ok(Vec::new());
        }
        self.watermark = Some(watermark);
        let still_open = self.windows.split_off(&watermark.saturating_add(1));
        let closed = std::mem::replace(&mut self.windows, still_open);
        let mut out = Vec::new();
        self.metrics
            .open_windows
            .fetch_sub(closed.len() as i64, std::sync::atomic::Ordering::Relaxed);
        for (_, states) in closed {
            let rows = collect(self.plan.final_over(states)?, Arc::clone(&self.task_ctx)).await?;
            out.extend(rows.into_iter().filter(|b| b.num_rows() > 0));
            Metrics::add(&self.metrics.windows_emitted, 1);
        }
        Ok(out)
    }

    /// Emits every open window at the end of a bounded input. End of data is
    /// not a point in time, so the watermark left behind (and checkpointed)
    /// is the end of the last window emitted: a later run goes on from there,
    /// treating the windows emitted now as closed and every later one as open.
    /// (Left at the end of time, it made every row of the next run late.)
    async fn close_all(&mut self) -> Result<Vec<RecordBatch>> {
        let last_end = self.windows.keys().next_back().copied();
        let before = self.watermark;
        let out = self.close_until(EventTime::MAX).await?;
        self.watermark = match (before, last_end) {
            (Some(w), Some(end)) => Some(w.max(end)),
            (w, end) => w.or(end),
        };
        Ok(out)
    }

    /// Files state rows under their window(s), folding a window's state when it grows long.
    async fn add_state(&mut self, state: RecordBatch) -> Result<()> {
        if state.num_rows() == 0 {
            return Ok(());
        }
        let ends = state
            .column(self.state_window_end)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(|| {
                EngineError::Internal("window_end state column is not TIMESTAMP(ms)".into())
            })?;
        let (lo, hi) = (min(ends).unwrap_or_default(), max(ends).unwrap_or_default());
        let parts = if lo == hi {
            vec![(lo, state)]
        } else {
            let mut distinct: Vec<i64> = ends.values().to_vec();
            distinct.sort_unstable();
            distinct.dedup();
            distinct
                .into_iter()
                .map(|end| {
                    let key =
                        Scalar::new(TimestampMillisecondArray::from(vec![end]).with_timezone(UTC));
                    Ok((end, filter_record_batch(&state, &eq(ends, &key)?)?))
                })
                .collect::<Result<Vec<_>>>()?
        };
        for (end, part) in parts {
            if !self.windows.contains_key(&end) {
                self.metrics
                    .open_windows
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            let batches = self.windows.entry(end).or_default();
            batches.push(part);
            if batches.len() >= MAX_STATE_BATCHES {
                let all = std::mem::take(batches);
                let folded =
                    collect(self.plan.reduce_over(all)?, Arc::clone(&self.task_ctx)).await?;
                self.windows.insert(end, folded);
            }
        }
        Ok(())
    }
}

/// The blob of a window aggregate's snapshot holding its open windows.
const WINDOWS: &str = "windows.arrow";

#[async_trait::async_trait]
impl Operator for WindowAggregate {
    /// Folds a batch into the state of the windows it touches; rows the
    /// query could not compute are set apart (each input row once).
    async fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        for r in self.fold(batch).await? {
            out.reject(r);
        }
        Ok(())
    }

    async fn handle_watermark(&mut self, watermark: EventTime, out: &mut Collector) -> Result<()> {
        self.close_until(watermark)
            .await?
            .into_iter()
            .for_each(|b| out.emit(b));
        Ok(())
    }

    async fn handle_end_of_data(&mut self, out: &mut Collector) -> Result<()> {
        self.close_all()
            .await?
            .into_iter()
            .for_each(|b| out.emit(b));
        Ok(())
    }

    /// Its watermark, and every open window's accumulator rows (each row
    /// carries its `window_end`) as Arrow IPC.
    fn snapshot(&self) -> Result<Snapshot> {
        let mut snapshot = Snapshot::meta(serde_json::json!({ "watermark": self.watermark }));
        let rows: Vec<RecordBatch> = self.windows.values().flatten().cloned().collect();
        if let Some(bytes) = batches_to_ipc(&rows)? {
            snapshot.blobs.insert(WINDOWS.to_string(), bytes.into());
        }
        Ok(snapshot)
    }

    async fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        self.watermark = snapshot.meta.get("watermark").and_then(|w| w.as_i64());
        if let Some(bytes) = snapshot.blobs.get(WINDOWS) {
            for batch in batches_from_ipc(bytes.clone())? {
                self.add_state(batch).await?;
            }
        }
        Ok(())
    }
}
