//! End to end on the real broker: `jobs/ohlc_1m.sql --bounded` over a few
//! hundred thousand disordered trades with bad records mixed in, compared
//! with an independent fold of the same windows, in the derived topic and
//! in the Parquet lake.

use crate::common;

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, LogicalType, TimeUnit};

const TRADES: usize = 240_000;
const SYMBOLS: usize = 8;
/// 2025-11-20T23:50:00Z: the run crosses midnight, so the lake has two `dt` partitions.
const START_MS: i64 = 1_763_682_600_000;

/// One output row, from either sink.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    symbol: String,
    window_start: i64,
    window_end: i64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
    vwap: f64,
    trades: i64,
}

fn bad_records() -> Vec<(String, Vec<u8>, &'static str)> {
    let huge = format!(
        r#"{{"symbol":"HUGE","price":1.0,"size":1,"ts":{START_MS},"pad":"{}"}}"#,
        "x".repeat(1_200_000)
    );
    vec![
        (
            "BAD".into(),
            b"{\"symbol\":\"AAPL\",\"price\":".to_vec(),
            "truncated JSON",
        ),
        ("BAD".into(), b"not json at all".to_vec(), "not JSON"),
        (
            "BAD".into(),
            br#"{"symbol":"AAPL","price":"abc","size":1,"ts":1763682600000}"#.to_vec(),
            "wrong type",
        ),
        (
            "BAD".into(),
            br#"{"symbol":"AAPL","price":1.5,"ts":1763682600000}"#.to_vec(),
            "missing size",
        ),
        (
            "BAD".into(),
            br#"{"symbol":"AAPL","price":1.5,"size":3}"#.to_vec(),
            "missing ts",
        ),
        ("BAD".into(), Vec::new(), "empty"),
        ("BAD".into(), huge.into_bytes(), "huge"),
        ("BAD".into(), br#"[1,2,3]"#.to_vec(), "array"),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ohlc_job_matches_an_independent_fold() {
    init_logs();
    let trades_topic = unique("trades");
    let dlq_topic = format!("{trades_topic}.dlq");
    let ohlc_topic = unique("ohlc_1m");
    create_topics(&[(&trades_topic, 4), (&dlq_topic, 1), (&ohlc_topic, 1)]).await;

    // Trades arrive out of order (up to 1.5 s, inside the 2 s watermark delay);
    // some carry RFC 3339 times; bad records are spread through the stream.
    let trades = generate_trades(7, TRADES, SYMBOLS, START_MS, 8);
    let mut records: Vec<(String, Vec<u8>)> = arrival_order(&trades, 11, 1500)
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let ts = if i % 997 == 0 {
                format!(
                    "\"{}\"",
                    chrono::DateTime::from_timestamp_millis(t.ts)
                        .unwrap()
                        .to_rfc3339()
                )
            } else {
                t.ts.to_string()
            };
            (t.symbol.clone(), trade_json(t, &ts))
        })
        .collect();
    let bad = bad_records();
    for (k, (key, payload, _)) in bad.iter().enumerate() {
        records.insert(
            1000 + k * (TRADES / bad.len()),
            (key.clone(), payload.clone()),
        );
    }
    produce(&trades_topic, &records).await;

    let lake = tempfile::tempdir().unwrap();
    let vars: BTreeMap<&str, String> = BTreeMap::from([
        ("KAFKA_BROKERS", brokers()),
        ("TRADES_TOPIC", trades_topic.clone()),
        ("OHLC_TOPIC", ohlc_topic.clone()),
        ("OHLC_GROUP", unique("group")),
        ("LAKE_URL", lake.path().display().to_string()),
    ]);
    let env = |name: &str| vars.get(name).cloned();
    let job_path = repo_root().join("jobs/ohlc_1m.sql");
    let text = std::fs::read_to_string(&job_path).unwrap();
    let report = run_bounded("jobs/ohlc_1m.sql", &text, &env).await;

    // Every record is accounted for: read, and either a row or a dead letter.
    let m = &report.metrics;
    assert_eq!(m.records_in(), records.len() as u64);
    assert_eq!(m.bad_records(), bad.len() as u64);
    assert_eq!(
        m.late_rows(),
        0,
        "disorder stayed inside the watermark delay"
    );
    let committed: i64 = report.committed[&trades_topic].values().sum();
    assert_eq!(
        committed,
        records.len() as i64,
        "offsets committed up to the end of every partition"
    );

    let expected = fold_windows(&trades, 60_000, 60_000);
    assert!(
        expected.len() > 250,
        "the data covers many windows: {}",
        expected.len()
    );

    // The derived topic: one record per candle, key = symbol, timestamp = window end.
    let topic_rows: Vec<Row> = read_all(&ohlc_topic)
        .into_iter()
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            let row = Row {
                symbol: v["symbol"].as_str().unwrap().to_string(),
                window_start: v["window_start"].as_i64().unwrap(),
                window_end: v["window_end"].as_i64().unwrap(),
                open: v["open"].as_f64().unwrap(),
                high: v["high"].as_f64().unwrap(),
                low: v["low"].as_f64().unwrap(),
                close: v["close"].as_f64().unwrap(),
                volume: v["volume"].as_f64().unwrap(),
                vwap: v["vwap"].as_f64().unwrap(),
                trades: v["trades"].as_i64().unwrap(),
            };
            assert_eq!(r.key.as_deref(), Some(row.symbol.as_bytes()));
            assert_eq!(r.timestamp, Some(row.window_end));
            row
        })
        .collect();
    assert_rows_match("topic", &topic_rows, &expected);

    // The lake: Hive partitions by the window's date, Parquet as Athena reads it.
    let files = parquet_files(&lake.path().join("ohlc_1m"));
    let dts: std::collections::BTreeSet<String> = files
        .iter()
        .map(|f| {
            f.parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        dts.iter().collect::<Vec<_>>(),
        vec!["dt=2025-11-20", "dt=2025-11-21"]
    );
    for dt in &dts {
        let marker = lake.path().join("ohlc_1m").join(dt).join("_SUCCESS");
        assert!(marker.exists(), "{} committed", marker.display());
    }
    let mut lake_rows = Vec::new();
    for f in &files {
        let dt = f
            .parent()
            .unwrap()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        for row in read_parquet_rows(f) {
            let day = chrono::DateTime::from_timestamp_millis(row.window_start)
                .unwrap()
                .format("dt=%Y-%m-%d")
                .to_string();
            assert_eq!(day, dt, "row filed under the date of its window");
            lake_rows.push(row);
        }
    }
    assert_rows_match("lake", &lake_rows, &expected);

    // Bad records are in the dead-letter topic with their error and origin.
    let dead = read_all(&dlq_topic);
    assert_eq!(dead.len(), bad.len());
    for d in &dead {
        assert!(!d.headers["dlq.error"].is_empty());
        assert_eq!(d.headers["dlq.topic"], trades_topic);
        assert!(d.headers["dlq.offset"].parse::<i64>().is_ok());
    }
    // The oversized record is kept as a prefix the broker accepts, with its real size.
    let huge = dead
        .iter()
        .find(|d| d.headers.contains_key("dlq.original_bytes"))
        .expect("huge record dead-lettered");
    assert!(
        huge.headers["dlq.error"].contains("max_message_bytes"),
        "{}",
        huge.headers["dlq.error"]
    );
    assert_eq!(
        huge.headers["dlq.original_bytes"],
        bad[6].1.len().to_string()
    );
    assert!(huge.payload.len() < 1_000_000 && bad[6].1.starts_with(&huge.payload));
    assert!(dead
        .iter()
        .any(|d| d.headers["dlq.error"].contains("missing required field(s): size")));

    // A second bounded run of the same group starts from the committed offsets: nothing new.
    let again = run_bounded("jobs/ohlc_1m.sql", &text, &env).await;
    assert_eq!(again.metrics.records_in(), 0);
    assert_eq!(again.metrics.rows_out(), 0);
}

fn assert_rows_match(what: &str, rows: &[Row], expected: &BTreeMap<(String, i64), Candle>) {
    assert_eq!(
        rows.len(),
        expected.len(),
        "{what}: one row per (symbol, window)"
    );
    let mut seen = std::collections::BTreeSet::new();
    for r in rows {
        let key = (r.symbol.clone(), r.window_start);
        assert!(seen.insert(key.clone()), "{what}: duplicate row {key:?}");
        let e = expected
            .get(&key)
            .unwrap_or_else(|| panic!("{what}: unexpected row {r:?}"));
        assert_eq!(r.window_end, e.window_end, "{what} {key:?} window_end");
        assert_eq!(
            (r.open, r.high, r.low, r.close),
            (e.open, e.high, e.low, e.close),
            "{what} {key:?} OHLC"
        );
        assert_eq!(r.trades, e.trades, "{what} {key:?} trades");
        assert!(
            close_to(r.volume, e.volume, 1e-9),
            "{what} {key:?} volume {} vs {}",
            r.volume,
            e.volume
        );
        assert!(
            close_to(r.vwap, e.vwap(), 1e-9),
            "{what} {key:?} vwap {} vs {}",
            r.vwap,
            e.vwap()
        );
    }
}

fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(parquet_files(&path));
        } else {
            let name = path.file_name().unwrap().to_string_lossy();
            if name == "_SUCCESS" {
                continue; // the partition commit marker (Athena skips names starting with `_`)
            }
            assert!(
                name.ends_with(".parquet"),
                "only complete Parquet files under the table: {name}"
            );
            out.push(path);
        }
    }
    out.sort();
    out
}

fn read_parquet_rows(path: &Path) -> Vec<Row> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap();
    let meta = builder.metadata().clone();
    let schema = meta.file_metadata().schema_descr();
    for i in 0..schema.num_columns() {
        let col = schema.column(i);
        if col.name().starts_with("window_") {
            assert_eq!(
                col.logical_type_ref(),
                Some(&LogicalType::timestamp(true, TimeUnit::MILLIS)),
                "{}: INT64 TIMESTAMP(MILLIS, UTC)",
                col.name()
            );
        }
    }
    assert!(meta.row_groups().iter().all(|rg| rg
        .columns()
        .iter()
        .all(|c| c.compression() == Compression::SNAPPY)));
    let mut rows = Vec::new();
    for batch in builder.build().unwrap() {
        let b = batch.unwrap();
        let f64s = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone()
        };
        let times = |name: &str| {
            b.column_by_name(name)
                .unwrap()
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap()
                .clone()
        };
        let symbol = b
            .column_by_name("symbol")
            .unwrap()
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .clone();
        let trades = b
            .column_by_name("trades")
            .unwrap()
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .clone();
        let (ws, we) = (times("window_start"), times("window_end"));
        let (o, h, l, c, v, w) = (
            f64s("open"),
            f64s("high"),
            f64s("low"),
            f64s("close"),
            f64s("volume"),
            f64s("vwap"),
        );
        for i in 0..b.num_rows() {
            assert!(!symbol.is_null(i));
            rows.push(Row {
                symbol: symbol.value(i).to_string(),
                window_start: ws.value(i),
                window_end: we.value(i),
                open: o.value(i),
                high: h.value(i),
                low: l.value(i),
                close: c.value(i),
                volume: v.value(i),
                vwap: w.value(i),
                trades: trades.value(i),
            });
        }
    }
    rows
}
