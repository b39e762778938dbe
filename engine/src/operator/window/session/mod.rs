//! SESSION: per group key, rows less than a gap apart form a session,
//! which ends `gap` after its last row. Each row is labelled with its own
//! proto-session `[ts, ts + gap)`; after DataFusion's `Partial` aggregate
//! the labels of each key are merged where they overlap or touch (Flink's
//! merging windows) into the open [`Sessions`], and state rows are
//! relabelled with their session's bounds (a label's start always lies in
//! its session, so that lookup survives later merges). When the watermark
//! passes a session's end, its state rows are computed into its row.
//!
//! Sessions never cross a multiple of `max_length` (UTC midnight for the
//! 1-day default): a row after that boundary starts a new one.
//!
//! A row whose proto-session ends at or before the watermark is late
//! unless it touches a session still open (then it joins that one): these
//! rare rows are labelled one at a time, to know each one's key.

mod sessions;

use std::sync::Arc;

use arrow::array::{ArrayRef, BooleanArray, UInt32Array};
use arrow::compute::{filter_record_batch, take_record_batch};
use arrow::record_batch::RecordBatch;
use arrow::row::{RowConverter, Rows, SortField};
use datafusion::execution::TaskContext;
use engine_sql::{streaming_session, PlannedStatement, SessionSpec, StreamPlan};

use self::sessions::Sessions;
use super::late::{rfc3339, LateOutput};
use super::{
    event_times, final_rows, labelled, partial_states, reduced, relabelled, time_column, times,
    Columns, MAX_STATE_BATCHES,
};
use crate::checkpoint::{batches_from_ipc, batches_to_ipc, Snapshot};
use crate::error::{EngineError, Result};
use crate::message::EventTime;
use crate::metrics::StatementMetrics;
use crate::operator::{Collector, Operator};

/// State rows are folded into one per session once there are more than
/// this many per open session (and at least `MIN_FOLD_ROWS`): a watermark
/// relabels the rows of sessions that may close, so their count must stay
/// near the sessions' own.
const ROWS_PER_SESSION: usize = 2;
const MIN_FOLD_ROWS: usize = 4096;

/// State rows kept together at most (sorted by session end when more come at once).
const CHUNK_ROWS: usize = 1024;

/// A `GROUP BY ..., SESSION(ts, gap[, max_length])`.
pub(crate) struct SessionAggregate {
    plan: StreamPlan,
    spec: SessionSpec,
    columns: Columns,
    /// The group key's columns of state rows in row format (`None`: no key
    /// besides the session, every row has the same one).
    keys: Option<RowConverter>,
    late: LateOutput,
    sessions: Sessions,
    /// State rows of the open sessions, each labelled with bounds inside
    /// its session, with the earliest label end among them: merges only
    /// extend sessions, so no row of a batch can be in a session ending
    /// before that, and a watermark below it needs no look at the batch.
    states: Vec<(RecordBatch, EventTime)>,
    /// Sessions ending at or before this have been emitted.
    watermark: Option<EventTime>,
    task_ctx: Arc<TaskContext>,
    metrics: StatementMetrics,
}

/// The blob of its snapshot: open sessions' state rows, labelled with their bounds.
const SESSIONS: &str = "sessions.arrow";

/// A stopped operator's sessions are no longer open here.
impl Drop for SessionAggregate {
    fn drop(&mut self) {
        (self.metrics.open_windows).sub(self.sessions.len() as i64);
    }
}

impl SessionAggregate {
    /// The operator of a statement grouped by `SESSION`.
    pub fn new(
        planned: &PlannedStatement,
        spec: SessionSpec,
        metrics: StatementMetrics,
    ) -> Result<Self> {
        let columns = Columns::of(planned)?;
        let state = planned
            .plan
            .state_schema()
            .ok_or_else(|| EngineError::Internal("windowed plan has no state".into()))?;
        let keys = match columns.key.is_empty() {
            true => None,
            false => Some(RowConverter::new(
                (columns.key.iter())
                    .map(|&c| SortField::new(state.field(c).data_type().clone()))
                    .collect(),
            )?),
        };
        Ok(Self {
            plan: planned.plan.clone(),
            spec,
            keys,
            late: LateOutput::new(planned, columns.source, columns.time, metrics.clone())?,
            columns,
            sessions: Sessions::default(),
            states: Vec::new(),
            watermark: None,
            task_ctx: streaming_session().task_ctx(),
            metrics,
        })
    }

    /// The group keys of state rows, in row format.
    fn keys_of(&self, state: &RecordBatch) -> Result<Option<Rows>> {
        let Some(converter) = &self.keys else {
            return Ok(None);
        };
        let columns: Vec<ArrayRef> = (self.columns.key.iter())
            .map(|&c| Arc::clone(state.column(c)))
            .collect();
        Ok(Some(converter.convert_columns(&columns)?))
    }

    /// Merges state rows' labels into the open sessions (counting new ones).
    fn merge_labels(&mut self, state: &RecordBatch) -> Result<()> {
        let keys = self.keys_of(state)?;
        let starts = times(state, self.columns.state_start)?;
        let ends = times(state, self.columns.state_end)?;
        let before = self.sessions.len();
        for r in 0..state.num_rows() {
            let key = keys.as_ref().map_or(&[][..], |k| k.row(r).data());
            let start = starts.value(r);
            self.sessions
                .add(key, self.spec.span_of(start), start, ends.value(r));
        }
        let opened = self.sessions.len() as i64 - before as i64;
        self.metrics.open_windows.add(opened);
        Ok(())
    }

    /// State rows relabelled with their sessions' bounds as they are now.
    fn with_session_bounds(&self, state: &RecordBatch) -> Result<RecordBatch> {
        let keys = self.keys_of(state)?;
        let labels = times(state, self.columns.state_start)?;
        let n = state.num_rows();
        let (mut starts, mut ends) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for r in 0..n {
            let key = keys.as_ref().map_or(&[][..], |k| k.row(r).data());
            let t = labels.value(r);
            let (s, e) = self
                .sessions
                .holding(key, self.spec.span_of(t), t)
                .ok_or_else(|| {
                    EngineError::Internal("a session state row has no open session".into())
                })?;
            starts.push(s);
            ends.push(e);
        }
        relabelled(state, &self.columns, time_column(starts), time_column(ends))
    }

    /// Adds state rows of rows that joined open sessions: labels merged,
    /// rows relabelled and folded per session.
    async fn add_states(&mut self, states: Vec<RecordBatch>) -> Result<()> {
        if states.is_empty() {
            return Ok(());
        }
        for state in &states {
            self.merge_labels(state)?;
        }
        let states = states
            .iter()
            .map(|s| self.with_session_bounds(s))
            .collect::<Result<Vec<_>>>()?;
        for state in reduced(&self.plan, &self.task_ctx, states).await? {
            self.keep(state)?;
        }
        let rows: usize = self.states.iter().map(|(s, _)| s.num_rows()).sum();
        let many = MIN_FOLD_ROWS.max(ROWS_PER_SESSION * self.sessions.len());
        if rows > many || self.states.len() > MAX_STATE_BATCHES * 4 {
            let all = std::mem::take(&mut self.states)
                .iter()
                .map(|(s, _)| self.with_session_bounds(s))
                .collect::<Result<Vec<_>>>()?;
            for state in reduced(&self.plan, &self.task_ctx, all).await? {
                self.keep(state)?;
            }
        }
        Ok(())
    }

    /// Keeps state rows of open sessions, with their earliest label end;
    /// many rows are sorted by it and kept in chunks, so that a watermark
    /// looks at the rows of the sessions closing first, not at all of them.
    fn keep(&mut self, state: RecordBatch) -> Result<()> {
        let ends = times(&state, self.columns.state_end)?;
        if state.num_rows() <= CHUNK_ROWS {
            if let Some(first_end) = arrow::compute::min(ends) {
                self.states.push((state, first_end));
            }
            return Ok(());
        }
        let order = arrow::compute::sort_to_indices(ends, None, None)?;
        let sorted = take_record_batch(&state, &order)?;
        for offset in (0..sorted.num_rows()).step_by(CHUNK_ROWS) {
            let chunk = sorted.slice(offset, CHUNK_ROWS.min(sorted.num_rows() - offset));
            let first_end = times(&chunk, self.columns.state_end)?.value(0);
            self.states.push((chunk, first_end));
        }
        Ok(())
    }

    /// Emits every session ending at or before `watermark`; returns the
    /// latest end emitted.
    async fn advance(
        &mut self,
        watermark: EventTime,
        out: &mut Collector,
    ) -> Result<Option<EventTime>> {
        if self.watermark.is_some_and(|w| watermark <= w) {
            return Ok(None);
        }
        self.watermark = Some(watermark);
        if self.sessions.first_end().is_none_or(|end| end > watermark) {
            return Ok(None);
        }
        let mut closing = Vec::new();
        for (state, first_end) in std::mem::take(&mut self.states) {
            if first_end > watermark {
                self.states.push((state, first_end));
                continue;
            }
            let state = self.with_session_bounds(&state)?;
            let ends = times(&state, self.columns.state_end)?;
            let done: BooleanArray = ends.iter().map(|e| e.map(|e| e <= watermark)).collect();
            closing.push(filter_record_batch(&state, &done)?);
            self.keep(filter_record_batch(&state, &arrow::compute::not(&done)?)?)?;
        }
        let ranked = self.by_rank(closing, watermark)?;
        let (closed, last_end) = self.sessions.close_through(watermark);
        self.metrics.open_windows.sub(closed as i64);
        self.metrics.windows_emitted.inc_by(closed as u64);
        for states in ranked {
            for rows in final_rows(&self.plan, &self.task_ctx, states).await? {
                out.emit(rows);
            }
        }
        Ok(last_end)
    }

    /// Closing state rows (with their sessions' bounds) in rounds: a key's
    /// first closing session in the first, its second in the next, ... so
    /// that each key's sessions come out in the order they end. (One round,
    /// unless a watermark closes more than one session of a key.)
    fn by_rank(
        &self,
        closing: Vec<RecordBatch>,
        watermark: EventTime,
    ) -> Result<Vec<Vec<RecordBatch>>> {
        let Some(ranks) = self.sessions.closing_ranks(watermark) else {
            return Ok(vec![closing]);
        };
        let Some(first) = closing.first() else {
            return Ok(Vec::new());
        };
        let all = arrow::compute::concat_batches(&first.schema(), &closing)?;
        let keys = self.keys_of(&all)?;
        let starts = times(&all, self.columns.state_start)?;
        let mut rank = Vec::with_capacity(all.num_rows());
        for r in 0..all.num_rows() {
            let key = keys.as_ref().map_or(&[][..], |k| k.row(r).data());
            let slot = self.sessions.slot_of(key);
            let at = slot.and_then(|slot| ranks.get(&(slot, starts.value(r))));
            rank.push(*at.ok_or_else(|| {
                EngineError::Internal("a closing session state row has no closing session".into())
            })? as u32);
        }
        // Sorted by rank once, then cut where the rank changes: a round per rank.
        let rank = UInt32Array::from(rank);
        let order = arrow::compute::sort_to_indices(&rank, None, None)?;
        let (sorted, ranks) = (
            take_record_batch(&all, &order)?,
            arrow::compute::take(&rank, &order, None)?,
        );
        let ranks = ranks
            .as_any()
            .downcast_ref::<UInt32Array>()
            .expect("taken from a UInt32Array");
        let mut rounds = Vec::new();
        let mut from = 0;
        for i in 1..=sorted.num_rows() {
            if i == sorted.num_rows() || ranks.value(i) != ranks.value(from) {
                rounds.push(vec![sorted.slice(from, i - from)]);
                from = i;
            }
        }
        Ok(rounds)
    }

    /// Adds the rows `rows` of `batch` (each of whose proto-session ends after
    /// the watermark) to their keys' sessions.
    async fn add_rows(
        &mut self,
        batch: &RecordBatch,
        rows: Vec<u32>,
        out: &mut Collector,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let rows = match rows.len() == batch.num_rows() {
            true => batch.clone(),
            false => take_record_batch(batch, &UInt32Array::from(rows))?,
        };
        let (states, rejected) = partial_states(
            &self.plan,
            &self.task_ctx,
            self.label(&rows)?,
            self.columns.source,
        )
        .await?;
        rejected.into_iter().for_each(|r| out.reject(r));
        self.add_states(states).await
    }

    /// Source rows with their proto-sessions `[ts, ts + gap)` as window labels.
    fn label(&self, rows: &RecordBatch) -> Result<RecordBatch> {
        let ts = event_times(rows, self.columns.time)?;
        let ends = ts.iter().map(|&t| self.spec.proto_end(t)).collect();
        labelled(rows, ts.to_vec(), ends)
    }

    /// Row `row` of `batch`, whose proto-session ends at or before the
    /// watermark: it joins an open session of its key that it touches;
    /// returns false if there is none (it is late).
    async fn add_if_touching(
        &mut self,
        batch: &RecordBatch,
        row: usize,
        out: &mut Collector,
    ) -> Result<bool> {
        let one = self.label(&batch.slice(row, 1))?;
        let (states, rejected) =
            partial_states(&self.plan, &self.task_ctx, one, self.columns.source).await?;
        let dead_lettered = !rejected.is_empty();
        rejected.into_iter().for_each(|r| out.reject(r));
        let Some(state) = states.into_iter().find(|s| s.num_rows() > 0) else {
            // Filtered out by WHERE: late, as rows far behind are (decided without the query).
            return Ok(dead_lettered);
        };
        let keys = self.keys_of(&state)?;
        let key = keys.as_ref().map_or(&[][..], |k| k.row(0).data());
        let t = times(&state, self.columns.state_start)?.value(0);
        let touching = self
            .sessions
            .touches(key, self.spec.span_of(t), t, self.spec.proto_end(t));
        if touching {
            self.add_states(vec![state]).await?;
        }
        Ok(touching)
    }
}

#[async_trait::async_trait]
impl Operator for SessionAggregate {
    /// Labels rows with their proto-sessions and merges them into their
    /// keys' sessions; rows that can join no open session go to the late output.
    ///
    /// Rows are taken in their order: a row behind the watermark can join a
    /// session that the rows before it (in this batch too) opened, not one
    /// opened by rows after it. Runs of rows ahead of it are folded together.
    async fn process_batch(&mut self, batch: RecordBatch, out: &mut Collector) -> Result<()> {
        let ts = event_times(&batch, self.columns.time)?.to_vec();
        let watermark = self.watermark.unwrap_or(EventTime::MIN);
        let (mut run, mut run_first) = (Vec::new(), EventTime::MAX);
        let mut gone = Vec::new();
        for (row, &t) in ts.iter().enumerate() {
            let end = self.spec.proto_end(t);
            if end > watermark {
                run.push(row as u32);
                run_first = run_first.min(t);
                continue;
            }
            // No session (open, or to be opened by the run so far) starts early enough to touch it.
            let first_start = self.sessions.first_start().unwrap_or(EventTime::MAX);
            if end < first_start.min(run_first) {
                gone.push(row as u32);
                continue;
            }
            self.add_rows(&batch, std::mem::take(&mut run), out).await?;
            run_first = EventTime::MAX;
            if !self.add_if_touching(&batch, row, out).await? {
                gone.push(row as u32);
            }
        }
        self.add_rows(&batch, run, out).await?;
        let gap = self.spec.gap_ms;
        let reason = |t: EventTime| {
            format!(
                "session closed: the row's session would have ended at {} (gap {gap} ms), which the watermark had passed, and no open session of its key was within the gap",
                rfc3339(t.saturating_add(gap))
            )
        };
        self.late.record(
            &batch,
            gone.len() as u64,
            &gone,
            self.watermark,
            &reason,
            out,
        )
    }

    async fn handle_watermark(&mut self, watermark: EventTime, out: &mut Collector) -> Result<()> {
        self.advance(watermark, out).await.map(|_| ())
    }

    /// Emits every session; the watermark left behind is the end of the
    /// last one emitted, so a later run goes on from there.
    async fn handle_end_of_data(&mut self, out: &mut Collector) -> Result<()> {
        let before = self.watermark;
        let last_end = self.advance(EventTime::MAX, out).await?;
        self.watermark = match (before, last_end) {
            (Some(w), Some(end)) => Some(w.max(end)),
            (w, end) => w.or(end),
        };
        Ok(())
    }

    /// Its watermark and the open sessions' state rows, labelled with their
    /// sessions' bounds, as Arrow IPC: the sessions are rebuilt from the labels.
    fn snapshot(&self) -> Result<Snapshot> {
        let mut snapshot = Snapshot::meta(serde_json::json!({ "watermark": self.watermark }));
        let states = (self.states.iter())
            .map(|(s, _)| self.with_session_bounds(s))
            .collect::<Result<Vec<_>>>()?;
        if let Some(bytes) = batches_to_ipc(&states)? {
            snapshot.blobs.insert(SESSIONS.to_string(), bytes.into());
        }
        Ok(snapshot)
    }

    async fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        self.watermark = snapshot.meta.get("watermark").and_then(|w| w.as_i64());
        if let Some(bytes) = snapshot.blobs.get(SESSIONS) {
            let states = batches_from_ipc(bytes.clone())?;
            for state in states {
                self.merge_labels(&state)?;
                self.keep(state)?;
            }
        }
        Ok(())
    }
}
