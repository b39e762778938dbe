//! Outages: while `jobs/trades_raw.sql` runs on a live feed, the broker or
//! the S3 server is frozen (SIGSTOP) for 30 s, then thawed. The engine must
//! ride it out by itself: no crash, memory held by backpressure rather than
//! growing, and in the end every trade in the lake exactly once.

use crate::common;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

const TRADES: u64 = 300_000;
const OUTAGE: Duration = Duration::from_secs(30);

/// Resident memory of a process, in MiB.
fn rss_mib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

/// `Some(partitions)` once `topic` exists.
fn topic_partitions(topic: &str) -> Option<usize> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .ok()?;
    let t = md.topics().first()?;
    (t.error().is_none() && !t.partitions().is_empty()).then(|| t.partitions().len())
}

/// Feeds the raw job live, freezes `service` for [`OUTAGE`] mid-run, and checks the result.
async fn ride_out(service: &str, lake: &str) {
    let _one = one_outage_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let count = TRADES.to_string();
    let feed: &[&str] = &[
        "--symbols",
        "20",
        "--rate",
        "10000",
        "--count",
        &count,
        "--start",
        "2025-11-20T14:59:30Z",
        "--seed",
        "12",
    ];
    // The same trades to a file (for the independent check) and, live, to a topic.
    let file = dir.path().join("feed.jsonl");
    let file_arg = file.display().to_string();
    let mut args = vec!["produce", "--speed", "max", "--to-file", &file_arg];
    args.extend_from_slice(feed);
    let (ok, stderr) = engine(&args);
    assert!(ok, "{stderr}");
    let topic = unique("outage_trades");
    let brokers = brokers();
    let mut live = vec!["produce", "--topic", &topic, "--brokers", &brokers];
    live.extend_from_slice(feed);
    let mut producer = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(&live)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The producer creates the topic; the job needs it to exist.
    let deadline = Instant::now() + Duration::from_secs(60);
    while topic_partitions(&topic).is_none() {
        assert!(
            Instant::now() < deadline,
            "the live feed did not create {topic}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let group = unique("raw");
    let vars = BTreeMap::from([
        ("KAFKA_BROKERS", brokers.clone()),
        ("TRADES_TOPIC", topic.clone()),
        ("RAW_GROUP", group.clone()),
        ("LAKE_URL", lake.to_string()),
    ]);
    let log = dir.path().join("run.log");
    let mut job = spawn_engine(
        &["run", "jobs/trades_raw.sql", "--checkpoint-interval", "1s"],
        &vars,
        &log,
    );

    std::thread::sleep(Duration::from_secs(6));
    let pid = service_pid(service);
    let before = rss_mib(job.id(), "VmRSS:");
    signal(&pid, "-STOP");
    let frozen = Instant::now();
    let mut during = before;
    while frozen.elapsed() < OUTAGE {
        std::thread::sleep(Duration::from_millis(250));
        during = during.max(rss_mib(job.id(), "VmRSS:"));
    }
    signal(&pid, "-CONT");
    let thawed = Instant::now();
    assert!(
        job.try_wait().unwrap().is_none(),
        "the job died during the {service} outage: {}",
        std::fs::read_to_string(&log).unwrap()
    );
    assert!(producer.wait().unwrap().success(), "the live feed failed");

    // Recovered by itself: its checkpoints reach the end of the topic.
    let deadline = Instant::now() + Duration::from_secs(180);
    while committed(&topic, &group) < TRADES as i64 {
        assert!(
            Instant::now() < deadline && job.try_wait().unwrap().is_none(),
            "the job did not catch up after the {service} outage: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let caught_up = thawed.elapsed();
    let peak = rss_mib(job.id(), "VmHWM:");
    signal(&job.id().to_string(), "-INT");
    assert!(
        job.wait().unwrap().success(),
        "{}",
        std::fs::read_to_string(&log).unwrap()
    );
    // The files still open are in the final checkpoint; a bounded run closes them.
    let rerun = engine_at_root(
        &["run", "jobs/trades_raw.sql", "--bounded"],
        vars.iter().map(|(k, v)| (*k, v.as_str())),
    );
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );

    let mut expected: BTreeMap<(String, String), u64> = BTreeMap::new();
    for t in read_trades_file(&file) {
        let ts = chrono::DateTime::from_timestamp_millis(t.ts).unwrap();
        *expected
            .entry((
                ts.format("%Y-%m-%d").to_string(),
                ts.format("%H").to_string(),
            ))
            .or_default() += 1;
    }
    let stats: Vec<serde_json::Value> =
        serde_json::from_str(&duckdb_lake(&["raw_stats", lake])).unwrap();
    let got: BTreeMap<(String, String), u64> = stats
        .iter()
        .map(|s| {
            assert_eq!(s["rows"], s["distinct_trades"], "a trade twice: {s}");
            (
                (
                    s["dt"].as_str().unwrap().to_string(),
                    s["hour"].as_str().unwrap().to_string(),
                ),
                s["rows"].as_u64().unwrap(),
            )
        })
        .collect();
    eprintln!(
        "{service} frozen for {} s: job RSS {before} MiB before, at most {during} MiB during, \
         peak {peak} MiB; caught up {:.1} s after the thaw; {} trades in the lake of {TRADES}",
        OUTAGE.as_secs(),
        caught_up.as_secs_f64(),
        got.values().sum::<u64>()
    );
    assert_eq!(got, expected, "every trade once, in its hour");
    // Backpressure: a frozen service stops consumption; it does not pile up records.
    assert!(
        during < before + 256,
        "memory grew by {} MiB during the outage",
        during - before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_broker_is_ridden_out() {
    let lake = tempfile::tempdir().unwrap();
    ride_out("tansu", &lake.path().join("lake").display().to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_s3_is_ridden_out() {
    ride_out("moto", &format!("s3://lake/{}", unique("outage"))).await;
}
