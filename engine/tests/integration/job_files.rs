//! Every job file in `jobs/` parses and plans, and the CLI reports job errors
//! as `file:line: message` with a non-zero exit, without a panic.

use crate::common;

use std::process::Command;

use engine::Job;

#[tokio::test]
async fn every_job_file_plans() {
    let dir = common::repo_root().join("jobs");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "sql") {
            let job = Job::load(&path)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(job.explain().contains("INSERT INTO"), "{}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 3, "jobs/ holds the job files");
}

fn engine(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_engine"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_reports_errors_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let job = dir.path().join("bad.sql");
    let mut text = std::fs::read_to_string(common::repo_root().join("jobs/vwap_5m.sql")).unwrap();
    // The sink's key_field (the source declares one too).
    let at = text.rfind("key_field = 'symbol'").unwrap();
    text.replace_range(
        at..at + "key_field = 'symbol'".len(),
        "key_field = 'symbol',\n    topik = 'oops'",
    );
    std::fs::write(&job, text).unwrap();
    let (ok, _, stderr) = engine(&["check", job.to_str().unwrap()]);
    assert!(!ok);
    let line = text_line(&job, "topik");
    assert!(
        stderr.contains(&format!(
            "bad.sql:{line}: table `vwap_5m`: unknown option `topik` for connector 'kafka'"
        )),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");

    let (ok, _, stderr) = engine(&["check", "no/such/job.sql"]);
    assert!(
        !ok && stderr.contains("no/such/job.sql: cannot read job file"),
        "{stderr}"
    );

    let (ok, stdout, _) = engine(&[
        "check",
        common::repo_root()
            .join("jobs/ohlc_1m.sql")
            .to_str()
            .unwrap(),
    ]);
    assert!(
        ok && stdout.contains("AggregateExec: mode=Final")
            && stdout.contains("TUMBLE(ts, 60000 ms)"),
        "{stdout}"
    );

    let (ok, _, stderr) = engine(&["run"]);
    assert!(!ok && stderr.contains("Usage"), "{stderr}");
}

#[test]
fn exactly_once_is_refused_where_it_cannot_hold() {
    let job = common::repo_root().join("jobs/ohlc_1m.sql");
    let job = job.to_str().unwrap();
    let run = |mode: &str, args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(args)
            .env("RUST_LOG", "error")
            // Nothing listens there: each refusal must come before connecting.
            .env("KAFKA_BROKERS", "127.0.0.1:1")
            .env("OHLC_COMMIT_MODE", mode)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} ran");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let stderr = run("exactly_once", &["run", job, "--no-checkpoints"]);
    assert!(
        stderr.contains(
            "sink `ohlc_1m_topic` has sink.commit_mode = 'exactly_once'; it needs checkpoints"
        ),
        "{stderr}"
    );
    let stderr = run("exactly_once", &["run", job, "--scale-out"]);
    assert!(
        stderr.contains("--scale-out cannot run") && stderr.contains("exactly_once"),
        "{stderr}"
    );
    let stderr = run("once", &["check", job]);
    let line = text_line(std::path::Path::new(job), "sink.commit_mode");
    assert!(
        stderr.contains(&format!(
            "ohlc_1m.sql:{line}: table `ohlc_1m_topic`: option `sink.commit_mode` = 'once' is not one of"
        )),
        "{stderr}"
    );
}

fn text_line(path: &std::path::Path, needle: &str) -> usize {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .position(|l| l.contains(needle))
        .unwrap()
        + 1
}

/// A job file with `old` replaced by `new` (`old` must occur), written to `dir`.
fn variant(dir: &std::path::Path, job: &str, old: &str, new: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(common::repo_root().join("jobs").join(job)).unwrap();
    assert!(text.contains(old), "{job} holds `{old}`");
    let path = dir.join("bad.sql");
    std::fs::write(&path, text.replacen(old, new, 1)).unwrap();
    path
}

/// Hostile job files and flags: each a `file:line` error from `engine check`
/// (which must catch what `run` would), never a panic, an abort or a hang.
#[test]
fn hostile_job_files_are_errors_with_their_line() {
    let dir = tempfile::tempdir().unwrap();
    let huge = vec!["price"; 10_000].join(" + ");
    let cases = [
        (
            "trades_raw.sql",
            "format = 'json'",
            "batch.linger = '99999999999999999999', format = 'json'",
            "batch.linger",
            "at most 365 days",
        ),
        (
            "trades_raw.sql",
            "format = 'json'",
            "watermark.idle_timeout = '99999999999999999999', format = 'json'",
            "watermark.idle_timeout",
            "at most 365 days",
        ),
        (
            "trades_raw.sql",
            "rolling.interval = '5min'",
            "rolling.interval = '99999999999999999999'",
            "rolling.interval",
            "at most 365 days",
        ),
        (
            "trades_raw.sql",
            "format = 'json'",
            "event_time.max_ahead = 'soon', format = 'json'",
            "event_time.max_ahead",
            "is not a duration",
        ),
        (
            "vwap_5m.sql",
            "HOP(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)",
            "HOP(ts, INTERVAL '1' MILLISECOND, INTERVAL '1' DAY)",
            "INSERT INTO vwap_5m",
            "into 86400000 windows",
        ),
        (
            "ohlc_1m.sql",
            "TUMBLE(ts, INTERVAL '1' MINUTE)",
            "TUMBLE(ts, INTERVAL '1e30' DAY)",
            "CREATE VIEW",
            "at most 366 days",
        ),
        (
            "ohlc_1m.sql",
            "count(*) AS trades",
            &format!("{huge} AS trades"),
            "CREATE VIEW",
            "at most 4096 are allowed",
        ),
        (
            "ohlc_1m.sql",
            "AS ts - INTERVAL '2' SECOND",
            "AS symbol",
            "CREATE TABLE trades",
            "WATERMARK expression `symbol` must give a TIMESTAMP",
        ),
        (
            "ohlc_1m.sql",
            "CHECK (price > 0)",
            "CHECK (price + 'x')",
            "CHECK (price + 'x')",
            "CHECK (price + 'x')",
        ),
        (
            "ohlc_1m.sql",
            "key_field = 'symbol',                  -- records",
            "key_field = 'sym', --",
            "key_field = 'sym'",
            "key_field `sym`: no such column",
        ),
    ];
    for (job, old, new, at, says) in cases {
        let path = variant(dir.path(), job, old, new);
        let line = text_line(&path, at);
        let (ok, _, stderr) = engine(&["check", path.to_str().unwrap()]);
        assert!(!ok, "{new}: passed check");
        assert!(
            stderr.contains(&format!("bad.sql:{line}:")) && stderr.contains(says),
            "{new}: expected bad.sql:{line}: ... {says}; got {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    // A long expression under the limit plans and checks (no stack overflow).
    let long = vec!["price"; 1500].join(" + ");
    let path = variant(
        dir.path(),
        "ohlc_1m.sql",
        "count(*) AS trades",
        &format!("count({long}) AS trades"),
    );
    let (ok, _, stderr) = engine(&["check", path.to_str().unwrap()]);
    assert!(ok, "{stderr}");

    let job = common::repo_root().join("jobs/ohlc_1m.sql");
    let (ok, _, stderr) = engine(&[
        "run",
        job.to_str().unwrap(),
        "--checkpoint-interval",
        "99999999999999999999",
    ]);
    assert!(
        !ok && stderr.contains("at most 365 days") && !stderr.contains("panicked"),
        "{stderr}"
    );
}

/// `--scale-out` runs each source partition in its own lane: a windowed
/// GROUP BY without the record key would emit one partial row per lane.
#[test]
fn scale_out_needs_the_key_in_every_windowed_group_by() {
    let dir = tempfile::tempdir().unwrap();
    let run = |path: &std::path::Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["run", path.to_str().unwrap(), "--scale-out"])
            .env("RUST_LOG", "error")
            .env("KAFKA_BROKERS", "127.0.0.1:1") // refused before connecting
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    // Grouped by venue-less window only: every lane has a share of each window.
    let path = variant(
        dir.path(),
        "vwap_5m.sql",
        "GROUP BY symbol, HOP",
        "GROUP BY HOP",
    );
    let path = {
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("SELECT symbol, window_start", "SELECT 'all', window_start");
        std::fs::write(&path, text).unwrap();
        path
    };
    let line = text_line(&path, "INSERT INTO vwap_5m");
    let stderr = run(&path);
    assert!(
        stderr.contains(&format!("bad.sql:{line}: --scale-out"))
            && stderr.contains("does not include the record key"),
        "{stderr}"
    );
    // Without key_field the key is not known to be the symbol.
    let path = variant(dir.path(), "vwap_5m.sql", "key_field = 'symbol',                  -- records are keyed by symbol (checked per record)\n", "");
    let stderr = run(&path);
    assert!(
        stderr.contains("does not include the record key"),
        "{stderr}"
    );
}

/// Secret option values never reach any output at any log level: not in
/// librdkafka's complaint about a mistyped property, not in the parser's
/// debug log of the job text after `${VAR}` substitution.
#[test]
fn secrets_never_appear_in_output() {
    const SECRET: &str = "hunter2-Zq8wX";
    let dir = tempfile::tempdir().unwrap();
    for (property, ok) in [
        ("properties.sasl.pasword", false),
        ("properties.sasl.password", true),
    ] {
        let path = variant(
            dir.path(),
            "ohlc_1m.sql",
            "format = 'json',\n",
            &format!("format = 'json',\n    properties.security.protocol = 'sasl_plaintext',\n    properties.sasl.mechanism = 'PLAIN',\n    properties.sasl.username = 'u',\n    {property} = '${{KAFKA_PASSWORD}}',\n"),
        );
        for (level, format) in [
            ("trace", "text"),
            ("debug", "text"),
            ("info", "text"),
            ("trace", "json"),
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_engine"))
                .args(["check", path.to_str().unwrap(), "--log-format", format])
                .env("RUST_LOG", level)
                .env("KAFKA_PASSWORD", SECRET)
                .output()
                .unwrap();
            let all = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.status.success(), ok, "{property}: {all}");
            assert!(
                !all.contains(SECRET),
                "{property} at {level} ({format}): the secret was printed:\n{all}"
            );
            if format == "json" {
                // For log shippers: every line of stderr is one JSON object, the error too.
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(stderr.lines().count() > 10);
                for line in stderr.lines() {
                    let v: serde_json::Value = serde_json::from_str(line)
                        .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                    assert!(
                        v["level"].is_string() && v["timestamp"].is_string(),
                        "{line}"
                    );
                }
            }
            if !ok {
                let line = text_line(&path, "sasl.pasword");
                assert!(
                    all.contains(&format!("bad.sql:{line}:")) && all.contains("sasl.pasword"),
                    "names the property: {all}"
                );
            }
        }
    }
}

/// `engine query` is an analysts' read tool: it cannot write a file, or add
/// one to a live lake table outside its checkpoints and partition commits.
#[test]
fn engine_query_only_reads() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    std::fs::create_dir_all(&lake).unwrap();
    let copied = dir.path().join("copied.csv");
    let query = |sql: &str| {
        Command::new(env!("CARGO_BIN_EXE_engine"))
            .args(["query", sql])
            .current_dir(common::repo_root())
            .env("LAKE_URL", &lake)
            .env("RUST_LOG", "error")
            .output()
            .unwrap()
    };
    for sql in [
        format!("COPY (SELECT 1 AS x) TO '{}'", copied.display()),
        "INSERT INTO ohlc_1m SELECT * FROM ohlc_1m".to_string(),
        format!(
            "CREATE EXTERNAL TABLE x STORED AS CSV LOCATION '{}'",
            copied.display()
        ),
        "SET datafusion.execution.batch_size = 1".to_string(),
    ] {
        let out = query(&sql);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && stderr.contains("engine query only reads"),
            "{sql}: {stderr}"
        );
    }
    assert!(!copied.exists(), "COPY wrote a file");
    assert!(
        common::files_under(&lake).is_empty(),
        "a file appeared in the lake"
    );
    let out = query("SELECT 41 + 1 AS answer");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("42"));
}
