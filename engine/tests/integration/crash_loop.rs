//! Crash loop: the raw and 1-minute jobs are killed with SIGKILL at random
//! moments, again and again, and restarted until they finish `--bounded`.
//! Checkpoints make the end result exact: every trade in the lake once, every
//! candle once, and the derived topic, deduplicated by (symbol, window),
//! equal to an independent fold of the produced trades.

use crate::common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};

/// Kills per job before it may run to the end.
const KILLS: usize = 10;

fn start_job(job: &str, vars: &BTreeMap<&str, String>, log: &std::path::Path) -> Running {
    spawn_engine(
        &["run", job, "--bounded", "--checkpoint-interval", "200ms"],
        vars,
        log,
    )
}

/// The checkpoint a run's log says it restored from.
fn restored_epoch(log: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let line = text
        .lines()
        .find(|l| l.contains("restoring from checkpoint"))?;
    line.split("epoch=")
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Runs `job` until it exits by itself, killing it `KILLS` times first;
/// returns the kills and the checkpoint each restart resumed from.
fn crash_until_done(job: &str, vars: &BTreeMap<&str, String>, seed: u64) -> (usize, Vec<u64>) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (mut kills, mut resumed) = (0, Vec::new());
    let logs = tempfile::tempdir().unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    for attempt in 0.. {
        assert!(
            Instant::now() < deadline,
            "{job} did not finish in 10 minutes"
        );
        let log = logs.path().join(format!("{attempt}.log"));
        let mut child = start_job(job, vars, &log);
        if kills < KILLS {
            std::thread::sleep(Duration::from_millis(rng.random_range(300..1500)));
            if child.try_wait().unwrap().is_none() {
                child.kill().unwrap(); // SIGKILL: no clean shutdown, no final checkpoint
                child.wait().unwrap();
                kills += 1;
                resumed.extend(restored_epoch(&log));
                continue;
            }
        }
        let status = child.wait().unwrap();
        assert!(
            status.success(),
            "{job} failed after {kills} kills: {status}: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        resumed.extend(restored_epoch(&log));
        if kills >= KILLS {
            return (kills, resumed);
        }
    }
    unreachable!("the loop returns or fails")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_ten_times_the_output_is_still_exact() {
    let dir = tempfile::tempdir().unwrap();
    let MillionTrades {
        feed,
        ohlc_topic,
        lake,
        vars,
    } = million_trades(dir.path(), "crash", "9").await;
    // Both jobs at once, as in production, each killed at its own random moments.
    let raw = {
        let vars = vars.clone();
        std::thread::spawn(move || crash_until_done("jobs/trades_raw.sql", &vars, 1))
    };
    let (ohlc_kills, ohlc_resumed) = crash_until_done("jobs/ohlc_1m.sql", &vars, 2);
    let (raw_kills, raw_resumed) = raw.join().unwrap();
    for (job, resumed) in [("raw", &raw_resumed), ("ohlc", &ohlc_resumed)] {
        // Each restart resumed from the newest checkpoint, and they moved on between kills.
        assert!(
            resumed.windows(2).all(|w| w[0] <= w[1]),
            "{job}: {resumed:?}"
        );
        let distinct: std::collections::BTreeSet<_> = resumed.iter().collect();
        assert!(
            distinct.len() >= 3,
            "{job} made little progress between kills: {resumed:?}"
        );
    }

    // The independent fold of what was produced.
    let trades = read_trades_file(&feed);
    let candles = fold_windows(&trades, 60_000, 60_000);

    // The lake, read by DuckDB: every trade once, every candle once and right.
    let stats: Vec<serde_json::Value> =
        serde_json::from_str(&duckdb_lake(&["raw_stats", &lake])).unwrap();
    let in_lake: u64 = stats.iter().map(|s| s["rows"].as_u64().unwrap()).sum();
    let distinct: u64 = stats
        .iter()
        .map(|s| s["distinct_trades"].as_u64().unwrap())
        .sum();
    let lake_candles = lake_candles(&lake, dir.path());

    // The derived topic: at least once, each replay the same record (key, timestamp
    // and value to the last digit: the job sums as exact DECIMAL).
    let (records, topic_candles) = topic_candles(&ohlc_topic);
    eprintln!(
        "crash loop: {} trades produced, {in_lake} in the lake ({} duplicated), \
         {} candles ({} in the lake, {} records in the topic, {} after dedup); \
         restarts survived: raw {raw_kills} (resumed from checkpoints {raw_resumed:?}), \
         ohlc {ohlc_kills} (from {ohlc_resumed:?})",
        trades.len(),
        in_lake - distinct,
        candles.len(),
        lake_candles.len(),
        records,
        topic_candles.len()
    );
    assert_eq!(in_lake, trades.len() as u64, "trades lost or duplicated");
    assert_eq!(distinct, in_lake, "a trade twice in the lake");
    assert_candles_equal(&candles, &lake_candles, &topic_candles);
}

/// Complete checkpoints in a state directory on disk, oldest first.
fn complete_checkpoints(state_dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir(state_dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    dirs.retain(|d: &std::path::PathBuf| d.join("_manifest.json").exists());
    dirs.sort();
    dirs
}

/// The file of the first statement's open windows in checkpoint folder `dir`.
fn window_state(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("operator-0-windows.arrow")
}

/// Runs the 1-minute job until it has written two new checkpoints, the newer
/// with window state, then kills it. Unbounded: a bounded run could read
/// the rest of the topic before its second checkpoint and end.
fn run_until_checkpoints(
    vars: &BTreeMap<&str, String>,
    state_dir: &std::path::Path,
    log: &std::path::Path,
) {
    let before = complete_checkpoints(state_dir);
    let args = ["run", "jobs/ohlc_1m.sql", "--checkpoint-interval", "200ms"];
    let mut child = spawn_engine(&args, vars, log);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = complete_checkpoints(state_dir);
        let new = now.iter().filter(|d| !before.contains(d)).count();
        if new >= 2 && window_state(now.last().unwrap()).exists() {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the job ended before two checkpoints:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "no checkpoints after 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_newest_checkpoint_falls_back_and_stays_exact() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, topic) = feed_file_and_topic(
        dir.path(),
        &[
            "--symbols",
            "20",
            "--rate",
            "1000",
            "--count",
            "400000",
            "--start",
            "2025-11-20T23:58:00Z",
            "--seed",
            "4",
        ],
        "damaged_trades",
        4,
    );
    let ohlc_topic = unique("damaged_ohlc");
    create_topics(&[(&ohlc_topic, 1)]).await;
    let lake = dir.path().join("lake");
    let state_dir = lake.join("_checkpoints/ohlc_1m");
    let vars = BTreeMap::from([
        ("KAFKA_BROKERS", brokers()),
        ("TRADES_TOPIC", topic),
        ("OHLC_TOPIC", ohlc_topic.clone()),
        ("OHLC_GROUP", unique("ohlc")),
        ("LAKE_URL", lake.display().to_string()),
    ]);

    // Killed with window state in its newest checkpoint; that state file is cut short.
    let logs = tempfile::tempdir().unwrap();
    run_until_checkpoints(&vars, &state_dir, &logs.path().join("1.log"));
    let newest = complete_checkpoints(&state_dir).pop().unwrap();
    let state = window_state(&newest);
    let bytes = std::fs::read(&state).unwrap();
    std::fs::write(&state, &bytes[..bytes.len() / 2]).unwrap();

    // Killed again; this time the newest manifest is cut short.
    run_until_checkpoints(&vars, &state_dir, &logs.path().join("2.log"));
    let newest = complete_checkpoints(&state_dir).pop().unwrap();
    let manifest = newest.join("_manifest.json");
    let bytes = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &bytes[..bytes.len() / 2]).unwrap();

    // Then to the end.
    let log = logs.path().join("3.log");
    let status = start_job("jobs/ohlc_1m.sql", &vars, &log).wait().unwrap();
    assert!(
        status.success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    for n in ["2", "3"] {
        let text = std::fs::read_to_string(logs.path().join(format!("{n}.log"))).unwrap();
        assert!(
            text.contains("checkpoint is damaged; using the one before it"),
            "run {n} saw the damage: {text}"
        );
    }

    let candles = fold_windows(&read_trades_file(&feed), 60_000, 60_000);
    let lake_candles = lake_candles(&lake.display().to_string(), dir.path());
    assert_eq!(
        lake_candles.keys().collect::<Vec<_>>(),
        candles.keys().collect::<Vec<_>>()
    );
    for (key, e) in &candles {
        let v = &lake_candles[key];
        assert_eq!(
            (v["close"].as_f64().unwrap(), v["trades"].as_i64().unwrap()),
            (e.close, e.trades),
            "{key:?}"
        );
    }
    eprintln!(
        "damaged checkpoints: {} candles in the lake after two damaged newest checkpoints, each once and exact",
        lake_candles.len()
    );
}
