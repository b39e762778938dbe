//! `engine produce --replay`: files of recorded prices become the trade
//! contract, with a column mapping and time compression; wrong files and flags
//! are one clear line and a failure.

use crate::common;

use std::path::Path;

use common::engine;

/// Replays `input` to a JSON-lines file with `extra` flags; returns the lines and stderr.
fn replay_to_file(input: &Path, extra: &[&str]) -> (Vec<serde_json::Value>, String) {
    let out = input.with_extension("out.jsonl");
    let mut args = vec![
        "produce",
        "--speed",
        "max",
        "--replay",
        input.to_str().unwrap(),
        "--to-file",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let (ok, stderr) = engine(&args);
    assert!(ok, "{stderr}");
    let lines = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (lines, stderr)
}

/// The seed projects' daily bars, grouped by index as their file is.
const DAILY_BARS: &str = "\
Index,Date,Open,High,Low,Close,Adj Close,Volume,CloseUSD
HSI,1986-12-31,2568.300049,2568.300049,2568.300049,2568.300049,2568.300049,0.0,333.87900637
HSI,1987-01-02,2540.100098,2540.100098,2540.100098,2540.100098,2540.100098,0.0,330.21301274
HSI,1987-01-05,2552.399902,2552.399902,2552.399902,2552.399902,2552.399902,0.0,331.81198726
NYA,1986-12-31,1000.0,1000.0,1000.0,1000.0,1000.0,0.0,1000.0
NYA,1987-01-02,1015.340027,1015.340027,1015.340027,1015.340027,1015.340027,1200,1015.340027
NYA,1987-01-05,null,null,null,null,null,null,null
GDAXI,1987-12-30,1000.0,1000.0,1000.0,1000.0,1000.0,0.0,1170.0
";

#[test]
fn seed_daily_bars_replay_as_trades_a_day_per_second() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("indexProcessed.csv");
    std::fs::write(&input, DAILY_BARS).unwrap();
    let (trades, stderr) = replay_to_file(
        &input,
        &[
            "--start",
            "2025-11-20T00:00:00Z",
            "--time-compression",
            "86400",
        ],
    );
    assert!(
        stderr.contains("skipped 1 rows") && stderr.contains("line 7"),
        "the null row is counted and located: {stderr}"
    );

    // Independently: each good row is (Index, CloseUSD, Volume, days since the first Date).
    let day = |d: &str| {
        chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis()
    };
    let mut expected: Vec<(String, f64, f64, i64)> = DAILY_BARS
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect::<Vec<_>>())
        .filter(|c| c[8] != "null")
        .map(|c| {
            let days = (day(c[1]) - day("1986-12-31")) / 86_400_000;
            (
                c[0].to_string(),
                c[8].parse().unwrap(),
                c[7].parse().unwrap(),
                1_763_596_800_000 + days * 1_000,
            )
        })
        .collect();
    expected.sort_by_key(|t| t.3); // stable: ties keep file order
    let got: Vec<(String, f64, f64, i64)> = trades
        .iter()
        .map(|t| {
            (
                t["symbol"].as_str().unwrap().to_string(),
                t["price"].as_f64().unwrap(),
                t["size"].as_f64().unwrap(),
                t["ts"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got, expected);
    assert!(
        trades.iter().all(|t| t["size"].is_u64()),
        "whole volumes are integers, as the contract's size is: {trades:?}"
    );
}

#[test]
fn a_mapping_names_other_columns_and_recorded_times_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("ticks.csv");
    std::fs::write(
        &input,
        "Time,Ticker,Last,Qty\n\
         2025-11-20T14:30:00.250Z,AAPL,230.5,100\n\
         2025-11-20 14:30:00,MSFT,410.25,20\n\
         1763649001000,\"A\"\"B\",1.5,7\n",
    )
    .unwrap();
    let (trades, stderr) = replay_to_file(
        &input,
        &["--map", "symbol=Ticker,price=Last,size=Qty,ts=Time"],
    );
    assert!(!stderr.contains("skipped"), "{stderr}");
    let got: Vec<(&str, f64, i64)> = trades
        .iter()
        .map(|t| {
            (
                t["symbol"].as_str().unwrap(),
                t["price"].as_f64().unwrap(),
                t["ts"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("MSFT", 410.25, 1_763_649_000_000),
            ("AAPL", 230.5, 1_763_649_000_250),
            ("A\"B", 1.5, 1_763_649_001_000),
        ],
        "three time formats, sorted by time, a quote in a symbol kept"
    );
}

#[test]
fn a_recorded_stream_replays_byte_for_byte_in_file_order() {
    let dir = tempfile::tempdir().unwrap();
    let recorded = dir.path().join("recorded.jsonl");
    let (ok, stderr) = engine(&[
        "produce",
        "--speed",
        "max",
        "--start",
        "2025-11-20T14:30:00Z",
        "--count",
        "5000",
        "--disorder-ms",
        "500",
        "--late-fraction",
        "0.02",
        "--bad-fraction",
        "0.02",
        "--to-file",
        recorded.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let replayed = dir.path().join("replayed.jsonl");
    let (ok, stderr) = engine(&[
        "produce",
        "--speed",
        "max",
        "--replay",
        recorded.to_str().unwrap(),
        "--order",
        "file",
        "--to-file",
        replayed.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    assert_eq!(
        std::fs::read(&recorded).unwrap(),
        std::fs::read(&replayed).unwrap(),
        "disorder, late and malformed records all as recorded"
    );
    assert!(
        stderr.contains("5000 records"),
        "bad records are sent too: {stderr}"
    );
}

#[test]
fn wrong_files_and_flags_are_one_clear_line_and_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let bars = dir.path().join("bars.csv");
    std::fs::write(&bars, DAILY_BARS).unwrap();
    let other = dir.path().join("other.csv");
    std::fs::write(&other, "Ticker,Last,Qty,Time\nAAPL,1.0,1,2025-11-20\n").unwrap();
    let unmappable = dir.path().join("unmappable.jsonl");
    std::fs::write(&unmappable, "{\"sym\":\"A\"}\nnot json\n").unwrap();
    let (bars, other, unmappable) = (
        bars.to_str().unwrap(),
        other.to_str().unwrap(),
        unmappable.to_str().unwrap(),
    );
    let out = dir.path().join("out.jsonl");
    let out = out.to_str().unwrap();
    for (args, says) in [
        (
            vec!["--replay", other, "--to-file", out],
            "other.csv: no column `symbol` (columns: Ticker, Last, Qty, Time); name the columns with --map",
        ),
        (
            vec!["--replay", bars, "--map", "price=Close,volume=Volume", "--to-file", out],
            "--map: unknown field `volume` (fields: symbol, price, size, ts)",
        ),
        (
            vec!["--replay", bars, "--map", "price=Adj_Close", "--to-file", out],
            "no column `Adj_Close`",
        ),
        (
            vec!["--replay", unmappable, "--to-file", out],
            "unmappable.jsonl: no row maps onto the trade contract (line 1: no field `symbol`)",
        ),
        (
            vec!["--replay", "/nonexistent/feed.csv", "--to-file", out],
            "/nonexistent/feed.csv",
        ),
        (vec!["--map", "symbol=Ticker"], "--replay"),
        (vec!["--time-compression", "60"], "--replay"),
        (vec!["--replay", bars, "--rate", "5"], "cannot be used with"),
        (
            vec!["--replay", bars, "--time-compression", "0"],
            "must be a positive number",
        ),
        (vec!["--replay", bars, "--order", "random"], "possible values: time, file"),
    ] {
        let mut all = vec!["produce", "--speed", "max"];
        all.extend_from_slice(&args);
        let (ok, stderr) = engine(&all);
        assert!(!ok, "{args:?} should fail");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}
