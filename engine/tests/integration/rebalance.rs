//! Rebalance: `engine run --scale-out` processes share the trades topic
//! through the consumer group, each running a lane per partition it was
//! given.
//! - One of two is killed (SIGKILL) mid-run; the group gives its partitions
//!   to the survivor, whose new lanes restore them from their checkpoints.
//! - One joins a running member under a live feed: the member hands half its
//!   partitions over (lanes stopped at a final checkpoint) and no candle is
//!   sent twice.
//!
//! The output must equal an independent fold of the input: every candle once
//! in the lake, and the derived topic, deduplicated by (symbol, window), equal.

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::*;

fn start_member(vars: &BTreeMap<&str, String>, log: &Path) -> Running {
    start(vars, log, &["--bounded"])
}

/// `engine run jobs/ohlc_1m.sql --scale-out` with 200 ms checkpoints and `extra` arguments.
fn start(vars: &BTreeMap<&str, String>, log: &Path, extra: &[&str]) -> Running {
    let mut args = vec![
        "run",
        "jobs/ohlc_1m.sql",
        "--scale-out",
        "--checkpoint-interval",
        "200ms",
    ];
    args.extend_from_slice(extra);
    spawn_engine(&args, vars, log)
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

/// Waits up to 5 minutes for `child` to exit; fails with its log otherwise.
fn wait_exit(child: &mut Child, log: &Path) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!(
                "{} did not finish in 5 minutes: {}",
                log.display(),
                std::fs::read_to_string(log).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits for `child` to exit; fails unless it succeeded.
fn exits_cleanly(child: &mut Child, log: &Path) {
    let status = wait_exit(child, log);
    assert!(
        status.success(),
        "{}: {status}: {}",
        log.display(),
        std::fs::read_to_string(log).unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn survivor_takes_over_a_killed_members_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let MillionTrades {
        feed,
        ohlc_topic,
        lake,
        vars,
    } = million_trades(dir.path(), "rebalance", "11").await;

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
    // Killed soon after: a member reads its half of the million trades in well under
    // a second now, and one that finished its lanes leaves nothing to take over.
    std::thread::sleep(Duration::from_millis(100));
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

    exits_cleanly(&mut b, &log_b);
    let takeover = killed_at.elapsed();
    let b_log = std::fs::read_to_string(&log_b).unwrap();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_joining_member_takes_partitions_over_without_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    // Ten minutes of market time, replayed a minute per second.
    let LiveFeed {
        feed,
        topic,
        ohlc_topic,
        group,
        lake,
        vars,
    } = live_feed(dir.path(), "handover", "12").await;
    let logs = ["a.log", "b.log", "c.log"].map(|n| dir.path().join(n));

    // A alone, live: all four partitions are A's.
    let mut a = start(&vars, &logs[0], &[]);
    wait_for("A to hold the partitions", Duration::from_secs(60), || {
        assignments(&logs[0]).last().is_some_and(|p| p.len() == 4)
    });
    let mut feed_run = replay_live(&feed, &topic, "60");
    std::thread::sleep(Duration::from_secs(2));
    // B joins while trades flow: A must hand two partitions over.
    let mut b = start(&vars, &logs[1], &[]);
    wait_for("B to hold partitions", Duration::from_secs(90), || {
        assignments(&logs[1]).last().is_some_and(|p| !p.is_empty())
    });
    let handed_over = assignments(&logs[1]).last().unwrap().clone();
    assert!(feed_run.wait().unwrap().success(), "the feed failed");
    let trades = read_trades_file(&feed);
    let produced = trades.len() as i64;
    wait_for(
        "the group to commit every trade",
        Duration::from_secs(120),
        || committed(&topic, &group) == produced,
    );
    // A leaves cleanly (Ctrl-C: final checkpoints), B takes its partitions over,
    // then B leaves too. One at a time: a member that stops in the middle of
    // a rebalance can hold a Tansu group up for minutes (see group.rs).
    let interrupt = |child: &Child| {
        let sent = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    interrupt(&a);
    exits_cleanly(&mut a, &logs[0]);
    wait_for(
        "B to take over A's partitions",
        Duration::from_secs(90),
        || assignments(&logs[1]).last().is_some_and(|p| p.len() == 4),
    );
    interrupt(&b);
    exits_cleanly(&mut b, &logs[1]);
    // A bounded member emits the windows still open: it restores every lane.
    let mut c = start(&vars, &logs[2], &["--bounded"]);
    exits_cleanly(&mut c, &logs[2]);

    let candles = fold_windows(&trades, 60_000, 60_000);
    let lake_candles = lake_candles(&lake, dir.path());
    let (records, topic_candles) = topic_candles(&ohlc_topic);
    let a_revoked = std::fs::read_to_string(&logs[0])
        .unwrap()
        .matches("partitions revoked")
        .count();
    eprintln!(
        "handover: {} trades fed live; B joined and was handed {handed_over:?} (A saw {a_revoked} \
         revocations), then took A's over when A stopped; a bounded member finished; {} candles: \
         {} in the lake, {records} records in the topic, {} distinct",
        trades.len(),
        candles.len(),
        lake_candles.len(),
        topic_candles.len()
    );
    assert_eq!(handed_over.len(), 2, "B's share of four partitions");
    assert_candles_equal(&candles, &lake_candles, &topic_candles);
    // Every hand-over and stop was clean: no candle was sent twice.
    assert_eq!(records, candles.len(), "candles sent twice");
}
