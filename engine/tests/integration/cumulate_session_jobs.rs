//! CUMULATE and SESSION as users run them, on the real broker: the
//! `jobs/intraday_vwap.sql` process scaled out over a 4-partition topic into
//! its topic and the lake (read back by DuckDB), and a session job run in
//! process twice over one topic; each checked against the folds in `common`.

use crate::common;

use std::collections::BTreeMap;

use common::*;
use serde_json::Value;

/// 23:00 UTC on 2025-11-20: two hours of trades cross midnight, so two days.
const START_MS: i64 = 1_763_679_600_000;
const DAY_MS: i64 = 86_400_000;

/// Rows keyed by (symbol, window_start, window_end); a key seen twice must
/// be the same row (a topic is at least once).
fn keyed(rows: impl IntoIterator<Item = Value>) -> BTreeMap<(String, i64, i64), Value> {
    let mut out = BTreeMap::new();
    for v in rows {
        let key = (
            v["symbol"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
            v["window_end"].as_i64().unwrap(),
        );
        if let Some(before) = out.insert(key.clone(), v.clone()) {
            assert_eq!(before, v, "{key:?} differs between its copies");
        }
    }
    out
}

fn assert_equal_to_fold(
    what: &str,
    got: &BTreeMap<(String, i64, i64), Value>,
    expected: &BTreeMap<(String, i64, i64), Candle>,
    last: &str,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "{what}: windows"
    );
    for (key, e) in expected {
        let v = &got[key];
        let f = |name: &str| v[name].as_f64().unwrap();
        assert_eq!(
            (
                f("open"),
                f("high"),
                f("low"),
                f(last),
                v["trades"].as_i64()
            ),
            (e.open, e.high, e.low, e.close, Some(e.trades)),
            "{what}: {key:?}"
        );
        assert!(close_to(f("volume"), e.volume, 1e-9), "{what}: {key:?}");
        assert!(close_to(f("vwap"), e.vwap(), 1e-9), "{what}: {key:?}");
    }
}

#[tokio::test]
async fn intraday_vwap_scaled_out_equals_the_fold_of_each_day_so_far() {
    init_logs();
    let trades_topic = unique("trades");
    let out_topic = unique("intraday");
    create_topics(&[
        (&trades_topic, 4),
        (&format!("{trades_topic}.dlq"), 1),
        (&out_topic, 1),
    ])
    .await;
    let trades = generate_trades(21, 24_000, 6, START_MS, 300);
    produce(
        &trades_topic,
        &trade_records(&arrival_order(&trades, 4, 1500)),
    )
    .await;

    let lake = tempfile::tempdir().unwrap();
    let (brokers, group) = (brokers(), unique("group"));
    let lake_url = lake.path().display().to_string();
    let out = engine_at_root(
        &["run", "jobs/intraday_vwap.sql", "--bounded", "--scale-out"],
        [
            ("KAFKA_BROKERS", brokers.as_str()),
            ("TRADES_TOPIC", trades_topic.as_str()),
            ("INTRADAY_TOPIC", out_topic.as_str()),
            ("INTRADAY_GROUP", group.as_str()),
            ("LAKE_URL", lake_url.as_str()),
            ("RUST_LOG", "warn"),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");

    let expected = fold_cumulate(&trades, 60_000, DAY_MS);
    // 23:01 to midnight, then every minute of the next day, for each symbol.
    assert_eq!(expected.len(), 6 * (60 + 1440));
    let topic = keyed(read_all(&out_topic).iter().map(|r| {
        let v: Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(
            r.timestamp,
            v["window_end"].as_i64(),
            "timestamp = window_end"
        );
        v
    }));
    assert_equal_to_fold("topic", &topic, &expected, "last");

    let sql = lake.path().join("q.sql");
    std::fs::write(
        &sql,
        "SELECT symbol, window_start, window_end, open, high, low, last, volume, vwap, trades, dt FROM intraday_vwap",
    )
    .unwrap();
    let rows: Vec<Value> = duckdb_lake(&["query", &lake_url, &sql.display().to_string()])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), expected.len(), "each window once in the lake");
    for v in &rows {
        // The day's rows are in the day's partition.
        let day = chrono::DateTime::from_timestamp_millis(v["window_start"].as_i64().unwrap())
            .unwrap()
            .format("%Y-%m-%d")
            .to_string();
        assert_eq!(v["dt"].as_str(), Some(day.as_str()));
    }
    assert_equal_to_fold("lake", &keyed(rows), &expected, "last");
    // Both days are complete: each has every lane's marker (one lane per partition).
    for day in ["2025-11-20", "2025-11-21"] {
        for lane in 0..4 {
            let marker = lake
                .path()
                .join(format!("intraday_vwap/dt={day}/_SUCCESS.p{lane}"));
            assert!(marker.exists(), "{}", marker.display());
        }
    }
}

/// Per symbol, bursts of trading: sessions with a 5 s gap, cut at the hour.
// Fetches return within 10 ms: one partition then often reaches its end in
// the poll that brings its last records, while the other partition is ahead
// in event time. Those records must still come before the watermark its end
// releases (they were dropped as late once).
const SESSIONS_JOB: &str = "
CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
    WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
WITH (connector = 'kafka', bootstrap_servers = '${KAFKA_BROKERS}', topic = '${TRADES_TOPIC}',
      group_id = '${GROUP}', key_field = 'symbol', format = 'json', properties.fetch.wait.max.ms = '10');
CREATE TABLE bursts (symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP, open DOUBLE, high DOUBLE,
    low DOUBLE, close DOUBLE, volume DOUBLE, vwap DOUBLE, trades BIGINT)
WITH (connector = 'kafka', bootstrap_servers = '${KAFKA_BROKERS}', topic = '${OUT_TOPIC}',
      key_field = 'symbol', format = 'json');
INSERT INTO bursts
SELECT symbol, window_start, window_end, first_value(price ORDER BY ts), max(price), min(price),
       last_value(price ORDER BY ts), sum(size), sum(price * size) / sum(size), count(*)
FROM trades GROUP BY symbol, SESSION(ts, INTERVAL '5' SECOND, INTERVAL '1' HOUR);
";

#[tokio::test]
async fn session_job_equals_the_fold_and_a_second_run_adds_only_new_sessions() {
    init_logs();
    let trades_topic = unique("trades");
    let out_topic = unique("bursts");
    create_topics(&[
        (&trades_topic, 2),
        (&format!("{trades_topic}.dlq"), 1),
        (&out_topic, 1),
    ])
    .await;
    // Each symbol trades in bursts with quiet spells of 6-12 s between them.
    let all: Vec<Trade> = generate_trades(8, 30_000, 5, START_MS, 120)
        .into_iter()
        .filter(|t| {
            let phase = (t.ts + t.symbol.len() as i64 * 7_919) % 40_000;
            phase >= 12_000 || phase < (t.ts / 40_000 % 4) * 2_000
        })
        .collect();
    let half = all.len() / 2;
    let vars: BTreeMap<&str, String> = BTreeMap::from([
        ("KAFKA_BROKERS", brokers()),
        ("TRADES_TOPIC", trades_topic.clone()),
        ("OUT_TOPIC", out_topic.clone()),
        ("GROUP", unique("group")),
    ]);
    let env = |name: &str| vars.get(name).cloned();
    produce(
        &trades_topic,
        &trade_records(&arrival_order(&all[..half], 6, 1500)),
    )
    .await;
    let first = run_bounded("sessions.sql", SESSIONS_JOB, &env).await;
    let first_rows = read_all(&out_topic).len();
    produce(
        &trades_topic,
        &trade_records(&arrival_order(&all[half..], 7, 1500)),
    )
    .await;
    let second = run_bounded("sessions.sql", SESSIONS_JOB, &env).await;

    // The first run emitted the sessions of its trades (its end closes them all);
    // the second run's trades start after them, so the whole is the fold of
    // each half, and nothing is late.
    let fold = |trades: &[Trade]| -> BTreeMap<(String, i64, i64), Candle> {
        fold_sessions(trades, 5_000, 3_600_000)
            .into_iter()
            .map(|((s, start), c)| ((s, start, c.window_end), c))
            .collect()
    };
    let mut expected = fold(&all[..half]);
    let first_count = expected.len();
    expected.extend(fold(&all[half..]));
    assert!(expected.len() > 100, "{} sessions", expected.len());
    let got = keyed(
        read_all(&out_topic)
            .iter()
            .map(|r| serde_json::from_slice(&r.payload).unwrap()),
    );
    assert_equal_to_fold("topic", &got, &expected, "close");
    assert_eq!(first_rows, first_count);
    for report in [&first, &second] {
        assert_eq!(report.metrics.late_rows(), 0);
    }
}

/// The rewritten queries of a TUMBLE and a SESSION job are alike (both group
/// by `window_start, window_end`): the state of one is still never restored
/// into the other, where it would be dropped unread.
#[tokio::test]
async fn a_session_job_does_not_take_a_tumbling_jobs_checkpoints() {
    let trades_topic = unique("trades");
    let out_topic = unique("bursts");
    create_topics(&[
        (&trades_topic, 1),
        (&format!("{trades_topic}.dlq"), 1),
        (&out_topic, 1),
    ])
    .await;
    produce(
        &trades_topic,
        &trade_records(&generate_trades(2, 500, 2, START_MS, 100)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let session = "SESSION(ts, INTERVAL '5' SECOND, INTERVAL '1' HOUR)";
    let tumbling = SESSIONS_JOB.replace(session, "TUMBLE(ts, INTERVAL '5' SECOND)");
    let state = dir.path().join("state").display().to_string();
    let (brokers, group) = (brokers(), unique("group"));
    let run = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        engine_at_root(
            &[
                "run",
                path.to_str().unwrap(),
                "--bounded",
                "--state-dir",
                &state,
            ],
            [
                ("KAFKA_BROKERS", brokers.as_str()),
                ("TRADES_TOPIC", trades_topic.as_str()),
                ("OUT_TOPIC", out_topic.as_str()),
                ("GROUP", group.as_str()),
            ],
        )
    };
    let first = run("tumbling.sql", &tumbling);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let second = run("sessions.sql", SESSIONS_JOB);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(!second.status.success(), "{stderr}");
    assert!(
        stderr.contains("holds checkpoints of a different job"),
        "{stderr}"
    );
}
