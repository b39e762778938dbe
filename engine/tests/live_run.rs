//! A job that keeps running (no --bounded): windows close as the watermark
//! advances with new trades, and a stop flushes the sinks without committing
//! offsets that open windows still depend on. An idle partition stops holding
//! the watermark back.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use engine::{Job, Metrics, RunOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_job_emits_closed_windows_and_stops_cleanly() {
    init_logs();
    let topic = unique("live");
    let out_topic = unique("live_out");
    create_topics(&[(&topic, 2), (&format!("{topic}.dlq"), 1), (&out_topic, 1)]).await;
    let lake = tempfile::tempdir().unwrap();
    let job_text = format!(
        "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
             WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'kafka', bootstrap_servers = '${{KAFKA_BROKERS}}', topic = '{topic}', batch.linger = '20ms',
               watermark.idle_timeout = '3s');
         CREATE TABLE counts (symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP, n BIGINT, volume DOUBLE)
         WITH (connector = 'kafka', bootstrap_servers = '${{KAFKA_BROKERS}}', topic = '{out_topic}', key_field = 'symbol');
         CREATE TABLE raw (symbol TEXT, ts TIMESTAMP)
         WITH (connector = 'lake', path = '{}/raw');
         INSERT INTO counts SELECT symbol, window_start, window_end, count(*), sum(size)
         FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '10' SECOND);
         INSERT INTO raw SELECT symbol, ts FROM trades;",
        lake.path().display()
    );
    let env = |name: &str| (name == "KAFKA_BROKERS").then(brokers);
    let job = Job::from_text("live.sql", &job_text, &env).await.unwrap();
    let stop = engine::CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let running = tokio::spawn(job.run_with_metrics(
        RunOptions::default(),
        stop.clone(),
        Arc::clone(&metrics),
    ));

    // Two minutes of event time, produced while the job runs, in two parts.
    let trades = generate_trades(21, 6_000, 3, 1_763_650_000_000, 20);
    produce(&topic, &trade_records(&trades[..3_000])).await;
    produce(&topic, &trade_records(&trades[3_000..])).await;

    // Every window that ends at or before the final watermark (max ts - 2 s) is emitted.
    // The partition whose last trade is older holds the watermark back until it has
    // been idle for 3 s; then the other partition alone sets it.
    let max_ts = trades.iter().map(|t| t.ts).max().unwrap();
    let expected: Vec<_> = fold_windows(&trades, 10_000, 10_000)
        .into_iter()
        .filter(|(_, c)| c.window_end <= max_ts - 2000)
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while metrics.records_in() < trades.len() as u64
        || metrics.watermark().unwrap_or(i64::MIN) < max_ts - 2000
    {
        assert!(
            Instant::now() < deadline,
            "job did not catch up: {}",
            metrics.summary()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.cancel();
    let report = running.await.unwrap().unwrap();

    let got = read_all(&out_topic);
    assert_eq!(
        got.len(),
        expected.len(),
        "closed windows emitted while running, the open one not"
    );
    for ((symbol, start), c) in &expected {
        let row = got
            .iter()
            .map(|r| serde_json::from_slice::<serde_json::Value>(&r.payload).unwrap())
            .find(|v| v["symbol"] == symbol.as_str() && v["window_start"] == *start)
            .unwrap_or_else(|| panic!("missing window {symbol} {start}"));
        assert_eq!(row["n"].as_i64(), Some(c.trades));
        assert!(close_to(row["volume"].as_f64().unwrap(), c.volume, 1e-9));
    }
    // The stateless statement's rows are all in closed files after the stop.
    let mut lake_rows = 0;
    for entry in files_under(&lake.path().join("raw")) {
        let file = std::fs::File::open(&entry).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        lake_rows += reader.map(|b| b.unwrap().num_rows()).sum::<usize>();
    }
    assert_eq!(lake_rows, trades.len());
    assert_eq!(report.metrics.late_rows(), 0);
    // A windowed statement reads this source, so nothing was committed.
    assert!(report.committed.is_empty(), "{:?}", report.committed);
}

/// `GET path` on `addr`: (status code, body).
async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let status = head.split(' ').nth(1).unwrap().parse().unwrap();
    let body = match head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        true => unchunk(body),
        false => body.to_string(),
    };
    (status, body)
}

/// A chunked HTTP/1.1 body, joined.
fn unchunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").unwrap();
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

/// The series of metric `name` in a Prometheus text page: (labels, value).
fn series(page: &str, name: &str) -> Vec<(std::collections::BTreeMap<String, String>, f64)> {
    page.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let (metric, labels) = match key.split_once('{') {
                Some((m, rest)) => (m, rest.trim_end_matches('}')),
                None => (key, ""),
            };
            (metric == name).then(|| {
                let labels = labels
                    .split(',')
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        let (k, v) = p.split_once('=').unwrap();
                        (k.to_string(), v.trim_matches('"').to_string())
                    })
                    .collect();
                (labels, value.parse().unwrap())
            })
        })
        .collect()
}

/// The sum of metric `name`'s series whose labels include `having`.
fn sum(page: &str, name: &str, having: &[(&str, &str)]) -> f64 {
    series(page, name)
        .iter()
        .filter(|(l, _)| {
            having
                .iter()
                .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, v)| v)
        .sum()
}

/// A job's `/metrics`, scraped while it runs, against what the test fed it
/// and an independent fold: records in (per reason for the bad ones),
/// consumer lag falling to 0, partition watermarks and their lag behind the
/// wall clock, windows emitted and open, rows out per sink, lake files,
/// bytes and the partition committed at midnight, checkpoints, and one
/// emit-latency observation per candle acknowledged on the topic and per
/// row published on the lake. `/healthz` and `/readyz` answer too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_shows_the_job_as_it_runs() {
    init_logs();
    let topic = unique("scraped");
    let out_topic = unique("scraped_out");
    create_topics(&[(&topic, 2), (&format!("{topic}.dlq"), 1), (&out_topic, 1)]).await;
    let lake = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let job_text = format!(
        "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
             WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'kafka', bootstrap_servers = '${{KAFKA_BROKERS}}', topic = '{topic}', batch.linger = '20ms',
               watermark.idle_timeout = '3s');
         CREATE TABLE counts (symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP, n BIGINT, volume DOUBLE)
         WITH (connector = 'kafka', bootstrap_servers = '${{KAFKA_BROKERS}}', topic = '{out_topic}', key_field = 'symbol');
         CREATE TABLE counts_lake (symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP, n BIGINT, volume DOUBLE)
         WITH (connector = 'lake', path = '{}/counts', rolling.interval = '1s');
         CREATE VIEW counted AS SELECT symbol, window_start, window_end, count(*) AS n, sum(size) AS volume
         FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '10' SECOND);
         INSERT INTO counts SELECT * FROM counted;
         INSERT INTO counts_lake SELECT * FROM counted;",
        lake.path().display()
    );
    let env = |name: &str| (name == "KAFKA_BROKERS").then(brokers);
    let job = Job::from_text("scraped.sql", &job_text, &env)
        .await
        .unwrap();
    let stop = engine::CancellationToken::new();
    let metrics = Arc::new(Metrics::new());
    let endpoint = engine::web::serve("127.0.0.1:0", Arc::clone(&metrics), stop.clone())
        .await
        .unwrap();
    let (status, why) = http_get(endpoint.addr, "/readyz").await;
    assert_eq!((status, why.as_str()), (503, "no source has started yet\n"));
    assert_eq!(http_get(endpoint.addr, "/healthz").await.0, 200);

    let options = RunOptions {
        checkpoint: Some(engine::CheckpointOptions {
            state_dir: state.path().display().to_string(),
            interval: Duration::from_secs(1),
            retry_for: Duration::from_secs(60),
        }),
        ..RunOptions::default()
    };
    let running = tokio::spawn(job.run_with_metrics(options, stop.clone(), Arc::clone(&metrics)));

    // Two minutes of trades across midnight UTC, and bad records of two kinds.
    let midnight = 1_763_683_200_000; // 2025-11-21T00:00:00Z
    let trades = generate_trades(33, 6_000, 3, midnight - 60_000, 20);
    let mut records = trade_records(&trades);
    let malformed = [b"{\"symbol\":".to_vec(), b"not json".to_vec()];
    let missing = [br#"{"symbol":"SYM00","price":1.5,"size":1}"#.to_vec()];
    for (i, bad) in malformed.iter().chain(&missing).enumerate() {
        records.insert(1_000 * (i + 1), ("SYM00".into(), bad.clone()));
    }
    produce(&topic, &records).await;

    let max_ts = trades.iter().map(|t| t.ts).max().unwrap();
    let closed: Vec<_> = fold_windows(&trades, 10_000, 10_000)
        .into_iter()
        .filter(|(_, c)| c.window_end <= max_ts - 2000)
        .collect();
    let ends = closed
        .iter()
        .map(|((_, start), _)| start)
        .collect::<std::collections::BTreeSet<_>>();
    let deadline = Instant::now() + Duration::from_secs(120);
    let page = loop {
        let (status, page) = http_get(endpoint.addr, "/metrics").await;
        assert_eq!(status, 200);
        let caught_up = sum(&page, "engine_records_in_total", &[]) == records.len() as f64
            && sum(&page, "engine_windows_emitted_total", &[]) == ends.len() as f64
            && series(&page, "engine_consumer_lag_records").len() == 2
            && series(&page, "engine_consumer_lag_records")
                .iter()
                .all(|(_, v)| *v == 0.0)
            && sum(
                &page,
                "engine_emit_latency_seconds_count",
                &[("sink", "counts")],
            ) == closed.len() as f64
            && sum(&page, "engine_statement_watermark_seconds", &[])
                == (max_ts - 2000) as f64 / 1000.0
            && sum(&page, "engine_checkpoint_last_epoch", &[]) >= 3.0
            && sum(&page, "engine_lake_partitions_committed_total", &[]) >= 1.0;
        if caught_up {
            break page;
        }
        assert!(Instant::now() < deadline, "job did not catch up:\n{page}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let (status, why) = http_get(endpoint.addr, "/readyz").await;
    assert_eq!((status, why.as_str()), (200, "ready\n"));

    // Sources: every record once, each partition read, bad ones by reason, lag 0.
    let partitions = series(&page, "engine_records_in_total");
    assert_eq!(partitions.len(), 2, "{partitions:?}");
    assert!(partitions.iter().all(|(l, _)| l["topic"] == topic));
    let bad = |reason| {
        sum(
            &page,
            "engine_bad_records_total",
            &[("topic", &topic), ("reason", reason)],
        )
    };
    assert_eq!(bad("malformed"), malformed.len() as f64);
    assert_eq!(bad("missing_field"), missing.len() as f64);
    assert_eq!(sum(&page, "engine_bad_records_total", &[]), 3.0);
    assert_eq!(series(&page, "engine_consumer_lag_records").len(), 2);
    assert_eq!(
        sum(&page, "engine_source_partitions", &[("topic", &topic)]),
        2.0
    );
    // Watermarks: each partition's clock (its newest trade less the 2 s delay,
    // or the other's after it idled), and its lag behind the wall clock.
    let now = chrono::Utc::now().timestamp_millis() as f64 / 1000.0;
    for (labels, watermark) in series(&page, "engine_watermark_seconds") {
        assert!(
            watermark <= (max_ts - 2000) as f64 / 1000.0,
            "{labels:?} {watermark}"
        );
        assert!(
            watermark >= (midnight - 60_000) as f64 / 1000.0,
            "{labels:?} {watermark}"
        );
        let lag = sum(
            &page,
            "engine_watermark_lag_seconds",
            &[("partition", &labels["partition"])],
        );
        assert!(
            (lag - (now - watermark)).abs() < 30.0,
            "lag {lag}, now {now}, watermark {watermark}"
        );
    }
    // The statement: every closed window once, the last ones still open, nothing late.
    assert_eq!(
        sum(&page, "engine_rows_emitted_total", &[]),
        closed.len() as f64
    );
    assert!(sum(&page, "engine_open_windows", &[]) >= 1.0);
    assert_eq!(sum(&page, "engine_late_rows_total", &[]), 0.0);
    assert_eq!(
        sum(&page, "engine_statement_watermark_seconds", &[]),
        (max_ts - 2000) as f64 / 1000.0
    );
    // Sinks: the topic has every closed window, one latency observation each.
    assert_eq!(
        sum(&page, "engine_rows_out_total", &[("sink", "counts")]),
        closed.len() as f64
    );
    assert_eq!(read_all(&out_topic).len(), closed.len());
    assert_eq!(sum(&page, "engine_sink_stalled", &[]), 0.0);
    // Checkpoints every second, none failed, each with a duration.
    assert!(sum(&page, "engine_checkpoints_total", &[]) >= 3.0);
    assert!(sum(&page, "engine_checkpoint_size_bytes", &[]) > 0.0);
    assert_eq!(sum(&page, "engine_checkpoint_failures_total", &[]), 0.0);

    stop.cancel();
    running.await.unwrap().unwrap();
    let page = metrics.render();
    assert_eq!(
        sum(&page, "engine_checkpoint_duration_seconds_count", &[]),
        sum(&page, "engine_checkpoints_total", &[])
    );
    // A stopped source shows no lag or watermark for partitions it no longer reads.
    assert!(series(&page, "engine_consumer_lag_records").is_empty());
    assert!(series(&page, "engine_watermark_lag_seconds").is_empty());
    // The lake: the files and bytes counted are the files there, the day
    // before midnight committed, and one latency observation per published row.
    let files = files_under(&lake.path().join("counts"));
    let parquet: Vec<_> = files
        .iter()
        .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
        .collect();
    assert_eq!(metrics.files_written(), parquet.len() as u64);
    let bytes: u64 = parquet
        .iter()
        .map(|f| std::fs::metadata(f).unwrap().len())
        .sum();
    assert_eq!(
        sum(&page, "engine_lake_bytes_total", &[("sink", "counts_lake")]),
        bytes as f64
    );
    assert!(lake.path().join("counts/dt=2025-11-20/_SUCCESS").exists());
    assert_eq!(
        sum(
            &page,
            "engine_lake_partitions_committed_total",
            &[("sink", "counts_lake")]
        ),
        1.0
    );
    let mut published = 0;
    for file in &parquet {
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(file).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        published += reader.map(|b| b.unwrap().num_rows()).sum::<usize>();
    }
    assert!(published > 0);
    assert_eq!(metrics.emit_latency_of("counts_lake").0, published as u64);
}
