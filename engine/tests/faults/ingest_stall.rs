//! `engine ingest` while the broker stalls: backpressure reaches the
//! provider's socket and no trade is lost.

use crate::common;

use std::time::Duration;

use common::*;

/// A broker that stops answering while trades stream in: the producer's
/// queue fills, the socket is not read (the server's writes block), nothing
/// is dropped; Ctrl-C then delivers what is queued and prints the summary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_broker_slows_the_feed_and_loses_nothing() {
    let _one = one_outage_at_a_time();
    const TRADES: i64 = 30_000;
    let trade = |n: i64| {
        let (symbol, id) = (["BTCUSDT", "ETHUSDT", "SOLUSDT"][n as usize % 3], n / 3 + 1);
        format!(
            r#"{{"e":"trade","E":1,"s":"{symbol}","t":{id},"p":"{}.{:02}","q":"1.5","T":{},"m":false}}"#,
            100 + n % 50,
            n % 100,
            1_763_649_000_000 + n
        )
    };
    let mut script = vec![
        expect("SUBSCRIBE"),
        send(r#"{"result":null,"id":1}"#),
        Step::Sleep(Duration::from_millis(500)),
    ];
    script.extend((0..TRADES).map(|n| send(trade(n))));
    // The pong comes back once the client has read (and queued) every trade before it.
    script.push(Step::Ping);
    let server = scripted_server(vec![script]).await;
    let topic = unique("ingest_stall");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_engine"))
        .args([
            "ingest",
            "--provider",
            "binance",
            "--symbols",
            "BTCUSDT,ETHUSDT,SOLUSDT",
            "--url",
            &server.url,
        ])
        .args(["--topic", &topic, "--max-queued", "1000"])
        .env("KAFKA_BROKERS", brokers())
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let connected = || {
        server
            .connections()
            .first()
            .is_some_and(|c| !c.received.is_empty())
    };
    wait_until(
        Duration::from_secs(60),
        || "the subscription".into(),
        connected,
    )
    .await;
    let tansu = service_pid("tansu");
    signal(&tansu, "-STOP");
    tokio::time::sleep(Duration::from_secs(3)).await;
    signal(&tansu, "-CONT");
    let read_to_its_end = || {
        format!(
            "the feed read to its end: {:?}",
            server.connections()[0].failures
        )
    };
    wait_until(Duration::from_secs(120), read_to_its_end, || {
        server.connections()[0].pongs > 0
    })
    .await;
    signal(&child.id().unwrap().to_string(), "-INT");
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!("ingested from binance at {}/ in", server.url)),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{TRADES} trades, 0 duplicates dropped, 0 gaps")),
        "{stderr}"
    );
    let records = read_all(&topic);
    let mut ids: Vec<(String, i64)> = (records.iter())
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.payload).unwrap();
            (
                v["symbol"].as_str().unwrap().to_string(),
                v["id"].as_str().unwrap().parse().unwrap(),
            )
        })
        .collect();
    ids.sort();
    let mut expected: Vec<(String, i64)> = (0..TRADES)
        .map(|n| {
            (
                ["BTCUSDT", "ETHUSDT", "SOLUSDT"][n as usize % 3].to_string(),
                n / 3 + 1,
            )
        })
        .collect();
    expected.sort();
    assert_eq!(ids.len(), expected.len(), "every trade once");
    assert_eq!(ids, expected);
}
