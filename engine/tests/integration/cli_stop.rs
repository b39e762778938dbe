//! The `engine` binary stopped with Ctrl-C (SIGINT) keeps its promise: it
//! takes a final checkpoint (the rows it read are in published files or, for
//! files still open, in the checkpoint), commits its offsets for exactly
//! those, and a second (bounded) run resumes from it and writes the rest:
//! every trade once, none twice.

use crate::common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use arrow::array::{Array, StringArray, TimestampMillisecondArray};
use common::*;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn engine(args: &[&str], job: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_engine"));
    cmd.args(args).arg(job).env("RUST_LOG", "info");
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_flushes_and_a_rerun_completes_exactly_once() {
    let topic = unique("stop");
    create_topics(&[(&topic, 3), (&format!("{topic}.dlq"), 1)]).await;
    let trades = generate_trades(17, 60_000, 4, 1_763_640_000_000, 10);
    produce(&topic, &trade_records(&trades)).await;

    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let job = dir.path().join("raw.sql");
    std::fs::write(
        &job,
        format!(
            "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL)
             WITH (connector = 'kafka', bootstrap_servers = '{}', topic = '{topic}', group_id = '{}', batch.size = '500');
             CREATE TABLE raw (symbol TEXT, ts TIMESTAMP) WITH (connector = 'lake', path = '{}', partition_by = 'none');
             INSERT INTO raw SELECT symbol, ts FROM trades;",
            brokers(),
            unique("group"),
            lake.display()
        ),
    )
    .unwrap();

    // Run until the source has started, then interrupt it as a user's Ctrl-C does.
    let mut running = engine(&["run"], &job)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(running.stderr.take().unwrap()).lines();
    for line in stderr.by_ref() {
        if line.unwrap().contains("source started") {
            break;
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let interrupted = Command::new("kill")
        .args(["-INT", &running.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let log: Vec<String> = stderr.map_while(Result::ok).collect();
    let status = running.wait().unwrap();
    assert!(
        status.success(),
        "clean exit after Ctrl-C: {status}\n{}",
        log.join("\n")
    );
    for expected in ["final checkpoint written", "offsets committed"] {
        assert!(
            log.iter().any(|l| l.contains(expected)),
            "{expected}: {}",
            log.join("\n")
        );
    }

    // The rest, in a bounded run of the same group.
    let rerun = engine(&["run", "--bounded"], &job).output().unwrap();
    assert!(
        rerun.status.success(),
        "{}",
        String::from_utf8_lossy(&rerun.stderr)
    );

    let mut seen = BTreeSet::new();
    let mut rows = 0;
    for entry in std::fs::read_dir(&lake).unwrap() {
        let path = entry.unwrap().path();
        if path.file_name().unwrap().to_string_lossy().starts_with('_') {
            continue; // `_staging`: hidden from readers, as Athena hides it
        }
        assert!(
            path.extension().is_some_and(|e| e == "parquet"),
            "only closed Parquet files: {}",
            path.display()
        );
        let reader = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let b = batch.unwrap();
            let symbols = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
            let ts = b
                .column(1)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .unwrap();
            for i in 0..b.num_rows() {
                seen.insert((symbols.value(i).to_string(), ts.value(i)));
                rows += 1;
            }
        }
    }
    let expected: BTreeSet<(String, i64)> =
        trades.iter().map(|t| (t.symbol.clone(), t.ts)).collect();
    assert_eq!(rows, trades.len(), "no trade written twice");
    assert_eq!(seen, expected, "every trade written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_is_restored_only_into_the_job_that_wrote_it() {
    let topic = unique("fingerprint");
    create_topics(&[(&topic, 1), (&format!("{topic}.dlq"), 1)]).await;
    produce(
        &topic,
        &trade_records(&generate_trades(3, 1000, 2, 1_763_640_000_000, 10)),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state").display().to_string();
    let lake = dir.path().join("lake").display().to_string();
    let brokers = brokers();
    let run = |job: &str| {
        engine_at_root(
            &["run", job, "--bounded", "--state-dir", &state],
            [
                ("KAFKA_BROKERS", brokers.as_str()),
                ("TRADES_TOPIC", topic.as_str()),
                ("OHLC_TOPIC", topic.as_str()), // never written: the run stops before
                ("LAKE_URL", lake.as_str()),
            ],
        )
    };
    let raw = run("jobs/trades_raw.sql");
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    let other = run("jobs/ohlc_1m.sql");
    let stderr = String::from_utf8_lossy(&other.stderr);
    assert!(!other.status.success());
    assert!(
        stderr.contains("holds checkpoints of a different job (or an older version of it)")
            && stderr.contains("--reset --start"),
        "{stderr}"
    );
    for (args, says) in [
        (
            vec!["--checkpoint-interval", "0s"],
            "is not a positive duration",
        ),
        (
            vec!["--no-checkpoints", "--state-dir", "x"],
            "cannot be used with",
        ),
    ] {
        let mut all = vec!["run", "jobs/ohlc_1m.sql"];
        all.extend_from_slice(&args);
        let out = engine_at_root(&all, []);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains(says),
            "{args:?}: {stderr}"
        );
    }
}
