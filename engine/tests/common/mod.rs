//! Test support: trade generation, an independent fold of the same windows,
//! and plain Kafka helpers against the real broker started by scripts/test.sh.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

/// The broker address exported by scripts/services.sh.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").expect(
        "KAFKA_BROKERS is not set: run the tests with scripts/test.sh, which starts a Kafka-protocol broker and exports it",
    )
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{:06x}",
        std::process::id(),
        rand::rng().random::<u32>() & 0xff_ffff
    )
}

/// One trade, as the producer sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub symbol: String,
    pub price: f64,
    pub size: f64,
    pub ts: i64,
}

/// Trades over `symbols` symbols starting at `start_ms`, one every `spacing_ms`
/// (so event times are unique, and first/last by time are well defined),
/// random-walk prices with cent ticks, integer sizes.
pub fn generate_trades(
    seed: u64,
    n: usize,
    symbols: usize,
    start_ms: i64,
    spacing_ms: i64,
) -> Vec<Trade> {
    let mut rng = StdRng::seed_from_u64(seed);
    let names: Vec<String> = (0..symbols).map(|i| format!("SYM{i:02}")).collect();
    let mut prices: Vec<f64> = (0..symbols).map(|i| 50.0 + 25.0 * i as f64).collect();
    (0..n)
        .map(|i| {
            let s = rng.random_range(0..symbols);
            let step = rng.random_range(-5i64..=5) as f64 / 100.0;
            prices[s] = ((prices[s] + step).max(1.0) * 100.0).round() / 100.0;
            Trade {
                symbol: names[s].clone(),
                price: prices[s],
                size: rng.random_range(1..=1000) as f64,
                ts: start_ms + i as i64 * spacing_ms,
            }
        })
        .collect()
}

/// A trade as the contract's JSON, with `ts` written as given (a number or a quoted string).
pub fn trade_json(t: &Trade, ts: &str) -> Vec<u8> {
    format!(
        r#"{{"symbol":"{}","price":{},"size":{},"ts":{ts}}}"#,
        t.symbol, t.price, t.size
    )
    .into_bytes()
}

/// Kafka records (key = symbol) for trades, `ts` in epoch milliseconds.
pub fn trade_records(trades: &[Trade]) -> Vec<(String, Vec<u8>)> {
    trades
        .iter()
        .map(|t| (t.symbol.clone(), trade_json(t, &t.ts.to_string())))
        .collect()
}

/// Parses and runs job text to the end of its input, `${VAR}` from `env`.
pub async fn run_bounded(
    name: &str,
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> engine::RunReport {
    let job = engine::Job::from_text(name, text, env).await.unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let options = engine::RunOptions {
        bounded: true,
        ..Default::default()
    };
    job.run(options, stop).await.unwrap()
}

/// The order trades reach Kafka: each delayed by up to `max_delay_ms` (< the watermark delay).
pub fn arrival_order(trades: &[Trade], seed: u64, max_delay_ms: i64) -> Vec<Trade> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut keyed: Vec<(i64, usize)> = trades
        .iter()
        .enumerate()
        .map(|(i, t)| (t.ts + rng.random_range(0..max_delay_ms), i))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, i)| trades[i].clone()).collect()
}

/// A window's aggregates, computed independently of the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Candle {
    pub window_end: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub notional: f64,
    pub trades: i64,
    first_ts: i64,
    last_ts: i64,
}

impl Candle {
    pub fn vwap(&self) -> f64 {
        self.notional / self.volume
    }
}

/// Plain fold: every trade into each window `[start, start + size)` containing
/// it, starts multiple of `slide`. Keyed by (symbol, window_start).
pub fn fold_windows(
    trades: &[Trade],
    size_ms: i64,
    slide_ms: i64,
) -> BTreeMap<(String, i64), Candle> {
    let mut out: BTreeMap<(String, i64), Candle> = BTreeMap::new();
    for t in trades {
        let last_start = t.ts.div_euclid(slide_ms) * slide_ms;
        let mut start = last_start;
        while start > t.ts - size_ms {
            let c = out.entry((t.symbol.clone(), start)).or_insert(Candle {
                window_end: start + size_ms,
                open: t.price,
                high: t.price,
                low: t.price,
                close: t.price,
                volume: 0.0,
                notional: 0.0,
                trades: 0,
                first_ts: t.ts,
                last_ts: t.ts,
            });
            if t.ts < c.first_ts {
                (c.first_ts, c.open) = (t.ts, t.price);
            }
            if t.ts > c.last_ts {
                (c.last_ts, c.close) = (t.ts, t.price);
            }
            c.high = c.high.max(t.price);
            c.low = c.low.min(t.price);
            c.volume += t.size;
            c.notional += t.price * t.size;
            c.trades += 1;
            start -= slide_ms;
        }
    }
    out
}

/// `a` and `b` equal to `rel` relative error.
pub fn close_to(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(f64::MIN_POSITIVE)
}

/// Creates topics (name, partitions) on the test broker.
pub async fn create_topics(topics: &[(&str, i32)]) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .expect("admin client");
    let new: Vec<NewTopic> = topics
        .iter()
        .map(|(n, p)| NewTopic::new(n, *p, TopicReplication::Fixed(1)))
        .collect();
    for result in admin
        .create_topics(&new, &AdminOptions::new())
        .await
        .expect("create topics")
    {
        result.expect("topic created");
    }
}

/// Produces (key, payload) records and waits for every acknowledgement.
pub async fn produce(topic: &str, records: &[(String, Vec<u8>)]) {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("linger.ms", "20")
        .set("message.max.bytes", "10000000")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer");
    let mut pending = Vec::with_capacity(records.len());
    for (key, payload) in records {
        let record = FutureRecord::to(topic)
            .key(key.as_str())
            .payload(payload.as_slice());
        pending.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    for d in pending {
        d.await.expect("delivery future").expect("delivered");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// A record read back from a topic.
#[derive(Debug, Clone)]
pub struct ReadRecord {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub timestamp: Option<i64>,
    pub headers: BTreeMap<String, String>,
}

/// Reads every record of `topic` present now (all partitions, from the
/// beginning, until each reports end-of-partition: Tansu under-reports end
/// offsets, so counting up to them would stop early).
pub fn read_all(topic: &str) -> Vec<ReadRecord> {
    use rdkafka::error::KafkaError;
    use rdkafka::message::Headers;
    let consumer: BaseConsumer<engine::kafka::ConsumerLogs> = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .create_with_context(engine::kafka::ConsumerLogs)
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut at_end = std::collections::BTreeSet::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while at_end.len() < partitions.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "reading {topic} took over 120 s"
        );
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => out.push(ReadRecord {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                timestamp: m.timestamp().to_millis(),
                headers: m
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|h| {
                                (
                                    h.key.to_string(),
                                    String::from_utf8_lossy(h.value.unwrap_or_default())
                                        .into_owned(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default(),
            }),
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => panic!("reading {topic}: {e}"),
            None => {}
        }
    }
    out
}

/// Runs the `engine` binary with `args` to completion.
pub fn engine_output<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .output()
        .expect("the engine binary runs")
}

/// Runs the `engine` binary from the repository root (so `jobs/...` resolves)
/// with extra environment variables, to completion.
pub fn engine_at_root<'a>(
    args: &[&str],
    envs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .current_dir(repo_root())
        .envs(envs)
        .output()
        .expect("the engine binary runs")
}

/// Runs the `engine` binary; whether it succeeded, and its stderr.
pub fn engine(args: &[&str]) -> (bool, String) {
    let out = engine_output(args);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Trades of a JSON-lines file in the trade contract (every line a trade).
pub fn read_trades_file(path: &std::path::Path) -> Vec<Trade> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Trade {
                symbol: v["symbol"].as_str().unwrap().to_string(),
                price: v["price"].as_f64().unwrap(),
                size: v["size"].as_f64().unwrap(),
                ts: v["ts"].as_i64().unwrap(),
            }
        })
        .collect()
}

/// Simulates a feed with `engine produce FEED_ARGS --to-file DIR/feed.jsonl`, then
/// replays that file as recorded to a new topic (prefix `topic_prefix`) of
/// `partitions` partitions. Returns the file and the topic.
pub fn feed_file_and_topic(
    dir: &std::path::Path,
    feed_args: &[&str],
    topic_prefix: &str,
    partitions: u32,
) -> (std::path::PathBuf, String) {
    let feed = feed_file(dir, feed_args);
    let topic = unique(topic_prefix);
    let args = replay_args(&feed, &topic, partitions, "max");
    let (ok, stderr) = engine(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(ok, "{stderr}");
    (feed, topic)
}

/// Simulates a feed with `engine produce FEED_ARGS --to-file DIR/feed.jsonl`; returns the file.
pub fn feed_file(dir: &std::path::Path, feed_args: &[&str]) -> std::path::PathBuf {
    let feed = dir.join("feed.jsonl");
    let feed_arg = feed.display().to_string();
    let mut args = vec!["produce", "--speed", "max", "--to-file", &feed_arg];
    args.extend_from_slice(feed_args);
    let (ok, stderr) = engine(&args);
    assert!(ok, "{stderr}");
    feed
}

/// `engine` arguments that replay `feed` as recorded to `topic` (created with
/// `partitions`) at `speed` (`max`, or a factor of market time).
pub fn replay_args(
    feed: &std::path::Path,
    topic: &str,
    partitions: u32,
    speed: &str,
) -> Vec<String> {
    [
        "produce",
        "--replay",
        &feed.display().to_string(),
        "--order",
        "file",
        "--speed",
        speed,
        "--topic",
        topic,
        "--brokers",
        &brokers(),
        "--partitions",
        &partitions.to_string(),
    ]
    .map(String::from)
    .to_vec()
}

/// DuckDB over the lake (`engine/tests/py/duckdb_lake.py` with the services'
/// Python): the independent reader. Its stdout.
pub fn duckdb_lake(args: &[&str]) -> String {
    let python = std::env::var("SERVICES_PYTHON")
        .expect("SERVICES_PYTHON is not set: run the tests with scripts/test.sh");
    let out = std::process::Command::new(python)
        .arg(repo_root().join("engine/tests/py/duckdb_lake.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "duckdb {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The repository root (job files live in `jobs/`).
///
/// Read when the test runs (cargo sets `CARGO_MANIFEST_DIR` then too): a test
/// binary compiled for another clone sharing the target directory, and found
/// fresh there, would otherwise read that clone's files.
pub fn repo_root() -> std::path::PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    );
    manifest.parent().unwrap().to_path_buf()
}

/// Sends the engine's logs to the test output (shown for failing tests).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_test_writer()
        .try_init();
}

/// Every file below `dir`, at any depth.
pub fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// The 1-minute candles in the lake, read by DuckDB, by (symbol, window_start);
/// fails on a candle written twice.
pub fn lake_candles(
    lake: &str,
    dir: &std::path::Path,
) -> BTreeMap<(String, i64), serde_json::Value> {
    let sql = dir.join("candles.sql");
    std::fs::write(
        &sql,
        "SELECT symbol, window_start, open, high, low, close, volume, trades FROM ohlc_1m",
    )
    .unwrap();
    let rows = duckdb_lake(&["query", lake, &sql.display().to_string()]);
    let mut candles = BTreeMap::new();
    for line in rows.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            v["symbol"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
        );
        assert!(
            candles.insert(key.clone(), v).is_none(),
            "candle {key:?} twice in the lake"
        );
    }
    candles
}

/// The candles of a derived topic by (symbol, window_start), and how many
/// records it holds: at least once, so a candle may come several times, but
/// each time the same record (key, timestamp = window end, value).
pub fn topic_candles(topic: &str) -> (usize, BTreeMap<(String, i64), serde_json::Value>) {
    let mut candles: BTreeMap<(String, i64), serde_json::Value> = BTreeMap::new();
    let records = read_all(topic);
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
        let key = (
            v["symbol"].as_str().unwrap().to_string(),
            v["window_start"].as_i64().unwrap(),
        );
        assert_eq!(r.timestamp, v["window_end"].as_i64(), "{key:?}: timestamp");
        assert_eq!(r.key.as_deref(), Some(key.0.as_bytes()), "{key:?}: key");
        if let Some(before) = candles.insert(key.clone(), v.clone()) {
            assert_eq!(before, v, "{key:?}: a replayed candle differs");
        }
    }
    (records.len(), candles)
}

/// Fails unless the lake's and the topic's candles are exactly the folded
/// `candles`: the same (symbol, window) set, the same prices and trade
/// counts, the volume to 1e-9.
pub fn assert_candles_equal(
    candles: &BTreeMap<(String, i64), Candle>,
    lake_candles: &BTreeMap<(String, i64), serde_json::Value>,
    topic_candles: &BTreeMap<(String, i64), serde_json::Value>,
) {
    assert_eq!(
        lake_candles.keys().collect::<Vec<_>>(),
        candles.keys().collect::<Vec<_>>()
    );
    assert_eq!(
        topic_candles.keys().collect::<Vec<_>>(),
        candles.keys().collect::<Vec<_>>()
    );
    for (key, e) in candles {
        let v = &lake_candles[key];
        let f = |n: &str| v[n].as_f64().unwrap();
        assert_eq!(
            (f("open"), f("high"), f("low"), f("close")),
            (e.open, e.high, e.low, e.close),
            "{key:?}"
        );
        assert_eq!(v["trades"].as_i64().unwrap(), e.trades, "{key:?}");
        assert!(close_to(f("volume"), e.volume, 1e-9), "{key:?}");
        let t = &topic_candles[key];
        assert_eq!(
            t["close"].as_f64().unwrap(),
            e.close,
            "{key:?} in the topic"
        );
        assert_eq!(
            t["trades"].as_i64().unwrap(),
            e.trades,
            "{key:?} in the topic"
        );
    }
}

/// Offsets the group has committed on `topic`, summed over partitions.
pub fn committed(topic: &str, group: &str) -> i64 {
    committed_partitions(topic, group)
        .iter()
        .map(|(offset, _)| offset)
        .sum()
}

/// The group's committed offset and its metadata, per partition of `topic`
/// that has one.
pub fn committed_partitions(topic: &str, group: &str) -> Vec<(i64, String)> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", group)
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .map(|c| {
            c.elements()
                .iter()
                .filter_map(|e| match e.offset() {
                    rdkafka::Offset::Offset(n) => Some((n, e.metadata().to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The pid of a service started by scripts/services.sh (`tansu`, `moto`).
pub fn service_pid(name: &str) -> String {
    let dir = std::env::var("ENGINE_SERVICES_DIR")
        .expect("ENGINE_SERVICES_DIR is not set: run the tests with scripts/test.sh");
    std::fs::read_to_string(format!("{dir}/{name}.pid"))
        .unwrap_or_else(|e| {
            panic!("{name}.pid in {dir}: {e} (were the services started by scripts/services.sh?)")
        })
        .trim()
        .to_string()
}

/// Sends `sig` (e.g. `-STOP`) to process `pid`.
pub fn signal(pid: &str, sig: &str) {
    assert!(std::process::Command::new("kill")
        .args([sig, pid])
        .status()
        .unwrap()
        .success());
}

/// Waits up to `deadline` for `done`; fails naming `what` otherwise.
pub fn wait_for(what: &str, deadline: Duration, mut done: impl FnMut() -> bool) {
    let until = std::time::Instant::now() + deadline;
    while !done() {
        assert!(
            std::time::Instant::now() < until,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts `engine ARGS` from the repository root with `vars` set, logging
/// (`RUST_LOG=info`) to `log`.
pub fn spawn_engine(
    args: &[&str],
    vars: &BTreeMap<&str, String>,
    log: &std::path::Path,
) -> Running {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .current_dir(repo_root())
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap();
    Running(child)
}

/// A child process that is killed when dropped: a failing test leaves no
/// engine running (and reading the shared broker) behind.
pub struct Running(pub std::process::Child);

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Already exited in a passing test: both calls are then harmless.
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A million simulated trades of 50 symbols (from 23:50 UTC, so the day
/// changes) in a file and in a new topic of 4 partitions, a new derived topic,
/// a new lake on S3, and the environment the jobs find them by.
pub struct MillionTrades {
    /// The trades, one JSON object per line.
    pub feed: std::path::PathBuf,
    /// The derived topic (`OHLC_TOPIC`).
    pub ohlc_topic: String,
    /// The lake (`LAKE_URL`).
    pub lake: String,
    /// `KAFKA_BROKERS`, `TRADES_TOPIC`, `OHLC_TOPIC`, `OHLC_GROUP`, `RAW_GROUP`, `LAKE_URL`.
    pub vars: BTreeMap<&'static str, String>,
}

/// [`MillionTrades`] with names from `prefix` and the feed from `seed`.
pub async fn million_trades(dir: &std::path::Path, prefix: &str, seed: &str) -> MillionTrades {
    let (feed, topic) = feed_file_and_topic(
        dir,
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
            seed,
        ],
        &format!("{prefix}_trades"),
        4,
    );
    let ohlc_topic = unique(&format!("{prefix}_ohlc"));
    create_topics(&[(&ohlc_topic, 1)]).await;
    let lake = format!("s3://lake/{}", unique(prefix));
    let vars = BTreeMap::from([
        ("KAFKA_BROKERS", brokers()),
        ("TRADES_TOPIC", topic),
        ("OHLC_TOPIC", ohlc_topic.clone()),
        ("OHLC_GROUP", unique("ohlc")),
        ("RAW_GROUP", unique("raw")),
        ("LAKE_URL", lake.clone()),
    ]);
    MillionTrades {
        feed,
        ohlc_topic,
        lake,
        vars,
    }
}

/// Ten minutes of market time for 50 symbols (600k trades from 23:55 UTC, so
/// the day changes) in a file, to be replayed live into `topic`: a new topic of
/// 4 partitions with its dead-letter topic, a new derived topic, group and
/// lake on S3, and the environment `jobs/ohlc_1m.sql` finds them by.
pub struct LiveFeed {
    /// The trades, one JSON object per line.
    pub feed: std::path::PathBuf,
    /// The trades topic (`TRADES_TOPIC`), empty until the feed is replayed.
    pub topic: String,
    /// The derived topic (`OHLC_TOPIC`).
    pub ohlc_topic: String,
    /// The consumer group (`OHLC_GROUP`).
    pub group: String,
    /// The lake (`LAKE_URL`).
    pub lake: String,
    /// `KAFKA_BROKERS`, `TRADES_TOPIC`, `OHLC_TOPIC`, `OHLC_GROUP`, `LAKE_URL`.
    pub vars: BTreeMap<&'static str, String>,
}

/// Starts replaying `feed` into `topic` (4 partitions) at `speed` (a factor
/// of market time); the process ends when the feed is sent.
pub fn replay_live(feed: &std::path::Path, topic: &str, speed: &str) -> Running {
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(replay_args(feed, topic, 4, speed))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    Running(child)
}

/// [`LiveFeed`] with names from `prefix` and the feed from `seed`.
pub async fn live_feed(dir: &std::path::Path, prefix: &str, seed: &str) -> LiveFeed {
    let feed = feed_file(
        dir,
        &[
            "--symbols",
            "50",
            "--rate",
            "1000",
            "--count",
            "600000",
            "--start",
            "2025-11-20T23:55:00Z",
            "--seed",
            seed,
        ],
    );
    let topic = unique(&format!("{prefix}_trades"));
    let ohlc_topic = unique(&format!("{prefix}_ohlc"));
    create_topics(&[(&topic, 4), (&format!("{topic}.dlq"), 1), (&ohlc_topic, 1)]).await;
    let group = unique(&format!("{prefix}_group"));
    let lake = format!("s3://lake/{}", unique(prefix));
    let vars = BTreeMap::from([
        ("KAFKA_BROKERS", brokers()),
        ("TRADES_TOPIC", topic.clone()),
        ("OHLC_TOPIC", ohlc_topic.clone()),
        ("OHLC_GROUP", group.clone()),
        ("LAKE_URL", lake.clone()),
    ]);
    LiveFeed {
        feed,
        topic,
        ohlc_topic,
        group,
        lake,
        vars,
    }
}
