//! A job that keeps running (no --bounded): windows close as the watermark
//! advances with new trades, and a stop flushes the sinks without committing
//! offsets that open windows still depend on. An idle partition stops holding
//! the watermark back.

use crate::common;

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
    // A failed assertion stops the job too: its source's blocking poll loop
    // would otherwise keep the runtime's drop (and the test) waiting forever.
    let _stop_on_failure = stop.clone().drop_guard();
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
    let lake_rows: usize = files_under(&lake.path().join("raw"))
        .iter()
        .map(|f| parquet_rows(f))
        .sum();
    assert_eq!(lake_rows, trades.len());
    assert_eq!(report.metrics.late_rows(), 0);
    // A windowed statement reads this source, so nothing was committed.
    assert!(report.committed.is_empty(), "{:?}", report.committed);
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
    // A failed assertion stops the job too: its source's blocking poll loop
    // would otherwise keep the runtime's drop (and the test) waiting forever.
    let _stop_on_failure = stop.clone().drop_guard();
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
    let published: usize = parquet.iter().map(|f| parquet_rows(f)).sum();
    assert!(published > 0);
    assert_eq!(metrics.emit_latency_of("counts_lake").0, published as u64);
}

/// What the page drew, read back from its SVG: each candle's data and the
/// geometry of its wick and body, and the chart's price scale.
const DRAWN: &str = r#"JSON.stringify((() => {
  const chart = document.getElementById('candles');
  if (!chart) return {candles: []};
  const d = chart.dataset;
  return {
    scale: [+d.priceHigh, +d.priceLow, +d.yTop, +d.yBottom],
    candles: [...chart.querySelectorAll('g.candle')].map(g => {
      const wick = g.querySelector('line.wick'), body = g.querySelector('rect.body');
      return {
        symbol: g.dataset.symbol, start: +g.dataset.start, open: +g.dataset.open,
        high: +g.dataset.high, low: +g.dataset.low, close: +g.dataset.close,
        volume: +g.dataset.volume, complete: g.dataset.complete === 'true',
        wick: [+wick.getAttribute('y1'), +wick.getAttribute('y2')],
        body: [+body.getAttribute('y'), +body.getAttribute('height')],
      };
    }),
  };
})())"#;

/// Polls the page until it has drawn `want` candles; returns what it drew.
async fn drawn(browser: &mut Browser, want: usize) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = browser.eval(DRAWN).await;
        let drawn: serde_json::Value = serde_json::from_str(text.as_str().unwrap()).unwrap();
        if drawn["candles"].as_array().unwrap().len() >= want {
            return drawn;
        }
        assert!(
            Instant::now() < deadline,
            "the page drew {drawn} of {want} candles"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The drawn candles equal the fold's closed windows of `symbol`, and each
/// is drawn where the chart's price scale puts its prices.
fn assert_drawn_is_fold(drawn: &serde_json::Value, fold: &[(i64, Candle)], symbol: &str) {
    let candles = drawn["candles"].as_array().unwrap();
    assert_eq!(candles.len(), fold.len(), "{drawn}");
    let s: Vec<f64> = (0..4)
        .map(|i| drawn["scale"][i].as_f64().unwrap())
        .collect();
    let y = |p: f64| s[2] + (s[0] - p) / (s[0] - s[1]) * (s[3] - s[2]);
    for (got, (start, want)) in candles.iter().zip(fold) {
        let f = |k: &str| got[k].as_f64().unwrap();
        assert_eq!(got["symbol"], symbol);
        assert_eq!(got["start"].as_i64(), Some(*start));
        assert_eq!(
            (f("open"), f("high"), f("low"), f("close")),
            (want.open, want.high, want.low, want.close),
            "{got}"
        );
        assert!(close_to(f("volume"), want.volume, 1e-9));
        assert!(got["complete"].as_bool().unwrap());
        let near = |a: f64, b: f64| (a - b).abs() < 0.01;
        assert!(
            near(got["wick"][0].as_f64().unwrap(), y(want.high)),
            "{got}"
        );
        assert!(near(got["wick"][1].as_f64().unwrap(), y(want.low)), "{got}");
        assert!(
            near(
                got["body"][0].as_f64().unwrap(),
                y(want.open.max(want.close))
            ),
            "{got}"
        );
    }
}

/// The live candle page in a real browser (headless Chromium): it draws
/// the candles of a running job's derived topic, equal to an independent
/// fold of the trades fed, and a candle whose window closes later appears
/// without a reload (over Server-Sent Events). Saves a screenshot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_candle_page_draws_the_fold_live() {
    init_logs();
    let topic = unique("paged");
    let out_topic = unique("paged_out");
    create_topics(&[(&topic, 1), (&format!("{topic}.dlq"), 1), (&out_topic, 1)]).await;
    let job_text = format!(
        "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
             WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
         WITH (connector = 'kafka', bootstrap_servers = '${{KAFKA_BROKERS}}', topic = '{topic}', batch.linger = '20ms');
         CREATE TABLE candles (symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP, open DOUBLE, high DOUBLE,
             low DOUBLE, close DOUBLE, volume DOUBLE, vwap DOUBLE, trades BIGINT)
         WITH (connector = 'kafka', bootstrap_servers = '${{KAFKA_BROKERS}}', topic = '{out_topic}', key_field = 'symbol');
         INSERT INTO candles SELECT symbol, window_start, window_end, first_value(price ORDER BY ts),
             max(price), min(price), last_value(price ORDER BY ts), sum(size), sum(price * size) / sum(size), count(*)
         FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '10' SECOND);"
    );
    let env = |name: &str| (name == "KAFKA_BROKERS").then(brokers);
    let job = Job::from_text("paged.sql", &job_text, &env).await.unwrap();
    let stop = engine::CancellationToken::new();
    // A failed assertion stops the job too: its source's blocking poll loop
    // would otherwise keep the runtime's drop (and the test) waiting forever.
    let _stop_on_failure = stop.clone().drop_guard();
    let metrics = Arc::new(Metrics::new());
    let running = tokio::spawn(job.run_with_metrics(
        RunOptions::default(),
        stop.clone(),
        Arc::clone(&metrics),
    ));
    let options = engine::web::ui::UiOptions {
        client: engine::KafkaClientOptions::plaintext(&brokers()),
        topic: out_topic.clone(),
        history: 240,
    };
    let routes = engine::web::ui::routes(options, Some(Arc::clone(&metrics)), stop.clone());
    let page = engine::web::serve_routes("127.0.0.1:0", routes, "--ui", stop.clone())
        .await
        .unwrap();

    // A minute of trades of two symbols; the first 40 s now.
    let trades = generate_trades(44, 3_000, 2, 1_763_650_000_000, 20);
    let closed_by = |fed: &[Trade]| -> Vec<(i64, Candle)> {
        let watermark = fed.iter().map(|t| t.ts).max().unwrap() - 2000;
        fold_windows(fed, 10_000, 10_000)
            .into_iter()
            .filter(|((s, _), c)| s == "SYM00" && c.window_end <= watermark)
            .map(|((_, start), c)| (start, c))
            .collect()
    };
    let wait_for_rows = |rows: usize| {
        let metrics = Arc::clone(&metrics);
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while metrics.rows_out() < rows as u64 {
                assert!(Instant::now() < deadline, "{}", metrics.summary());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    let all_closed = |fed: &[Trade]| {
        let watermark = fed.iter().map(|t| t.ts).max().unwrap() - 2000;
        fold_windows(fed, 10_000, 10_000)
            .values()
            .filter(|c| c.window_end <= watermark)
            .count()
    };
    produce(&topic, &trade_records(&trades[..2_000])).await;
    wait_for_rows(all_closed(&trades[..2_000])).await;

    let mut browser = Browser::open(&format!("http://{}/?symbol=SYM00", page.addr)).await;
    let first = closed_by(&trades[..2_000]);
    let drawn_now = drawn(&mut browser, first.len()).await;
    assert_drawn_is_fold(&drawn_now, &first, "SYM00");
    // The rest: later windows close; the same page (no reload) draws them.
    browser.eval("window.notReloaded = true").await;
    produce(&topic, &trade_records(&trades[2_000..])).await;
    wait_for_rows(all_closed(&trades)).await;
    let all = closed_by(&trades);
    assert!(all.len() > first.len());
    let drawn_later = drawn(&mut browser, all.len()).await;
    assert_drawn_is_fold(&drawn_later, &all, "SYM00");
    assert_eq!(browser.eval("window.notReloaded === true").await, true);
    let symbols = browser
        .eval("[...document.querySelectorAll('#symbol option')].map(o => o.value).join()")
        .await;
    assert_eq!(symbols, "SYM00,SYM01");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("candle-page.png");
    browser.screenshot(&shot).await;
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    eprintln!("screenshot of the candle page: {}", shot.display());
    drop(browser);
    stop.cancel();
    running.await.unwrap().unwrap();
}
