//! Event time: evaluating a table's `WATERMARK` expression over batches, and
//! combining per-partition watermarks (minimum over the partitions that are
//! not idle), as Flink and Arroyo do; and, when every partition has gone
//! quiet (`watermark.idle_advance`), advancing it with the wall clock.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, TimestampMillisecondArray};
use arrow::compute::{cast, max};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;
use engine_sql::{timestamp_type, TableDef};

use crate::error::{EngineError, Result};
use crate::message::EventTime;

/// A table's compiled `WATERMARK FOR col AS expr`.
#[derive(Debug, Clone)]
pub struct WatermarkExpr {
    expr: Arc<dyn PhysicalExpr>,
}

impl WatermarkExpr {
    /// Compiles the watermark of `table` (declared in job file `file`) against
    /// the decoded batch `schema`; `None` when the table declares no watermark.
    pub fn for_table(file: &str, table: &TableDef, schema: &SchemaRef) -> Result<Option<Self>> {
        let Some(w) = &table.watermark else {
            return Ok(None);
        };
        let config_err = |m: String| {
            EngineError::Config(engine_sql::SqlError {
                file: file.to_string(),
                line: table.line,
                message: format!("table `{}`: {m}", table.name),
            })
        };
        let ctx = SessionContext::new();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let invalid = |e: datafusion::error::DataFusionError| {
            config_err(format!(
                "WATERMARK expression `{}`: {}",
                w.expr,
                e.strip_backtrace()
            ))
        };
        let expr = ctx.parse_sql_expr(&w.expr, &df_schema).map_err(invalid)?;
        let expr = ctx
            .create_physical_expr(expr, &df_schema)
            .map_err(invalid)?;
        if !matches!(
            expr.data_type(schema).map_err(invalid)?,
            arrow::datatypes::DataType::Timestamp(..)
        ) {
            return Err(config_err(format!(
                "WATERMARK expression `{}` must give a TIMESTAMP",
                w.expr
            )));
        }
        Ok(Some(Self { expr }))
    }

    /// The largest watermark `batch` implies, if it has rows.
    pub fn max_over(&self, batch: &RecordBatch) -> Result<Option<EventTime>> {
        let values = self.expr.evaluate(batch)?.into_array(batch.num_rows())?;
        let values = cast(&values, &timestamp_type())?;
        let values = values
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .ok_or_else(|| EngineError::Internal("watermark did not cast to ms".into()))?;
        Ok(max(values))
    }
}

/// Per-partition watermarks and their combination.
#[derive(Debug)]
pub struct WatermarkTracker {
    partitions: BTreeMap<i32, PartitionClock>,
    idle_timeout: Duration,
    idle_advance: Option<Duration>,
    /// The watermark the last silence advanced to: every clock is at least this.
    floor: Option<EventTime>,
    /// `floor` when the last record arrived: a silence advances from there at
    /// least (a stray old record after a silence does not set it back).
    floor_at_activity: Option<EventTime>,
    emitted: Option<EventTime>,
}

#[derive(Debug)]
struct PartitionClock {
    watermark: Option<EventTime>,
    last_active: Instant,
    finished: bool,
}

impl WatermarkTracker {
    /// A tracker in which a partition without data for `idle_timeout` stops holding others back.
    pub fn new(idle_timeout: Duration) -> Self {
        Self {
            partitions: BTreeMap::new(),
            idle_timeout,
            idle_advance: None,
            floor: None,
            floor_at_activity: None,
            emitted: None,
        }
    }

    /// Once every partition has been silent for `after`, the watermark goes
    /// on from the newest partition watermark as fast as the wall clock
    /// (event time is taken to keep pace with it while nothing arrives), and
    /// every partition's clock with it. A record that then arrives for a
    /// window it closed is late: the price of closing the last windows of a
    /// day without waiting for the next day's first trade.
    pub fn with_idle_advance(mut self, after: Option<Duration>) -> Self {
        self.idle_advance = after;
        self
    }

    /// Starts tracking `partition` (on assignment): until it has data or
    /// turns idle, it holds the watermark back.
    pub fn assign(&mut self, partition: i32, now: Instant) {
        self.partitions.entry(partition).or_insert(PartitionClock {
            watermark: None,
            last_active: now,
            finished: false,
        });
    }

    /// Records that `partition` had data implying watermark `wm` at `now`.
    pub fn observe(&mut self, partition: i32, wm: Option<EventTime>, now: Instant) {
        self.assign(partition, now);
        self.floor_at_activity = self.floor;
        let clock = self.partitions.get_mut(&partition).expect("assigned above");
        clock.last_active = now;
        if let Some(wm) = wm {
            clock.watermark = Some(clock.watermark.map_or(wm, |old| old.max(wm)));
        }
    }

    /// Each partition's clock (its own watermark), for a checkpoint.
    pub fn clocks(&self) -> BTreeMap<i32, EventTime> {
        self.partitions
            .iter()
            .filter_map(|(&p, c)| Some((p, c.watermark.max(self.floor)?)))
            .collect()
    }

    /// Sets the clocks of assigned partitions from a checkpoint, so event time
    /// goes on after a restore as it would have without one: a partition whose
    /// records after the checkpoint are older than those before it does not
    /// pull the watermark back, and one without new records yet does not
    /// hold it back.
    pub fn restore(&mut self, clocks: &BTreeMap<i32, EventTime>, now: Instant) {
        for (&p, &wm) in clocks {
            if self.partitions.contains_key(&p) {
                self.observe(p, Some(wm), now);
            }
        }
    }

    /// Marks `partition` as exhausted (bounded mode): it no longer holds the watermark back.
    pub fn finish(&mut self, partition: i32) {
        if let Some(clock) = self.partitions.get_mut(&partition) {
            clock.finished = true;
        }
    }

    /// With `idle_advance`, when every partition has been silent that long:
    /// the newest partition watermark (or the level the last silence reached,
    /// if higher) plus the time since the last record. Every partition's
    /// clock counts as raised to it (so a checkpoint keeps it).
    fn advanced(&mut self, now: Instant) -> Option<EventTime> {
        let advanced = self.silence(now)?;
        self.floor = Some(self.floor.map_or(advanced, |f| f.max(advanced)));
        Some(advanced)
    }

    fn silence(&self, now: Instant) -> Option<EventTime> {
        let after = self.idle_advance?;
        let open = || self.partitions.values().filter(|c| !c.finished);
        let last_active = open().map(|c| c.last_active).max()?;
        let silent = now.saturating_duration_since(last_active);
        if silent < after {
            return None;
        }
        let newest = open()
            .filter_map(|c| c.watermark)
            .max()?
            .max(self.floor_at_activity.unwrap_or(EventTime::MIN));
        let advanced = newest.saturating_add(silent.as_millis().min(i64::MAX as u128) as i64);
        Some(advanced.min(crate::message::MAX_EVENT_TIME))
    }

    /// The combined watermark if it moved forward since the last call.
    pub fn advance(&mut self, now: Instant) -> Option<EventTime> {
        let (mut combined, mut held): (Option<EventTime>, bool) = (None, false);
        let idle = |c: &PartitionClock| now.duration_since(c.last_active) >= self.idle_timeout;
        let open = || self.partitions.values().filter(|c| !c.finished);
        // With every open partition idle, those with data still count, as if
        // the empty ones had turned idle first: otherwise which came first,
        // seen a poll apart, would decide whether their data's watermark is
        // ever emitted (a partition that never had data turned idle in the
        // same poll as the one that had it all, and no window closed).
        let all_idle = open().all(idle);
        for clock in open() {
            if (!all_idle && idle(clock)) || (all_idle && clock.watermark.is_none()) {
                continue;
            }
            match clock.watermark {
                Some(wm) => combined = Some(combined.map_or(wm, |c| c.min(wm))),
                // An active partition without data yet holds everything back.
                None => held = true,
            }
        }
        let combined = combined.filter(|_| !held);
        let combined = match (combined, self.advanced(now)) {
            (Some(c), Some(a)) => c.max(a),
            (c, a) => c.or(a)?,
        };
        // Otherwise, with all partitions idle or finished: hold the watermark
        // where it is (as Flink does).
        if self.emitted.is_some_and(|e| combined <= e) {
            return None;
        }
        self.emitted = Some(combined);
        Some(combined)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimum_over_active_partitions_with_idle_timeout() {
        let t0 = Instant::now();
        let mut w = WatermarkTracker::new(Duration::from_secs(10));
        w.assign(0, t0);
        w.assign(1, t0);
        w.observe(0, Some(100), t0);
        assert_eq!(w.advance(t0), None, "partition 1 has no data yet");
        w.observe(1, Some(50), t0);
        assert_eq!(w.advance(t0), Some(50));
        w.observe(0, Some(200), t0 + Duration::from_secs(11));
        // Partition 1 is idle after 10 s: partition 0 alone sets the watermark.
        assert_eq!(w.advance(t0 + Duration::from_secs(11)), Some(200));
        // Never moves back.
        w.observe(1, Some(60), t0 + Duration::from_secs(12));
        assert_eq!(w.advance(t0 + Duration::from_secs(12)), None);
        w.finish(1);
        w.observe(0, Some(300), t0 + Duration::from_secs(12));
        assert_eq!(w.advance(t0 + Duration::from_secs(12)), Some(300));
    }

    #[test]
    fn partitions_turning_idle_together_still_release_their_data() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut w = WatermarkTracker::new(Duration::from_secs(3));
        w.assign(0, t0);
        w.assign(1, t0);
        // All the data is on partition 0, read within 10 ms of the start.
        w.observe(0, Some(100), t0 + ms(10));
        assert_eq!(w.advance(t0 + ms(10)), None, "partition 1 has no data yet");
        // The next look comes when both are idle: partition 0's data counts.
        assert_eq!(w.advance(t0 + ms(3_050)), Some(100));
        // Then it holds: all idle, nothing new.
        assert_eq!(w.advance(t0 + ms(9_000)), None);
        // An idle partition's older clock does not pull it back either.
        let mut v = WatermarkTracker::new(Duration::from_secs(3));
        v.assign(0, t0);
        v.assign(1, t0);
        v.observe(0, Some(200), t0);
        v.observe(1, Some(50), t0);
        assert_eq!(v.advance(t0), Some(50));
        v.observe(0, Some(300), t0 + ms(4_000));
        assert_eq!(v.advance(t0 + ms(4_000)), Some(300), "partition 1 idle");
        assert_eq!(v.advance(t0 + ms(8_000)), None, "both idle: held");
    }

    #[test]
    fn silence_advances_the_watermark_with_the_wall_clock() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let mut w = WatermarkTracker::new(s(30)).with_idle_advance(Some(s(10)));
        w.assign(0, t0);
        w.assign(1, t0);
        w.observe(0, Some(1_000), t0);
        w.observe(1, Some(5_000), t0 + s(1));
        assert_eq!(w.advance(t0 + s(1)), Some(1_000));
        assert_eq!(w.advance(t0 + s(10)), None, "partition 1 spoke 9 s ago");
        // Both silent for 10 s: from the newest watermark, as fast as the clock.
        assert_eq!(w.advance(t0 + s(11)), Some(15_000));
        assert_eq!(w.advance(t0 + s(12)), Some(16_000));
        assert_eq!(w.clocks(), BTreeMap::from([(0, 16_000), (1, 16_000)]));
        // A record ends the silence; older event times do not pull it back.
        w.observe(0, Some(2_000), t0 + s(13));
        assert_eq!(w.advance(t0 + s(13)), None);
        w.observe(0, Some(17_000), t0 + s(14));
        assert_eq!(
            w.advance(t0 + s(14)),
            None,
            "partition 1 holds at its raised clock"
        );
        w.observe(1, Some(18_000), t0 + s(15));
        assert_eq!(w.advance(t0 + s(15)), Some(17_000));
        // A stray old record after a long silence does not set the advance back.
        let mut w = WatermarkTracker::new(s(30)).with_idle_advance(Some(s(10)));
        w.assign(0, t0);
        w.observe(0, Some(1_000), t0);
        assert_eq!(w.advance(t0 + s(3600)), Some(3_601_000));
        w.observe(0, Some(2_000), t0 + s(3600));
        assert_eq!(w.advance(t0 + s(3600)), None);
        assert_eq!(w.advance(t0 + s(3610)), Some(3_611_000));
        // An empty partition does not keep a silence from advancing it.
        let mut e = WatermarkTracker::new(s(3600)).with_idle_advance(Some(s(10)));
        e.assign(0, t0);
        e.assign(1, t0);
        e.observe(0, Some(1_000), t0);
        assert_eq!(e.advance(t0), None, "partition 1 has no data yet");
        assert_eq!(e.advance(t0 + s(10)), Some(11_000));
        // Off: silence holds the watermark.
        let mut off = WatermarkTracker::new(s(30));
        off.assign(0, t0);
        off.observe(0, Some(1_000), t0);
        assert_eq!(off.advance(t0), Some(1_000));
        assert_eq!(off.advance(t0 + s(3600)), None);
    }

    #[test]
    fn restored_clocks_go_on_where_they_were() {
        let t0 = Instant::now();
        let mut before = WatermarkTracker::new(Duration::from_secs(10));
        before.assign(0, t0);
        before.assign(1, t0);
        before.observe(0, Some(300), t0);
        before.observe(1, Some(120), t0);
        let clocks = before.clocks();
        assert_eq!(clocks, BTreeMap::from([(0, 300), (1, 120)]));

        let mut after = WatermarkTracker::new(Duration::from_secs(10));
        after.assign(0, t0);
        after.assign(1, t0);
        after.assign(2, t0);
        after.restore(&BTreeMap::from([(0, 300), (1, 120), (7, 999)]), t0);
        // Partition 1's older records after the restore do not pull its clock back;
        // partition 0 needs no new record to count; 7 is not assigned here.
        after.observe(1, Some(100), t0);
        after.finish(2);
        assert_eq!(after.advance(t0), Some(120));
        assert_eq!(after.clocks(), BTreeMap::from([(0, 300), (1, 120)]));
    }
}
