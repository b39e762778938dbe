//! Ready-made inputs: simulated feeds in files and topics, and the environment jobs read.

use super::*;

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
