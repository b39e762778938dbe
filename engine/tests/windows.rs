//! Window operators without any service: batches in, rows out, checked
//! against the independent fold in `common`.

mod common;

use std::sync::Arc;

use arrow::array::{Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use common::*;
use engine::operator::{Collector, Operator, MAIN};
use engine::Metrics;
use engine_sql::{plan_job, JobFile};

async fn operator(window: &str, metrics: Arc<Metrics>) -> Box<dyn Operator> {
    let text = format!(
        "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
            WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH (connector = 'kafka', topic = 't');
         CREATE TABLE out (symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP, vwap DOUBLE, open DOUBLE,
            close DOUBLE, n BIGINT, p50 DOUBLE) WITH (connector = 'kafka', topic = 'o');
         INSERT INTO out SELECT symbol, window_start, window_end, sum(price * size) / sum(size),
            first_value(price ORDER BY ts), last_value(price ORDER BY ts), count(*), approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY price)
         FROM trades GROUP BY symbol, {window};"
    );
    let job = JobFile::parse("test.sql", &text, &|_| None).unwrap();
    let planned = plan_job(&job).await.unwrap();
    engine::operator::for_statement(&planned[0], metrics).unwrap()
}

/// The rows a batch gives (none, for a window aggregate: it emits on watermarks).
async fn feed(op: &mut Box<dyn Operator>, batch: RecordBatch) -> Vec<RecordBatch> {
    let mut out = Collector::default();
    op.process_batch(batch, &mut out).await.unwrap();
    out.take(MAIN)
}

/// The rows a watermark completes.
async fn advance(op: &mut Box<dyn Operator>, watermark: i64) -> Vec<RecordBatch> {
    let mut out = Collector::default();
    op.handle_watermark(watermark, &mut out).await.unwrap();
    out.take(MAIN)
}

/// The rows still open at the end of the input.
async fn end(op: &mut Box<dyn Operator>) -> Vec<RecordBatch> {
    let mut out = Collector::default();
    op.handle_end_of_data(&mut out).await.unwrap();
    out.take(MAIN)
}

struct Out {
    symbol: String,
    start: i64,
    end: i64,
    vwap: f64,
    open: f64,
    close: f64,
    n: i64,
}

fn rows(batches: &[RecordBatch]) -> Vec<Out> {
    let mut out = Vec::new();
    for b in batches {
        let s = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let ws = b
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        let we = b
            .column(2)
            .as_any()
            .downcast_ref::<TimestampMillisecondArray>()
            .unwrap();
        let f = |i: usize| {
            b.column(i)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone()
        };
        let n = b.column(6).as_any().downcast_ref::<Int64Array>().unwrap();
        let (vwap, open, close, p50) = (f(3), f(4), f(5), f(7));
        for i in 0..b.num_rows() {
            assert!(p50.is_valid(i), "approx_percentile_cont ran");
            out.push(Out {
                symbol: s.value(i).into(),
                start: ws.value(i),
                end: we.value(i),
                vwap: vwap.value(i),
                open: open.value(i),
                close: close.value(i),
                n: n.value(i),
            });
        }
    }
    out
}

/// Feeds trades in arrival order in batches of `batch`, with a watermark of
/// max(ts) - 2 s after each batch, then end of data.
async fn run(op: &mut Box<dyn Operator>, arrivals: &[Trade], batch: usize) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    let mut max_ts = i64::MIN;
    for chunk in arrivals.chunks(batch) {
        out.extend(feed(op, batch_of(chunk)).await);
        max_ts = max_ts.max(chunk.iter().map(|t| t.ts).max().unwrap());
        out.extend(advance(op, max_ts - 2000).await);
    }
    out.extend(end(op).await);
    out
}

async fn check_against_fold(window_sql: &str, size: i64, slide: i64, batch: usize) {
    let trades = generate_trades(5, 50_000, 6, 1_763_640_000_000, 37);
    let arrivals = arrival_order(&trades, 9, 1900);
    let metrics = Arc::new(Metrics::new());
    let mut op = operator(window_sql, Arc::clone(&metrics)).await;
    let got = rows(&run(&mut op, &arrivals, batch).await);
    let expected = fold_windows(&trades, size, slide);
    assert_eq!(Metrics::get(&metrics.late_rows), 0);
    assert_eq!(got.len(), expected.len());
    // Windows come out in event-time order.
    assert!(got.windows(2).all(|w| w[0].end <= w[1].end));
    for r in &got {
        let e = &expected[&(r.symbol.clone(), r.start)];
        assert_eq!(
            (r.end, r.n, r.open, r.close),
            (e.window_end, e.trades, e.open, e.close),
            "{} {}",
            r.symbol,
            r.start
        );
        assert!(close_to(r.vwap, e.vwap(), 1e-9));
    }
}

#[tokio::test]
async fn tumbling_window_matches_fold() {
    check_against_fold("TUMBLE(ts, INTERVAL '1' MINUTE)", 60_000, 60_000, 1000).await;
}

/// Batches of 10 rows leave ~160 state batches per window, so each window's
/// state is folded with DataFusion's `PartialReduce` before it closes.
#[tokio::test]
async fn folded_window_state_matches_fold() {
    check_against_fold("TUMBLE(ts, INTERVAL '1' MINUTE)", 60_000, 60_000, 10).await;
}

#[tokio::test]
async fn hopping_window_matches_fold() {
    check_against_fold(
        "HOP(ts, INTERVAL '1' MINUTE, INTERVAL '5' MINUTE)",
        300_000,
        60_000,
        1000,
    )
    .await;
}

#[tokio::test]
async fn late_rows_are_counted_not_silently_dropped() {
    let metrics = Arc::new(Metrics::new());
    let mut op = operator("TUMBLE(ts, INTERVAL '1' MINUTE)", Arc::clone(&metrics)).await;
    let t = |ts: i64| Trade {
        symbol: "A".into(),
        price: 10.0,
        size: 1.0,
        ts,
    };
    feed(&mut op, batch_of(&[t(1_000), t(2_000)])).await;
    let first = rows(&advance(&mut op, 60_000).await);
    assert_eq!((first.len(), first[0].n), (1, 2));
    // A row for the window already emitted: dropped and counted. A row for the next window: kept.
    feed(&mut op, batch_of(&[t(59_999), t(60_000)])).await;
    assert_eq!(Metrics::get(&metrics.late_rows), 1);
    let rest = rows(&end(&mut op).await);
    assert_eq!((rest.len(), rest[0].start, rest[0].n), (1, 60_000, 1));
}
