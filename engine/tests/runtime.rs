//! The runtime without services: a job reading an in-process stream
//! (`connector = 'memory'`) into an in-process table and a lake directory,
//! checked against an independent fold. Covers the pipeline, checkpoints,
//! restore of open windows, fallback past a damaged checkpoint, and a crash
//! injected at each commit-phase boundary (failpoints, not timing). Every
//! test holds the failpoint lock: failpoints are global to the process,
//! which is why these tests are a binary of their own rather than a module
//! of `tests/integration/` (a failpoint armed here would fire in any job
//! running beside them).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray};
use arrow::datatypes::{Float64Type, Int64Type, TimestampMillisecondType};
use arrow::record_batch::RecordBatch;
use common::{fold_windows, generate_trades, trade_json, unique, Trade};
use engine::failpoint;
use engine::source::memory;
use engine::{CheckpointOptions, Job, Metrics, RunOptions, RunReport};

/// 2025-11-20T10:00:00Z.
const START: i64 = 1_763_632_800_000;

const JOB: &str = "
CREATE TABLE trades (
    symbol TEXT NOT NULL,
    price  DOUBLE NOT NULL CHECK (price > 0),
    size   DOUBLE NOT NULL,
    ts     TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'memory', stream = '${STREAM}', format = 'json', batch.size = '64',
        event_time.max_ahead = 'none');

CREATE TABLE candles (
    symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, trades BIGINT
) WITH (connector = 'memory', table = '${TABLE}');

CREATE TABLE candles_lake (
    symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP,
    open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, trades BIGINT
) WITH (connector = 'lake', path = '${LAKE}', partition_by = 'dt', format = 'parquet');

CREATE VIEW ohlc AS
SELECT symbol, window_start, window_end,
       first_value(price ORDER BY ts) AS open, max(price) AS high, min(price) AS low,
       last_value(price ORDER BY ts) AS close,
       CAST(sum(CAST(size AS DECIMAL(38, 8))) AS DOUBLE) AS volume, count(*) AS trades
FROM trades
GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE);

INSERT INTO candles SELECT * FROM ohlc;
INSERT INTO candles_lake SELECT * FROM ohlc;
";

/// A candle as the engine wrote it: (open, high, low, close, volume, trades).
type Written = (f64, f64, f64, f64, f64, i64);

/// One test's names: its stream, table, lake and state dir.
struct Setup {
    stream: String,
    table: String,
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        Self {
            stream: unique("trades"),
            table: unique("candles"),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn lake(&self) -> std::path::PathBuf {
        self.dir.path().join("lake")
    }

    fn state_dir(&self) -> String {
        self.dir.path().join("state").display().to_string()
    }

    async fn job(&self) -> Job {
        let vars = BTreeMap::from([
            ("STREAM", self.stream.clone()),
            ("TABLE", self.table.clone()),
            ("LAKE", self.lake().display().to_string()),
        ]);
        Job::from_text("memory.sql", JOB, &|v| vars.get(v).cloned())
            .await
            .unwrap()
    }

    /// Appends trades to the stream, in order, split 0 (keys by symbol).
    fn append(&self, trades: &[Trade]) {
        let stream = memory::stream(&self.stream);
        for t in trades {
            stream.append(
                0,
                &trade_json(t, &t.ts.to_string()),
                Some(t.symbol.as_bytes()),
                None,
            );
        }
    }

    /// Runs the job to the end of what is in the stream, checkpointing into
    /// the state dir (only the final checkpoint: the interval is long).
    async fn bounded(&self) -> engine::Result<RunReport> {
        let options = RunOptions {
            bounded: true,
            checkpoint: Some(CheckpointOptions::new(
                self.state_dir(),
                Duration::from_secs(3600),
            )),
            ..Default::default()
        };
        self.job().await.run(options, stop_flag()).await
    }

    /// The candles in the memory table, each window once.
    fn table_candles(&self) -> BTreeMap<(String, i64), Written> {
        candles(&engine::sink::memory::table(&self.table).rows())
    }

    /// The candles in the lake's published Parquet files, each window once.
    fn lake_candles(&self) -> BTreeMap<(String, i64), Written> {
        let mut batches = Vec::new();
        for path in parquet_files(&self.lake()) {
            let file = std::fs::File::open(&path).unwrap();
            let reader =
                parquet::arrow::arrow_reader::ParquetRecordBatchReader::try_new(file, 1024)
                    .unwrap();
            batches.extend(reader.map(|b| b.unwrap()));
        }
        candles(&batches)
    }

    /// Both outputs equal the fold of `trades`, window by window, and every
    /// lake partition written is committed (its `_SUCCESS` marker published).
    fn assert_exact(&self, trades: &[Trade]) {
        for file in parquet_files(&self.lake()) {
            let marker = file.parent().unwrap().join("_SUCCESS");
            assert!(marker.exists(), "no {}", marker.display());
        }
        let expected = fold_windows(trades, 60_000, 60_000);
        for (what, got) in [
            ("memory table", self.table_candles()),
            ("lake", self.lake_candles()),
        ] {
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>(),
                "{what}: windows"
            );
            for (key, e) in &expected {
                let g = got[key];
                assert_eq!(
                    (g.0, g.1, g.2, g.3, g.5),
                    (e.open, e.high, e.low, e.close, e.trades),
                    "{what}: {key:?}"
                );
                assert!(
                    common::close_to(g.4, e.volume, 1e-12),
                    "{what}: volume {key:?}"
                );
            }
        }
    }
}

/// Failpoints are global to the process: the tests here run one at a time.
async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let guard = LOCK.lock().await;
    failpoint::clear();
    guard
}

fn stop_flag() -> engine::CancellationToken {
    engine::CancellationToken::new()
}

/// Published Parquet files under `dir` (not the staged ones).
fn parquet_files(dir: &Path) -> Vec<std::path::PathBuf> {
    common::files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .filter(|p| !p.components().any(|c| c.as_os_str() == "_staging"))
        .collect()
}

/// Candles by (symbol, window_start ms); a window written twice fails the test.
fn candles(batches: &[RecordBatch]) -> BTreeMap<(String, i64), Written> {
    let mut out = BTreeMap::new();
    for b in batches {
        let col = |name: &str| b.column(b.schema().index_of(name).unwrap()).clone();
        let (symbol, start) = (col("symbol"), col("window_start"));
        let (symbol, start) = (
            symbol.as_string::<i32>(),
            start.as_primitive::<TimestampMillisecondType>(),
        );
        let f = |name: &str| col(name).as_primitive::<Float64Type>().clone();
        let (open, high, low, close, volume) =
            (f("open"), f("high"), f("low"), f("close"), f("volume"));
        let trades = col("trades");
        let trades = trades.as_primitive::<Int64Type>();
        for r in 0..b.num_rows() {
            assert!(symbol.is_valid(r));
            let key = (symbol.value(r).to_string(), start.value(r));
            let value = (
                open.value(r),
                high.value(r),
                low.value(r),
                close.value(r),
                volume.value(r),
                trades.value(r),
            );
            assert!(
                out.insert(key.clone(), value).is_none(),
                "window {key:?} written twice"
            );
        }
    }
    out
}

/// `n` trades of 3 symbols from `START + from_ms`, 100 ms apart.
fn trades(seed: u64, n: usize, from_ms: i64) -> Vec<Trade> {
    generate_trades(seed, n, 3, START + from_ms, 100)
}

#[tokio::test]
async fn a_bounded_run_matches_the_fold_and_bad_records_are_dead_lettered() {
    let _serial = serial().await;
    let setup = Setup::new();
    let mut all = trades(1, 1500, 0);
    setup.append(&all[..700]);
    // A record breaking the CHECK, and one that is no JSON: dead letters, counted.
    let stream = memory::stream(&setup.stream);
    stream.append(
        0,
        br#"{"symbol":"SYM00","price":-1,"size":1,"ts":1763632870000}"#,
        None,
        None,
    );
    stream.append(0, b"{not json", None, None);
    setup.append(&all[700..]);

    let report = setup.bounded().await.unwrap();
    setup.assert_exact(&all);
    assert_eq!(report.metrics.bad_records(), 2);
    let dead = stream.dead_letters();
    assert_eq!(dead.len(), 2);
    assert_eq!(dead[0].position, Some((0, 700)));
    assert!(dead[0].error.contains("price > 0"), "{}", dead[0].error);
    assert_eq!(dead[1].position, Some((0, 701)));

    // A second run reads only what came since: the new windows, nothing twice.
    let more = trades(2, 600, 1500 * 100 + 60_000);
    setup.append(&more);
    setup.bounded().await.unwrap();
    all.extend(more);
    setup.assert_exact(&all);
    assert_eq!(stream.committed()[&0], 1500 + 2 + 600);
}

#[tokio::test]
async fn a_stopped_job_restores_its_open_windows_from_the_final_checkpoint() {
    let _serial = serial().await;
    let setup = Setup::new();
    let all = trades(3, 2000, 0);
    setup.append(&all[..1000]);

    // Unbounded, checkpoints every 50 ms; stopped mid-stream, windows open.
    let job = setup.job().await;
    let metrics = Arc::new(Metrics::new());
    let stop = stop_flag();
    let options = RunOptions {
        checkpoint: Some(CheckpointOptions::new(
            setup.state_dir(),
            Duration::from_millis(50),
        )),
        ..Default::default()
    };
    let run = tokio::spawn(job.run_with_metrics(options, stop.clone(), Arc::clone(&metrics)));
    let deadline = Instant::now() + Duration::from_secs(60);
    while metrics.records_in() < 1000 || metrics.last_checkpoint() < 2 {
        assert!(
            Instant::now() < deadline,
            "no progress: {}",
            metrics.summary()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.cancel();
    run.await.unwrap().unwrap();
    let newest = newest_checkpoint(&setup.state_dir());
    assert!(
        newest.join("operator-0-windows.arrow").exists(),
        "windows were open at the stop, in the final checkpoint"
    );

    // The rest, bounded: every window exact and once, including those open at the stop.
    setup.append(&all[1000..]);
    setup.bounded().await.unwrap();
    setup.assert_exact(&all);
}

#[tokio::test]
async fn a_damaged_newest_checkpoint_falls_back_and_the_output_stays_exact() {
    let _serial = serial().await;
    let setup = Setup::new();
    // Runs end on minute boundaries (600 trades a minute): a bounded run
    // emits every window it has, so a later trade for one of them would be late.
    let all = trades(4, 2400, 0);
    setup.append(&all[..1200]);
    setup.bounded().await.unwrap();
    setup.append(&all[1200..1800]);
    setup.bounded().await.unwrap();

    // The newest manifest cut short: the next run restores the one before,
    // takes back what the lost one published, and reads its trades again.
    let newest = newest_checkpoint(&setup.state_dir());
    let manifest = newest.join("_manifest.json");
    let bytes = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &bytes[..bytes.len() / 2]).unwrap();

    setup.append(&all[1800..]);
    setup.bounded().await.unwrap();
    setup.assert_exact(&all);
}

/// The newest checkpoint folder with a manifest.
fn newest_checkpoint(state_dir: &str) -> std::path::PathBuf {
    let mut dirs: Vec<_> = std::fs::read_dir(state_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| d.join("_manifest.json").exists())
        .collect();
    dirs.sort();
    dirs.pop().expect("a checkpoint")
}

/// Runs to the end with failpoint `name` configured as `action`: the run
/// fails there (or, for a retried store error, completes), and the next run
/// without it makes the output exact.
async fn crash_at(name: &str) {
    let setup = Setup::new();
    let all = trades(5, 1200, 0);
    setup.append(&all);
    failpoint::set(name, 1);
    let first = setup.bounded().await;
    failpoint::clear();
    let err = first
        .expect_err("the run stops at the failpoint")
        .to_string();
    assert!(err.contains("failpoint"), "{err}");
    assert!(
        setup.table_candles().is_empty() || name != "checkpoint::after_manifest",
        "nothing is visible before the commit phase"
    );
    setup.bounded().await.unwrap();
    setup.assert_exact(&all);
}

#[tokio::test]
async fn a_crash_between_the_manifest_and_the_commits_is_committed_by_the_restore() {
    let _serial = serial().await;
    crash_at("checkpoint::after_manifest").await;
}

#[tokio::test]
async fn a_crash_between_two_commits_is_completed_by_the_restore() {
    let _serial = serial().await;
    crash_at("checkpoint::after_commit").await;
}

#[tokio::test]
async fn a_crash_inside_the_lake_publish_is_published_again_by_the_restore() {
    let _serial = serial().await;
    crash_at("lake::publish").await;
}

#[tokio::test]
async fn a_state_dir_failing_twice_is_retried_and_the_checkpoint_completes() {
    let _serial = serial().await;
    let setup = Setup::new();
    let all = trades(6, 1200, 0);
    setup.append(&all);
    failpoint::set("checkpoint::write", 2);
    let report = setup.bounded().await;
    failpoint::clear();
    let report = report.unwrap();
    assert_eq!(report.metrics.checkpoint_failures(), 2);
    setup.assert_exact(&all);
}
