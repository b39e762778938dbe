//! TUMBLE and HOP: aggregates over fixed event-time windows, on
//! DataFusion's own accumulators.
//!
//! Each input batch gets its window columns, then DataFusion's `Partial`
//! aggregate turns it into accumulator state rows keyed by group and window.
//! State rows wait per window (a `BTreeMap` by window end, as in Arroyo's
//! tumbling window) until the watermark passes the window's end; then the
//! `Final` aggregate merges them and the projection above it computes the
//! output (e.g. VWAP = sum(price*size) / sum(size)). State rows are plain
//! Arrow batches, so they can be checkpointed as they are.
//!
//! A window's life, with the statement's clauses:
//!
//! ```text
//!  open ------------------------> closed ------------------------------> dropped
//!  (end > watermark)    watermark    (end + lateness > watermark)  watermark
//!  EMIT EVERY / ON UPDATE: passes    a row still arriving: one      passes end
//!  early rows of changed  end: the   correction per row, in row    + lateness: its
//!  windows (MAIN)         final row  order (MAIN)                  last revision (FINAL)
//!                         (MAIN)
//! ```
//! Without lateness a window is dropped as it closes, and its final row
//! goes to both outputs. Rows for a dropped window reach no window: they
//! are counted (`late_rows`) and, with `LATE DATA TO`, sent to the `LATE` output.
//!
//! # Layout
//! - this file: the operator and the window lifecycle;
//! - `assign`: rows to windows (open, closed within the lateness, gone);
//! - `revisions`: window identities and revision counts.

mod assign;
mod revisions;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, Int64Array, TimestampMillisecondArray};
use arrow::compute::filter_record_batch;
use arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::collect;
use engine_sql::{
    streaming_session, EmitPolicy, PlannedStatement, StreamPlan, WindowSpec, WINDOW_END,
    WINDOW_FINAL, WINDOW_REVISION,
};

use self::assign::assign_windows;
use self::revisions::{Identities, Identity, Revisions};
use super::late::{rfc3339, LateOutput};
use super::MAX_STATE_BATCHES;
use crate::checkpoint::{batches_from_ipc, batches_to_ipc, Snapshot};
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::StatementMetrics;
use crate::operator::{split_failed, Collector, Operator, RejectedRow, FINAL, MAIN};

/// A windowed `GROUP BY`.
pub struct WindowAggregate {
    plan: StreamPlan,
    spec: WindowSpec,
    emit: EmitPolicy,
    lateness_ms: i64,
    late: LateOutput,
    time_column: usize,
    /// The state columns: `window_end`, and the revision pseudo-columns if selected.
    state_window_end: usize,
    revision_columns: Option<(usize, usize)>,
    /// Window columns the operator adds to the input (2, or 4 with the revision ones).
    window_columns: usize,
    ids: Identities,
    /// Windows the watermark has not passed, by end time: their state rows.
    open: BTreeMap<EventTime, OpenWindow>,
    /// Windows the watermark has passed that still take late rows (allowed lateness).
    closed: BTreeMap<EventTime, ClosedWindow>,
    /// Windows ending at or before this are closed.
    watermark: Option<EventTime>,
    /// Windows ending at or before this are gone: rows for them are late.
    dropped_through: Option<EventTime>,
    /// Rows emitted per window, when the query selects `window_revision`.
    revisions: Revisions,
    task_ctx: Arc<TaskContext>,
    metrics: StatementMetrics,
}

/// A window the watermark has not passed.
#[derive(Default)]
struct OpenWindow {
    states: Vec<RecordBatch>,
    /// State rows since its last early emission (EMIT EVERY / ON UPDATE):
    /// their groups are the ones that changed.
    fresh: Vec<RecordBatch>,
}

/// A closed window kept for its allowed lateness.
#[derive(Default)]
struct ClosedWindow {
    states: Vec<RecordBatch>,
    /// Where each group's state rows are (batch, row), built when the first late row comes.
    index: Option<HashMap<Identity, Vec<(usize, usize)>>>,
    /// The rows it emitted when it closed: its last revision too, unless a
    /// late row came (then `index` is built) or it was restored.
    final_rows: Option<Vec<RecordBatch>>,
}

/// What an emission of windows is, which sets their revision pseudo-columns.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Emission {
    /// An early row of an open window (`window_final = false`).
    Early,
    /// The row when the watermark passes the window's end.
    Close,
    /// A correction after it; `had_final`: the group had a row in the window when it closed.
    Correction { had_final: bool },
    /// The last revision again, when the window's state is dropped.
    Last,
}

/// Rejected rows without their window columns, a HOP row once rather than
/// once per window: its copies are adjacent and fail alike, so a run of `n`
/// equal rejections stands for `ceil(n / copies)` records. `rejected` holds
/// one list per path a batch's copies took (open windows, closed ones within
/// the lateness): a record whose copies took both is counted across them.
fn without_window_copies(
    rejected: Vec<Vec<RejectedRow>>,
    copies: usize,
    window_columns: usize,
) -> Vec<RejectedRow> {
    let mut runs: Vec<(RejectedRow, usize)> = Vec::new();
    for (path, rejected) in rejected.into_iter().enumerate() {
        let first_of_path = runs.len();
        for r in rejected {
            let width = r.row.num_columns().saturating_sub(window_columns);
            let row = match r.row.project(&(0..width).collect::<Vec<_>>()) {
                Ok(row) => row,
                Err(_) => r.row,
            };
            // Later paths (rare: late rows of a HOP) look for the same record's run.
            let same = |x: &(RejectedRow, usize)| x.0.row == row && x.0.error == r.error;
            let last = runs.last().filter(|x| same(x)).map(|_| runs.len() - 1);
            let found = match path {
                0 => last,
                _ => runs[..first_of_path].iter().position(same).or(last),
            };
            match found {
                Some(i) => runs[i].1 += 1,
                None => runs.push((
                    RejectedRow {
                        row,
                        error: r.error,
                    },
                    1,
                )),
            }
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
        let held = self.open.len() + self.closed.len();
        (self.metrics.open_windows).sub(held as i64);
    }
}

impl WindowAggregate {
    /// The operator of a windowed statement.
    pub fn new(planned: &PlannedStatement, metrics: StatementMetrics) -> Result<Self> {
        let plan = planned.plan.clone();
        let missing =
            |what: &str| EngineError::Internal(format!("windowed plan has no {what} column"));
        let window = planned.window().ok_or_else(|| missing("window"))?;
        let time_column = plan
            .input_schema()
            .index_of(&window.time_column)
            .map_err(|_| missing(&window.time_column))?;
        let state_schema = plan.state_schema().ok_or_else(|| missing("state"))?;
        let state_window_end = state_schema
            .index_of(WINDOW_END)
            .map_err(|_| missing(WINDOW_END))?;
        let revision_columns = match window.revision_columns {
            true => Some((
                state_schema
                    .index_of(WINDOW_FINAL)
                    .map_err(|_| missing(WINDOW_FINAL))?,
                (state_schema.index_of(WINDOW_REVISION)).map_err(|_| missing(WINDOW_REVISION))?,
            )),
            false => None,
        };
        let identity_columns = (0..plan.group_count())
            .filter(|c| revision_columns.is_none_or(|(f, r)| *c != f && *c != r))
            .collect();
        let ids = Identities::new(&state_schema, identity_columns, state_window_end)?;
        let clauses = &planned.insert.clauses;
        let source_columns =
            plan.input_schema().fields().len() - if window.revision_columns { 4 } else { 2 };
        let late = LateOutput::new(planned, source_columns, time_column, metrics.clone())?;
        let spec = window.kind.fixed().ok_or_else(|| {
            EngineError::Internal("a fixed-window operator for another window kind".into())
        })?;
        Ok(Self {
            spec,
            emit: clauses.emit,
            lateness_ms: clauses.lateness_ms,
            late,
            time_column,
            state_window_end,
            revision_columns,
            window_columns: plan.input_schema().fields().len() - source_columns,
            ids,
            plan,
            open: BTreeMap::new(),
            closed: BTreeMap::new(),
            watermark: None,
            dropped_through: None,
            revisions: Revisions::default(),
            task_ctx: streaming_session().task_ctx(),
            metrics,
        })
    }

    /// Folds copies of open windows into their state; returns the rows the
    /// query could not compute (with their window columns).
    async fn fold(&mut self, windowed: RecordBatch) -> Result<Vec<RejectedRow>> {
        // Rows whose values the query cannot compute are set apart by
        // bisection (only when the batch fails); the others are folded in.
        let mut failed = Collector::default();
        let mut work = vec![windowed];
        let early = self.emit != EmitPolicy::OnWindowClose;
        while let Some(piece) = work.pop() {
            let plan = self.plan.partial_over(piece.clone())?;
            match collect(plan, Arc::clone(&self.task_ctx)).await {
                Ok(states) => {
                    for state in states {
                        self.add_open(state, early).await?;
                    }
                }
                Err(e) => split_failed(piece, e, &mut work, &mut failed)?,
            }
        }
        Ok(failed.take_rejected())
    }

    /// Folds copies of closed windows (within the lateness) one row at a
    /// time, in row order, each emitting its window's correction: so the
    /// revisions a window gets do not depend on how rows were batched, and
    /// a replay emits the same ones.
    async fn correct(
        &mut self,
        allowed: RecordBatch,
        out: &mut Collector,
    ) -> Result<Vec<RejectedRow>> {
        let mut failed = Collector::default();
        for i in 0..allowed.num_rows() {
            let row = allowed.slice(i, 1);
            let states = match collect(
                self.plan.partial_over(row.clone())?,
                Arc::clone(&self.task_ctx),
            )
            .await
            {
                Ok(states) => states,
                Err(e) => {
                    split_failed(row, e, &mut Vec::new(), &mut failed)?;
                    continue;
                }
            };
            for state in states.into_iter().filter(|s| s.num_rows() > 0) {
                for (end, part) in self.by_end(state)? {
                    let (rows, had_final) = self.add_closed(end, part).await?;
                    let emitted =
                        (self.emit_rows(rows, Emission::Correction { had_final })).await?;
                    emitted.into_iter().for_each(|b| out.emit_to(MAIN, b));
                }
            }
        }
        Ok(failed.take_rejected())
    }

    /// Adds a late state row (one window, one group) to closed window `end`;
    /// returns every state row of that group's window, for its correction,
    /// and whether the group had any when the window closed.
    async fn add_closed(
        &mut self,
        end: EventTime,
        state: RecordBatch,
    ) -> Result<(Vec<RecordBatch>, bool)> {
        if !self.closed.contains_key(&end) {
            // A window that had no state when it closed (no row yet) is kept from now
            // on, and emitted (its first row is this correction).
            (self.metrics.open_windows).add(1);
            self.metrics.windows_emitted.inc_by(1);
        }
        let window = self.closed.entry(end).or_default();
        if window.index.is_none() {
            if window.states.len() > 1 {
                let all = std::mem::take(&mut window.states);
                window.states =
                    collect(self.plan.reduce_over(all)?, Arc::clone(&self.task_ctx)).await?;
            }
            let mut index: HashMap<Identity, Vec<(usize, usize)>> = HashMap::new();
            for (b, batch) in window.states.iter().enumerate() {
                let ids = self.ids.of(batch)?;
                for r in 0..batch.num_rows() {
                    index
                        .entry(ids.row(r).as_ref().into())
                        .or_default()
                        .push((b, r));
                }
            }
            window.index = Some(index);
        }
        let index = window.index.as_mut().expect("built above");
        let ids = self.ids.of(&state)?;
        let id: Identity = ids.row(0).as_ref().into();
        window.states.push(state);
        let at = index.entry(id).or_default();
        let had_final = !at.is_empty();
        at.push((window.states.len() - 1, 0));
        let rows = at.iter().map(|&(b, r)| window.states[b].slice(r, 1));
        Ok((rows.collect(), had_final))
    }

    /// Emits, in window order, every open window the watermark has passed,
    /// then drops the closed windows it has passed by more than the lateness.
    async fn advance(&mut self, watermark: EventTime, out: &mut Collector) -> Result<()> {
        if self.watermark.is_some_and(|w| watermark <= w) {
            return Ok(());
        }
        self.watermark = Some(watermark);
        let drop_through = watermark.saturating_sub(self.lateness_ms);
        let still_open = self.open.split_off(&watermark.saturating_add(1));
        let closing = std::mem::replace(&mut self.open, still_open);
        // Windows closed before go first: their last revisions end before these.
        self.drop_closed(drop_through, out).await?;
        for (end, window) in closing {
            let rows = self
                .emit_rows(window.states.clone(), Emission::Close)
                .await?;
            self.metrics.windows_emitted.inc_by(1);
            if end <= drop_through {
                // No later revision can come: final as it is.
                rows.into_iter().for_each(|b| out.emit(b));
                self.metrics.open_windows.sub(1);
            } else {
                rows.iter().for_each(|b| out.emit_to(MAIN, b.clone()));
                let closed = ClosedWindow {
                    states: window.states,
                    index: None,
                    final_rows: Some(rows),
                };
                self.closed.insert(end, closed);
            }
        }
        self.revisions.drop_through(drop_through);
        self.dropped_through = Some(
            self.dropped_through
                .map_or(drop_through, |d| d.max(drop_through)),
        );
        Ok(())
    }

    /// Drops the closed windows ending at or before `through`, emitting
    /// each one's last revision on the `FINAL` output.
    async fn drop_closed(&mut self, through: EventTime, out: &mut Collector) -> Result<()> {
        let kept = self.closed.split_off(&through.saturating_add(1));
        let dropped = std::mem::replace(&mut self.closed, kept);
        for (_, window) in dropped {
            let rows = match (window.index, window.final_rows) {
                (None, Some(rows)) => rows, // no late row since it closed
                _ => self.emit_rows(window.states, Emission::Last).await?,
            };
            rows.into_iter().for_each(|b| out.emit_to(FINAL, b));
            self.metrics.open_windows.sub(1);
        }
        Ok(())
    }

    /// Emits every window at the end of a bounded input. End of data is
    /// not a point in time, so the watermark left behind (and checkpointed)
    /// is the end of the last window emitted: a later run goes on from there,
    /// treating the windows emitted now as gone and every later one as open.
    /// (Left at the end of time, it made every row of the next run late.)
    async fn finish(&mut self, out: &mut Collector) -> Result<()> {
        let last_end = [self.open.keys().next_back(), self.closed.keys().next_back()]
            .into_iter()
            .flatten()
            .max()
            .copied();
        let before = self.watermark;
        let lateness = std::mem::replace(&mut self.lateness_ms, 0);
        let advanced = self.advance(EventTime::MAX, out).await;
        self.lateness_ms = lateness;
        advanced?;
        let end = match (before, last_end) {
            (Some(w), Some(end)) => Some(w.max(end)),
            (w, end) => w.or(end),
        };
        self.watermark = end;
        self.dropped_through = end;
        Ok(())
    }

    /// Emits the current row of every open window that changed since its
    /// last early row (EMIT EVERY / ON UPDATE).
    async fn emit_early(&mut self, out: &mut Collector) -> Result<()> {
        let mut due = Vec::new();
        for window in self.open.values_mut().filter(|w| !w.fresh.is_empty()) {
            let mut changed: HashSet<Identity> = HashSet::new();
            for fresh in std::mem::take(&mut window.fresh) {
                let ids = self.ids.of(&fresh)?;
                changed.extend(ids.iter().map(|r| Identity::from(r.as_ref())));
            }
            let mut states = Vec::with_capacity(window.states.len());
            for batch in &window.states {
                let ids = self.ids.of(batch)?;
                let keep: BooleanArray = ids
                    .iter()
                    .map(|r| Some(changed.contains(r.as_ref())))
                    .collect();
                states.push(filter_record_batch(batch, &keep)?);
            }
            due.push(states);
        }
        // One window at a time, in window order: its groups' rows are computed together.
        for states in due {
            for b in self.emit_rows(states, Emission::Early).await? {
                out.emit_to(MAIN, b);
            }
        }
        Ok(())
    }

    /// The output rows of windows' state rows, revision pseudo-columns set.
    async fn emit_rows(
        &mut self,
        states: Vec<RecordBatch>,
        emission: Emission,
    ) -> Result<Vec<RecordBatch>> {
        let states = self.with_revisions(states, emission)?;
        if states.iter().all(|s| s.num_rows() == 0) {
            return Ok(Vec::new());
        }
        let rows = collect(self.plan.final_over(states)?, Arc::clone(&self.task_ctx)).await?;
        Ok(rows.into_iter().filter(|b| b.num_rows() > 0).collect())
    }

    /// `states` with `window_final` and `window_revision` set for `emission`
    /// (the same for every state row of one window), when the query selects them.
    fn with_revisions(
        &mut self,
        states: Vec<RecordBatch>,
        emission: Emission,
    ) -> Result<Vec<RecordBatch>> {
        let Some((final_column, revision_column)) = self.revision_columns else {
            return Ok(states);
        };
        let mut assigned: HashMap<Identity, i64> = HashMap::new();
        let mut out = Vec::with_capacity(states.len());
        for batch in states.into_iter().filter(|b| b.num_rows() > 0) {
            let ends = window_ends(&batch, self.state_window_end)?;
            let revision = if emission == Emission::Close
                && ends.values().iter().all(|&e| !self.revisions.any_at(e))
            {
                // A window emitted for the first time: revision 0 for every group.
                vec![0; batch.num_rows()]
            } else {
                let ids = self.ids.of(&batch)?;
                let mut revision = Vec::with_capacity(batch.num_rows());
                for r in 0..batch.num_rows() {
                    let (id, end) = (ids.row(r), ends.value(r));
                    let n = match assigned.get(id.as_ref()) {
                        Some(n) => *n,
                        None => {
                            let n = self.revisions.of(emission, end, id.as_ref());
                            assigned.insert(id.as_ref().into(), n);
                            n
                        }
                    };
                    revision.push(n);
                }
                revision
            };
            let mut columns: Vec<ArrayRef> = batch.columns().to_vec();
            columns[final_column] = Arc::new(BooleanArray::from(vec![
                emission != Emission::Early;
                batch.num_rows()
            ]));
            columns[revision_column] = Arc::new(Int64Array::from(revision));
            out.push(RecordBatch::try_new(batch.schema(), columns)?);
        }
        Ok(out)
    }

    /// Splits state rows by their window's end.
    fn by_end(&self, state: RecordBatch) -> Result<Vec<(EventTime, RecordBatch)>> {
        super::split_by_time(state, self.state_window_end)
    }

    /// Files state rows under their open window(s), folding a window's
    /// state when it grows long; `fresh`: they count as a change for early rows.
    async fn add_open(&mut self, state: RecordBatch, fresh: bool) -> Result<()> {
        if state.num_rows() == 0 {
            return Ok(());
        }
        for (end, part) in self.by_end(state)? {
            if !self.open.contains_key(&end) {
                self.metrics.open_windows.add(1);
            }
            let window = self.open.entry(end).or_default();
            if fresh {
                window.fresh.push(part.clone());
            }
            window.states.push(part);
            if window.states.len() >= MAX_STATE_BATCHES {
                let all = std::mem::take(&mut window.states);
                let folded =
                    collect(self.plan.reduce_over(all)?, Arc::clone(&self.task_ctx)).await?;
                self.open.get_mut(&end).expect("present").states = folded;
            }
        }
        Ok(())
    }

    /// Counts copies that missed their window, and sends the rows that
    /// reached none to the late output.
    fn late(
        &mut self,
        batch: &RecordBatch,
        dropped: u64,
        rows: &[u32],
        out: &mut Collector,
    ) -> Result<()> {
        let (spec, lateness_ms) = (self.spec, self.lateness_ms);
        let reason = |t: EventTime| {
            let last_end = spec.first_start(t)
                + (spec.windows_per_record() - 1) * spec.slide_ms
                + spec.size_ms;
            let which = match spec.windows_per_record() {
                1 => "its window".to_string(),
                n => format!("all {n} of its windows"),
            };
            format!(
                "window closed: {which} (ending by {}) had passed window_end + lateness ({lateness_ms} ms) before the row arrived",
                rfc3339(last_end)
            )
        };
        let watermark = self.watermark.or(self.dropped_through);
        self.late
            .record(batch, dropped, rows, watermark, &reason, out)
    }
}

/// The `window_end` column of state rows.
fn window_ends(state: &RecordBatch, column: usize) -> Result<&TimestampMillisecondArray> {
    super::times(state, column)
}

/// The blobs of a window aggregate's snapshot: open windows' state rows,
/// closed windows' (kept for lateness), and revision counts.
const WINDOWS: &str = "windows.arrow";
const CLOSED: &str = "closed.arrow";
const REVISIONS: &str = "revisions.arrow";

#[async_trait::async_trait]
impl Operator for WindowAggregate {
    /// Folds a batch into the state of the windows it touches; rows the
    /// query could not compute are set apart (each input row once).
    async fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let assigned = assign_windows(
            &batch,
            self.time_column,
            self.spec,
            self.revision_columns.is_some(),
            self.watermark,
            self.dropped_through,
        )?;
        self.late(&batch, assigned.dropped, &assigned.late_rows, out)?;
        let mut rejected = Vec::new();
        if assigned.on_time.num_rows() > 0 {
            rejected.push(self.fold(assigned.on_time).await?);
        }
        if assigned.allowed.num_rows() > 0 {
            rejected.push(self.correct(assigned.allowed, out).await?);
        }
        let copies = self.spec.windows_per_record() as usize;
        for r in without_window_copies(rejected, copies, self.window_columns) {
            out.reject(r);
        }
        if self.emit == EmitPolicy::OnUpdate {
            self.emit_early(out).await?;
        }
        Ok(())
    }

    async fn handle_watermark(&mut self, watermark: EventTime, out: &mut Collector) -> Result<()> {
        self.advance(watermark, out).await
    }

    fn tick_interval(&self) -> Option<std::time::Duration> {
        match self.emit {
            EmitPolicy::Every { interval_ms } => {
                Some(std::time::Duration::from_millis(interval_ms as u64))
            }
            _ => None,
        }
    }

    async fn handle_tick(&mut self, out: &mut Collector) -> Result<()> {
        self.emit_early(out).await
    }

    async fn handle_end_of_data(&mut self, out: &mut Collector) -> Result<()> {
        self.finish(out).await
    }

    /// Its watermarks, every open and closed window's accumulator rows (each
    /// row carries its `window_end`) and the revision counts, as Arrow IPC.
    fn snapshot(&self) -> Result<Snapshot> {
        let mut snapshot = Snapshot::meta(serde_json::json!({
            "watermark": self.watermark,
            "dropped_through": self.dropped_through,
        }));
        let open: Vec<RecordBatch> = self.open.values().flat_map(|w| w.states.clone()).collect();
        let closed: Vec<RecordBatch> = self
            .closed
            .values()
            .flat_map(|w| w.states.clone())
            .collect();
        let revisions: Vec<RecordBatch> = self.revisions.to_batch(&self.ids)?.into_iter().collect();
        for (name, rows) in [(WINDOWS, open), (CLOSED, closed), (REVISIONS, revisions)] {
            if let Some(bytes) = batches_to_ipc(&rows)? {
                snapshot.blobs.insert(name.to_string(), bytes.into());
            }
        }
        Ok(snapshot)
    }

    async fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        self.watermark = snapshot.meta.get("watermark").and_then(|w| w.as_i64());
        // Checkpoints from before lateness existed: every closed window was gone.
        self.dropped_through = match snapshot.meta.get("dropped_through") {
            Some(d) => d.as_i64(),
            None => self.watermark,
        };
        // Which windows changed since their last early row is not checkpointed:
        // every restored one counts as changed, so none misses its early row.
        let early = self.emit != EmitPolicy::OnWindowClose;
        if let Some(bytes) = snapshot.blobs.get(WINDOWS) {
            for batch in batches_from_ipc(bytes.clone())? {
                self.add_open(batch, early).await?;
            }
        }
        if let Some(bytes) = snapshot.blobs.get(CLOSED) {
            for batch in batches_from_ipc(bytes.clone())? {
                for (end, part) in self.by_end(batch)? {
                    if !self.closed.contains_key(&end) {
                        self.metrics.open_windows.add(1);
                    }
                    self.closed.entry(end).or_default().states.push(part);
                }
            }
        }
        if let Some(bytes) = snapshot.blobs.get(REVISIONS) {
            for batch in batches_from_ipc(bytes.clone())? {
                self.revisions.restore(&self.ids, &batch)?;
            }
        }
        Ok(())
    }
}
