//! The embedded default: with no KAFKA_BROKERS, `engine run jobs/ohlc_1m.sql`
//! starts an in-process broker and the simulated feed; the candles it writes
//! match an independent fold of the same feed written by `engine produce --to-file`.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow::array::{Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

const START: &str = "2025-11-20T14:30:00Z";

#[test]
fn embedded_run_matches_the_same_feed_folded() {
    let dir = tempfile::tempdir().unwrap();
    let job = repo_root().join("jobs/ohlc_1m.sql");
    let mut run = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args([
            "run",
            job.to_str().unwrap(),
            "--speed",
            "30",
            "--seed",
            "5",
            "--start",
            START,
        ])
        .env_remove("KAFKA_BROKERS")
        .env_remove("LAKE_URL")
        .env("RUST_LOG", "info")
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(run.stderr.take().unwrap()).lines();
    let mut banner = String::new();
    for line in stderr.by_ref() {
        let line = line.unwrap();
        if line.contains("embedded Kafka-protocol broker on") {
            banner = line.clone();
        }
        if line.contains("source started") {
            break;
        }
    }
    assert!(
        banner.contains("KAFKA_BROKERS=127.0.0.1:"),
        "prints the broker address: {banner}"
    );
    // Let a few minutes of market time pass (30x), then stop as a user would.
    std::thread::sleep(Duration::from_secs(8));
    assert!(Command::new("kill")
        .args(["-INT", &run.id().to_string()])
        .status()
        .unwrap()
        .success());
    let log: Vec<String> = stderr.map_while(Result::ok).collect();
    let status = run.wait().unwrap();
    assert!(status.success(), "{status}\n{}", log.join("\n"));

    // The same feed, independently: same seed, start and defaults, as JSON lines.
    let feed = dir.path().join("feed.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args([
            "produce",
            "--seed",
            "5",
            "--start",
            START,
            "--duration",
            "30min",
            "--speed",
            "max",
            "--to-file",
        ])
        .arg(&feed)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trades = read_trades_file(&feed);
    let expected = fold_windows(&trades, 60_000, 60_000);

    let mut candles = 0;
    for path in files_under(&dir.path().join("lake/ohlc_1m")) {
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let symbol = b
                .column_by_name("symbol")
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap();
            let start = b
                .column_by_name("window_start")
                .unwrap()
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            let f = |n: &str| {
                b.column_by_name(n)
                    .unwrap()
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .unwrap()
                    .clone()
            };
            let (open, close, volume) = (f("open"), f("close"), f("volume"));
            let n = b
                .column_by_name("trades")
                .unwrap()
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap();
            for i in 0..b.num_rows() {
                let e = &expected[&(symbol.value(i).to_string(), start.value(i))];
                assert_eq!(
                    (open.value(i), close.value(i), n.value(i)),
                    (e.open, e.close, e.trades)
                );
                assert!(close_to(volume.value(i), e.volume, 1e-9));
                candles += 1;
            }
        }
    }
    assert!(
        candles >= 20,
        "several windows closed in 8 s at 30x: {candles}\n{}",
        log.join("\n")
    );
}
