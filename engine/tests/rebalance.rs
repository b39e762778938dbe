//! Rebalance: two `engine run --scale-out` processes share the trades topic
//! through the consumer group, each running a lane per partition it was
//! given. One is killed (SIGKILL) mid-run; the group gives its partitions to
//! the survivor, whose new lanes restore them from their checkpoints. The
//! output must equal an independent fold of the input: every candle once in
//! the lake, and the derived topic, deduplicated by (symbol, window), equal.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

fn start_member(vars: &BTreeMap<&str, String>, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_engine"))
        .args([
            "run",
            "jobs/ohlc_1m.sql",
            "--bounded",
            "--scale-out",
            "--checkpoint-interval",
            "200ms",
        ])
        .current_dir(repo_root())
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

/// The partitions of each assignment a member's log shows, in order.
fn assignments(log: &Path) -> Vec<Vec<i32>> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("partitions assigned"))
        .filter_map(|l| {
            let list = l.split("partitions=[").nth(1)?.split(']').next()?;
            Some(list.split(", ").filter_map(|p| p.parse().ok()).collect())
        })
        .collect()
}

/// The partitions of the lanes a log shows starting, in order.
fn started_lanes(log: &Path) -> Vec<i32> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("lane starting"))
        .filter_map(|l| {
            l.split("partition=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// The lanes a log shows starting from a checkpoint: (partition, epoch).
fn restored_lanes(log: &Path) -> Vec<(i32, u64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("restoring from checkpoint"))
        .filter_map(|l| {
            let dir = l.split("state_dir=").nth(1)?.split_whitespace().next()?;
            let partition = dir.rsplit('-').next()?.parse().ok()?;
            let epoch = l.split("epoch=").nth(1)?.split_whitespace().next()?;
            Some((partition, epoch.parse().ok()?))
        })
        .collect()
}

fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = Instant::now() + deadline;
    while !done() {
        assert!(Instant::now() < until, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_takes_over_a_killed_members_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, topic) = feed_file_and_topic(
        dir.path(),
        &[
            "--symbols",
            "50",
            "--rate",
            "2000",
            "--count",
            "1000000",
            "--start",
            "2025-11-20T23:50:00Z",
            "--seed",
            "11",
        ],
        "rebalance_trades",
        4,
    );
    let ohlc_topic = unique("rebalance_ohlc");
    create_topics(&[(&ohlc_topic, 1)]).await;
    let lake = format!("s3://lake/{}", unique("rebalance"));
    let vars = BTreeMap::from([
        ("KAFKA_BROKERS", brokers()),
        ("TRADES_TOPIC", topic.clone()),
        ("OHLC_TOPIC", ohlc_topic.clone()),
        ("OHLC_GROUP", unique("ohlc_group")),
        ("LAKE_URL", lake.clone()),
    ]);

    let (log_a, log_b) = (dir.path().join("a.log"), dir.path().join("b.log"));
    let mut a = start_member(&vars, &log_a);
    let mut b = start_member(&vars, &log_b);
    // Both in the group, each with its share of the four partitions.
    wait_for(
        "both members to hold partitions",
        Duration::from_secs(90),
        || {
            let (aa, bb) = (assignments(&log_a), assignments(&log_b));
            match (aa.last(), bb.last()) {
                (Some(x), Some(y)) => x.len() + y.len() == 4 && !x.is_empty() && !y.is_empty(),
                _ => false,
            }
        },
    );
    std::thread::sleep(Duration::from_millis(400));
    assert!(
        a.try_wait().unwrap().is_none(),
        "member A ended before the group was done: {}",
        std::fs::read_to_string(&log_a).unwrap()
    );
    let a_partitions = assignments(&log_a).last().unwrap().clone();
    a.kill().unwrap(); // SIGKILL: no final checkpoint, no leaving the group
    a.wait().unwrap();
    let b_lanes_before_kill = started_lanes(&log_b).len();
    let killed_at = Instant::now();
    let a_finished = std::fs::read_to_string(&log_a)
        .unwrap()
        .matches("lane finished")
        .count();

    let deadline = Instant::now() + Duration::from_secs(300);
    let status = loop {
        if let Some(status) = b.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            b.kill().unwrap();
            panic!(
                "member B did not finish in 5 minutes: {}",
                std::fs::read_to_string(&log_b).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let takeover = killed_at.elapsed();
    let b_log = std::fs::read_to_string(&log_b).unwrap();
    assert!(status.success(), "member B failed: {b_log}");
    // B was given A's partitions and resumed them from A's checkpoints.
    let b_assignments = assignments(&log_b);
    assert_eq!(
        b_assignments.last().map(Vec::len),
        Some(4),
        "B did not take over all partitions: {b_assignments:?}\n{b_log}"
    );
    let started = started_lanes(&log_b);
    for p in &a_partitions {
        assert!(
            started[b_lanes_before_kill..].contains(p),
            "B did not start a lane for A's partition {p}: {started:?}\n{b_log}"
        );
    }
    // A's lanes checkpointed before the kill; B's resumed from there.
    let restored = restored_lanes(&log_b);

    // The independent fold of what was produced, against the lake and the topic.
    let trades = read_trades_file(&feed);
    let candles = fold_windows(&trades, 60_000, 60_000);
    let lake_candles = lake_candles(&lake, dir.path());
    let (records, topic_candles) = topic_candles(&ohlc_topic);
    let lake_trades: i64 = lake_candles
        .values()
        .map(|v| v["trades"].as_i64().unwrap())
        .sum();
    eprintln!(
        "rebalance: {} trades produced, {lake_trades} counted by the lake's candles; {} candles \
         ({} in the lake, {} records in the topic, {} after dedup); A held partitions {a_partitions:?} \
         ({a_finished} of its lanes had finished) and was killed; B restored {restored:?} \
         (partition, epoch) and finished {:.1} s after the kill",
        trades.len(),
        candles.len(),
        lake_candles.len(),
        records,
        topic_candles.len(),
        takeover.as_secs_f64()
    );
    assert_eq!(
        lake_trades,
        trades.len() as i64,
        "trades lost or counted twice"
    );
    assert_candles_equal(&candles, &lake_candles, &topic_candles);
}
