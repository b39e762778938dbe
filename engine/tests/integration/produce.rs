//! `engine produce`: reproducible, statistically what was asked, clear about
//! wrong flags, and the same records to Kafka as to a file.

use crate::common;

use std::collections::BTreeSet;
use std::path::Path;

use common::*;

fn produce_to(file: &Path, extra: &[&str]) {
    let mut args = vec![
        "produce",
        "--speed",
        "max",
        "--start",
        "2025-11-20T14:30:00Z",
        "--to-file",
        file.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, stderr) = engine(&args);
    assert!(ok, "{stderr}");
}

const FEED: &[&str] = &[
    "--count",
    "50000",
    "--rate",
    "200",
    "--symbols",
    "8",
    "--seed",
    "7",
    "--disorder-ms",
    "800",
    "--late-fraction",
    "0.02",
    "--bad-fraction",
    "0.01",
];

#[test]
fn same_seed_same_bytes_and_the_asked_statistics() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
    produce_to(&a, FEED);
    produce_to(&b, FEED);
    let text = std::fs::read(&a).unwrap();
    assert_eq!(text, std::fs::read(&b).unwrap(), "same seed, same bytes");
    let other = dir.path().join("c.jsonl");
    let reseeded: Vec<&str> = FEED
        .iter()
        .map(|a| if *a == "7" { "8" } else { a })
        .collect();
    produce_to(&other, &reseeded);
    assert_ne!(
        text,
        std::fs::read(&other).unwrap(),
        "another seed, other trades"
    );

    let lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
    let lines = &lines[..lines.len() - 1]; // the file ends with a newline
    assert_eq!(lines.len(), 50_000);
    let (mut symbols, mut bad, mut late, mut max_ts) = (BTreeSet::new(), 0, 0, 0i64);
    let start = 1_763_649_000_000; // 2025-11-20T14:30:00Z
    for line in lines {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(line) else {
            bad += 1;
            continue;
        };
        let (Some(symbol), Some(price), Some(size), Some(ts)) = (
            v["symbol"].as_str(),
            v["price"].as_f64(),
            v["size"].as_i64(),
            v["ts"].as_i64(),
        ) else {
            bad += 1;
            continue;
        };
        assert!(
            price > 0.0 && (price * 100.0 - (price * 100.0).round()).abs() < 1e-6,
            "cent ticks: {price}"
        );
        assert!(size > 0);
        assert!(ts >= start);
        symbols.insert(symbol.to_string());
        // In send order, an on-time trade is never older than the disorder bound allows.
        if ts < max_ts - 800 {
            late += 1;
            assert!(
                ts < max_ts - 60_000,
                "a late trade is a minute behind, not {} ms",
                max_ts - ts
            );
        }
        max_ts = max_ts.max(ts);
    }
    assert_eq!(symbols.len(), 8);
    let n = lines.len() as f64;
    // 1% bad: binomial, 50k draws, so well within 0.7%..1.3%.
    assert!(
        (0.007..0.013).contains(&(bad as f64 / n)),
        "bad fraction {}",
        bad as f64 / n
    );
    // 2% late, but the last minute's late trades are not sent yet: 250 s of market time, so ~76% of 2%.
    assert!(
        (0.012..0.018).contains(&(late as f64 / n)),
        "late fraction {}",
        late as f64 / n
    );
}

#[test]
fn wrong_flags_are_one_clear_line_and_a_failure() {
    for (args, says) in [
        (vec!["produce", "--rate", "-5"], "must be a positive number"),
        (vec!["produce", "--symbols", "0"], "at least 1"),
        (vec!["produce", "--late-fraction", "2"], "between 0 and 1"),
        (
            vec!["produce", "--speed", "fast"],
            "positive factor or `max`",
        ),
        (
            vec![
                "produce",
                "--start",
                "yesterday",
                "--count",
                "1",
                "--to-file",
                "/tmp/never",
            ],
            "expected RFC 3339",
        ),
        (
            vec!["produce", "--to-file", "/tmp/never"],
            "needs --count or --duration",
        ),
        (
            vec![
                "produce",
                "--late-fraction",
                "0.6",
                "--bad-fraction",
                "0.6",
                "--count",
                "1",
            ],
            "must not exceed 1",
        ),
        (
            vec!["produce", "--symbols", "A,B;C"],
            "comma-separated list",
        ),
    ] {
        let (ok, stderr) = engine(&args);
        assert!(!ok, "{args:?} should fail");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    for sub in ["run", "check", "produce", "tail"] {
        let out = engine_output([sub, "--help"]);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Usage"),
            "{sub} --help"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_gets_the_same_records_as_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("feed.jsonl");
    let args = [
        "--count",
        "20000",
        "--symbols",
        "AAPL,MSFT,IBM",
        "--seed",
        "3",
        "--bad-fraction",
        "0.01",
    ];
    produce_to(&file, &args);
    let topic = unique("produced");
    let brokers = brokers();
    let mut kafka_args = vec![
        "produce",
        "--speed",
        "max",
        "--start",
        "2025-11-20T14:30:00Z",
        "--topic",
        &topic,
        "--brokers",
        &brokers,
    ];
    kafka_args.extend_from_slice(&args);
    let (ok, stderr) = engine(&kafka_args);
    assert!(ok, "{stderr}");

    let mut from_kafka: Vec<Vec<u8>> = read_all(&topic).into_iter().map(|r| r.payload).collect();
    let mut from_file: Vec<Vec<u8>> = std::fs::read(&file)
        .unwrap()
        .split(|b| *b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    from_file.pop(); // trailing newline
                     // Partitions reorder records across keys; the multiset is the same.
    from_kafka.sort();
    from_file.sort();
    assert_eq!(from_kafka.len(), 20_000);
    assert_eq!(from_kafka, from_file);
    assert_eq!(
        read_all(&format!("{topic}.dlq")).len(),
        0,
        "the dead-letter topic was created, empty"
    );
}
