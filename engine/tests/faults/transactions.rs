//! `sink.commit_mode = 'exactly_once'`: each checkpoint's candles and the
//! source offsets it covers go to Kafka in one transaction.
//!
//! The hard case is a crash after a checkpoint is written and before its
//! transaction commits. The test makes that happen on purpose: under a live
//! feed it freezes the broker (SIGSTOP), waits until the engine has written
//! a checkpoint whose transaction is stuck, kills the engine (SIGKILL) and
//! thaws the broker. The group's offsets then still carry the previous
//! checkpoint's mark, so the restart must send the stuck checkpoint's
//! candles again, from the checkpoint, and a `--bounded` run finishes the
//! input. Every candle must then be in the topic exactly once (no dedup),
//! equal to an independent fold, and the group's offsets must be the ends of
//! the input, committed by the last transaction.
//!
//! Tansu does not hide aborted transactions from `read_committed` readers, so
//! a transaction aborted after some of its records reached the broker would
//! show here as duplicates; the test freezes the broker before the stuck
//! transaction begins, so none of its records reach it. With Apache Kafka a
//! crash at any moment is covered (aborted records are hidden).

use crate::common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;

/// The newest checkpoint epoch with a manifest in `state_dir`.
fn newest_checkpoint(state_dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(state_dir) else {
        return 0;
    };
    entries
        .filter_map(|e| {
            let e = e.ok()?;
            let epoch = e.file_name().to_str()?.strip_prefix("chk-")?.parse().ok()?;
            e.path().join("_manifest.json").exists().then_some(epoch)
        })
        .max()
        .unwrap_or(0)
}

/// Whether checkpoint `epoch` in `state_dir` holds candles for its transaction.
fn has_candles(state_dir: &Path, epoch: u64) -> bool {
    // An exactly-once sink's entry holds its rows for the transaction as files.
    manifest(state_dir, epoch).is_some_and(|m| {
        m["sinks"].as_object().is_some_and(|s| {
            s.values().any(|e| {
                e["files"]
                    .as_object()
                    .is_some_and(|f| f.keys().any(|k| k.starts_with("rows-")))
            })
        })
    })
}

/// The manifest of checkpoint `epoch` in `state_dir`, if it is there.
fn manifest(state_dir: &Path, epoch: u64) -> Option<serde_json::Value> {
    let path = state_dir.join(format!("chk-{epoch:010}/_manifest.json"));
    serde_json::from_slice(&std::fs::read(path).ok()?).ok()
}

/// The next offsets checkpoint `epoch` in `state_dir` records for `topic`, summed.
fn checkpoint_offsets(state_dir: &Path, epoch: u64, topic: &str) -> i64 {
    let manifest = manifest(state_dir, epoch).expect("the checkpoint's manifest");
    let source = manifest["sources"]
        .as_object()
        .unwrap()
        .values()
        .find(|e| e["meta"]["positions"]["topic"] == topic)
        .expect("the source's entry");
    source["meta"]["positions"]["offsets"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_i64().unwrap())
        .sum()
}

/// The checkpoint epochs in the metadata of the group's committed offsets
/// (the marks of the transactions that committed them; none on a broker
/// that drops offset metadata, as Tansu 0.6 does).
fn marks(topic: &str, group: &str) -> Vec<u64> {
    committed_partitions(topic, group)
        .iter()
        .filter_map(|(_, m)| {
            m.strip_prefix("engine.checkpoint=")?
                .split('@')
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn log_text(log: &Path) -> String {
    std::fs::read_to_string(log).unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_cut_short_by_a_crash_is_sent_again_and_every_candle_is_in_the_topic_once() {
    let _one = one_outage_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    // Ten minutes of market time, replayed 30 times faster (20 s).
    let LiveFeed {
        feed,
        topic,
        ohlc_topic,
        group,
        lake,
        mut vars,
    } = live_feed(dir.path(), "txn", "13").await;
    vars.insert("OHLC_COMMIT_MODE", "exactly_once".to_string());
    let state_dir: PathBuf = dir.path().join("state");
    let state_arg = state_dir.display().to_string();
    let run_args = |extra: &[&'static str]| {
        let mut args = vec![
            "run",
            "jobs/ohlc_1m.sql",
            "--state-dir",
            state_arg.as_str(),
            // Longer than a minute of market time at the feed's pace (2 s),
            // so every checkpoint closes windows: has candles to send.
            "--checkpoint-interval",
            "3s",
        ];
        args.extend_from_slice(extra);
        args
    };
    let (live_log, last_log) = (dir.path().join("live.log"), dir.path().join("bounded.log"));

    let mut live = spawn_engine(&run_args(&[]), &vars, &live_log);
    // Its first checkpoint: the source is reading (from the end, as records come).
    wait_for(
        "the live run's first checkpoint",
        Duration::from_secs(60),
        || newest_checkpoint(&state_dir) > 0,
    );
    let mut feed_run = replay_live(&feed, &topic, "30");
    // Some transactions have committed offsets (and candles, once windows close).
    wait_for("a committed transaction", Duration::from_secs(60), || {
        committed(&topic, &group) > 0
    });
    std::thread::sleep(Duration::from_secs(2));

    // Freeze the broker until a checkpoint with candles is written after the
    // freeze: its transaction cannot begin at the broker. (A freeze that lands
    // inside a transaction holds the coordinator there, and no newer
    // checkpoint comes; a checkpoint may close no window: thaw and try again.)
    let broker = service_pid("tansu");
    let mut stuck = None;
    for _ in 0..10 {
        let before = newest_checkpoint(&state_dir);
        signal(&broker, "-STOP");
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until && newest_checkpoint(&state_dir) == before {
            std::thread::sleep(Duration::from_millis(20));
        }
        let newest = newest_checkpoint(&state_dir);
        if newest > before && has_candles(&state_dir, newest) {
            // Let the coordinator reach the broker-bound steps of its transaction.
            std::thread::sleep(Duration::from_secs(1));
            stuck = Some(newest);
            break;
        }
        eprintln!(
            "freeze: checkpoint {before} -> {newest}, no stuck transaction with candles; thawing"
        );
        signal(&broker, "-CONT");
        std::thread::sleep(Duration::from_secs(2));
    }
    let stuck = stuck.expect("no checkpoint was written while the broker was frozen");
    assert!(
        live.try_wait().unwrap().is_none(),
        "the live run ended: {}",
        log_text(&live_log)
    );
    live.kill().unwrap(); // SIGKILL: the stuck transaction never commits
    live.wait().unwrap();
    signal(&broker, "-CONT");
    let newest = newest_checkpoint(&state_dir);
    let group_at = committed(&topic, &group);
    let newest_at = checkpoint_offsets(&state_dir, newest, &topic);
    assert!(
        group_at < newest_at,
        "the group is at {group_at}, checkpoint {newest} at {newest_at}: \
         the crash did not cut a transaction short"
    );

    assert!(feed_run.wait().unwrap().success(), "the feed failed");
    let trades = read_trades_file(&feed);
    // The rest of the input, bounded: the restore sends the stuck transaction again first.
    let mut last = spawn_engine(&run_args(&["--bounded"]), &vars, &last_log);
    let status = last.wait().unwrap();
    let text = log_text(&last_log);
    assert!(status.success(), "bounded run failed: {text}");
    assert!(
        text.contains("sent again"),
        "the restore did not send the stuck transaction again: {text}"
    );

    let candles = fold_windows(&trades, 60_000, 60_000);
    let lake_candles = lake_candles(&lake, dir.path());
    let (records, topic_candles) = topic_candles(&ohlc_topic);
    let (committed, marks) = (committed(&topic, &group), marks(&topic, &group));
    eprintln!(
        "exactly-once: {} trades fed live; broker frozen, checkpoint {stuck} written, engine killed \
         with the group at offset {group_at} (the checkpoint at {newest_at}); the restart restored \
         checkpoint {newest} and sent its transaction again; {} candles, {records} records in the topic (read_committed), \
         {} in the lake; group offsets {committed} (marks {marks:?})",
        trades.len(),
        candles.len(),
        lake_candles.len()
    );
    assert_candles_equal(&candles, &lake_candles, &topic_candles);
    assert_eq!(records, candles.len(), "candles missing or sent twice");
    assert_eq!(
        committed,
        trades.len() as i64,
        "the group's offsets are not the input's end"
    );
    // A broker that keeps offset metadata shows the last transaction's mark.
    assert!(
        marks.iter().all(|&m| m > newest),
        "the last offsets were not committed by a transaction of the bounded run: {marks:?}"
    );
}
