//! The lake for Athena, end to end on the real S3 API (moto): three hours of
//! 50 simulated symbols through `jobs/trades_raw.sql` and `jobs/ohlc_1m.sql
//! --bounded`, then checked by independent readers: every trade in the lake
//! exactly once (DuckDB, against a fold of the produced file), a `_SUCCESS`
//! marker in every partition, one file per partition as the rolling policy
//! predicts, Parquet as Athena reads it, every query of `sql/athena/` giving
//! the same rows through `engine query` and through DuckDB, and partition
//! pruning visible in the plan.

use crate::common;

use std::collections::BTreeMap;

use bytes::Bytes;
use common::*;
use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::basic::{Compression, LogicalType, TimeUnit};
use parquet::file::reader::{FileReader, SerializedFileReader};

/// 2025-11-20T22:30:00Z: three hours cross midnight, so two days and four hours.
const START: &str = "2025-11-20T22:30:00Z";

/// Runs the engine binary from the repository root with `LAKE_URL`; its stdout.
fn engine_query(lake_url: &str, args: &[&str]) -> String {
    let out = engine_at_root(args, [("LAKE_URL", lake_url)]);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// JSON rows with timestamps as epoch ms and absent fields as null, so both readers compare.
fn normalize(lines: &str, columns: &[String]) -> Vec<Vec<serde_json::Value>> {
    lines
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            columns
                .iter()
                .map(|c| match &v[c] {
                    serde_json::Value::String(s) => chrono::DateTime::parse_from_rfc3339(s)
                        .map(|t| serde_json::json!(t.timestamp_millis()))
                        .unwrap_or_else(|_| v[c].clone()),
                    other => other.clone(),
                })
                .collect()
        })
        .collect()
}

fn same_value(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => close_to(x, y, 1e-9),
        _ => a == b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_the_lake_round_trip_is_exact_and_athena_queries_agree() {
    round_trip(&format!("s3://lake/{}", unique("athena"))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_directory_the_same_holds() {
    let lake = tempfile::tempdir().unwrap();
    round_trip(&lake.path().join("lake").display().to_string()).await;
}

/// The whole round trip with the lake at `lake_url` (`s3://bucket/prefix` or a directory).
async fn round_trip(lake_url: &str) {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let (feed, topic) = feed_file_and_topic(
        dir.path(),
        &[
            "--symbols",
            "50",
            "--rate",
            "50",
            "--duration",
            "3h",
            "--start",
            START,
            "--seed",
            "5",
        ],
        "lake_trades",
        4,
    );
    let brokers = brokers();
    let ohlc_topic = unique("lake_ohlc");
    create_topics(&[(&ohlc_topic, 1)]).await;

    let vars = BTreeMap::from([
        ("KAFKA_BROKERS", brokers.clone()),
        ("TRADES_TOPIC", topic.clone()),
        ("OHLC_TOPIC", ohlc_topic.clone()),
        ("OHLC_GROUP", unique("ohlc")),
        ("RAW_GROUP", unique("raw")),
        ("LAKE_URL", lake_url.to_string()),
    ]);
    for job in ["jobs/trades_raw.sql", "jobs/ohlc_1m.sql"] {
        let text = std::fs::read_to_string(repo_root().join(job)).unwrap();
        let report = run_bounded(job, &text, &|n| vars.get(n).cloned()).await;
        assert_eq!(report.metrics.late_lake_rows(), 0, "{job}");
    }

    // Every trade exactly once: DuckDB's counts per partition against a fold of the file.
    let mut expected: BTreeMap<(String, String), (u64, f64)> = BTreeMap::new();
    let text = std::fs::read_to_string(&feed).unwrap();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let ts = chrono::DateTime::from_timestamp_millis(v["ts"].as_i64().unwrap()).unwrap();
        let e = expected
            .entry((
                ts.format("%Y-%m-%d").to_string(),
                ts.format("%H").to_string(),
            ))
            .or_default();
        e.0 += 1;
        e.1 += v["price"].as_f64().unwrap() * v["size"].as_f64().unwrap();
    }
    let total: u64 = expected.values().map(|e| e.0).sum();
    assert!(total > 500_000, "{total} trades");
    let stats: Vec<serde_json::Value> =
        serde_json::from_str(&duckdb_lake(&["raw_stats", lake_url])).unwrap();
    assert_eq!(stats.len(), expected.len(), "{stats:?}");
    for s in &stats {
        let key = (
            s["dt"].as_str().unwrap().to_string(),
            s["hour"].as_str().unwrap().to_string(),
        );
        let (rows, notional) = expected[&key];
        assert_eq!(
            s["rows"].as_u64().unwrap(),
            rows,
            "{key:?}: trades lost or duplicated"
        );
        assert_eq!(s["distinct_trades"], s["rows"], "{key:?}: a trade twice");
        assert!(
            close_to(s["notional"].as_f64().unwrap(), notional, 1e-9),
            "{key:?}"
        );
    }

    // Markers, files per partition and their sizes, Parquet as Athena reads it.
    let lake = engine::storage::open(lake_url).unwrap();
    for (table, partitions, time_column) in [
        ("trades", expected.len(), "ts"),
        ("ohlc_1m", 2, "window_start"),
    ] {
        let objects: Vec<_> = lake
            .store
            .list(Some(&lake.prefix.clone().join(table)))
            .try_collect()
            .await
            .unwrap();
        let mut files: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let mut markers = 0;
        for o in &objects {
            let path = o.location.to_string();
            let (partition, name) = path.rsplit_once('/').unwrap();
            if name == "_SUCCESS" {
                markers += 1;
            } else {
                assert!(name.ends_with(".parquet"), "{path}");
                files.entry(partition.to_string()).or_default().push(o.size);
            }
        }
        assert_eq!(files.len(), partitions, "{table}: {files:?}");
        assert_eq!(
            markers, partitions,
            "{table}: a _SUCCESS marker per partition"
        );
        // 128 MB files and a 5-minute roll: a bounded run of seconds writes one file per partition.
        assert!(files.values().all(|f| f.len() == 1), "{table}: {files:?}");
        let mut sizes: Vec<u64> = files.values().flatten().copied().collect();
        sizes.sort_unstable();
        eprintln!(
            "{table}: {} partitions, {} files, median file {} KiB",
            files.len(),
            sizes.len(),
            sizes[sizes.len() / 2] / 1024
        );

        let first = objects
            .iter()
            .find(|o| o.location.as_ref().ends_with(".parquet"))
            .unwrap();
        let bytes: Bytes = lake
            .store
            .get(&first.location)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let reader = SerializedFileReader::new(bytes).unwrap();
        let meta = reader.metadata();
        let schema = meta.file_metadata().schema_descr();
        let i = (0..schema.num_columns())
            .find(|&i| schema.column(i).name() == time_column)
            .unwrap();
        assert_eq!(
            schema.column(i).logical_type_ref(),
            Some(&LogicalType::timestamp(true, TimeUnit::MILLIS)),
            "{table}.{time_column}: INT64 TIMESTAMP(MILLIS, UTC)"
        );
        assert_eq!(
            schema.column(i).physical_type(),
            parquet::basic::Type::INT64
        );
        assert_eq!(
            meta.row_group(0).column(i).compression(),
            Compression::SNAPPY
        );
    }

    // Each analyst query: the same rows through `engine query` and through DuckDB.
    let mut queries: Vec<_> = std::fs::read_dir(repo_root().join("sql/athena"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    queries.sort();
    assert!(queries.len() >= 6);
    for q in &queries {
        let file = q.display().to_string();
        let ours = engine_query(lake_url, &["query", "-f", &file, "--format", "json"]);
        let theirs = duckdb_lake(&["query", lake_url, &file]);
        let first: serde_json::Value = serde_json::from_str(
            theirs
                .lines()
                .next()
                .unwrap_or_else(|| panic!("{file}: no rows")),
        )
        .unwrap();
        let columns: Vec<String> = first.as_object().unwrap().keys().cloned().collect();
        let (ours, theirs) = (normalize(&ours, &columns), normalize(&theirs, &columns));
        assert_eq!(ours.len(), theirs.len(), "{file}: rows");
        for (a, b) in ours.iter().zip(&theirs) {
            assert!(
                a.iter().zip(b).all(|(x, y)| same_value(x, y)),
                "{file}: {a:?} vs {b:?}"
            );
        }
    }

    // Pruning: a query on one hour reads only that hour's files.
    let plan = engine_query(
        lake_url,
        &[
            "query",
            "EXPLAIN SELECT sum(price * size) FROM trades WHERE dt = '2025-11-20' AND hour = '23'",
        ],
    );
    assert!(plan.contains("dt=2025-11-20/hour=23/"), "{plan}");
    for other in ["hour=22", "hour=00", "hour=01"] {
        assert!(!plan.contains(other), "{other} scanned: {plan}");
    }

    // CSV for spreadsheets; an unknown table names the ones there are.
    let csv = engine_query(
        lake_url,
        &[
            "query",
            "SELECT dt, hour, count(*) AS n FROM market.trades GROUP BY dt, hour ORDER BY dt, hour",
            "--format",
            "csv",
        ],
    );
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("dt,hour,n"));
    let first = (
        (expected.keys().next().unwrap()),
        expected.values().next().unwrap().0,
    );
    assert_eq!(
        lines.next(),
        Some(format!("{},{},{}", first.0 .0, first.0 .1, first.1).as_str())
    );
    let out = engine_at_root(
        &["query", "SELECT * FROM candles"],
        [("LAKE_URL", lake_url)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "table 'awsdatacatalog.market.candles' not found (lake tables: intraday_vwap, ohlc_1m, trades)"
        ),
        "{stderr}"
    );
}
