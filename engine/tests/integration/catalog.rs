//! `engine catalog`: the DDL parses as Athena SQL (sqlglot, independently of
//! us) and declares what the job files say; the Glue input is accepted by a
//! real Glue API (moto) and reads back identical.

use crate::common;

use common::*;

/// Runs `engine catalog` with `LAKE_URL`; returns (success, stdout, stderr).
fn catalog(lake_url: &str, args: &[&str]) -> (bool, String, String) {
    let mut all = vec!["catalog"];
    all.extend_from_slice(args);
    let out = engine_at_root(&all, [("LAKE_URL", lake_url)]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn columns(list: &[(&str, &str)]) -> serde_json::Value {
    list.iter()
        .map(|(n, t)| serde_json::json!([n, t]))
        .collect()
}

#[test]
fn athena_ddl_parses_and_declares_the_job_tables() {
    let (ok, ddl, stderr) = catalog(
        "s3://lake/warehouse",
        &[
            "jobs/ohlc_1m.sql",
            "jobs/trades_raw.sql",
            "--since",
            "2025-01-01",
        ],
    );
    assert!(ok, "{stderr}");
    let tables = python("athena_ddl.py", &ddl);
    let tables = tables.as_array().unwrap();
    assert_eq!(tables.len(), 2, "{ddl}");

    let ohlc = &tables[0];
    assert_eq!(
        (ohlc["database"].as_str(), ohlc["table"].as_str()),
        (Some("market"), Some("ohlc_1m"))
    );
    assert_eq!(ohlc["external"], true);
    assert_eq!(
        ohlc["columns"],
        columns(&[
            ("symbol", "varchar"),
            ("window_start", "timestamp"),
            ("window_end", "timestamp"),
            ("open", "double"),
            ("high", "double"),
            ("low", "double"),
            ("close", "double"),
            ("volume", "double"),
            ("vwap", "double"),
            ("trades", "bigint"),
        ])
    );
    assert_eq!(ohlc["partitioned_by"], columns(&[("dt", "varchar")]));
    assert_eq!(ohlc["format"], "PARQUET");
    assert_eq!(ohlc["location"], "s3://lake/warehouse/ohlc_1m/");
    let p = &ohlc["properties"];
    assert_eq!(p["projection.enabled"], "true");
    assert_eq!(p["projection.dt.type"], "date");
    assert_eq!(p["projection.dt.format"], "yyyy-MM-dd");
    assert_eq!(p["projection.dt.range"], "2025-01-01,NOW");
    assert_eq!(
        p["storage.location.template"],
        "s3://lake/warehouse/ohlc_1m/dt=${dt}/"
    );
    assert_eq!(p["parquet.compression"], "SNAPPY");

    let trades = &tables[1];
    assert_eq!(trades["table"], "trades");
    assert_eq!(
        trades["columns"],
        columns(&[
            ("symbol", "varchar"),
            ("price", "double"),
            ("size", "double"),
            ("ts", "timestamp"),
        ])
    );
    assert_eq!(
        trades["partitioned_by"],
        columns(&[("dt", "varchar"), ("hour", "varchar")])
    );
    let p = &trades["properties"];
    // Athena needs every partition column projected.
    assert_eq!(
        (
            p["projection.hour.type"].as_str(),
            p["projection.hour.range"].as_str(),
            p["projection.hour.digits"].as_str()
        ),
        (Some("integer"), Some("0,23"), Some("2"))
    );
    assert_eq!(
        p["storage.location.template"],
        "s3://lake/warehouse/trades/dt=${dt}/hour=${hour}/"
    );
}

#[test]
fn glue_table_input_is_accepted_by_glue_and_reads_back_identical() {
    let database = unique("market");
    for table in ["ohlc_1m", "trades"] {
        let (ok, json, stderr) = catalog(
            "s3://lake/warehouse",
            &[
                "jobs/ohlc_1m.sql",
                "jobs/trades_raw.sql",
                "--format",
                "glue-json",
                "--table",
                table,
                "--database",
                &database,
            ],
        );
        assert!(ok, "{stderr}");
        let request: serde_json::Value = serde_json::from_str(&json).unwrap();
        let stored = python("glue_table.py", &json);
        let input = request["TableInput"].as_object().unwrap();
        assert_eq!(input["Name"], table);
        for (field, value) in input {
            assert_eq!(
                &stored[field], value,
                "{table}: Glue stored {field} differently"
            );
        }
    }
}

#[test]
fn catalog_errors_are_one_clear_line() {
    for (lake, args, says) in [
        (
            "./lake",
            vec!["jobs/ohlc_1m.sql"],
            "path `./lake/ohlc_1m` is not on S3; Athena reads s3:// locations only (set LAKE_URL=s3://bucket/prefix)",
        ),
        (
            "s3://lake",
            vec!["jobs/ohlc_1m.sql", "jobs/trades_raw.sql", "--format", "glue-json"],
            "one table per call; choose one with --table",
        ),
        (
            "s3://lake",
            vec!["jobs/ohlc_1m.sql", "--table", "nope"],
            "--table `nope`: the jobs' lake tables are [\"ohlc_1m\"]",
        ),
        (
            "s3://lake",
            vec!["jobs/vwap_5m.sql"],
            "no lake sink (connector = 'lake') in the job files",
        ),
        (
            "s3://lake",
            vec!["jobs/ohlc_1m.sql", "--since", "last year"],
            "--since `last year`: expected a date",
        ),
    ] {
        let (ok, _, stderr) = catalog(lake, &args);
        assert!(!ok, "{args:?} should fail");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
}
