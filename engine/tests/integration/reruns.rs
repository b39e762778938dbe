//! The paths users walk after a first run: a run after a `--bounded` one,
//! a fresh or damaged state dir, starting over with `--reset`, and a state
//! dir that fails for a while under a running job.

use crate::common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::*;

/// 2025-11-20T10:00:00Z in ms.
const T0: i64 = 1_763_632_800_000;

/// A job run through the binary from the repository root.
struct Setup {
    topic: String,
    out: String,
    group: String,
    lake: String,
    dir: tempfile::TempDir,
}

impl Setup {
    async fn new(prefix: &str) -> Self {
        let topic = unique(prefix);
        let out = format!("{topic}_out");
        create_topics(&[(&topic, 2), (&format!("{topic}.dlq"), 1), (&out, 1)]).await;
        let dir = tempfile::tempdir().unwrap();
        Self {
            lake: dir.path().join("lake").display().to_string(),
            group: unique("group"),
            topic,
            out,
            dir,
        }
    }

    fn state(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    /// Runs `job` with `args`; its exit status and stderr.
    fn run(&self, job: &str, args: &[&str]) -> (bool, String) {
        let brokers = brokers();
        let mut all = vec!["run", job];
        all.extend_from_slice(args);
        let out = engine_at_root(
            &all,
            [
                ("KAFKA_BROKERS", brokers.as_str()),
                ("TRADES_TOPIC", self.topic.as_str()),
                ("OHLC_TOPIC", self.out.as_str()),
                ("OHLC_GROUP", self.group.as_str()),
                ("RAW_GROUP", self.group.as_str()),
                ("LAKE_URL", self.lake.as_str()),
            ],
        );
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "{stderr}");
        (out.status.success(), stderr)
    }

    fn run_ok(&self, job: &str, args: &[&str]) -> String {
        let (ok, stderr) = self.run(job, args);
        assert!(ok, "{job} {args:?}:\n{stderr}");
        stderr
    }
}

/// The counter `name` of the run summary in `stderr`.
fn summary(stderr: &str, name: &str) -> u64 {
    let line = stderr
        .lines()
        .rev()
        .find(|l| l.contains("records_in="))
        .unwrap_or_else(|| panic!("no summary in:\n{stderr}"));
    let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Every Parquet file under `dir` with its bytes.
fn parquet_files(dir: &Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    if !dir.exists() {
        return Vec::new();
    }
    files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .filter(|p| !p.components().any(|c| c.as_os_str() == "_staging"))
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect()
}

/// The trades in the raw lake (DuckDB), as (symbol, ts) with repeats counted.
fn raw_rows(lake: &str, dir: &Path) -> (usize, BTreeSet<(String, i64)>) {
    let sql = dir.join("raw.sql");
    std::fs::write(&sql, "SELECT symbol, ts FROM trades").unwrap();
    let rows = duckdb_lake(&["query", lake, &sql.display().to_string()]);
    let mut set = BTreeSet::new();
    let mut n = 0;
    for line in rows.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        set.insert((
            v["symbol"].as_str().unwrap().to_string(),
            v["ts"].as_i64().unwrap(),
        ));
        n += 1;
    }
    (n, set)
}

/// A run after a bounded run sees the new trades: the end of data is not
/// carried into the next run as a watermark (it made every new row late).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_after_a_bounded_run_counts_every_new_trade() {
    let s = Setup::new("rerun").await;
    let state = s.state("state");
    let first = generate_trades(1, 300, 3, T0, 1000);
    produce(&s.topic, &trade_records(&first)).await;
    s.run_ok("jobs/ohlc_1m.sql", &["--bounded", "--state-dir", &state]);

    // Later trades, from the minute after the last one.
    let second = generate_trades(2, 300, 3, T0 + 10 * 60_000, 1000);
    produce(&s.topic, &trade_records(&second)).await;
    let stderr = s.run_ok("jobs/ohlc_1m.sql", &["--bounded", "--state-dir", &state]);
    assert_eq!(summary(&stderr, "late_rows"), 0, "{stderr}");

    let all: Vec<Trade> = first.iter().chain(&second).cloned().collect();
    let expected = fold_windows(&all, 60_000, 60_000);
    let (_, topic) = topic_candles(&s.out);
    assert_candles_equal(&expected, &lake_candles(&s.lake, s.dir.path()), &topic);
    assert_eq!(committed(&s.topic, &s.group), 600);
}

/// A state dir that is gone, or whose every checkpoint is damaged, after
/// the group has committed offsets: an error naming the choices, never a
/// silent restart from the group's offsets (candles from half their trades).
/// `--reset --start earliest` then starts over in a new generation, and the
/// lake files of the first start stay as they were (not overwritten, not
/// rolled back by the new generation's restores).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_usable_checkpoint_is_an_error_and_reset_starts_a_new_generation() {
    let s = Setup::new("restart").await;
    let trades = generate_trades(3, 400, 3, T0, 1000);
    produce(&s.topic, &trade_records(&trades[..200])).await;
    let first = s.state("first");
    s.run_ok("jobs/trades_raw.sql", &["--bounded", "--state-dir", &first]);
    produce(&s.topic, &trade_records(&trades[200..])).await;
    s.run_ok("jobs/trades_raw.sql", &["--bounded", "--state-dir", &first]);
    let published = parquet_files(Path::new(&s.lake));
    assert!(published.len() >= 2, "two checkpoints published files");
    assert_eq!(raw_rows(&s.lake, s.dir.path()).0, trades.len());

    // A fresh state dir (or the old one removed) with the group's offsets committed.
    let fresh = s.state("fresh");
    let (ok, stderr) = s.run("jobs/trades_raw.sql", &["--bounded", "--state-dir", &fresh]);
    assert!(!ok, "must not restart silently:\n{stderr}");
    for says in [
        "has no usable checkpoint",
        "committed offsets",
        "--reset --start",
    ] {
        assert!(stderr.contains(says), "{says}: {stderr}");
    }
    // Every checkpoint of the first state dir damaged: the same, naming the damage.
    for path in files_under(Path::new(&first)) {
        if path.file_name().is_some_and(|n| n == "_manifest.json") {
            std::fs::write(&path, b"{ not a manifest").unwrap();
        }
    }
    let (ok, stderr) = s.run("jobs/trades_raw.sql", &["--bounded", "--state-dir", &first]);
    assert!(
        !ok && stderr.contains("is damaged") && stderr.contains("--reset"),
        "{stderr}"
    );
    let (ok, stderr) = s.run(
        "jobs/trades_raw.sql",
        &["--start", "earliest", "--state-dir", &fresh],
    );
    assert!(
        !ok && stderr.contains("--start without --reset"),
        "{stderr}"
    );

    // Starting over re-reads everything into new files; the first start's stay.
    s.run_ok(
        "jobs/trades_raw.sql",
        &[
            "--bounded",
            "--state-dir",
            &fresh,
            "--reset",
            "--start",
            "earliest",
        ],
    );
    // A restore of the new generation rolls back only its own files.
    s.run_ok("jobs/trades_raw.sql", &["--bounded", "--state-dir", &fresh]);
    let after = parquet_files(Path::new(&s.lake));
    for (path, bytes) in &published {
        let now = after.iter().find(|(p, _)| p == path);
        assert_eq!(
            now.map(|(_, b)| b),
            Some(bytes),
            "{} kept as it was",
            path.display()
        );
    }
    let (n, set) = raw_rows(&s.lake, s.dir.path());
    assert_eq!(
        n,
        2 * trades.len(),
        "the first start's rows, and the new start's"
    );
    assert_eq!(set.len(), trades.len());
    assert_eq!(committed(&s.topic, &s.group), trades.len() as i64);
}

/// A state dir that fails under a running job: each failed checkpoint is
/// logged and retried, the job goes on, and once the store is back the next
/// checkpoint publishes what was staged. Past `--checkpoint-retry-for` the
/// job stops with the error instead of running on without checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_state_dir_is_retried_then_reported() {
    let s = Setup::new("failing").await;
    let trades = generate_trades(4, 2000, 3, T0, 100);
    produce(&s.topic, &trade_records(&trades[..1000])).await;
    let state = s.state("state");
    let brokers = brokers();
    let spawn = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "jobs/trades_raw.sql",
            "--state-dir",
            &state,
            "--checkpoint-interval",
            "500ms",
        ];
        args.extend_from_slice(extra);
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(&args)
            .current_dir(repo_root())
            .envs([
                ("KAFKA_BROKERS", brokers.as_str()),
                ("TRADES_TOPIC", s.topic.as_str()),
                ("RAW_GROUP", s.group.as_str()),
                ("LAKE_URL", s.lake.as_str()),
                ("RAW_FILE_SIZE", "4KB"),
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        Running(child)
    };
    let mut running = spawn(&[]);
    let (lines_tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = running.0.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = lines_tx.send(line);
        }
    });
    let mut log = Vec::new();
    let wait_line = |log: &mut Vec<String>, what: &str, within: Duration| {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(line) = lines.recv_timeout(Duration::from_millis(200)) {
                let hit = line.contains(what);
                log.push(line);
                if hit {
                    return;
                }
            }
        }
        panic!("no `{what}` within {within:?}:\n{}", log.join("\n"));
    };
    let lake_dir = Path::new(&s.lake).join("trades");
    wait_for("the first files", Duration::from_secs(60), || {
        !parquet_files(&lake_dir).is_empty()
    });

    // The state dir is replaced by a file: every write into it fails.
    let away = s.state("state.away");
    std::fs::rename(&state, &away).unwrap();
    std::fs::write(&state, b"not a directory").unwrap();
    produce(&s.topic, &trade_records(&trades[1000..1500])).await;
    wait_line(
        &mut log,
        "checkpoint failed writing the checkpoint; retrying",
        Duration::from_secs(30),
    );
    let frozen = parquet_files(&lake_dir).len();
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(
        parquet_files(&lake_dir).len(),
        frozen,
        "nothing published without a checkpoint"
    );

    // The store is back: the waiting checkpoint completes and publishes.
    std::fs::remove_file(&state).unwrap();
    std::fs::rename(&away, &state).unwrap();
    produce(&s.topic, &trade_records(&trades[1500..])).await;
    wait_for(
        "files published after the store is back",
        Duration::from_secs(60),
        || parquet_files(&lake_dir).len() > frozen,
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(std::process::Command::new("kill")
        .args(["-INT", &running.0.id().to_string()])
        .status()
        .unwrap()
        .success());
    let status = running.0.wait().unwrap();
    while let Ok(line) = lines.recv_timeout(Duration::from_secs(2)) {
        log.push(line);
    }
    assert!(status.success(), "{}", log.join("\n"));
    let (n, set) = raw_rows(&s.lake, s.dir.path());
    assert_eq!(
        (n, set.len()),
        (trades.len(), trades.len()),
        "every trade once"
    );

    // Failing for longer than --checkpoint-retry-for: the job stops with the error.
    std::fs::remove_dir_all(&state).unwrap();
    produce(
        &s.topic,
        &trade_records(&generate_trades(5, 100, 3, T0 + 3_600_000, 100)),
    )
    .await;
    let mut failing = spawn(&[
        "--checkpoint-retry-for",
        "3s",
        "--reset",
        "--start",
        "latest",
    ]);
    std::thread::sleep(Duration::from_secs(3));
    std::fs::remove_dir_all(&state).ok();
    std::fs::write(&state, b"not a directory").unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = failing.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the job must stop by itself"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut failing.0.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(
        stderr.contains("state dir") || stderr.contains("object store"),
        "{stderr}"
    );
}
