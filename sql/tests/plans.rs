//! Data-driven planner tests, in the manner of Arroyo's `plan_tests.rs`: every
//! `plans/*.sql` is a job file. One whose first line is `-- fail: TEXT` must
//! fail with an error containing TEXT (file and line included); any other must
//! plan, and each `-- plan: TEXT` line names text its physical plan contains.
//!
//! Add a case: drop a `.sql` file in `sql/tests/plans/`.

use std::path::PathBuf;

use datafusion::physical_plan::displayable;
use engine_sql::{plan_job, JobFile, SqlError};

async fn plan(name: &str, text: &str) -> Result<String, SqlError> {
    let job = JobFile::parse(name, text, &|_| None)?;
    let planned = plan_job(&job).await?;
    Ok(planned
        .iter()
        .map(|p| displayable(p.plan.root().as_ref()).indent(true).to_string())
        .collect())
}

#[tokio::test]
async fn every_plan_case() {
    // The directory as cargo gives it when the test runs, not as compiled: a
    // binary built for another clone sharing the target directory is reused here.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| env!("CARGO_MANIFEST_DIR").into(), PathBuf::from);
    let dir = manifest.join("tests/plans");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    for path in &cases {
        let name = format!("plans/{}", path.file_name().unwrap().to_string_lossy());
        let text = std::fs::read_to_string(path).unwrap();
        let expected_error = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("-- fail: "));
        match (plan(&name, &text).await, expected_error) {
            (Err(e), Some(want)) if e.to_string().contains(want) => {}
            (Err(e), Some(want)) => {
                failures.push(format!("{name}: error\n  {e}\ndoes not contain\n  {want}"))
            }
            (Err(e), None) => failures.push(format!("{name}: unexpected error {e}")),
            (Ok(_), Some(want)) => {
                failures.push(format!("{name}: planned, but should fail with {want}"))
            }
            (Ok(plan), None) => {
                for want in text.lines().filter_map(|l| l.strip_prefix("-- plan: ")) {
                    if !plan.contains(want) {
                        failures.push(format!("{name}: plan lacks `{want}`:\n{plan}"));
                    }
                }
            }
        }
    }
    assert!(cases.len() >= 10, "cases found in {}", dir.display());
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
