//! A running job's metrics: one Prometheus registry per job, the one source
//! of truth for `/metrics`, the status line, the run summary and tests.
//!
//! # Layout
//! - this module: every metric family (name, help, labels) and the job-wide
//!   totals the status line and tests read from them;
//! - `handles`: what the hot paths hold (a source's partitions, a
//!   statement, a sink): labelled children looked up once, not per row;
//! - `latency`: emit latency, held until a sink acknowledges the rows;
//! - `health`: what `/readyz` checks (sources assigned, checkpoints recent,
//!   no sink stalled).
//!
//! Names follow Prometheus conventions: prefix `engine_`, base units
//! (`_seconds`, `_bytes`), counters end in `_total`. README lists them.

mod handles;
mod health;
mod latency;

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::proto::MetricType;
use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::message::EventTime;
pub use handles::{CheckpointMetrics, SinkMetrics, SourceMetrics, SplitMetrics, StatementMetrics};
pub use health::Readiness;
pub use latency::{Due, EmitLatency, StagedLatency};

/// Emit-latency buckets (seconds): a candle is expected within milliseconds
/// of its window closing on a topic, and within a checkpoint interval or a
/// file roll on the lake.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0,
];

/// Checkpoint-duration buckets (seconds).
const CHECKPOINT_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// A job's metrics. Everything that is dropped is counted here, never silently lost.
pub struct Metrics {
    registry: Registry,
    // Sources, by topic and partition.
    records_in: IntCounterVec,
    bad_records: IntCounterVec,
    consumer_lag: IntGaugeVec,
    partitions: IntGaugeVec,
    watermark: GaugeVec,
    watermark_lag: GaugeVec,
    // Statements, by `<job file>:<line>`.
    statement_watermark: GaugeVec,
    late_rows: IntCounterVec,
    open_windows: IntGaugeVec,
    windows_emitted: IntCounterVec,
    rows_emitted: IntCounterVec,
    // Sinks, by sink table.
    rows_out: IntCounterVec,
    lake_files: IntCounterVec,
    lake_bytes: IntCounterVec,
    partitions_committed: IntCounterVec,
    late_lake_rows: IntCounterVec,
    emit_latency: HistogramVec,
    sink_stalled: IntGaugeVec,
    // Checkpoints.
    checkpoints: IntCounter,
    checkpoint_duration: Histogram,
    checkpoint_size: IntGauge,
    last_checkpoint: IntGauge,
    last_checkpoint_time: Gauge,
    checkpoint_failures: IntCounter,
    health: health::Health,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.summary())
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `metric` in `registry` and returns it. Names are fixed here, so
/// a clash is a bug of this module.
fn registered<C: Collector + Clone + 'static>(registry: &Registry, metric: C) -> C {
    registry
        .register(Box::new(metric.clone()))
        .expect("metric names are unique");
    metric
}

fn counters(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registered(r, vec)
}

fn gauges(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registered(r, vec)
}

fn float_gauges(r: &Registry, name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    let vec = GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registered(r, vec)
}

impl Metrics {
    /// A job's metrics, all at zero.
    pub fn new() -> Self {
        let r = Registry::new();
        let topic_partition = &["topic", "partition"];
        let statement = &["statement"];
        let sink = &["sink"];
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "engine_emit_latency_seconds",
                "From the watermark passing a window's end to the sink acknowledging its row \
                 (topic) or publishing its file (lake), one observation per row",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            sink,
        )
        .expect("valid metric");
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "engine_checkpoint_duration_seconds",
                "From asking the sources for a barrier to the checkpoint committed",
            )
            .buckets(CHECKPOINT_BUCKETS.to_vec()),
        )
        .expect("valid metric");
        let int_gauge = |name: &str, help: &str| {
            registered(&r, IntGauge::new(name, help).expect("valid metric"))
        };
        let counter = |name: &str, help: &str| {
            registered(&r, IntCounter::new(name, help).expect("valid metric"))
        };
        Self {
            records_in: counters(
                &r,
                "engine_records_in_total",
                "Records read from a source partition",
                topic_partition,
            ),
            bad_records: counters(
                &r,
                "engine_bad_records_total",
                "Records and rows sent to the dead letters, by reason",
                &["topic", "reason"],
            ),
            consumer_lag: gauges(
                &r,
                "engine_consumer_lag_records",
                "Records behind the partition's end (log end offset minus position)",
                topic_partition,
            ),
            partitions: gauges(
                &r,
                "engine_source_partitions",
                "Partitions a source has assigned",
                &["topic"],
            ),
            watermark: float_gauges(
                &r,
                "engine_watermark_seconds",
                "A partition's event-time clock (watermark), Unix seconds",
                topic_partition,
            ),
            watermark_lag: float_gauges(
                &r,
                "engine_watermark_lag_seconds",
                "How far a partition's watermark is behind the wall clock",
                topic_partition,
            ),
            statement_watermark: float_gauges(
                &r,
                "engine_statement_watermark_seconds",
                "The watermark a statement has seen, Unix seconds",
                statement,
            ),
            late_rows: counters(
                &r,
                "engine_late_rows_total",
                "Rows that arrived after their window closed (each window missed counts once)",
                statement,
            ),
            open_windows: gauges(
                &r,
                "engine_open_windows",
                "Windows holding state (TUMBLE/HOP windows, CUMULATE periods, SESSION sessions)",
                statement,
            ),
            windows_emitted: counters(
                &r,
                "engine_windows_emitted_total",
                "Windows emitted (TUMBLE/HOP window ends, CUMULATE step ends, SESSION sessions)",
                statement,
            ),
            rows_emitted: counters(
                &r,
                "engine_rows_emitted_total",
                "Rows a statement produced on its main output",
                statement,
            ),
            rows_out: counters(&r, "engine_rows_out_total", "Rows written to a sink", sink),
            lake_files: counters(
                &r,
                "engine_lake_files_total",
                "Parquet files a lake sink wrote (staged or published)",
                sink,
            ),
            lake_bytes: counters(
                &r,
                "engine_lake_bytes_total",
                "Bytes of the Parquet files a lake sink wrote",
                sink,
            ),
            partitions_committed: counters(
                &r,
                "engine_lake_partitions_committed_total",
                "Lake partitions marked complete (_SUCCESS written)",
                sink,
            ),
            late_lake_rows: counters(
                &r,
                "engine_lake_late_rows_total",
                "Rows written to a lake partition after it was committed",
                sink,
            ),
            emit_latency: registered(&r, latency),
            sink_stalled: gauges(
                &r,
                "engine_sink_stalled",
                "1 while a sink's write or commit has been running for longer than the stall limit",
                sink,
            ),
            checkpoints: counter("engine_checkpoints_total", "Checkpoints completed"),
            checkpoint_duration: registered(&r, duration),
            checkpoint_size: int_gauge(
                "engine_checkpoint_size_bytes",
                "Bytes of the newest checkpoint's state files and manifest",
            ),
            last_checkpoint: int_gauge(
                "engine_checkpoint_last_epoch",
                "The newest complete checkpoint's epoch (0: none yet)",
            ),
            last_checkpoint_time: registered(
                &r,
                Gauge::new(
                    "engine_checkpoint_last_timestamp_seconds",
                    "When the newest checkpoint completed, Unix seconds",
                )
                .expect("valid metric"),
            ),
            checkpoint_failures: counter(
                "engine_checkpoint_failures_total",
                "Failed attempts at writing or committing a checkpoint (each is retried)",
            ),
            health: health::Health::default(),
            registry: r,
        }
    }

    /// The handles of source `topic` (a Kafka topic, or a source's name).
    pub fn source(&self, topic: &str) -> SourceMetrics {
        SourceMetrics::new(self, topic)
    }

    /// The handles of statement `statement` (`<job file>:<line>`).
    pub fn statement(&self, statement: &str) -> StatementMetrics {
        StatementMetrics::new(self, statement)
    }

    /// The handles of sink table `sink`.
    pub fn sink(&self, sink: &str) -> SinkMetrics {
        SinkMetrics::new(self, sink)
    }

    /// The counter of `topic`'s bad records of `kind` (for what dead-letters
    /// on a source's behalf: statements, sinks).
    pub fn bad_records_counter(&self, topic: &str, kind: crate::decode::BadKind) -> IntCounter {
        self.bad_records.with_label_values(&[topic, kind.label()])
    }

    /// Sink `sink`'s rows-out counter alone (for what writes on a sink's
    /// behalf: the job's Kafka transaction).
    pub fn sink_rows_out(&self, sink: &str) -> IntCounter {
        self.rows_out.with_label_values(&[sink])
    }

    /// The handles of one checkpoint coordinator, taking one every `interval`.
    pub fn checkpoints(&self, interval: Duration) -> CheckpointMetrics {
        CheckpointMetrics::new(self, interval)
    }

    /// Every metric in Prometheus' text format, the time-derived ones
    /// (watermark lag, stalled sinks) brought up to now first.
    pub fn render(&self) -> String {
        self.refresh();
        prometheus::TextEncoder::new()
            .encode_to_string(&self.registry.gather())
            .unwrap_or_else(|e| format!("# encoding the metrics failed: {e}\n"))
    }

    /// Whether the job is ready (`/readyz`): its sources assigned, its
    /// checkpoints recent, no sink stalled; with the reasons if not.
    pub fn readiness(&self) -> Readiness {
        self.refresh();
        self.health.readiness()
    }

    /// Sets the gauges that follow from the wall clock.
    fn refresh(&self) {
        let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
        for family in self.watermark.collect() {
            for m in family.get_metric() {
                // By name: the pairs come back sorted by name, not in declared order.
                let labels: std::collections::HashMap<&str, &str> = m
                    .get_label()
                    .iter()
                    .map(|l| (l.name(), l.value()))
                    .collect();
                let lag = (now - m.get_gauge().get_value()).max(0.0);
                self.watermark_lag.with(&labels).set(lag);
            }
        }
        self.health.refresh_stalls(&self.sink_stalled);
    }

    /// Records read, over every source partition.
    pub fn records_in(&self) -> u64 {
        total(&self.records_in) as u64
    }

    /// Records and rows dead-lettered, over every source and reason.
    pub fn bad_records(&self) -> u64 {
        total(&self.bad_records) as u64
    }

    /// Bad records of `topic` with `reason` (a [`crate::decode::BadKind`] label).
    pub fn bad_records_of(&self, topic: &str, reason: &str) -> u64 {
        self.bad_records.with_label_values(&[topic, reason]).get()
    }

    /// Records behind the partitions' ends, over every source partition.
    pub fn consumer_lag(&self) -> i64 {
        total(&self.consumer_lag) as i64
    }

    /// Late rows, over every statement (see `engine_late_rows_total`).
    pub fn late_rows(&self) -> u64 {
        total(&self.late_rows) as u64
    }

    /// Rows statements produced on their main output.
    pub fn rows_emitted(&self) -> u64 {
        total(&self.rows_emitted) as u64
    }

    /// Rows written to sinks.
    pub fn rows_out(&self) -> u64 {
        total(&self.rows_out) as u64
    }

    /// Windows holding state now, over every windowed statement.
    pub fn open_windows(&self) -> i64 {
        total(&self.open_windows) as i64
    }

    /// Windows emitted, over every windowed statement.
    pub fn windows_emitted(&self) -> u64 {
        total(&self.windows_emitted) as u64
    }

    /// Files written by lake sinks.
    pub fn files_written(&self) -> u64 {
        total(&self.lake_files) as u64
    }

    /// Lake partitions marked complete.
    pub fn partitions_committed(&self) -> u64 {
        total(&self.partitions_committed) as u64
    }

    /// Rows written to lake partitions after they were committed.
    pub fn late_lake_rows(&self) -> u64 {
        total(&self.late_lake_rows) as u64
    }

    /// The newest watermark a statement has seen (ms), if any.
    pub fn watermark(&self) -> Option<EventTime> {
        let newest = max(&self.statement_watermark)?;
        Some((newest * 1000.0).round() as EventTime)
    }

    /// The newest complete checkpoint's epoch (0: none yet).
    pub fn last_checkpoint(&self) -> u64 {
        self.last_checkpoint.get().max(0) as u64
    }

    /// Failed attempts at writing or committing a checkpoint.
    pub fn checkpoint_failures(&self) -> u64 {
        self.checkpoint_failures.get()
    }

    /// Rows whose emit latency was observed by `sink`, and their summed latency (s).
    pub fn emit_latency_of(&self, sink: &str) -> (u64, f64) {
        let h = self.emit_latency.with_label_values(&[sink]);
        (h.get_sample_count(), h.get_sample_sum())
    }

    /// The upper bound (s) of the emit-latency bucket of `sink` that holds
    /// quantile `q` of its rows (`None`: no rows, or past the last bucket).
    pub fn emit_latency_quantile_bound(&self, sink: &str, q: f64) -> Option<f64> {
        use prometheus::core::Metric as _;
        let metric = self.emit_latency.with_label_values(&[sink]).metric();
        // Counts and buckets from one snapshot: rows observed meanwhile do not skew it.
        let histogram = metric.get_histogram();
        let count = histogram.get_sample_count();
        (count > 0).then_some(())?;
        let rank = (q * count as f64).ceil().max(1.0) as u64;
        (histogram.get_bucket().iter())
            .find(|b| b.cumulative_count() >= rank)
            .map(|b| b.upper_bound())
    }

    /// A one-line summary for logs.
    pub fn summary(&self) -> String {
        format!(
            "records_in={} bad_records={} late_rows={} windows_emitted={} rows_out={} files_written={} partitions_committed={} late_lake_rows={} last_checkpoint={} checkpoint_failures={}",
            self.records_in(),
            self.bad_records(),
            self.late_rows(),
            self.windows_emitted(),
            self.rows_out(),
            self.files_written(),
            self.partitions_committed(),
            self.late_lake_rows(),
            self.last_checkpoint(),
            self.checkpoint_failures(),
        )
    }
}

/// The values of `family`'s series (counters and gauges).
fn values(family: &impl Collector) -> impl Iterator<Item = f64> {
    family.collect().into_iter().flat_map(|f| {
        let kind = f.get_field_type();
        f.get_metric()
            .iter()
            .map(|m| match kind {
                MetricType::COUNTER => m.get_counter().get_value(),
                _ => m.get_gauge().get_value(),
            })
            .collect::<Vec<_>>()
    })
}

/// The sum over every series of `family`.
fn total(family: &impl Collector) -> f64 {
    values(family).sum()
}

/// The largest value over the series of `family`, if it has any.
fn max(family: &impl Collector) -> Option<f64> {
    values(family).reduce(f64::max)
}
