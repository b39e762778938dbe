//! Partition commit in the lake sink: a `_SUCCESS` marker once the watermark
//! passes a partition's end, late rows into a new file (counted, never lost),
//! and the HOP lag that keeps a partition open until its last windows close.

use crate::common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use engine::sink::lake::{Compression, LakeSink, LakeSinkConfig, PartitionScheme};
use engine::sink::Sink as _;
use engine::Metrics;

/// 2025-11-20T10:00:00Z.
const TEN: i64 = 1_763_632_800_000;
const MINUTE: i64 = 60_000;

fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("ts", engine_sql::timestamp_type(), false),
    ]))
}

fn rows(times: &[i64]) -> RecordBatch {
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(vec!["AAPL"; times.len()])),
            Arc::new(TimestampMillisecondArray::from(times.to_vec()).with_timezone("UTC")),
        ],
    )
    .unwrap()
}

async fn sink(dir: &Path, metrics: &Arc<Metrics>) -> LakeSink {
    let config = LakeSinkConfig {
        table: "trades_lake".into(),
        path: dir.display().to_string(),
        partitioning: PartitionScheme::DayHour,
        partition_time_field: Some(1),
        file_size: 128 << 20,
        compression: Compression::Snappy,
        revisions: engine::sink::Revisions::Final,
        rollover: Duration::from_secs(3600),
    };
    LakeSink::open(config, schema(), Arc::clone(metrics))
        .await
        .unwrap()
}

/// (parquet files, has a marker) in `dir/dt=2025-11-20/hour=HH`.
fn partition(dir: &Path, hour: &str) -> (usize, bool) {
    let p = dir.join("dt=2025-11-20").join(format!("hour={hour}"));
    let Ok(entries) = std::fs::read_dir(&p) else {
        return (0, false);
    };
    let names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let files = names.iter().filter(|n| n.ends_with(".parquet")).count();
    assert_eq!(
        files + names.iter().filter(|n| *n == "_SUCCESS").count(),
        names.len(),
        "only data files and the marker: {names:?}"
    );
    (files, names.iter().any(|n| n == "_SUCCESS"))
}

#[tokio::test]
async fn partitions_commit_when_the_watermark_passes_their_end() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let mut lake = sink(dir.path(), &metrics).await;

    lake.write(
        rows(&[TEN + 10 * MINUTE, TEN + 50 * MINUTE, TEN + 65 * MINUTE]),
        None,
    )
    .await
    .unwrap();
    lake.handle_watermark(TEN + 60 * MINUTE - 1).await.unwrap();
    assert_eq!(
        partition(dir.path(), "10"),
        (0, false),
        "10:00-11:00 still open"
    );

    lake.handle_watermark(TEN + 60 * MINUTE).await.unwrap();
    assert_eq!(partition(dir.path(), "10"), (1, true), "closed and marked");
    assert_eq!(partition(dir.path(), "11"), (0, false));
    let marker: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.path().join("dt=2025-11-20/hour=10/_SUCCESS")).unwrap(),
    )
    .unwrap();
    assert_eq!(marker["partition"], "dt=2025-11-20/hour=10");
    assert_eq!(marker["table"], "trades_lake");

    // A late row for the committed hour: a new file in it, counted.
    lake.write(rows(&[TEN + 30 * MINUTE]), None).await.unwrap();
    assert_eq!(metrics.late_lake_rows(), 1);
    lake.handle_watermark(TEN + 70 * MINUTE).await.unwrap();
    assert_eq!(
        partition(dir.path(), "10"),
        (1, true),
        "the late file rolls by the usual rules, not on every watermark"
    );

    // A stop: files closed; a partition the watermark has not passed gets no marker.
    lake.flush().await.unwrap();
    assert_eq!(partition(dir.path(), "10"), (2, true));
    assert_eq!(
        partition(dir.path(), "11"),
        (1, false),
        "11:00-12:00 not complete"
    );
    assert_eq!(metrics.partitions_committed(), 2, "hour 10 twice");

    // End of a bounded input: everything written is complete.
    lake.write(rows(&[TEN + 80 * MINUTE]), None).await.unwrap();
    lake.end_of_data().await.unwrap();
    assert_eq!(partition(dir.path(), "11"), (2, true));
    assert_eq!(metrics.late_lake_rows(), 1);
    assert_eq!(metrics.files_written(), 4);
}

#[tokio::test]
async fn a_hop_lag_keeps_the_partition_open_until_its_last_window_closes() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Arc::new(Metrics::new());
    let mut lake = sink(dir.path(), &metrics).await;
    // 5-minute windows every minute, partitioned by window_start: the window
    // starting at 10:59 closes at 11:04.
    lake.set_commit_lag(4 * MINUTE);
    lake.write(rows(&[TEN + 58 * MINUTE]), None).await.unwrap();
    lake.handle_watermark(TEN + 60 * MINUTE).await.unwrap();
    lake.write(rows(&[TEN + 59 * MINUTE]), None).await.unwrap();
    lake.handle_watermark(TEN + 64 * MINUTE - 1).await.unwrap();
    assert_eq!(partition(dir.path(), "10"), (0, false));
    lake.handle_watermark(TEN + 64 * MINUTE).await.unwrap();
    assert_eq!(partition(dir.path(), "10"), (1, true));
    assert_eq!(metrics.late_lake_rows(), 0, "nothing was late");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_trades_of_a_committed_hour_land_in_a_new_file_of_it() {
    use std::collections::BTreeMap;
    let dir = tempfile::tempdir().unwrap();
    // Ten minutes across 15:00 with 5% of trades a minute late: some belong to
    // hour 14 but arrive after the watermark passed 15:00.
    let (feed, topic) = common::feed_file_and_topic(
        dir.path(),
        &[
            "--symbols",
            "10",
            "--rate",
            "200",
            "--duration",
            "10min",
            "--start",
            "2025-11-20T14:55:00Z",
            "--seed",
            "21",
            "--late-fraction",
            "0.05",
        ],
        "late_trades",
        1, // one partition: the watermark is its own, so hour 14 commits as soon as 15:00 has passed
    );
    let lake = dir.path().join("lake");
    let vars = BTreeMap::from([
        ("KAFKA_BROKERS", common::brokers()),
        ("TRADES_TOPIC", topic),
        ("RAW_GROUP", common::unique("raw")),
        ("LAKE_URL", lake.display().to_string()),
    ]);
    let text = std::fs::read_to_string(common::repo_root().join("jobs/trades_raw.sql")).unwrap();
    let report = common::run_bounded("jobs/trades_raw.sql", &text, &|n| vars.get(n).cloned()).await;
    let late = report.metrics.late_lake_rows();
    assert!(late > 0, "the feed has late trades for the committed hour");

    let mut expected: BTreeMap<String, u64> = BTreeMap::new();
    for t in common::read_trades_file(&feed) {
        let hour = chrono::DateTime::from_timestamp_millis(t.ts).unwrap();
        *expected.entry(hour.format("%H").to_string()).or_default() += 1;
    }
    let stats: Vec<serde_json::Value> = serde_json::from_str(&common::duckdb_lake(&[
        "raw_stats",
        &lake.display().to_string(),
    ]))
    .unwrap();
    let got: BTreeMap<String, u64> = stats
        .iter()
        .map(|s| {
            assert_eq!(s["rows"], s["distinct_trades"], "{s}");
            (
                s["hour"].as_str().unwrap().to_string(),
                s["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got, expected,
        "every trade, late ones too, once in its hour"
    );
    let hour_14 = lake.join("trades/dt=2025-11-20/hour=14");
    assert_eq!(
        partition_files(&hour_14),
        (2, true),
        "the on-time file, the late file, the marker"
    );
    eprintln!("{late} late trades of hour 14 written to a second file after its commit");
}

/// (parquet files, has a marker) in a partition folder.
fn partition_files(dir: &Path) -> (usize, bool) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    (
        names.iter().filter(|n| n.ends_with(".parquet")).count(),
        names.iter().any(|n| n == "_SUCCESS"),
    )
}
