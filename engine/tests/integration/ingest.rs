//! `engine ingest` against local servers that speak each provider's protocol
//! frame for frame: authentication, subscriptions, pings, reconnects with
//! replayed frames (no duplicate gets through), gaps, silent servers, bad
//! and oversized frames (dead letters), error frames; and end to end through
//! the broker into `jobs/ohlc_1m.sql`, checked against an independent fold.

use crate::common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;

/// What one `engine ingest` run did.
struct Ingested {
    ok: bool,
    stderr: String,
    /// The trades written with `--to-file`, one JSON object each.
    trades: Vec<serde_json::Value>,
}

impl Ingested {
    /// The summary's count of `what` (e.g. "duplicates dropped").
    fn count(&self, what: &str) -> u64 {
        let line = (self.stderr.lines())
            .find(|l| l.starts_with("ingested from"))
            .unwrap_or_else(|| panic!("no summary in:\n{}", self.stderr));
        let before = line.split(&format!(" {what}")).next().unwrap();
        before
            .rsplit([' ', '('])
            .next()
            .unwrap()
            .parse()
            .unwrap_or_else(|_| panic!("{what} in {line}"))
    }
}

/// Runs `engine ingest ARGS --to-file <tmp>` with `env` (logging at `RUST_LOG=trace`).
async fn ingest_to_file(args: &[&str], env: &[(&str, &str)]) -> Ingested {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("trades.jsonl");
    let mut all: Vec<&str> = vec!["ingest"];
    all.extend(args);
    all.extend(["--to-file", file.to_str().unwrap()]);
    let out = run_engine(&all, env, "trace").await;
    let trades = std::fs::read_to_string(&file)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    Ingested {
        ok: out.status.success(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        trades,
    }
}

async fn run_engine(args: &[&str], env: &[(&str, &str)], log: &str) -> std::process::Output {
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_LOG", log)
        .env("NO_COLOR", "1")
        .kill_on_drop(true)
        .output();
    tokio::time::timeout(Duration::from_secs(120), child)
        .await
        .expect("engine ingest ends within 120 s")
        .unwrap()
}

/// The price text of Coinbase trade `id` in the scripted feeds.
fn coinbase_price(id: i64) -> String {
    format!("{}.{:02}", 40000 + id, id % 100)
}

/// Coinbase trade `id` of BTC-USD as the oracle sees it: its match's price,
/// size (`0.{id:08}`) and time cut to the ms.
fn coinbase_trade(id: i64) -> Trade {
    Trade {
        symbol: "BTC-USD".into(),
        price: coinbase_price(id).parse().unwrap(),
        size: id as f64 / 1e8,
        ts: 1_763_649_000_000 + id * 1000 + 7,
    }
}

/// A Coinbase match of trade `id`: price and size as decimal strings, time with µs.
fn coinbase_match(kind: &str, product: &str, id: i64) -> String {
    format!(
        r#"{{"type":"{kind}","trade_id":{id},"maker_order_id":"m{id}","taker_order_id":"t{id}","side":"buy","size":"0.{id:08}","price":"{}","product_id":"{product}","sequence":{},"time":"{}"}}"#,
        coinbase_price(id),
        1000 + id * 3,
        iso_us(coinbase_trade(id).ts, 123),
    )
}

/// `ms` as RFC 3339 with six fraction digits, `extra` the µs past the ms.
fn iso_us(ms: i64, extra: u32) -> String {
    let t = chrono::DateTime::from_timestamp_millis(ms).unwrap();
    format!("{}{:03}Z", t.format("%Y-%m-%dT%H:%M:%S%.3f"), extra)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coinbase_reconnect_drops_duplicates_counts_gaps_and_dead_letters() {
    let subscribed = send(
        r#"{"type":"subscriptions","channels":[{"name":"matches","product_ids":["BTC-USD"]}]}"#,
    );
    let mut first = vec![expect(r#""type":"subscribe""#), subscribed.clone()];
    first.push(send(coinbase_match("last_match", "BTC-USD", 0)));
    first.extend((1..=40).map(|id| send(coinbase_match("match", "BTC-USD", id))));
    first.extend([Step::Ping, Step::Drop]);
    let mut second = vec![expect(r#""type":"subscribe""#), subscribed];
    // The replay after a reconnect: the last match, and the ten before it.
    second.push(send(coinbase_match("last_match", "BTC-USD", 40)));
    second.extend((31..=60).map(|id| send(coinbase_match("match", "BTC-USD", id))));
    // 61 and 62 never come: a gap, also shown by the heartbeat.
    second.push(send(coinbase_match("match", "BTC-USD", 63)));
    second.push(send(r#"{"type":"heartbeat","sequence":2000,"last_trade_id":63,"product_id":"BTC-USD","time":"2025-11-20T14:31:00.000000Z"}"#));
    second.push(send("not json {"));
    second.push(send(
        coinbase_match("match", "BTC-USD", 1000)
            .replace(r#""price":"41000.00""#, r#""price":"abc""#),
    ));
    second.push(send(format!(
        r#"{{"type":"match","pad":"{}"}}"#,
        "x".repeat(2 << 20)
    )));
    second.push(Step::SendBinary(vec![0, 159, 146, 150]));
    second.push(send(r#"{"type":"match","trade_id":999,"product_id":"BTC-USD","price":"1","size":"1","time":"2025-13-40T99:00:00Z"}"#));
    second.extend((64..=80).map(|id| send(coinbase_match("match", "BTC-USD", id))));
    let server = scripted_server(vec![first, second]).await;

    let run = ingest_to_file(
        &[
            "--provider",
            "coinbase",
            "--symbols",
            "BTC-USD",
            "--url",
            &server.url,
            "--count",
            "78",
        ],
        &[],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let expected: Vec<i64> = (1..=60).chain(63..=80).collect();
    let ids: Vec<i64> = run
        .trades
        .iter()
        .map(|t| t["id"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, expected, "each trade once, in order");
    for t in &run.trades {
        let e = coinbase_trade(t["id"].as_str().unwrap().parse().unwrap());
        assert_eq!(t["symbol"], e.symbol.as_str());
        assert_eq!(t["price"].as_f64().unwrap(), e.price);
        assert_eq!(t["size"].as_f64().unwrap(), e.size);
        assert_eq!(t["ts"].as_i64().unwrap(), e.ts, "µs cut to ms");
        assert_eq!(t["provider"], "coinbase");
    }
    let c = server.connections();
    assert!(c.len() >= 2, "{c:?}");
    assert_eq!(c[0].pongs, 1, "a server ping is answered: {c:?}");
    assert!(c.iter().all(|c| c.failures.is_empty()), "{c:?}");
    assert!(
        c[1].received[0].contains("BTC-USD"),
        "resubscribed after the reconnect"
    );
    assert_eq!(run.count("duplicates dropped"), 11, "{}", run.stderr);
    assert_eq!(run.count("gaps"), 1, "{}", run.stderr);
    assert_eq!(run.count("trades missed"), 2, "{}", run.stderr);
    assert_eq!(run.count("dead letters"), 5, "{}", run.stderr);
    assert!(run.count("reconnects") >= 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("more than the 1048576 a frame may have"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("`time` is not an RFC 3339 time"),
        "{}",
        run.stderr
    );
}

/// An Alpaca trade message.
fn alpaca_trade(t: &Trade, id: usize) -> String {
    format!(
        r#"{{"T":"t","S":"{}","i":{id},"x":"V","p":{},"s":{},"t":"{}","c":["@"],"z":"C"}}"#,
        t.symbol,
        t.price,
        t.size,
        iso_ns(t.ts)
    )
}

/// RFC 3339 with nine fraction digits (the ns past the ms are not zero).
fn iso_ns(ms: i64) -> String {
    format!("{}456789Z", &iso_us(ms, 0)[..23])
}

const ALPACA_KEY: &str = "AKTESTKEYID0001";
// Longer than the excerpts error messages quote, with characters a URL encodes.
const ALPACA_SECRET: &str = "s3cr3t+/=Secret-XYZ-0123456789abcdefghijklmnopqrstuvwxyz";

/// The Alpaca greeting and authentication, then the subscription to `symbols`.
fn alpaca_handshake(symbols: &str) -> Vec<Step> {
    vec![
        send(r#"[{"T":"success","msg":"connected"}]"#),
        expect(r#""action":"auth""#),
        send(r#"[{"T":"success","msg":"authenticated"}]"#),
        expect(&format!(r#""trades":[{symbols}]"#)),
        send(format!(
            r#"[{{"T":"subscription","trades":[{symbols}],"quotes":[],"bars":[]}}]"#
        )),
    ]
}

fn alpaca_env() -> [(&'static str, &'static str); 2] {
    [
        ("APCA_API_KEY_ID", ALPACA_KEY),
        ("APCA_API_SECRET_KEY", ALPACA_SECRET),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpaca_authenticates_retries_a_connection_limit_and_stops_on_refused_keys() {
    let trades = generate_trades(7, 30, 2, 1_763_649_000_000, 250);
    let frame = |range: std::ops::Range<usize>| {
        let items: Vec<String> = range.map(|i| alpaca_trade(&trades[i], i + 1)).collect();
        send(format!("[{}]", items.join(",")))
    };
    let symbols = r#""SYM00","SYM01""#;
    let mut first = alpaca_handshake(symbols);
    first.extend([frame(0..10), frame(10..20)]);
    first.push(send(
        r#"[{"T":"error","code":406,"msg":"connection limit exceeded"}]"#,
    ));
    let mut second = alpaca_handshake(symbols);
    second.extend([frame(10..20), frame(20..30)]);
    let server = scripted_server(vec![first, second]).await;
    let run = ingest_to_file(
        &[
            "--provider",
            "alpaca",
            "--symbols",
            "SYM00,SYM01",
            "--url",
            &server.url,
            "--count",
            "30",
        ],
        &alpaca_env(),
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let c = server.connections();
    assert!(c.iter().all(|c| c.failures.is_empty()), "{c:?}");
    let auth: serde_json::Value = serde_json::from_str(&c[0].received[0]).unwrap();
    assert_eq!(
        auth,
        serde_json::json!({"action":"auth","key":ALPACA_KEY,"secret":ALPACA_SECRET})
    );
    assert_eq!(run.trades.len(), 30);
    for (i, (got, t)) in run.trades.iter().zip(&trades).enumerate() {
        assert_eq!(got["symbol"], t.symbol.as_str());
        assert_eq!(got["id"], (i + 1).to_string());
        assert_eq!(got["venue"], "V");
        assert_eq!(got["conditions"], serde_json::json!(["@"]));
        assert_eq!(
            (
                got["price"].as_f64().unwrap(),
                got["size"].as_f64().unwrap()
            ),
            (t.price, t.size)
        );
        assert_eq!(got["ts"].as_i64().unwrap(), t.ts, "ns cut to ms");
    }
    assert_eq!(run.count("duplicates dropped"), 10);
    assert!(
        run.stderr.contains("connection limit exceeded"),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(ALPACA_SECRET) && !run.stderr.contains(ALPACA_KEY),
        "a key in the output at RUST_LOG=trace:\n{}",
        run.stderr
    );

    // Refused keys end the run with the provider's message (and no key).
    let mut refused = vec![
        send(r#"[{"T":"success","msg":"connected"}]"#),
        expect(r#""action":"auth""#),
    ];
    refused.push(send(r#"[{"T":"error","code":402,"msg":"auth failed"}]"#));
    let server = scripted_server(vec![refused]).await;
    let args = [
        "--provider",
        "alpaca",
        "--symbols",
        "SYM00",
        "--url",
        &server.url,
    ];
    let run = ingest_to_file(&args, &alpaca_env()).await;
    assert!(!run.ok);
    assert!(
        run.stderr.contains("Alpaca error 402: auth failed"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains(ALPACA_SECRET), "{}", run.stderr);
    assert_eq!(server.connections().len(), 1, "no retry of refused keys");

    // Without the keys, nothing connects and the variable is named.
    let run = ingest_to_file(&args, &[]).await;
    assert!(
        !run.ok && run.stderr.contains("APCA_API_KEY_ID"),
        "{}",
        run.stderr
    );
}

const FINNHUB_TOKEN: &str = "fh-token-0123456789abcdef";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finnhub_token_price_updates_pings_and_a_silent_server() {
    let trade = |s: &str, p: f64, v: f64, t: i64| {
        format!(r#"{{"s":"{s}","p":{p},"v":{v},"t":{t},"c":["1","12"]}}"#)
    };
    let first = vec![
        expect(r#"{"symbol":"AAPL","type":"subscribe"}"#),
        expect(r#"{"symbol":"MSFT","type":"subscribe"}"#),
        send(format!(
            r#"{{"type":"trade","data":[{},{},{}]}}"#,
            trade("AAPL", 189.1, 100.0, 1_763_649_000_001),
            trade("AAPL", 189.2, 0.0, 1_763_649_000_002),
            trade("MSFT", 402.55, 3.5, 1_763_649_000_003)
        )),
        send(r#"{"type":"ping"}"#),
        // Echoes the token in a frame that is not a trade: kept without it.
        send(format!(
            r#"{{"type":"trade","data":[{{"s":"AAPL","p":"{FINNHUB_TOKEN}","v":1,"t":1}}]}}"#
        )),
        Step::Silent,
    ];
    let second = vec![
        expect(r#""symbol":"MSFT""#),
        send(format!(
            r#"{{"type":"trade","data":[{}]}}"#,
            trade("MSFT", 402.6, 1.0, 1_763_649_005_000)
        )),
    ];
    let server = scripted_server(vec![first, second]).await;
    let run = ingest_to_file(
        &[
            "--provider",
            "finnhub",
            "--symbols",
            "AAPL,MSFT",
            "--url",
            &server.url,
            "--count",
            "3",
            "--idle-timeout",
            "1s",
        ],
        &[("FINNHUB_TOKEN", FINNHUB_TOKEN)],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let c = server.connections();
    assert!(
        c[0].uri.contains(&format!("token={FINNHUB_TOKEN}")),
        "{c:?}"
    );
    assert_eq!(
        c.len(),
        2,
        "the silent connection was taken for dead and replaced: {c:?}"
    );
    let got: Vec<(String, f64, f64, i64)> = (run.trades.iter())
        .map(|t| {
            (
                t["symbol"].as_str().unwrap().into(),
                t["price"].as_f64().unwrap(),
                t["size"].as_f64().unwrap(),
                t["ts"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("AAPL".into(), 189.1, 100.0, 1_763_649_000_001),
            ("MSFT".into(), 402.55, 3.5, 1_763_649_000_003),
            ("MSFT".into(), 402.6, 1.0, 1_763_649_005_000)
        ]
    );
    assert_eq!(run.trades[0]["conditions"], serde_json::json!(["1", "12"]));
    assert_eq!(run.count("skipped"), 1, "the v = 0 price update");
    assert_eq!(run.count("dead letters"), 1);
    assert!(run.stderr.contains("no frame for 1s"), "{}", run.stderr);
    assert!(
        !run.stderr.contains(FINNHUB_TOKEN),
        "the token in the output at RUST_LOG=trace:\n{}",
        run.stderr
    );

    // A key the server refuses at the handshake ends the run.
    let server = scripted_server(vec![vec![Step::Reject(401)]]).await;
    let run = ingest_to_file(
        &[
            "--provider",
            "finnhub",
            "--symbols",
            "AAPL",
            "--url",
            &server.url,
        ],
        &[("FINNHUB_TOKEN", FINNHUB_TOKEN)],
    )
    .await;
    assert!(!run.ok && run.stderr.contains("HTTP 401"), "{}", run.stderr);
    assert!(!run.stderr.contains(FINNHUB_TOKEN), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_and_polygon_frames() {
    let trade = |id: i64, p: &str| {
        format!(
            r#"{{"e":"trade","E":1763649000100,"s":"BTCUSDT","t":{id},"p":"{p}","q":"0.00100000","T":{},"m":true}}"#,
            1_763_649_000_000 + id
        )
    };
    let server = scripted_server(vec![vec![
        expect(r#"{"id":1,"method":"SUBSCRIBE","params":["btcusdt@trade","ethusdt@trade"]}"#),
        send(r#"{"result":null,"id":1}"#),
        Step::Ping,
        send(trade(7, "91234.56000000")),
        send(format!(
            r#"{{"stream":"btcusdt@trade","data":{}}}"#,
            trade(8, "91234.57000000")
        )),
        send(trade(11, "91234.58000000")),
    ]])
    .await;
    let run = ingest_to_file(
        &[
            "--provider",
            "binance",
            "--symbols",
            "BTCUSDT,ETHUSDT",
            "--url",
            &server.url,
            "--count",
            "3",
        ],
        &[],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(server.connections()[0].pongs, 1);
    let prices: Vec<&serde_json::Value> = run.trades.iter().map(|t| &t["price"]).collect();
    assert_eq!(
        prices,
        [
            &serde_json::json!(91234.56),
            &serde_json::json!(91234.57),
            &serde_json::json!(91234.58)
        ]
    );
    assert_eq!(run.trades[2]["ts"].as_i64(), Some(1_763_649_000_011));
    assert_eq!((run.count("gaps"), run.count("trades missed")), (1, 2));

    let key = "pg-key-987654321";
    let server = scripted_server(vec![vec![
        send(r#"[{"ev":"status","status":"connected","message":"Connected Successfully"}]"#),
        expect(&format!(r#"{{"action":"auth","params":"{key}"}}"#)),
        send(r#"[{"ev":"status","status":"auth_success","message":"authenticated"}]"#),
        expect(r#"{"action":"subscribe","params":"T.MSFT"}"#),
        send(r#"[{"ev":"T","sym":"MSFT","x":4,"i":"12345","z":3,"p":114.125,"s":100,"c":[0,12],"t":1536036818784,"q":3681328},{"ev":"T","sym":"MSFT","x":4,"i":"12346","z":3,"p":114.13,"s":5,"t":1536036818785,"q":3681328}]"#),
        send(r#"[{"ev":"T","sym":"MSFT","x":4,"i":"12347","z":3,"p":114.2,"s":1,"t":1536036818790,"q":3681400}]"#),
    ]])
    .await;
    let run = ingest_to_file(
        &[
            "--provider",
            "polygon",
            "--symbols",
            "MSFT",
            "--url",
            &server.url,
            "--count",
            "2",
        ],
        &[("POLYGON_API_KEY", key)],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let ids: Vec<&str> = run
        .trades
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        ["3681328", "3681400"],
        "a repeated sequence number is a duplicate"
    );
    assert_eq!(run.trades[0]["conditions"], serde_json::json!(["0", "12"]));
    assert!(!run.stderr.contains(key), "{}", run.stderr);
}

/// A few thousand Alpaca trades over several symbols, through `engine ingest`
/// (with a reconnect that replays frames, and a bad frame echoing the secret)
/// into the broker, then `jobs/ohlc_1m.sql --bounded`: the candles equal an
/// independent fold of the scripted trades.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingested_trades_make_the_candles_of_an_independent_fold() {
    let trades = generate_trades(14, 3000, 5, 1_763_649_000_000, 97);
    let symbols = r#""SYM00","SYM01","SYM02","SYM03","SYM04""#;
    let frames: Vec<Step> = (0..300)
        .map(|f| {
            let items: Vec<String> = (f * 10..f * 10 + 10)
                .map(|i| alpaca_trade(&trades[i], i + 1))
                .collect();
            send(format!("[{}]", items.join(",")))
        })
        .collect();
    let mut first = alpaca_handshake(symbols);
    first.extend(frames[..150].iter().cloned());
    first.push(send(format!(
        r#"[{{"T":"t","S":"SYM01","i":1,"p":"oops{ALPACA_SECRET}"}}]"#
    )));
    first.push(Step::Drop);
    let mut second = alpaca_handshake(symbols);
    second.extend(frames[145..].iter().cloned());
    let server = scripted_server(vec![first, second]).await;

    let topic = unique("ingest_trades");
    let out = run_engine(
        &[
            "ingest",
            "--provider",
            "alpaca",
            "--symbols",
            "SYM00,SYM01,SYM02,SYM03,SYM04",
            "--url",
            &server.url,
            "--topic",
            &topic,
            "--count",
            "3000",
        ],
        &[
            alpaca_env()[0],
            alpaca_env()[1],
            ("KAFKA_BROKERS", &brokers()),
        ],
        "debug",
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains(ALPACA_SECRET), "{stderr}");

    let records = read_all(&topic);
    assert_eq!(records.len(), 3000, "each trade once in Kafka");
    let mut by_id = BTreeMap::new();
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        assert_eq!(r.key.as_deref(), v["symbol"].as_str().map(str::as_bytes));
        assert_eq!(r.timestamp, v["ts"].as_i64(), "record time = trade time");
        assert!(by_id
            .insert(v["id"].as_str().unwrap().to_string(), v.clone())
            .is_none());
    }
    let dead = read_all(&format!("{topic}.dlq"));
    assert_eq!(dead.len(), 1);
    let payload = String::from_utf8_lossy(&dead[0].payload);
    assert!(
        payload.contains("oops") && !payload.contains(ALPACA_SECRET),
        "{payload}"
    );
    assert!(
        dead[0].headers["dlq.error"].contains("`p`"),
        "{:?}",
        dead[0].headers
    );
    assert!(
        !dead[0].headers["dlq.error"].contains(&ALPACA_SECRET[..12]),
        "{:?}",
        dead[0].headers
    );
    assert!(
        !stderr.contains(&ALPACA_SECRET[..12]),
        "part of the secret in the output:\n{stderr}"
    );

    let ohlc_topic = unique("ingest_ohlc");
    create_topics(&[(&ohlc_topic, 1)]).await;
    let lake = tempfile::tempdir().unwrap();
    let group = unique("ingest_group");
    let brokers = brokers();
    let out = engine_at_root(
        &["run", "jobs/ohlc_1m.sql", "--bounded", "--no-checkpoints"],
        [
            ("KAFKA_BROKERS", brokers.as_str()),
            ("TRADES_TOPIC", &topic),
            ("OHLC_TOPIC", &ohlc_topic),
            ("OHLC_GROUP", &group),
            ("LAKE_URL", lake.path().to_str().unwrap()),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, candles) = topic_candles(&ohlc_topic);
    let expected = fold_windows(&trades, 60_000, 60_000);
    assert_eq!(
        candles.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, e) in &expected {
        let v = &candles[key];
        let f = |n: &str| v[n].as_f64().unwrap();
        assert_eq!(
            (f("open"), f("high"), f("low"), f("close")),
            (e.open, e.high, e.low, e.close),
            "{key:?}"
        );
        assert_eq!(v["trades"].as_i64(), Some(e.trades), "{key:?}");
        assert!(
            close_to(f("volume"), e.volume, 1e-12) && close_to(f("vwap"), e.vwap(), 1e-12),
            "{key:?}"
        );
    }
}

/// `connector = 'websocket'`: a job reads Coinbase matches straight from the
/// (local) server; its first candle equals the fold of the trades in it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_reads_a_provider_through_the_websocket_source() {
    use arrow::array::{Array, Float64Array, Int64Array, StringArray};
    let mut script = vec![expect(r#""type":"subscribe""#)];
    script.extend((1..=20).map(|id| send(coinbase_match("match", "BTC-USD", id))));
    script.push(send("not json"));
    // A trade three minutes on: the watermark passes the first window's end.
    script.push(send(coinbase_match("match", "BTC-USD", 200)));
    let server = scripted_server(vec![script]).await;
    let table = unique("ws_candles");
    let job = format!(
        "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL,
             ts TIMESTAMP NOT NULL, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'websocket', provider = 'coinbase', symbols = 'BTC-USD',
               url = '{}', format = 'json', event_time.max_ahead = 'none');
         CREATE TABLE candles (symbol TEXT, window_start TIMESTAMP, open DOUBLE, high DOUBLE,
             low DOUBLE, close DOUBLE, volume DOUBLE, trades BIGINT)
         WITH (connector = 'memory', table = '{table}');
         INSERT INTO candles
         SELECT symbol, window_start, first_value(price ORDER BY ts), max(price), min(price),
                last_value(price ORDER BY ts), CAST(sum(CAST(size AS DECIMAL(38, 8))) AS DOUBLE), count(*)
         FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE);",
        server.url
    );
    let job = engine::Job::from_text("ws.sql", &job, &|_| None)
        .await
        .unwrap();
    let stop = engine::CancellationToken::new();
    let metrics = std::sync::Arc::new(engine::Metrics::new());
    let running = tokio::spawn({
        let (stop, metrics) = (stop.clone(), std::sync::Arc::clone(&metrics));
        async move {
            job.run_with_metrics(engine::RunOptions::default(), stop, metrics)
                .await
        }
    });
    let memory = engine::sink::memory::table(&table);
    wait_until(
        Duration::from_secs(60),
        || "a candle".into(),
        || memory.rows().iter().map(|b| b.num_rows()).sum::<usize>() > 0,
    )
    .await;
    stop.cancel();
    running.await.unwrap().unwrap();
    let batch = &memory.rows()[0];
    let col = |i: usize| batch.column(i).clone();
    let f = |i: usize| {
        col(i)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap()
            .value(0)
    };
    assert_eq!(
        col(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .unwrap()
            .value(0),
        "BTC-USD"
    );
    let trades: Vec<Trade> = (1..=20).map(coinbase_trade).collect();
    let e = &fold_windows(&trades, 60_000, 60_000)[&("BTC-USD".to_string(), 1_763_649_000_000)];
    assert_eq!((f(2), f(3), f(4), f(5)), (e.open, e.high, e.low, e.close));
    assert!(close_to(f(6), e.volume, 1e-12));
    assert_eq!(
        col(7)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap()
            .value(0),
        e.trades
    );
    assert_eq!(e.trades, 20);
    assert_eq!(metrics.bad_records(), 1, "the bad frame counted");

    // A websocket never ends: a bounded run says so instead of waiting forever.
    let job = engine::Job::from_text("ws.sql", &job_text_bounded(&server.url), &|_| None)
        .await
        .unwrap();
    let options = engine::RunOptions {
        bounded: true,
        ..Default::default()
    };
    let err = job
        .run(options, engine::CancellationToken::new())
        .await
        .unwrap_err();
    assert!(
        engine::Chain(&err).to_string().contains("never ends"),
        "{}",
        engine::Chain(&err)
    );

    // Options are checked when the job loads, naming the file, line and option.
    for (bad, says) in [
        (
            "provider = 'nasdaq'",
            "option `provider` = 'nasdaq' is not one of",
        ),
        (
            "provider = 'coinbase', symbols = ' , '",
            "option `symbols` lists no symbol",
        ),
        ("provider = 'coinbase'", "option `symbols` is required"),
        (
            "provider = 'coinbase', symbols = 'A', idle_timeout = 'soon'",
            "option `idle_timeout`",
        ),
        (
            "provider = 'coinbase', symbols = 'A', idle_timeout = '0s'",
            "must be longer than 0",
        ),
        (
            "provider = 'coinbase', symbols = 'A', sybmols = 'B'",
            "sybmols",
        ),
    ] {
        let text = format!("CREATE TABLE t (symbol TEXT) WITH (connector = 'websocket', {bad}, format = 'json');\nCREATE TABLE o (symbol TEXT) WITH (connector = 'memory');\nINSERT INTO o SELECT symbol FROM t;");
        let err = match engine::Job::from_text("bad.sql", &text, &|_| None).await {
            Ok(_) => panic!("{bad} was taken"),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("bad.sql:1") && err.contains(says),
            "{bad}: {err}"
        );
    }
}

fn job_text_bounded(url: &str) -> String {
    format!(
        "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL)
         WITH (connector = 'websocket', provider = 'coinbase', symbols = 'BTC-USD', url = '{url}', format = 'json');
         CREATE TABLE out (symbol TEXT) WITH (connector = 'memory', table = '{}');
         INSERT INTO out SELECT symbol FROM trades;",
        unique("ws_out")
    )
}

/// `engine run jobs/ohlc_1m.sql --feed coinbase --symbols SYMBOLS --feed-url URL`
/// on the embedded default (no KAFKA_BROKERS), in `dir`, stderr captured.
fn embedded_run(dir: &std::path::Path, symbols: &str, url: &str) -> tokio::process::Command {
    let job = repo_root().join("jobs/ohlc_1m.sql");
    let mut run = tokio::process::Command::new(env!("CARGO_BIN_EXE_engine"));
    run.arg("run")
        .arg(job)
        .args([
            "--feed",
            "coinbase",
            "--symbols",
            symbols,
            "--feed-url",
            url,
        ])
        .env_remove("KAFKA_BROKERS")
        .env_remove("LAKE_URL")
        .env("NO_COLOR", "1")
        .current_dir(dir)
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    run
}

/// `engine run jobs/ohlc_1m.sql --feed coinbase` on the embedded default:
/// the candles in the lake are the fold of the trades the provider sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_default_runs_on_a_live_feed() {
    use arrow::array::{Array, Float64Array, Int64Array, TimestampMillisecondArray};
    let mut script = vec![expect(r#""type":"subscribe""#)];
    script.extend((1..=150).map(|id| send(coinbase_match("match", "BTC-USD", id))));
    script.push(Step::Ping);
    let server = scripted_server(vec![script]).await;
    let dir = tempfile::tempdir().unwrap();
    let child = embedded_run(dir.path(), "BTC-USD", &server.url)
        .spawn()
        .unwrap();
    let read = || format!("the feed read: {:?}", server.connections());
    wait_until(Duration::from_secs(60), read, || {
        server.connections().first().is_some_and(|c| c.pongs > 0)
    })
    .await;
    // The job reads the embedded broker a moment behind the feed.
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&child.id().unwrap().to_string(), "-INT");
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("live trades of BTC-USD from coinbase at"),
        "{stderr}"
    );

    let trades: Vec<Trade> = (1..=150).map(coinbase_trade).collect();
    let expected = fold_windows(&trades, 60_000, 60_000);
    let mut starts = Vec::new();
    for path in files_under(&dir.path().join("lake/ohlc_1m")) {
        let file = std::fs::File::open(&path).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let col = |n: &str| b.column_by_name(n).unwrap().clone();
            let start = col("window_start")
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap()
                .clone();
            let f = |n: &str| {
                col(n)
                    .as_any()
                    .downcast_ref::<Float64Array>()
                    .unwrap()
                    .clone()
            };
            let n = col("trades")
                .as_any()
                .downcast_ref::<Int64Array>()
                .unwrap()
                .clone();
            for i in 0..b.num_rows() {
                let e = &expected[&("BTC-USD".to_string(), start.value(i))];
                assert_eq!(
                    (
                        f("open").value(i),
                        f("high").value(i),
                        f("low").value(i),
                        f("close").value(i),
                        n.value(i)
                    ),
                    (e.open, e.high, e.low, e.close, e.trades)
                );
                assert!(close_to(f("volume").value(i), e.volume, 1e-9));
                starts.push(start.value(i));
            }
        }
    }
    starts.sort();
    assert!(starts.len() >= 2, "{stderr}");
    assert_eq!(
        starts[..2],
        [1_763_649_000_000, 1_763_649_060_000],
        "the two windows the watermark passed: {stderr}"
    );
}

/// A feed the provider refuses ends `engine run --feed` with the provider's
/// message, instead of a job waiting for trades that never come.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_live_feed_ends_the_embedded_run() {
    let server = scripted_server(vec![vec![
        expect(r#""type":"subscribe""#),
        send(r#"{"type":"error","message":"Failed to subscribe","reason":"FOO-BAR is not a valid product"}"#),
    ]])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = embedded_run(dir.path(), "FOO-BAR", &server.url).output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("the run ends")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("error: the live feed ended the job: provider: Coinbase refused: Failed to subscribe FOO-BAR is not a valid product"), "{stderr}");
}
