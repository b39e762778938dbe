//! A job that keeps running (no --bounded): windows close as the watermark
//! advances with new trades, and a stop flushes the sinks without committing
//! offsets that open windows still depend on. An idle partition stops holding
//! the watermark back.

mod common;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use engine::{Job, Metrics, RunOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_job_emits_closed_windows_and_stops_cleanly() {
    init_logs();
    let topic = unique("live");
    let out_topic = unique("live_out");
    create_topics(&[(&topic, 2), (&format!("{topic}.dlq"), 1), (&out_topic, 1)]).await;
    let lake = tempfile::tempdir().unwrap();
    let job_text = format!(
        "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
             WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'kafka', bootstrap_servers = '${{KAFKA_BROKERS}}', topic = '{topic}', batch.linger = '20ms',
               watermark.idle_timeout = '3s');
         CREATE TABLE counts (symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP, n BIGINT, volume DOUBLE)
         WITH (connector = 'kafka', bootstrap_servers = '${{KAFKA_BROKERS}}', topic = '{out_topic}', key_field = 'symbol');
         CREATE TABLE raw (symbol TEXT, ts TIMESTAMP)
         WITH (connector = 'lake', path = '{}/raw');
         INSERT INTO counts SELECT symbol, window_start, window_end, count(*), sum(size)
         FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '10' SECOND);
         INSERT INTO raw SELECT symbol, ts FROM trades;",
        lake.path().display()
    );
    let env = |name: &str| (name == "KAFKA_BROKERS").then(brokers);
    let job = Job::from_text("live.sql", &job_text, &env).await.unwrap();
    let stop = engine::CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let running = tokio::spawn(job.run_with_metrics(
        RunOptions::default(),
        stop.clone(),
        Arc::clone(&metrics),
    ));

    // Two minutes of event time, produced while the job runs, in two parts.
    let trades = generate_trades(21, 6_000, 3, 1_763_650_000_000, 20);
    produce(&topic, &trade_records(&trades[..3_000])).await;
    produce(&topic, &trade_records(&trades[3_000..])).await;

    // Every window that ends at or before the final watermark (max ts - 2 s) is emitted.
    // The partition whose last trade is older holds the watermark back until it has
    // been idle for 3 s; then the other partition alone sets it.
    let max_ts = trades.iter().map(|t| t.ts).max().unwrap();
    let expected: Vec<_> = fold_windows(&trades, 10_000, 10_000)
        .into_iter()
        .filter(|(_, c)| c.window_end <= max_ts - 2000)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Metrics::get(&metrics.records_in) < trades.len() as u64
        || metrics.watermark.load(Ordering::Relaxed) < max_ts - 2000
    {
        assert!(
            Instant::now() < deadline,
            "job did not catch up: {}",
            metrics.summary()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let report = running.await.unwrap().unwrap();

    let got = read_all(&out_topic);
    assert_eq!(
        got.len(),
        expected.len(),
        "closed windows emitted while running, the open one not"
    );
    for ((symbol, start), c) in &expected {
        let row = got
            .iter()
            .map(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap())
            .find(|v| v["symbol"] == symbol.as_str() && v["window_start"] == *start)
            .unwrap_or_else(|| panic!("missing window {symbol} {start}"));
        assert_eq!(row["n"].as_i64(), Some(c.trades));
        assert!(close_to(row["volume"].as_f64().unwrap(), c.volume, 1e-9));
    }
    // The stateless statement's rows are all in closed files after the stop.
    let mut lake_rows = 0;
    for entry in files_under(&lake.path().join("raw")) {
        let file = std::fs::File::open(&entry).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        lake_rows += reader.map(|b| b.unwrap().num_rows()).sum::<usize>();
    }
    assert_eq!(lake_rows, trades.len());
    assert_eq!(Metrics::get(&report.metrics.late_rows), 0);
    // A windowed statement reads this source, so nothing was committed.
    assert!(report.committed.is_empty(), "{:?}", report.committed);
}
