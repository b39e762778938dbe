//! What the hot paths hold: one source's, statement's, sink's or
//! coordinator's labelled series, looked up once instead of per row.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{Gauge, GaugeVec, Histogram, IntCounter, IntCounterVec, IntGauge, IntGaugeVec};

use super::health::{Busy, BusyGuard, CheckpointClock};
use super::Metrics;
use crate::decode::BadKind;
use crate::message::EventTime;

/// Event time (ms) as the Unix seconds the gauges show.
fn seconds(t: EventTime) -> f64 {
    t as f64 / 1000.0
}

/// A source's series: records, bad records, partitions, and per partition
/// its lag and watermark.
pub struct SourceMetrics {
    topic: String,
    records_in: IntCounterVec,
    bad_records: IntCounterVec,
    consumer_lag: IntGaugeVec,
    watermark: GaugeVec,
    watermark_lag: GaugeVec,
    partitions: IntGauge,
    assigned: i64,
    splits: BTreeMap<i32, SplitMetrics>,
}

/// One partition's series.
pub struct SplitMetrics {
    /// Records read from it.
    pub records_in: IntCounter,
    lag: IntGauge,
    /// Created at the first watermark, so no partition shows 1970 before it has one.
    watermark: Option<Gauge>,
}

impl SourceMetrics {
    pub(super) fn new(m: &Metrics, topic: &str) -> Self {
        let partitions = m.partitions.with_label_values(&[topic]);
        m.health.add_source(topic, partitions.clone());
        Self {
            topic: topic.to_string(),
            records_in: m.records_in.clone(),
            bad_records: m.bad_records.clone(),
            consumer_lag: m.consumer_lag.clone(),
            watermark: m.watermark.clone(),
            watermark_lag: m.watermark_lag.clone(),
            partitions,
            assigned: 0,
            splits: BTreeMap::new(),
        }
    }

    /// The source has `n` partitions assigned (added over the lanes of `--scale-out`).
    pub fn assigned(&mut self, n: usize) {
        self.partitions.add(n as i64 - self.assigned);
        self.assigned = n as i64;
    }

    /// Partition `split`'s series.
    pub fn split(&mut self, split: i32) -> &mut SplitMetrics {
        self.splits.entry(split).or_insert_with(|| {
            let labels = [self.topic.as_str(), &split.to_string()];
            SplitMetrics {
                records_in: self.records_in.with_label_values(&labels),
                lag: self.consumer_lag.with_label_values(&labels),
                watermark: None,
            }
        })
    }

    /// Partition `split` is `records` behind its end.
    pub fn lag(&mut self, split: i32, records: i64) {
        self.split(split).lag.set(records.max(0));
    }

    /// Partition `split`'s event-time clock is at `t` (ms).
    pub fn watermark(&mut self, split: i32, t: EventTime) {
        let (topic, family) = (self.topic.clone(), self.watermark.clone());
        let gauge = (self.split(split).watermark)
            .get_or_insert_with(|| family.with_label_values(&[&topic, &split.to_string()]));
        gauge.set(seconds(t));
    }

    /// The counter of this source's bad records of `kind`.
    pub fn bad(&self, kind: BadKind) -> IntCounter {
        self.bad_records
            .with_label_values(&[&self.topic, kind.label()])
    }
}

impl Drop for SourceMetrics {
    /// A source that stopped has no partitions any more, and shows no lag
    /// or watermark for them (another process may read them now); the
    /// counters stay.
    fn drop(&mut self) {
        self.assigned(0);
        for split in self.splits.keys() {
            let labels = [self.topic.as_str(), &split.to_string()];
            let _ = self.consumer_lag.remove_label_values(&labels);
            let _ = self.watermark.remove_label_values(&labels);
            let _ = self.watermark_lag.remove_label_values(&labels);
        }
    }
}

/// A statement's series.
#[derive(Clone)]
pub struct StatementMetrics {
    name: String,
    /// Rows that arrived after their window closed.
    pub late_rows: IntCounter,
    /// Windows holding state.
    pub open_windows: IntGauge,
    /// Windows emitted.
    pub windows_emitted: IntCounter,
    /// Rows produced on the main output.
    pub rows_emitted: IntCounter,
    watermarks: GaugeVec,
    watermark: Arc<OnceLock<Gauge>>,
}

impl StatementMetrics {
    pub(super) fn new(m: &Metrics, statement: &str) -> Self {
        let labels = [statement];
        Self {
            name: statement.to_string(),
            late_rows: m.late_rows.with_label_values(&labels),
            open_windows: m.open_windows.with_label_values(&labels),
            windows_emitted: m.windows_emitted.with_label_values(&labels),
            rows_emitted: m.rows_emitted.with_label_values(&labels),
            watermarks: m.statement_watermark.clone(),
            watermark: Arc::default(),
        }
    }

    /// The statement has seen watermark `t` (ms); the gauge never goes back.
    pub fn watermark(&self, t: EventTime) {
        let mut first = false;
        let gauge = self.watermark.get_or_init(|| {
            first = true;
            self.watermarks.with_label_values(&[&self.name])
        });
        if first || seconds(t) > gauge.get() {
            gauge.set(seconds(t));
        }
    }
}

/// A sink's series.
#[derive(Clone)]
pub struct SinkMetrics {
    /// Rows written.
    pub rows_out: IntCounter,
    /// Lake files written (staged or published).
    pub lake_files: IntCounter,
    /// Bytes of those files.
    pub lake_bytes: IntCounter,
    /// Lake partitions marked complete.
    pub partitions_committed: IntCounter,
    /// Rows written into a partition after it was committed.
    pub late_lake_rows: IntCounter,
    /// From a window's end passing to its row acknowledged or published.
    pub emit_latency: Histogram,
    busy: Arc<Busy>,
}

impl SinkMetrics {
    pub(super) fn new(m: &Metrics, sink: &str) -> Self {
        let labels = [sink];
        let busy = Arc::new(Busy::default());
        m.health.add_sink(sink, &busy);
        Self {
            rows_out: m.rows_out.with_label_values(&labels),
            lake_files: m.lake_files.with_label_values(&labels),
            lake_bytes: m.lake_bytes.with_label_values(&labels),
            partitions_committed: m.partitions_committed.with_label_values(&labels),
            late_lake_rows: m.late_lake_rows.with_label_values(&labels),
            emit_latency: m.emit_latency.with_label_values(&labels),
            busy,
        }
    }

    /// Marks the sink busy (a write, a barrier) until the guard is dropped:
    /// one that takes longer than the stall limit makes the job unready.
    pub fn busy(&self) -> BusyGuard {
        self.busy.start()
    }
}

/// One checkpoint coordinator's series.
pub struct CheckpointMetrics {
    checkpoints: IntCounter,
    duration: Histogram,
    size: IntGauge,
    last_epoch: IntGauge,
    last_time: Gauge,
    failures: IntCounter,
    clock: Arc<CheckpointClock>,
}

impl CheckpointMetrics {
    pub(super) fn new(m: &Metrics, interval: Duration) -> Self {
        let clock = Arc::new(CheckpointClock::new(interval));
        m.health.add_checkpoints(&clock);
        Self {
            checkpoints: m.checkpoints.clone(),
            duration: m.checkpoint_duration.clone(),
            size: m.checkpoint_size.clone(),
            last_epoch: m.last_checkpoint.clone(),
            last_time: m.last_checkpoint_time.clone(),
            failures: m.checkpoint_failures.clone(),
            clock,
        }
    }

    /// Checkpoint `epoch` completed, `started` when its barrier was asked
    /// for, with `bytes` of state files and manifest.
    pub fn completed(&self, epoch: u64, started: Instant, bytes: u64) {
        self.checkpoints.inc();
        self.duration.observe(started.elapsed().as_secs_f64());
        self.size.set(bytes as i64);
        self.last_epoch.set(epoch as i64);
        self.last_time
            .set(chrono::Utc::now().timestamp_millis() as f64 / 1000.0);
        self.clock.completed();
    }

    /// An attempt at writing or committing a checkpoint failed (it is retried).
    pub fn failed(&self) {
        self.failures.inc();
    }
}
