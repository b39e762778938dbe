//! CUMULATE: every window of a period starts at the period's start and
//! they end a step apart, so the window ending at step `k` is the one
//! ending at step `k - 1` plus the rows of step `k`. State rows wait per
//! step until the watermark passes its end; then they are folded into the
//! period's running state, which is relabelled with the step's end and
//! emitted: one `Final` aggregate per step, never a re-fold of the period.
//!
//! A row whose step has closed but whose period has not still counts in
//! every later window of its period: it goes straight into the running
//! state, and is counted as late (`late_rows`) for the windows it missed.
//! A row whose period has closed reaches no window (the late output).

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::UInt32Array;
use arrow::compute::take_record_batch;
use arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use engine_sql::{streaming_session, CumulateSpec, PlannedStatement, StreamPlan};
use serde::{Deserialize, Serialize};

use super::late::{rfc3339, LateOutput};
use super::{
    event_times, final_rows, labelled, partial_states, reduced, relabelled, split_by_time,
    time_column, Columns, MAX_STATE_BATCHES,
};
use crate::checkpoint::{batches_from_ipc, batches_to_ipc, Snapshot};
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::StatementMetrics;
use crate::operator::{Collector, Operator};

/// A `GROUP BY ..., CUMULATE(ts, step, max)`.
pub(crate) struct CumulateAggregate {
    plan: StreamPlan,
    spec: CumulateSpec,
    columns: Columns,
    late: LateOutput,
    /// Steps the watermark has not passed, by end: the state rows of their rows.
    steps: BTreeMap<EventTime, Vec<RecordBatch>>,
    /// Periods with rows whose last window is not emitted yet, by start.
    periods: BTreeMap<EventTime, Period>,
    /// Windows ending at or before this have been emitted (or are pending).
    watermark: Option<EventTime>,
    /// Windows the watermark has passed that are still to be emitted.
    pending: Option<Pending>,
    task_ctx: Arc<TaskContext>,
    metrics: StatementMetrics,
}

/// A period in progress.
#[derive(Default)]
struct Period {
    /// The state rows of its closed steps (and of rows that came after their step closed).
    running: Vec<RecordBatch>,
    /// The end of its next window to emit.
    next_end: EventTime,
}

/// The rest of an emission given out in parts.
struct Pending {
    /// Windows ending at or before this are due.
    through: EventTime,
    /// The end of the last window emitted so far.
    last_end: Option<EventTime>,
    /// At the end of a bounded input: the watermark before it.
    finishing: Option<Option<EventTime>>,
}

/// Rows one call emits at most (about: whole windows are emitted), so that
/// a watermark passing many windows (the end of a bounded input emits every
/// step left in a day) never holds them all in memory at once.
const EMIT_BUDGET_ROWS: usize = 65_536;

/// A period's place in a checkpoint (its running state is in a blob).
#[derive(Serialize, Deserialize)]
struct PeriodMeta {
    start: EventTime,
    next_end: EventTime,
}

/// The blobs of its snapshot: open steps' state rows, and periods' running state.
const STEPS: &str = "steps.arrow";
const RUNNING: &str = "periods.arrow";

/// A stopped operator's periods are no longer open here.
impl Drop for CumulateAggregate {
    fn drop(&mut self) {
        (self.metrics.open_windows).sub(self.periods.len() as i64);
    }
}

impl CumulateAggregate {
    /// The operator of a statement grouped by `CUMULATE`.
    pub fn new(
        planned: &PlannedStatement,
        spec: CumulateSpec,
        metrics: StatementMetrics,
    ) -> Result<Self> {
        let columns = Columns::of(planned)?;
        Ok(Self {
            plan: planned.plan.clone(),
            spec,
            late: LateOutput::new(planned, columns.source, columns.time, metrics.clone())?,
            columns,
            steps: BTreeMap::new(),
            periods: BTreeMap::new(),
            watermark: None,
            pending: None,
            task_ctx: streaming_session().task_ctx(),
            metrics,
        })
    }

    /// The period a window ending at `end` belongs to.
    fn period_of_end(&self, end: EventTime) -> EventTime {
        self.spec.period_start(end - 1)
    }

    /// The period starting at `start`, made if new: its first window to
    /// emit ends at `first_end`, or later if the watermark has passed it.
    fn period(&mut self, start: EventTime, first_end: EventTime) -> &mut Period {
        let after_watermark = self.watermark.map_or(first_end, |w| self.spec.first_end(w));
        let first = first_end.max(after_watermark);
        if !self.periods.contains_key(&start) {
            self.metrics.open_windows.add(1);
        }
        let period = self.periods.entry(start).or_insert(Period {
            running: Vec::new(),
            next_end: first,
        });
        period.next_end = period.next_end.min(first);
        period
    }

    /// Starts emitting, in window order, every window the watermark has passed.
    async fn advance(&mut self, watermark: EventTime, out: &mut Collector) -> Result<()> {
        if self.watermark.is_some_and(|w| watermark <= w) {
            return Ok(());
        }
        self.watermark = Some(watermark);
        self.pending = Some(Pending {
            through: watermark,
            last_end: None,
            finishing: None,
        });
        self.emit_some(out).await
    }

    /// Emits due windows until about [`EMIT_BUDGET_ROWS`] rows are out (the
    /// rest stays pending for [`Operator::emit_pending`]), in window order.
    async fn emit_some(&mut self, out: &mut Collector) -> Result<()> {
        let Some(mut pending) = self.pending.take() else {
            return Ok(());
        };
        let mut budget = EMIT_BUDGET_ROWS;
        while let Some((&start, _)) =
            (self.periods.iter()).find(|(_, p)| p.next_end <= pending.through)
        {
            let period_end = start.saturating_add(self.spec.max_ms);
            let mut period = self.periods.remove(&start).expect("found above");
            while period.next_end <= pending.through.min(period_end) && budget > 0 {
                let end = period.next_end;
                budget = budget.saturating_sub(self.emit_step(start, end, &mut period, out).await?);
                pending.last_end = Some(end);
                period.next_end = end.saturating_add(self.spec.step_ms);
                if end == EventTime::MAX {
                    break;
                }
            }
            if period.next_end > period_end || period.next_end == EventTime::MAX {
                self.metrics.open_windows.sub(1);
            } else {
                self.periods.insert(start, period);
            }
            if budget == 0 {
                self.pending = Some(pending);
                return Ok(());
            }
        }
        if let Some(before) = pending.finishing {
            // The end of a bounded input: the watermark left behind is the end of
            // the last window emitted (as for TUMBLE), so a later run goes on from there.
            self.watermark = match (before, pending.last_end) {
                (Some(w), Some(end)) => Some(w.max(end)),
                (w, end) => w.or(end),
            };
        }
        Ok(())
    }

    /// Emits the window of `period` (starting at `start`) that ends at
    /// `end`: its running state plus the step's; returns how many rows.
    async fn emit_step(
        &mut self,
        start: EventTime,
        end: EventTime,
        period: &mut Period,
        out: &mut Collector,
    ) -> Result<usize> {
        let step = self.steps.remove(&end);
        let mut running = std::mem::take(&mut period.running);
        let changed = step.is_some() || running.len() > 1;
        running.extend(step.unwrap_or_default());
        let mut labelled = Vec::with_capacity(running.len());
        for state in &running {
            let n = state.num_rows();
            labelled.push(relabelled(
                state,
                &self.columns,
                time_column(vec![start; n]),
                time_column(vec![end; n]),
            )?);
        }
        // A step without rows changes only the running state's label.
        period.running = match changed {
            true => reduced(&self.plan, &self.task_ctx, labelled).await?,
            false => labelled,
        };
        let rows = final_rows(&self.plan, &self.task_ctx, period.running.clone()).await?;
        if !rows.is_empty() {
            self.metrics.windows_emitted.inc_by(1);
        }
        let n = rows.iter().map(|b| b.num_rows()).sum();
        rows.into_iter().for_each(|b| out.emit(b));
        Ok(n)
    }
}

#[async_trait::async_trait]
impl Operator for CumulateAggregate {
    /// Labels rows with their period's start and their step's end, folds
    /// them into their step (or, when it has closed, their period's running
    /// state), and sends rows whose period has closed to the late output.
    async fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        // The watermark is ahead of what is emitted while windows are pending.
        debug_assert!(self.pending.is_none(), "rows while windows are pending");
        let ts = event_times(&batch, self.columns.time)?;
        let watermark = self.watermark.unwrap_or(EventTime::MIN);
        let (mut kept, mut starts, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        let (mut missed, mut gone) = (0u64, Vec::new());
        for (row, &t) in ts.iter().enumerate() {
            let (start, end) = (self.spec.period_start(t), self.spec.first_end(t));
            if start.saturating_add(self.spec.max_ms) <= watermark {
                gone.push(row as u32);
                continue;
            }
            if end <= watermark {
                missed += 1;
            }
            kept.push(row as u32);
            starts.push(start);
            ends.push(end);
        }
        let spec = self.spec;
        let reason = |t: EventTime| {
            format!(
                "window closed: the watermark had passed the end of its period ({}), its last window, before the row arrived",
                rfc3339(spec.period_start(t).saturating_add(spec.max_ms))
            )
        };
        let late = missed + gone.len() as u64;
        self.late
            .record(&batch, late, &gone, self.watermark, &reason, out)?;
        if kept.is_empty() {
            return Ok(());
        }
        let rows = match kept.len() == batch.num_rows() {
            true => batch,
            false => take_record_batch(&batch, &UInt32Array::from(kept))?,
        };
        let input = labelled(&rows, starts, ends)?;
        let (states, rejected) =
            partial_states(&self.plan, &self.task_ctx, input, self.columns.source).await?;
        rejected.into_iter().for_each(|r| out.reject(r));
        for state in states {
            for (end, part) in split_by_time(state, self.columns.state_end)? {
                let start = self.period_of_end(end);
                let period = self.period(start, end);
                match end <= watermark {
                    true => period.running.push(part),
                    false => self.steps.entry(end).or_default().push(part),
                }
            }
        }
        // A long step (an hour, a day) gets many batches: fold them as they come.
        for states in self.steps.values_mut() {
            if states.len() >= MAX_STATE_BATCHES {
                *states = reduced(&self.plan, &self.task_ctx, std::mem::take(states)).await?;
            }
        }
        for period in self.periods.values_mut() {
            if period.running.len() >= MAX_STATE_BATCHES {
                let all = std::mem::take(&mut period.running);
                period.running = reduced(&self.plan, &self.task_ctx, all).await?;
            }
        }
        Ok(())
    }

    async fn handle_watermark(&mut self, watermark: EventTime, out: &mut Collector) -> Result<()> {
        self.advance(watermark, out).await
    }

    /// Emits every period to its end (in parts, see [`Operator::emit_pending`]).
    async fn handle_end_of_data(&mut self, out: &mut Collector) -> Result<()> {
        let before = self.watermark;
        self.watermark = Some(EventTime::MAX);
        self.pending = Some(Pending {
            through: EventTime::MAX,
            last_end: None,
            finishing: Some(before),
        });
        self.emit_some(out).await
    }

    fn has_pending(&self) -> bool {
        self.pending.is_some()
    }

    async fn emit_pending(&mut self, out: &mut Collector) -> Result<()> {
        self.emit_some(out).await
    }

    /// Its watermark, the periods' next windows, open steps' state rows and
    /// periods' running state rows (labelled with their period's start), as Arrow IPC.
    fn snapshot(&self) -> Result<Snapshot> {
        if self.pending.is_some() {
            return Err(EngineError::Internal(
                "a CUMULATE snapshot while windows are pending".into(),
            ));
        }
        let periods: Vec<PeriodMeta> = self
            .periods
            .iter()
            .map(|(&start, p)| PeriodMeta {
                start,
                next_end: p.next_end,
            })
            .collect();
        let mut snapshot = Snapshot::meta(serde_json::json!({
            "watermark": self.watermark,
            "periods": periods,
        }));
        let steps: Vec<RecordBatch> = self.steps.values().flatten().cloned().collect();
        let running: Vec<RecordBatch> = (self.periods.values())
            .flat_map(|p| p.running.iter().cloned())
            .collect();
        for (name, rows) in [(STEPS, steps), (RUNNING, running)] {
            if let Some(bytes) = batches_to_ipc(&rows)? {
                snapshot.blobs.insert(name.to_string(), bytes.into());
            }
        }
        Ok(snapshot)
    }

    async fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        self.watermark = snapshot.meta.get("watermark").and_then(|w| w.as_i64());
        let periods: Vec<PeriodMeta> = match snapshot.meta.get("periods") {
            Some(p) => serde_json::from_value(p.clone()).map_err(|e| {
                EngineError::Execution(format!("checkpoint: CUMULATE periods: {e}"))
            })?,
            None => Vec::new(),
        };
        for p in periods {
            if self
                .periods
                .insert(
                    p.start,
                    Period {
                        running: Vec::new(),
                        next_end: p.next_end,
                    },
                )
                .is_none()
            {
                self.metrics.open_windows.add(1);
            }
        }
        if let Some(bytes) = snapshot.blobs.get(STEPS) {
            for batch in batches_from_ipc(bytes.clone())? {
                for (end, part) in split_by_time(batch, self.columns.state_end)? {
                    self.steps.entry(end).or_default().push(part);
                }
            }
        }
        if let Some(bytes) = snapshot.blobs.get(RUNNING) {
            for batch in batches_from_ipc(bytes.clone())? {
                for (start, part) in split_by_time(batch, self.columns.state_start)? {
                    let period = self.periods.get_mut(&start).ok_or_else(|| {
                        EngineError::Execution(format!(
                            "checkpoint: CUMULATE state for a period starting {} that the checkpoint does not list",
                            rfc3339(start)
                        ))
                    })?;
                    period.running.push(part);
                }
            }
        }
        Ok(())
    }
}
