//! When candles come out, through the real broker: the live job's early rows,
//! corrections and late rows; a quiet feed whose last candles still close
//! (`watermark.idle_advance`); and revisions and late rows that are the same
//! after a kill -9 and restore. Every candle is checked against a plain fold.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use serde_json::Value;

/// 2025-11-20T23:58:00Z: the first minute; the second ends at midnight.
const M0: i64 = 1_763_683_080_000;
const M0_END: i64 = M0 + 60_000;
const MIDNIGHT: i64 = M0 + 120_000;

/// Trades of A and B taking turns every 250 ms in `[from, to)`.
fn trades_between(from: i64, to: i64) -> Vec<Trade> {
    (0..)
        .map(|i| from + i * 250)
        .take_while(|&ts| ts < to)
        .map(|ts| Trade {
            symbol: if (ts / 250) % 2 == 0 { "A" } else { "B" }.into(),
            price: 100.0 + ((ts / 250) % 17) as f64 * 0.25,
            size: 1.0 + ((ts / 250) % 5) as f64,
            ts,
        })
        .collect()
}

fn trade(symbol: &str, ts: i64, price: f64) -> Trade {
    Trade {
        symbol: symbol.into(),
        price,
        size: 7.0,
        ts,
    }
}

/// The JSON records of a topic, in order.
fn values(topic: &str) -> Vec<Value> {
    read_all(topic)
        .iter()
        .map(|r| serde_json::from_slice(&r.payload).unwrap())
        .collect()
}

fn candle_of(v: &Value) -> (f64, f64, f64, f64, i64) {
    let f = |n: &str| v[n].as_f64().unwrap();
    (
        f("open"),
        f("high"),
        f("low"),
        f("close"),
        v["trades"].as_i64().unwrap(),
    )
}

fn folded(c: &Candle) -> (f64, f64, f64, f64, i64) {
    (c.open, c.high, c.low, c.close, c.trades)
}

/// The fold of `trades` for (symbol, 1-minute window starting at `start`).
fn fold_of(trades: &[Trade], symbol: &str, start: i64) -> Candle {
    fold_windows(trades, 60_000, 60_000)[&(symbol.to_string(), start)].clone()
}

fn key(v: &Value) -> (String, i64) {
    (
        v["symbol"].as_str().unwrap().to_string(),
        v["window_start"].as_i64().unwrap(),
    )
}

/// The live job (`EMIT EVERY 1 s`, `ALLOW LATENESS 30 s`, `LATE DATA TO
/// trades_late`): every early row equals the fold of the trades of its
/// symbol and minute up to some point of the feed; the final row the fold of
/// the trades on time; a trade within the lateness a correction; a trade
/// past it one record on the late topic and one `late_rows`.
#[tokio::test]
async fn live_job_emits_early_rows_corrections_and_late_rows() {
    let dir = tempfile::tempdir().unwrap();
    let (trades_topic, live, late) = (unique("trades"), unique("live"), unique("late"));
    create_topics(&[(&trades_topic, 1), (&live, 1), (&late, 1)]).await;
    let vars = BTreeMap::from([
        ("KAFKA_BROKERS", brokers()),
        ("TRADES_TOPIC", trades_topic.clone()),
        ("LIVE_TOPIC", live.clone()),
        ("LATE_TOPIC", late.clone()),
        ("LIVE_GROUP", unique("live-group")),
    ]);
    let state = dir.path().join("state").display().to_string();
    let log = dir.path().join("engine.log");
    let mut engine = spawn_engine(
        &[
            "run",
            "jobs/ohlc_1m_live.sql",
            "--state-dir",
            &state,
            "--checkpoint-interval",
            "1s",
        ],
        &vars,
        &log,
    );
    let mut sent: Vec<Trade> = Vec::new();
    let mut send = async |trades: Vec<Trade>| {
        produce(&trades_topic, &trade_records(&trades)).await;
        sent.extend(trades);
    };
    let rows_where = |done: &dyn Fn(&[Value]) -> bool, what: &str| {
        wait_for(what, Duration::from_secs(60), || done(&values(&live)));
    };

    // The first half minute: early rows while the minute is open.
    send(trades_between(M0, M0 + 30_000)).await;
    let first_half = trades_between(M0, M0 + 30_000);
    for s in ["A", "B"] {
        let all = fold_of(&first_half, s, M0).trades;
        rows_where(
            &|rows| {
                rows.iter()
                    .any(|v| key(v) == (s.into(), M0) && v["trades"] == all)
            },
            "early rows of the whole first half",
        );
    }
    // On past the minute's end: its final rows.
    send(trades_between(M0 + 30_000, M0_END + 14_000)).await;
    let finals = |rows: &[Value]| {
        rows.iter()
            .filter(|v| v["window_start"] == M0 && v["window_final"] == true)
            .count()
    };
    rows_where(&|rows| finals(rows) >= 2, "the first minute's final rows");
    // A trade 3 s before the minute's end, 15 s after it: a correction.
    let allowed = trade("A", M0_END - 3_000, 150.0);
    let mut then = vec![allowed.clone()];
    then.extend(trades_between(M0_END + 14_000, M0_END + 44_000));
    send(then).await;
    rows_where(&|rows| finals(rows) >= 3, "the correction");
    // A trade 5 s before the minute's end, 45 s after it (past the lateness): late.
    let too_late = trade("B", M0_END - 5_000, 1.5);
    let mut then = vec![too_late.clone()];
    then.extend(trades_between(M0_END + 44_000, MIDNIGHT - 4_000));
    send(then).await;
    wait_for("the late row", Duration::from_secs(60), || {
        !read_all(&late).is_empty()
    });
    signal(&engine.id().to_string(), "-INT");
    assert!(
        engine.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("late_rows=1 "), "{stderr}");

    let rows = values(&live);
    let on_time: Vec<Trade> = sent
        .iter()
        .filter(|t| **t != allowed && **t != too_late)
        .cloned()
        .collect();
    let mut next_revision: BTreeMap<(String, i64), i64> = BTreeMap::new();
    let mut finals_seen: BTreeMap<(String, i64), Vec<Value>> = BTreeMap::new();
    for v in &rows {
        let k = key(v);
        let revision = next_revision.entry(k.clone()).or_default();
        assert_eq!(
            v["window_revision"].as_i64(),
            Some(*revision),
            "revisions count up: {v}"
        );
        *revision += 1;
        // The trades of its symbol and window, in the order sent.
        let window: Vec<Trade> = sent
            .iter()
            .filter(|t| t.symbol == k.0 && t.ts.div_euclid(60_000) * 60_000 == k.1)
            .cloned()
            .collect();
        if v["window_final"] == false {
            assert!(
                finals_seen.get(&k).is_none(),
                "an early row after the final one: {v}"
            );
            let n = v["trades"].as_u64().unwrap() as usize;
            let prefix = fold_of(&window[..n], &k.0, k.1);
            assert_eq!(
                candle_of(v),
                folded(&prefix),
                "{v} is the fold of the first {n} trades"
            );
            assert!(close_to(
                v["volume"].as_f64().unwrap(),
                prefix.volume,
                1e-12
            ));
        } else {
            finals_seen.entry(k).or_default().push(v.clone());
        }
    }
    // The first minute: final rows equal the fold of the trades on time, then A's correction.
    let b = &finals_seen[&("B".into(), M0)];
    assert_eq!(b.len(), 1, "B has no correction: {b:?}");
    assert_eq!(candle_of(&b[0]), folded(&fold_of(&on_time, "B", M0)));
    let a = &finals_seen[&("A".into(), M0)];
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(candle_of(&a[0]), folded(&fold_of(&on_time, "A", M0)));
    let mut with_allowed = on_time.clone();
    with_allowed.push(allowed.clone());
    assert_eq!(candle_of(&a[1]), folded(&fold_of(&with_allowed, "A", M0)));
    assert_eq!(
        a[1]["window_revision"].as_i64().unwrap(),
        a[0]["window_revision"].as_i64().unwrap() + 1
    );
    // The second minute never closed (no trade after it): early rows only.
    assert!(!finals_seen.contains_key(&("A".into(), M0_END)));
    assert!(rows.iter().any(|v| v["window_start"] == M0_END));

    // The late row: the trade's own columns, why, the watermark it met, the statement.
    let late_rows = values(&late);
    assert_eq!(late_rows.len(), 1, "{late_rows:?}");
    let l = &late_rows[0];
    assert_eq!(
        (l["symbol"].as_str(), l["ts"].as_i64(), l["price"].as_f64()),
        (Some("B"), Some(too_late.ts), Some(1.5))
    );
    assert!(
        l["late_reason"]
            .as_str()
            .unwrap()
            .starts_with("window closed"),
        "{l}"
    );
    assert_eq!(l["statement"], "ohlc_1m_live");
    assert!(
        l["watermark_at_arrival"].as_i64().unwrap() >= M0_END + 30_000,
        "{l}"
    );
}

/// `jobs/ohlc_1m.sql` with `watermark.idle_advance`: the feed stops at
/// 23:59:56 and nothing more arrives, yet the last minute's candles come out
/// and the day's lake partition gets its `_SUCCESS` marker.
#[tokio::test]
async fn a_quiet_feed_still_closes_its_last_candles() {
    let dir = tempfile::tempdir().unwrap();
    let (trades_topic, ohlc) = (unique("trades"), unique("ohlc"));
    create_topics(&[(&trades_topic, 1), (&ohlc, 1)]).await;
    let trades = trades_between(M0, MIDNIGHT - 4_000);
    produce(&trades_topic, &trade_records(&trades)).await;
    let lake = dir.path().join("lake");
    let vars = BTreeMap::from([
        ("KAFKA_BROKERS", brokers()),
        ("TRADES_TOPIC", trades_topic.clone()),
        ("OHLC_TOPIC", ohlc.clone()),
        ("OHLC_GROUP", unique("ohlc-group")),
        ("LAKE_URL", lake.display().to_string()),
        ("IDLE_ADVANCE", "2s".into()),
    ]);
    let log = dir.path().join("engine.log");
    let mut engine = spawn_engine(
        &["run", "jobs/ohlc_1m.sql", "--checkpoint-interval", "1s"],
        &vars,
        &log,
    );
    let marker = lake.join("ohlc_1m/dt=2025-11-20/_SUCCESS");
    wait_for("the day's _SUCCESS marker", Duration::from_secs(90), || {
        marker.exists()
    });
    signal(&engine.id().to_string(), "-INT");
    assert!(
        engine.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    let expected = fold_windows(&trades, 60_000, 60_000);
    assert_eq!(expected.len(), 4);
    let (_, topic) = topic_candles(&ohlc);
    let in_lake = lake_candles(&lake.display().to_string(), dir.path());
    assert_candles_equal(&expected, &in_lake, &topic);
}

/// A job with `ALLOW LATENESS` and `LATE DATA TO`, run whole (bounded), and
/// run again killed with SIGKILL half way and restored: the same revisions
/// of every candle, the same late rows, every replayed record equal.
#[tokio::test]
async fn revisions_and_late_rows_are_the_same_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    // Twelve minutes of three symbols; in each minute after the first, 15 s
    // and 25 s in, a trade 4 s before the previous minute's end (within the
    // lateness), and 45 s in, one 6 s before it (past the lateness).
    let mut trades = Vec::new();
    let (mut allowed, mut late, mut cuts) = (0, Vec::new(), Vec::new());
    for m in 0..12 {
        let start = M0 - 11 * 60_000 + m * 60_000;
        for i in 0..300 {
            let ts = start + i * 200;
            // Cut 20 s into a minute: the minute before is closed and kept (with
            // its correction), so the checkpoint holds closed windows and revisions.
            if (m == 3 || m == 6) && i == 100 {
                cuts.push(trades.len());
            }
            // Two trades for the minute before, 15 s and 25 s in (either side of a
            // cut): corrections 1 and 2 of one candle.
            if m > 0 && (i == 75 || i == 125) {
                let symbol = ["A", "B", "C"][m as usize % 3];
                let price = 90.0 + m as f64 + (i / 125) as f64 / 2.0;
                trades.push(trade(symbol, start - 4_000 + i, price));
                allowed += 1;
            }
            if m > 0 && i == 225 {
                let t = trade(
                    ["B", "C", "A"][m as usize % 3],
                    start - 6_000,
                    80.0 + m as f64,
                );
                late.push(t.clone());
                trades.push(t);
            }
            trades.push(Trade {
                symbol: ["A", "B", "C"][i as usize % 3].into(),
                price: 100.0 + ((i * 7 + m) % 23) as f64 * 0.5,
                size: 1.0 + (i % 4) as f64,
                ts,
            });
        }
    }
    let job = dir.path().join("late.sql");
    std::fs::write(
        &job,
        "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL,
            ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'kafka', bootstrap_servers = '${KAFKA_BROKERS}', topic = '${TRADES_TOPIC}',
            group_id = '${GROUP}', key_field = 'symbol', format = 'json', batch.size = '20');
         CREATE TABLE candles (symbol TEXT, window_start TIMESTAMP, window_revision BIGINT,
            window_final BOOLEAN, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, trades BIGINT)
         WITH (connector = 'kafka', bootstrap_servers = '${KAFKA_BROKERS}', topic = '${CANDLES}',
            key_field = 'symbol', format = 'json');
         CREATE TABLE late (symbol TEXT, price DOUBLE, size DOUBLE, ts TIMESTAMP, late_reason TEXT,
            watermark_at_arrival TIMESTAMP, statement TEXT)
         WITH (connector = 'kafka', bootstrap_servers = '${KAFKA_BROKERS}', topic = '${LATE}',
            format = 'json');
         INSERT INTO candles SELECT symbol, window_start, window_revision, window_final,
            first_value(price ORDER BY ts), max(price), min(price), last_value(price ORDER BY ts), count(*)
         FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE)
         ALLOW LATENESS INTERVAL '30' SECOND LATE DATA TO late;",
    )
    .unwrap();
    let job = job.display().to_string();
    let run = |name: &str| {
        let vars = BTreeMap::from([
            ("KAFKA_BROKERS", brokers()),
            ("TRADES_TOPIC", unique(&format!("{name}-trades"))),
            ("CANDLES", unique(&format!("{name}-candles"))),
            ("LATE", unique(&format!("{name}-late"))),
            ("GROUP", unique(&format!("{name}-group"))),
        ]);
        (
            vars,
            dir.path()
                .join(format!("{name}-state"))
                .display()
                .to_string(),
        )
    };
    let bounded = |vars: &BTreeMap<&str, String>, state: &str| {
        let args = ["run", &job, "--bounded", "--state-dir", state];
        let out = engine_at_root(&args, vars.iter().map(|(k, v)| (*k, v.as_str())));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let records = trade_records(&trades);
    let (quarter, half) = (cuts[0], cuts[1]);

    // Whole: one bounded run over everything.
    let (whole, whole_state) = run("whole");
    create_topics(&[
        (&whole["TRADES_TOPIC"], 1),
        (&whole["CANDLES"], 1),
        (&whole["LATE"], 1),
    ])
    .await;
    produce(&whole["TRADES_TOPIC"], &records).await;
    bounded(&whole, &whole_state);

    // Killed: a part live, a checkpoint, another part, SIGKILL (its candles
    // are likely not checkpointed yet), then the rest bounded from the checkpoint.
    let (killed, killed_state) = run("killed");
    create_topics(&[
        (&killed["TRADES_TOPIC"], 1),
        (&killed["CANDLES"], 1),
        (&killed["LATE"], 1),
    ])
    .await;
    let log = dir.path().join("killed.log");
    let mut engine = spawn_engine(
        &[
            "run",
            &job,
            "--state-dir",
            &killed_state,
            "--checkpoint-interval",
            "3s",
        ],
        &killed,
        &log,
    );
    let candles = killed["CANDLES"].clone();
    produce(&killed["TRADES_TOPIC"], &records[..quarter]).await;
    wait_for("candles of the first part", Duration::from_secs(60), || {
        read_all(&candles).len() > 5
    });
    // A checkpoint holding closed windows and revision counts, not only open windows.
    let held = |suffix: &str| {
        let dir = std::path::Path::new(&killed_state);
        dir.exists()
            && files_under(dir)
                .iter()
                .any(|f| f.to_string_lossy().ends_with(suffix))
    };
    wait_for(
        "a checkpoint of closed windows and revisions",
        Duration::from_secs(60),
        || held("closed.arrow") && held("revisions.arrow"),
    );
    let before = read_all(&candles).len();
    produce(&killed["TRADES_TOPIC"], &records[quarter..half]).await;
    wait_for(
        "candles of the second part",
        Duration::from_secs(60),
        || read_all(&candles).len() > before,
    );
    signal(&engine.id().to_string(), "-KILL");
    engine.wait().unwrap();
    produce(&killed["TRADES_TOPIC"], &records[half..]).await;
    bounded(&killed, &killed_state);

    // Each (symbol, window, revision) once, a replayed record equal to the first.
    let revisions = |topic: &str| {
        let mut out: BTreeMap<(String, i64, i64), Value> = BTreeMap::new();
        let all = values(topic);
        for v in &all {
            let (s, w) = key(v);
            let k = (s, w, v["window_revision"].as_i64().unwrap());
            if let Some(before) = out.insert(k.clone(), v.clone()) {
                assert_eq!(before, *v, "{k:?} replayed differently");
            }
        }
        (all.len(), out)
    };
    let (whole_count, whole_rows) = revisions(&whole["CANDLES"]);
    let (killed_count, killed_rows) = revisions(&killed["CANDLES"]);
    assert_eq!(
        whole_count,
        whole_rows.len(),
        "a run never killed replays nothing"
    );
    assert!(killed_count >= killed_rows.len());
    assert_eq!(killed_rows, whole_rows);

    // Against the fold: the last revision of each candle is the fold of every trade
    // not late; corrections are one per trade within the lateness.
    let on_time: Vec<Trade> = trades
        .iter()
        .filter(|t| !late.contains(t))
        .cloned()
        .collect();
    let expected = fold_windows(&on_time, 60_000, 60_000);
    let mut last: BTreeMap<(String, i64), &Value> = BTreeMap::new();
    for ((s, w, _), v) in &whole_rows {
        assert_eq!(v["window_final"], true, "{v}");
        last.insert((s.clone(), *w), v);
    }
    assert_eq!(
        last.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (k, v) in &last {
        assert_eq!(candle_of(v), folded(&expected[k]), "{k:?}");
    }
    assert_eq!(whole_rows.len(), expected.len() + allowed);

    // The late rows: each trade past the lateness once, the same in both runs.
    let late_of = |topic: &str| {
        let mut rows: Vec<(String, i64, String, String)> = values(topic)
            .iter()
            .map(|v| {
                let text = |n: &str| v[n].as_str().unwrap().to_string();
                (
                    text("symbol"),
                    v["ts"].as_i64().unwrap(),
                    text("late_reason"),
                    text("statement"),
                )
            })
            .collect();
        rows.sort();
        rows.dedup();
        rows
    };
    let whole_late = late_of(&whole["LATE"]);
    assert_eq!(whole_late.len(), late.len());
    let mut expected_late: Vec<(String, i64)> =
        late.iter().map(|t| (t.symbol.clone(), t.ts)).collect();
    expected_late.sort();
    let got: Vec<(String, i64)> = whole_late.iter().map(|r| (r.0.clone(), r.1)).collect();
    assert_eq!(got, expected_late);
    assert!(whole_late
        .iter()
        .all(|r| r.2.starts_with("window closed") && r.3 == "candles"));
    assert_eq!(late_of(&killed["LATE"]), whole_late);
}

/// The simulator's late trades (`--late-fraction`, sent a minute behind the
/// watermark: within 30 s of lateness for some windows, past it for others)
/// through a view to a topic (every revision) and the lake (final rows):
/// whatever the watermark judged late is on the late topic, counted once in
/// `late_rows`, and missing from the lake, which holds the fold of every
/// other trade, one row per candle, equal to the topic's last revision.
#[tokio::test]
async fn simulated_late_trades_are_corrections_or_late_rows_never_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (feed, topic) = feed_file_and_topic(
        dir.path(),
        &[
            "--symbols",
            "8",
            "--count",
            "20000",
            "--rate",
            "200",
            "--seed",
            "11",
            "--start",
            "2025-11-20T14:30:00Z",
            "--disorder-ms",
            "800",
            "--late-fraction",
            "0.03",
        ],
        "sim-trades",
        1,
    );
    let trades = read_trades_file(&feed);
    let (candles, late, lake) = (
        unique("sim-candles"),
        unique("sim-late"),
        dir.path().join("lake"),
    );
    create_topics(&[(&candles, 1), (&late, 1)]).await;
    let text = format!(
        "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL,
            ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'kafka', bootstrap_servers = '{b}', topic = '{topic}', group_id = '{g}',
            key_field = 'symbol', format = 'json', batch.size = '50');
         CREATE TABLE candles_topic (symbol TEXT, window_start TIMESTAMP, window_revision BIGINT,
            window_final BOOLEAN, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, trades BIGINT)
         WITH (connector = 'kafka', bootstrap_servers = '{b}', topic = '{candles}', key_field = 'symbol', format = 'json');
         CREATE TABLE candles_lake (symbol TEXT, window_start TIMESTAMP, window_revision BIGINT,
            window_final BOOLEAN, open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE, trades BIGINT)
         WITH (connector = 'lake', path = '{lake}/ohlc_1m', format = 'parquet');
         CREATE TABLE late (symbol TEXT, price DOUBLE, size DOUBLE, ts TIMESTAMP, late_reason TEXT,
            watermark_at_arrival TIMESTAMP, statement TEXT)
         WITH (connector = 'kafka', bootstrap_servers = '{b}', topic = '{late}', format = 'json');
         CREATE VIEW ohlc AS SELECT symbol, window_start, window_revision, window_final,
            first_value(price ORDER BY ts), max(price), min(price), last_value(price ORDER BY ts),
            CAST(sum(CAST(size AS DECIMAL(38, 8))) AS DOUBLE), count(*)
         FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE)
         ALLOW LATENESS INTERVAL '30' SECOND LATE DATA TO late;
         INSERT INTO candles_topic SELECT * FROM ohlc;
         INSERT INTO candles_lake SELECT * FROM ohlc;",
        b = brokers(),
        g = unique("sim-group"),
        lake = lake.display(),
    );
    let report = run_bounded("sim.sql", &text, &|_| None).await;

    let late_rows: Vec<Value> = values(&late);
    let late_trades: Vec<Trade> = late_rows
        .iter()
        .map(|v| Trade {
            symbol: v["symbol"].as_str().unwrap().into(),
            price: v["price"].as_f64().unwrap(),
            size: v["size"].as_f64().unwrap(),
            ts: v["ts"].as_i64().unwrap(),
        })
        .collect();
    assert_eq!(report.metrics.late_rows(), late_trades.len() as u64);
    assert!(
        !late_trades.is_empty(),
        "some simulated trades came past the lateness"
    );
    // Each is one of the feed's trades, sent long after its minute closed.
    for t in &late_trades {
        assert_eq!(trades.iter().filter(|x| *x == t).count(), 1, "{t:?}");
    }
    let kept: Vec<Trade> = trades
        .iter()
        .filter(|t| !late_trades.contains(t))
        .cloned()
        .collect();
    let expected = fold_windows(&kept, 60_000, 60_000);

    // The topic: revisions 0, 1, 2, ... per candle; corrections came; the last one is the fold.
    let mut last: BTreeMap<(String, i64), Value> = BTreeMap::new();
    let mut rows = 0;
    for v in values(&candles) {
        let k = key(&v);
        let next = last
            .get(&k)
            .map_or(0, |p| p["window_revision"].as_i64().unwrap() + 1);
        assert_eq!(v["window_revision"].as_i64(), Some(next), "{v}");
        last.insert(k, v);
        rows += 1;
    }
    assert!(
        rows > expected.len(),
        "late trades within the lateness made corrections"
    );
    assert_eq!(
        last.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    let in_lake = lake_candles(&lake.display().to_string(), dir.path());
    assert_eq!(
        in_lake.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (k, c) in &expected {
        let (t, l) = (&last[k], &in_lake[k]);
        assert_eq!(candle_of(t), folded(c), "{k:?} on the topic");
        assert_eq!(candle_of(l), folded(c), "{k:?} in the lake");
        assert!(
            close_to(l["volume"].as_f64().unwrap(), c.volume, 1e-12),
            "{k:?}"
        );
    }
}
