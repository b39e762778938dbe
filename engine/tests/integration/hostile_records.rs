//! Records built to hurt, among ordinary trades: each becomes exactly one
//! dead letter with its reason, the job exits 0 (and again on a rerun: no
//! poison pill), and the candles are an independent fold of the good trades.
//!
//! Covered: records that only add up to "one row each" in a batch (an empty
//! one beside one holding two objects, a value split over two records);
//! nesting 40,000 deep; prices of `1e300`, `1e400`, 900,000 digits, "NaN",
//! "Infinity", "-inf", 0 and -5; a size of `1e31`; times of 1e30, 20 digits,
//! i64::MAX, -1e30, 1e17, next year and 9999-12-31; a 900 KB key and a 900 KB
//! value quoted by the decoder's error; a key that is not the symbol.

use crate::common;

use std::collections::BTreeMap;

use common::*;

/// 2025-11-20T10:00:00Z in ms.
const T0: i64 = 1_763_632_800_000;

struct Hostile {
    key: String,
    payload: Vec<u8>,
    /// Words the dead letter's `dlq.error` must contain.
    reason: &'static str,
    /// Rejected by the statement (after decoding), not by the source.
    by_statement: bool,
}

fn hostile(key: &str, payload: impl Into<Vec<u8>>, reason: &'static str) -> Hostile {
    Hostile {
        key: key.into(),
        payload: payload.into(),
        reason,
        by_statement: false,
    }
}

fn trade(symbol: &str, price: &str, size: &str, ts: &str) -> Vec<u8> {
    format!(r#"{{"symbol":"{symbol}","price":{price},"size":{size},"ts":{ts}}}"#).into_bytes()
}

fn hostile_records() -> Vec<Hostile> {
    let t = (T0 + 90_000).to_string();
    let now = chrono::Utc::now().timestamp_millis();
    let next_year = (now + 365 * 86_400_000).to_string();
    let mut two = trade("SYM01", "10", "1", &t);
    two.extend(trade("SYM01", "11", "1", &t));
    let mut deep_field =
        br#"{"symbol":"SYM00","price":1,"size":1,"ts":1763632890000,"x":"#.to_vec();
    deep_field.extend("[".repeat(100).bytes().chain("]".repeat(100).bytes()));
    deep_field.push(b'}');
    let mut list = vec![
        // Decoded together these are two records and two rows.
        hostile("SYM00", "   \n ", "no JSON value"),
        hostile("SYM01", two, "2 JSON values"),
        // One value split over two records.
        hostile(
            "SYM00",
            r#"{"symbol":"SYM00","price":"#,
            "ends inside a JSON value",
        ),
        hostile("SYM00", format!(r#"10,"size":1,"ts":{t}}}"#), ""),
        hostile("SYM00", "[".repeat(40_000), "nested deeper than 64"),
        hostile("SYM00", deep_field, "nested deeper than 64"),
        hostile("SYM00", trade("SYM00", "1e400", "1", &t), ""),
        hostile(
            "SYM00",
            trade("SYM00", &format!("1{}", "0".repeat(900_000)), "1", &t),
            "",
        ),
        hostile(
            "SYM00",
            trade("SYM00", "\"NaN\"", "1", &t),
            "not a finite number",
        ),
        hostile(
            "SYM00",
            trade("SYM00", "\"Infinity\"", "1", &t),
            "not a finite number",
        ),
        hostile(
            "SYM00",
            trade("SYM00", "\"-inf\"", "1", &t),
            "not a finite number",
        ),
        hostile(
            "SYM00",
            trade("SYM00", "0", "1", &t),
            "CHECK (price > 0) failed",
        ),
        hostile(
            "SYM00",
            trade("SYM00", "-5", "1", &t),
            "CHECK (price > 0) failed",
        ),
        hostile(
            "SYM00",
            trade("SYM00", "10", "0", &t),
            "CHECK (size > 0) failed",
        ),
        hostile(
            "SYM00",
            trade("SYM00", "10", "1", "1e30"),
            "outside the times",
        ),
        hostile(
            "SYM00",
            trade("SYM00", "10", "1", "99999999999999999999"),
            "outside the times",
        ),
        hostile(
            "SYM00",
            trade("SYM00", "10", "1", &i64::MAX.to_string()),
            "outside the times",
        ),
        hostile(
            "SYM00",
            trade("SYM00", "10", "1", "-1e30"),
            "outside the times",
        ),
        hostile(
            "SYM00",
            trade("SYM00", "10", "1", "1e17"),
            "outside the times",
        ),
        hostile(
            "SYM00",
            trade("SYM00", "10", "1", &next_year),
            "ahead of the wall clock",
        ),
        hostile(
            "SYM00",
            trade("SYM00", "10", "1", "253402300799999"),
            "ahead of the wall clock",
        ),
        // A 900 KB key, and a 900 KB value the decoder's error quotes.
        hostile(
            &"K".repeat(900_000),
            trade("SYM00", "10", "1", &t),
            "is not the value of key_field",
        ),
        hostile(
            "SYM00",
            trade("SYM00", &format!("\"{}\"", "x".repeat(900_000)), "1", &t),
            "",
        ),
        hostile(
            "AAPL",
            trade("SYM00", "10", "1", &t),
            "is not the value of key_field",
        ),
    ];
    // Finite, but beyond what the job's DECIMAL(38, 8) sums can hold.
    for (price, size) in [("1e300", "1"), ("10", "1e31")] {
        list.push(Hostile {
            key: "SYM02".into(),
            payload: trade("SYM02", price, size, &t),
            reason: "Decimal128(38, 8)",
            by_statement: true,
        });
    }
    list
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_records_are_dead_lettered_once_and_candles_stay_exact() {
    let topic = unique("hostile");
    let (out, dlq) = (format!("{topic}_ohlc"), format!("{topic}.dlq"));
    create_topics(&[(&topic, 1), (&dlq, 1), (&out, 1)]).await;
    let trades = generate_trades(7, 300, 3, T0, 1000);
    let hostile = hostile_records();
    // The hostile records among the trades, before the last windows close.
    let mut records = trade_records(&trades[..150]);
    records.extend(hostile.iter().map(|h| (h.key.clone(), h.payload.clone())));
    records.extend(trade_records(&trades[150..]));
    produce(&topic, &records).await;

    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake").display().to_string();
    let state = dir.path().join("state").display().to_string();
    let (brokers, group) = (brokers(), unique("group"));
    let env = [
        ("KAFKA_BROKERS", brokers.as_str()),
        ("TRADES_TOPIC", topic.as_str()),
        ("OHLC_TOPIC", out.as_str()),
        ("OHLC_GROUP", group.as_str()),
        ("LAKE_URL", lake.as_str()),
    ];
    let run = || {
        let out = engine_at_root(
            &[
                "run",
                "jobs/ohlc_1m.sql",
                "--bounded",
                "--state-dir",
                &state,
            ],
            env,
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "the job must go on past every record:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        stderr
    };
    let stderr = run();
    assert!(
        stderr.contains(&format!("bad_records={}", hostile.len())),
        "one bad record per hostile record: {}",
        stderr.lines().last().unwrap_or_default()
    );
    // A rerun starts where the first stopped: nothing is left to stop it.
    run();

    let letters = read_all(&dlq);
    assert_eq!(letters.len(), hostile.len(), "one dead letter each");
    let mut by_reason: BTreeMap<bool, usize> = BTreeMap::new();
    for l in &letters {
        let error = &l.headers["dlq.error"];
        assert!(
            error.chars().count() <= 1100,
            "dlq.error is cut: {} chars",
            error.len()
        );
        assert!(
            l.payload.len() <= 512 * 1024,
            "payload cut: {}",
            l.payload.len()
        );
        assert!(
            l.key.as_ref().is_none_or(|k| k.len() <= 16 * 1024),
            "key cut"
        );
        *by_reason
            .entry(l.headers.contains_key("dlq.statement"))
            .or_default() += 1;
    }
    for h in &hostile {
        let prefix = &h.payload[..h.payload.len().min(2000)];
        let found = letters.iter().any(|l| {
            let same = if h.by_statement {
                // A statement dead-letters the decoded row, as JSON.
                let v: serde_json::Value = serde_json::from_slice(&l.payload).unwrap_or_default();
                let sent: serde_json::Value = serde_json::from_slice(&h.payload).unwrap();
                v["price"].as_f64() == sent["price"].as_f64()
                    && v["size"].as_f64() == sent["size"].as_f64()
            } else {
                l.payload
                    .starts_with(&prefix[..prefix.len().min(l.payload.len())])
                    && l.headers.contains_key("dlq.offset")
            };
            same && l.headers["dlq.error"].contains(h.reason)
        });
        assert!(
            found,
            "no dead letter with `{}` for {:?}; dead letters: {:#?}",
            h.reason,
            String::from_utf8_lossy(&h.payload[..h.payload.len().min(120)]),
            letters
                .iter()
                .map(|l| l.headers["dlq.error"].chars().take(160).collect::<String>())
                .collect::<Vec<_>>()
        );
    }
    assert_eq!(
        by_reason.get(&true),
        Some(&2),
        "two rows rejected by the statement"
    );
    let statement = letters
        .iter()
        .find(|l| l.headers.contains_key("dlq.statement"))
        .unwrap();
    assert!(
        statement.headers["dlq.statement"].starts_with("jobs/ohlc_1m.sql:"),
        "{:?}",
        statement.headers
    );

    let expected = fold_windows(&trades, 60_000, 60_000);
    let (_, topic_candles) = topic_candles(&out);
    assert_candles_equal(&expected, &lake_candles(&lake, dir.path()), &topic_candles);

    // The raw job keeps the finite, positive, in-range trades: 1e300 and 1e31
    // (its columns are DOUBLE) and the two whose key is not their symbol (it
    // declares no key_field), and none of the others.
    let raw = engine_at_root(
        &[
            "run",
            "jobs/trades_raw.sql",
            "--bounded",
            "--no-checkpoints",
        ],
        [
            ("KAFKA_BROKERS", brokers.as_str()),
            ("TRADES_TOPIC", topic.as_str()),
            ("RAW_GROUP", unique("raw").as_str()),
            ("LAKE_URL", lake.as_str()),
        ],
    );
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    let sql = dir.path().join("count.sql");
    std::fs::write(&sql, "SELECT count(*) AS n FROM trades").unwrap();
    let rows = duckdb_lake(&["query", &lake, &sql.display().to_string()]);
    let n: serde_json::Value = serde_json::from_str(rows.lines().next().unwrap()).unwrap();
    assert_eq!(n["n"].as_i64(), Some(trades.len() as i64 + 4), "{rows}");

    // A lake job without a WATERMARK: out-of-range times still never reach a
    // partition (they panicked there, or were filed under 1970-01-01).
    let plain = dir.path().join("no_watermark.sql");
    std::fs::write(
        &plain,
        format!(
            "CREATE TABLE t (symbol TEXT, price DOUBLE, size DOUBLE, ts TIMESTAMP NOT NULL)
             WITH (connector = 'kafka', bootstrap_servers = '{brokers}', topic = '{topic}', group_id = '{}');
             CREATE TABLE l (symbol TEXT, ts TIMESTAMP)
             WITH (connector = 'lake', path = '{}', partition_by = 'dt', partition_time_field = 'ts');
             INSERT INTO l SELECT symbol, ts FROM t;",
            unique("plain"),
            dir.path().join("plain").display()
        ),
    )
    .unwrap();
    let out = engine_output([
        "run",
        plain.to_str().unwrap(),
        "--bounded",
        "--no-checkpoints",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && !stderr.contains("panicked"),
        "{stderr}"
    );
    let days: Vec<String> = std::fs::read_dir(dir.path().join("plain"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    // Without a WATERMARK there is no event time to bound ahead: the trades
    // of next year and of 9999-12-31 are filed under their days.
    assert!(
        days.contains(&"dt=2025-11-20".to_string()) && days.contains(&"dt=9999-12-31".to_string()),
        "{days:?}"
    );
    assert!(
        !days
            .iter()
            .any(|d| d.starts_with("dt=1970") || d.starts_with("dt=+")),
        "{days:?}"
    );
    assert_eq!(days.len(), 3, "{days:?}");
}
