//! The lake as an independent reader (DuckDB) sees it.

use super::*;

/// DuckDB over the lake (`engine/tests/py/duckdb_lake.py` with the services'
/// Python): the independent reader. Its stdout.
pub fn duckdb_lake(args: &[&str]) -> String {
    let python = std::env::var("SERVICES_PYTHON")
        .expect("SERVICES_PYTHON is not set: run the tests with scripts/test.sh");
    let out = std::process::Command::new(python)
        .arg(repo_root().join("engine/tests/py/duckdb_lake.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "duckdb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Every file below `dir`, at any depth.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The rows of the Parquet file at `path` (the parquet crate's reader).
pub fn parquet_batches(path: &std::path::Path) -> Vec<arrow::record_batch::RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(|b| b.unwrap())
        .collect()
}

/// How many rows the Parquet file at `path` holds.
pub fn parquet_rows(path: &std::path::Path) -> usize {
    parquet_batches(path).iter().map(|b| b.num_rows()).sum()
}

/// The 1-minute candles in the lake, read by DuckDB, by (symbol, window_start);
/// fails on a candle written twice.
pub fn lake_candles(
    lake: &str,
    dir: &std::path::Path,
) -> BTreeMap<(String, i64), serde_json::Value> {
    let sql = dir.join("candles.sql");
    std::fs::write(
        &sql,
        "SELECT symbol, window_start, open, high, low, close, volume, trades FROM ohlc_1m",
    )
    .unwrap();
    let rows = duckdb_lake(&["query", lake, &sql.display().to_string()]);
    let mut candles = BTreeMap::new();
    for line in rows.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            v["symbol"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
        );
        assert!(
            candles.insert(key.clone(), v).is_none(),
            "candle {key:?} twice in the lake"
        );
    }
    candles
}

/// Fails unless the lake's and the topic's candles are exactly the folded
/// `candles`: the same (symbol, window) set, the same prices and trade
/// counts, the volume to 1e-9.
pub fn assert_candles_equal(
    candles: &BTreeMap<(String, i64), Candle>,
    lake_candles: &BTreeMap<(String, i64), serde_json::Value>,
    topic_candles: &BTreeMap<(String, i64), serde_json::Value>,
) {
    assert_eq!(
        lake_candles.keys().collect::<Vec<_>>(),
        candles.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        topic_candles.keys().collect::<Vec<_>>(),
        candles.keys().collect::<Vec<_>>()
    );
    for (key, e) in candles {
        let v = &lake_candles[key];
        let f = |n: &str| v[n].as_f64().unwrap();
        assert_eq!(
            (f("open"), f("high"), f("low"), f("close")),
            (e.open, e.high, e.low, e.close),
            "{key:?}"
        );
        assert_eq!(v["trades"].as_i64().unwrap(), e.trades, "{key:?}");
        assert!(close_to(f("volume"), e.volume, 1e-9), "{key:?}");
        let t = &topic_candles[key];
        assert_eq!(
            t["close"].as_f64().unwrap(),
            e.close,
            "{key:?} in the topic"
        );
        assert_eq!(
            t["trades"].as_i64().unwrap(),
            e.trades,
            "{key:?} in the topic"
        );
    }
}
