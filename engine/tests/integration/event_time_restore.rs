//! Event time survives a restart: each source partition's clock (its own
//! watermark) is in the checkpoint, so a restored job judges late rows as an
//! uninterrupted one does.
//!
//! Two partitions: A's clock is at 10:05, B's at 10:02, so the watermark is
//! B's. After the checkpoint only B has new records: 10:06 moves the
//! watermark to A's 10:05 (B's is later now), and then 10:03:30 is late.
//! Without A's clock from the checkpoint, A (with no new record) would hold
//! the watermark back and the late row would be counted into its window.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use engine::{CheckpointOptions, Job, Metrics, RunOptions};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;

/// 2025-11-20T10:00:00Z in ms.
const T0: i64 = 1_763_632_800_000;
const MINUTE: i64 = 60_000;

/// Sends one trade of `symbol` at `ts` to `partition` of `topic`.
async fn send(topic: &str, partition: i32, symbol: &str, ts: i64) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let value = format!(r#"{{"symbol":"{symbol}","price":10.0,"size":1.0,"ts":{ts}}}"#);
    let record = FutureRecord::to(topic)
        .partition(partition)
        .key(symbol)
        .payload(value.as_str());
    producer
        .send(record, Duration::from_secs(10))
        .await
        .map_err(|(e, _)| e)
        .unwrap();
}

/// A running job and what it counts.
struct Run {
    stop: engine::CancellationToken,
    metrics: Arc<Metrics>,
    handle: tokio::task::JoinHandle<engine::Result<engine::RunReport>>,
}

async fn start(topic: &str, out: &str, group: &str, state_dir: &str) -> Run {
    let text = format!(
        "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
             WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH (connector = 'kafka', bootstrap_servers = '${{KAFKA_BROKERS}}', topic = '{topic}', group_id = '{group}',
               batch.size = '1', batch.linger = '1ms', watermark.idle_timeout = '10min');
         CREATE TABLE counts (symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP, n BIGINT)
         WITH (connector = 'kafka', bootstrap_servers = '${{KAFKA_BROKERS}}', topic = '{out}', key_field = 'symbol');
         INSERT INTO counts SELECT symbol, window_start, window_end, count(*)
         FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE);"
    );
    let env = |name: &str| (name == "KAFKA_BROKERS").then(brokers);
    let job = Job::from_text("clocks.sql", &text, &env).await.unwrap();
    let options = RunOptions {
        checkpoint: Some(CheckpointOptions::new(
            state_dir,
            Duration::from_millis(200),
        )),
        ..Default::default()
    };
    let stop = engine::CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let handle = tokio::spawn(job.run_with_metrics(options, stop.clone(), Arc::clone(&metrics)));
    Run {
        stop,
        metrics,
        handle,
    }
}

impl Run {
    /// Waits until the job has read `records` records, and (for up to 10 s)
    /// until its watermark reached `watermark`.
    async fn caught_up(&self, records: u64, watermark: i64) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.metrics.records_in() < records {
            assert!(Instant::now() < deadline, "{}", self.metrics.summary());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // A watermark that does not come is what the test is about: go on without it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.metrics.watermark().unwrap_or(i64::MIN) < watermark && Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the job; its late-row count.
    async fn stop(self) -> u64 {
        self.stop.cancel();
        let report = self.handle.await.unwrap().unwrap();
        report.metrics.late_rows()
    }
}

/// Runs the job over the input in three steps: the records before the
/// checkpoint, the one that moves the watermark past A's clock, and the late
/// one; with `restart`, the job is stopped (final checkpoint) and started
/// again after the first step. Returns the late rows of the last run.
async fn feed_and_run(name: &str, restart: bool) -> u64 {
    let (topic, out, group) = (unique(name), unique(&format!("{name}_out")), unique(name));
    create_topics(&[(&topic, 2), (&format!("{topic}.dlq"), 1), (&out, 1)]).await;
    let state = tempfile::tempdir().unwrap();
    let state_dir = state.path().display().to_string();

    let mut run = start(&topic, &out, &group, &state_dir).await;
    send(&topic, 0, "A", T0 + 5 * MINUTE).await;
    send(&topic, 1, "B", T0 + 2 * MINUTE).await;
    run.caught_up(2, T0 + 2 * MINUTE - 1000).await;
    let mut read = 2;
    if restart {
        assert_eq!(run.stop().await, 0);
        run = start(&topic, &out, &group, &state_dir).await;
        read = 0;
    }
    send(&topic, 1, "B", T0 + 6 * MINUTE).await;
    run.caught_up(read + 1, T0 + 5 * MINUTE - 1000).await;
    send(&topic, 1, "B", T0 + 3 * MINUTE + 30_000).await;
    run.caught_up(read + 2, 0).await;
    run.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_job_judges_late_rows_as_an_uninterrupted_one() {
    init_logs();
    let late_uninterrupted = feed_and_run("clocks", false).await;
    let late_restored = feed_and_run("clocks_restored", true).await;
    eprintln!(
        "event time across a restart: late rows {late_uninterrupted} uninterrupted, {late_restored} restored"
    );
    assert_eq!(
        late_uninterrupted, 1,
        "the uninterrupted run did not drop the late row"
    );
    assert_eq!(late_restored, late_uninterrupted);
}
