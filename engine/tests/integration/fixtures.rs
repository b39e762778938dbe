//! The recorded fixtures: made by the commands their README lists, and, fed
//! through a real broker, turned by `jobs/ohlc_1m.sql` into the candles an
//! independent fold of the file gives.

use crate::common;

use std::collections::BTreeMap;

use common::*;

/// The `engine produce` commands of fixtures/README.md, split into arguments.
fn recorded_commands() -> Vec<Vec<String>> {
    let readme = std::fs::read_to_string(repo_root().join("fixtures/README.md")).unwrap();
    readme
        .lines()
        .filter(|l| l.starts_with("engine produce ") && l.contains("--to-file"))
        .map(|l| l.split_whitespace().skip(1).map(str::to_string).collect())
        .collect()
}

#[test]
fn fixtures_are_what_their_recorded_commands_make() {
    let commands = recorded_commands();
    assert_eq!(commands.len(), 3, "one command per fixture");
    let dir = tempfile::tempdir().unwrap();
    for mut args in commands {
        let at = args.iter().position(|a| a == "--to-file").unwrap() + 1;
        let committed = repo_root().join(&args[at]);
        let fresh = dir.path().join(committed.file_name().unwrap());
        args[at] = fresh.display().to_string();
        let out = engine_output(&args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            std::fs::read(&fresh).unwrap() == std::fs::read(&committed).unwrap(),
            "{} is not what `engine {}` makes: regenerate it with the README's command",
            committed.display(),
            args.join(" ")
        );
    }
}

/// A line of the contract, read independently of the engine's decoder.
fn as_trade(line: &[u8]) -> Option<Trade> {
    let v: serde_json::Value = serde_json::from_slice(line).ok()?;
    Some(Trade {
        symbol: v["symbol"].as_str()?.to_string(),
        price: v["price"].as_f64()?,
        size: v["size"].as_f64()?,
        ts: v["ts"].as_i64()?,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_and_bad_fixture_gives_the_candles_of_a_fold() {
    // One record per batch, so the watermark moves after every record as in
    // the fold, whatever the broker's fetch sizes are.
    let (late, bad) = fixture_through_ohlc_job("late_and_bad.jsonl", Some(1)).await;
    assert!(
        late > 50 && bad > 50,
        "the fixture has both: {late} late, {bad} bad"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disordered_fixture_gives_the_candles_of_a_fold() {
    let (late, bad) = fixture_through_ohlc_job("disordered.jsonl", None).await;
    assert_eq!((late, bad), (0, 0), "disorder within the watermark delay");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_order_day_gives_the_candles_of_a_fold() {
    let (late, bad) = fixture_through_ohlc_job("day_in_order.jsonl", None).await;
    assert_eq!((late, bad), (0, 0));
}

/// Replays a fixture as recorded to a one-partition topic, runs
/// `jobs/ohlc_1m.sql --bounded` over it (with the source's `batch.size` if
/// given), checks the derived topic, late and bad counts against a fold of the
/// file, and returns those counts.
async fn fixture_through_ohlc_job(name: &str, batch_size: Option<usize>) -> (u64, u64) {
    init_logs();
    let fixture = repo_root().join("fixtures").join(name);
    let bytes = std::fs::read(&fixture).unwrap();
    let lines: Vec<&[u8]> = bytes
        .strip_suffix(b"\n")
        .unwrap()
        .split(|b| *b == b'\n')
        .collect();

    // The fold: in file order on one partition, with the watermark (max event
    // time - 2 s) moving after every record, a trade whose minute has ended at
    // the watermark is late; bad lines are dead letters.
    const MINUTE: i64 = 60_000;
    let (mut on_time, mut late, mut bad) = (Vec::new(), 0u64, 0u64);
    let mut max_ts: Option<i64> = None;
    for line in &lines {
        let Some(t) = as_trade(line) else {
            bad += 1;
            continue;
        };
        let window_end = t.ts.div_euclid(MINUTE) * MINUTE + MINUTE;
        if max_ts.is_some_and(|m| window_end <= m - 2_000) {
            late += 1;
        } else {
            max_ts = Some(max_ts.map_or(t.ts, |m| m.max(t.ts)));
            on_time.push(t);
        }
    }
    let expected = fold_windows(&on_time, MINUTE, MINUTE);

    let topic = unique("fixture_trades");
    let ohlc_topic = unique("fixture_ohlc");
    create_topics(&[(&ohlc_topic, 1)]).await;
    let brokers = brokers();
    let fixture_arg = fixture.display().to_string();
    let out = engine_output([
        "produce",
        "--replay",
        &fixture_arg,
        "--order",
        "file",
        "--speed",
        "max",
        "--partitions",
        "1",
        "--topic",
        &topic,
        "--brokers",
        &brokers,
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("produced {} records", lines.len())),
        "{stderr}"
    );

    let mut text = std::fs::read_to_string(repo_root().join("jobs/ohlc_1m.sql")).unwrap();
    if let Some(n) = batch_size {
        text = text.replacen(
            "format = 'json'",
            &format!("format = 'json', batch.size = {n}"),
            1,
        );
    }
    let lake = tempfile::tempdir().unwrap();
    let vars = BTreeMap::from([
        ("KAFKA_BROKERS", brokers.clone()),
        ("TRADES_TOPIC", topic.clone()),
        ("OHLC_TOPIC", ohlc_topic.clone()),
        ("OHLC_GROUP", unique("group")),
        ("LAKE_URL", lake.path().display().to_string()),
    ]);
    let report = run_bounded("jobs/ohlc_1m.sql", &text, &|n| vars.get(n).cloned()).await;
    let m = &report.metrics;
    assert_eq!(m.records_in(), lines.len() as u64);
    assert_eq!(m.bad_records(), bad);
    assert_eq!(m.late_rows(), late, "late trades are counted");
    assert_eq!(
        read_all(&format!("{topic}.dlq")).len() as u64,
        bad,
        "every bad line is a dead letter"
    );

    let mut got = BTreeMap::new();
    for r in read_all(&ohlc_topic) {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        let key = (
            v["symbol"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
        );
        assert!(got.insert(key.clone(), v).is_none(), "duplicate {key:?}");
    }
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, e) in &expected {
        let v = &got[key];
        let ohlc = |f: &str| v[f].as_f64().unwrap();
        assert_eq!(
            (ohlc("open"), ohlc("high"), ohlc("low"), ohlc("close")),
            (e.open, e.high, e.low, e.close),
            "{key:?}"
        );
        assert_eq!(v["trades"].as_i64().unwrap(), e.trades, "{key:?}");
        assert!(close_to(ohlc("volume"), e.volume, 1e-9), "{key:?}");
        assert!(close_to(ohlc("vwap"), e.vwap(), 1e-9), "{key:?}");
    }
    (late, bad)
}
