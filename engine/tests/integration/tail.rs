//! `engine tail`: reads a topic back as JSON lines or as a table, filtered by key.

use crate::common;

use common::*;

fn tail(args: &[&str]) -> Vec<String> {
    let brokers = brokers();
    let out = engine_output(["tail"].iter().chain(args).chain(&["--brokers", &brokers]));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_what_the_topic_holds() {
    let topic = unique("candles");
    create_topics(&[(&topic, 2)]).await;
    let records: Vec<(String, Vec<u8>)> = (0..40)
        .map(|i| {
            let symbol = ["AAPL", "MSFT"][i % 2];
            let json = format!(
                r#"{{"symbol":"{symbol}","window_start":{},"close":{}.25,"trades":{i}}}"#,
                1_763_649_000_000i64 + 60_000 * i as i64,
                100 + i
            );
            (symbol.to_string(), json.into_bytes())
        })
        .collect();
    produce(&topic, &records).await;

    let mut lines = tail(&[
        &topic,
        "--from-beginning",
        "--exit-at-end",
        "--format",
        "json",
    ]);
    let mut expected: Vec<String> = records
        .iter()
        .map(|(_, p)| String::from_utf8(p.clone()).unwrap())
        .collect();
    lines.sort();
    expected.sort();
    assert_eq!(lines, expected);

    let msft = tail(&[&topic, "--from-beginning", "--exit-at-end", "--key", "MSFT"]);
    assert_eq!(msft.len(), 20);
    assert!(msft.iter().all(|l| l.contains(r#""symbol":"MSFT""#)));

    assert_eq!(tail(&[&topic, "--from-beginning", "--count", "3"]).len(), 3);

    let table = tail(&[
        &topic,
        "--from-beginning",
        "--exit-at-end",
        "--format",
        "table",
        "--key",
        "AAPL",
    ]);
    let header: Vec<&str> = table[0].split_whitespace().collect();
    assert_eq!(
        header,
        ["symbol", "window_start", "close", "trades"],
        "columns in the order the job wrote them"
    );
    assert_eq!(table.len(), 21);
    assert!(
        table[1..]
            .iter()
            .any(|row| row.starts_with("AAPL") && row.contains("2025-11-20 14:30:00.000")),
        "{table:?}"
    );
}

#[test]
fn tail_of_a_missing_topic_says_so() {
    let out = engine_output([
        "tail",
        "no_such_topic_here",
        "--exit-at-end",
        "--brokers",
        &brokers(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no_such_topic_here"), "{stderr}");
}
