//! Every job file in `jobs/` parses and plans, and the CLI reports job errors
//! as `file:line: message` with a non-zero exit, without a panic.

mod common;

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
    let text = std::fs::read_to_string(common::repo_root().join("jobs/vwap_5m.sql"))
        .unwrap()
        .replace(
            "key_field = 'symbol'",
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
