//! Window operators without any service: batches in, rows out, checked
//! against the independent fold in `common`.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{Array, Float64Array, Int64Array, StringArray, TimestampMillisecondArray};
use arrow::record_batch::RecordBatch;
use common::*;
use engine::operator::{Collector, Operator, LATE, MAIN};
use engine::Metrics;
use engine_sql::{plan_job, JobFile};

async fn operator(window: &str, metrics: Arc<Metrics>) -> Box<dyn Operator> {
    operator_with(window, "", metrics).await
}

/// The statement over `window`, with `clauses` after its GROUP BY (a late
/// table `late` is there for `LATE DATA TO late`).
async fn operator_with(window: &str, clauses: &str, metrics: Arc<Metrics>) -> Box<dyn Operator> {
    let text = format!(
        "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
            WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH (connector = 'kafka', topic = 't');
         CREATE TABLE out (symbol TEXT, window_start TIMESTAMP, window_end TIMESTAMP, vwap DOUBLE, open DOUBLE,
            close DOUBLE, n BIGINT, p50 DOUBLE) WITH (connector = 'kafka', topic = 'o');
         CREATE TABLE late (symbol TEXT, price DOUBLE, size DOUBLE, ts TIMESTAMP, late_reason TEXT,
            watermark_at_arrival TIMESTAMP, statement TEXT) WITH (connector = 'kafka', topic = 'l');
         INSERT INTO out SELECT symbol, window_start, window_end, sum(price * size) / sum(size),
            first_value(price ORDER BY ts), last_value(price ORDER BY ts), count(*), approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY price)
         FROM trades GROUP BY symbol, {window} {clauses};"
    );
    let job = JobFile::parse("test.sql", &text, &|_| None).unwrap();
    let planned = plan_job(&job).await.unwrap();
    engine::operator::for_statement(&planned[0], metrics.statement("test.sql")).unwrap()
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
    let mut rows = out.take(MAIN);
    rows.extend(pending(op).await);
    rows
}

/// The rows still open at the end of the input.
async fn end(op: &mut Box<dyn Operator>) -> Vec<RecordBatch> {
    let mut out = Collector::default();
    op.handle_end_of_data(&mut out).await.unwrap();
    let mut rows = out.take(MAIN);
    rows.extend(pending(op).await);
    rows
}

/// What an operator gives out in parts after a call, as the statement task takes it.
async fn pending(op: &mut Box<dyn Operator>) -> Vec<RecordBatch> {
    let mut rows = Vec::new();
    while op.has_pending() {
        let mut out = Collector::default();
        op.emit_pending(&mut out).await.unwrap();
        rows.extend(out.take(MAIN));
    }
    rows
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
    assert_eq!(metrics.late_rows(), 0);
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
    assert_eq!(metrics.late_rows(), 1);
    let rest = rows(&end(&mut op).await);
    assert_eq!((rest.len(), rest[0].start, rest[0].n), (1, 60_000, 1));
}

/// The rows of the statement over `window_sql` as `run` gives them; with
/// `restoring`, every batch goes to a new operator restored from the
/// previous one's snapshot (a checkpoint and a restart after each batch),
/// all counting into `metrics`.
async fn run_window(
    window_sql: &str,
    arrivals: &[Trade],
    batch: usize,
    restoring: bool,
    metrics: &Arc<Metrics>,
) -> Vec<Out> {
    let mut op = operator(window_sql, Arc::clone(metrics)).await;
    if !restoring {
        return rows(&run(&mut op, arrivals, batch).await);
    }
    let mut out = Vec::new();
    let mut max_ts = i64::MIN;
    for chunk in arrivals.chunks(batch) {
        out.extend(feed(&mut op, batch_of(chunk)).await);
        max_ts = max_ts.max(chunk.iter().map(|t| t.ts).max().unwrap());
        out.extend(advance(&mut op, max_ts - 2000).await);
        let snapshot = op.snapshot().unwrap();
        op = operator(window_sql, Arc::clone(metrics)).await;
        op.restore(&snapshot).await.unwrap();
    }
    out.extend(end(&mut op).await);
    rows(&out)
}

/// Fails unless `got` has exactly the windows of `expected`, each equal to its fold.
fn assert_windows_equal<K: Ord + std::fmt::Debug>(
    got: &BTreeMap<K, &Out>,
    expected: &BTreeMap<K, Candle>,
) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (key, e) in expected {
        check_row(got[key], e);
    }
}

/// Rows keyed by (symbol, window_start, window_end), each once.
fn by_window(got: &[Out]) -> BTreeMap<(String, i64, i64), &Out> {
    let mut keyed = BTreeMap::new();
    for r in got {
        let key = (r.symbol.clone(), r.start, r.end);
        assert!(
            keyed.insert(key, r).is_none(),
            "{} {} {} twice",
            r.symbol,
            r.start,
            r.end
        );
    }
    keyed
}

fn check_row(r: &Out, e: &Candle) {
    assert_eq!(
        (r.end, r.n, r.open, r.close),
        (e.window_end, e.trades, e.open, e.close),
        "{} {}",
        r.symbol,
        r.start
    );
    assert!(close_to(r.vwap, e.vwap(), 1e-9), "{} {}", r.symbol, r.start);
}

const CUMULATE_SQL: &str = "CUMULATE(ts, INTERVAL '1' MINUTE, INTERVAL '10' MINUTE)";

/// Two 10-minute periods and a bit of a third: every (symbol, period, step)
/// with trades, in window order, equal to the fold of the period so far.
async fn check_cumulate(batch: usize, restoring: bool) {
    let trades = generate_trades(5, 20_000, 6, 1_763_640_000_000, 37);
    let arrivals = arrival_order(&trades, 9, 1900);
    let metrics = Arc::new(Metrics::new());
    let got = run_window(CUMULATE_SQL, &arrivals, batch, restoring, &metrics).await;
    let expected = fold_cumulate(&trades, 60_000, 600_000);
    assert_eq!(metrics.late_rows(), 0);
    assert!(got.windows(2).all(|w| w[0].end <= w[1].end));
    assert_windows_equal(&by_window(&got), &expected);
    // The periods' last windows span them whole (the bounded end emits them).
    assert!(got.iter().any(|r| r.end - r.start == 600_000));
}

#[tokio::test]
async fn cumulating_windows_match_fold() {
    check_cumulate(1000, false).await;
    check_cumulate(7, false).await;
}

#[tokio::test]
async fn cumulating_windows_survive_a_restore_after_every_batch() {
    check_cumulate(500, true).await;
}

const SESSION_SQL: &str = "SESSION(ts, INTERVAL '2' SECOND, INTERVAL '1' MINUTE)";

/// Trades with holes: each symbol goes quiet for a few seconds at its own
/// times, so sessions end, start, and are cut at minute boundaries; arriving
/// out of order, later rows bridge sessions already open.
fn gappy_trades() -> Vec<Trade> {
    generate_trades(11, 40_000, 6, 1_763_640_000_000, 23)
        .into_iter()
        .filter(|t| {
            let offset = t.symbol.bytes().map(|b| b as i64).sum::<i64>() * 1_300;
            ((t.ts + offset) / 3_000) % 4 != 0 && (t.ts / 1_000) % 17 != 3
        })
        .collect()
}

async fn check_sessions(batch: usize, restoring: bool) {
    let trades = gappy_trades();
    let arrivals = arrival_order(&trades, 3, 1900);
    let metrics = Arc::new(Metrics::new());
    let got = run_window(SESSION_SQL, &arrivals, batch, restoring, &metrics).await;
    let expected = fold_sessions(&trades, 2_000, 60_000);
    assert_eq!(metrics.late_rows(), 0);
    assert!(expected.len() > 200, "{} sessions", expected.len());
    let keyed: BTreeMap<(String, i64), &Out> = by_window(&got)
        .into_iter()
        .map(|((s, start, _), r)| ((s, start), r))
        .collect();
    assert_windows_equal(&keyed, &expected);
    // Cut at minute boundaries: no session starts in one minute and has a row in the next.
    assert!(got
        .iter()
        .all(|r| (r.end - 2_000).div_euclid(60_000) == r.start.div_euclid(60_000)));
    assert_eq!(metrics.open_windows(), 0);
}

#[tokio::test]
async fn session_windows_match_fold() {
    check_sessions(1000, false).await;
    check_sessions(5, false).await;
}

#[tokio::test]
async fn session_windows_survive_a_restore_after_every_batch() {
    check_sessions(300, true).await;
}

/// The late output's rows as (symbol, ts, reason).
fn late_rows(out: &mut Collector) -> Vec<(String, i64, String)> {
    let mut rows = Vec::new();
    for b in out.take(LATE) {
        let symbol = b.column(0).as_any().downcast_ref::<StringArray>().unwrap();
        let ts = b.column(3).as_any();
        let ts = ts.downcast_ref::<TimestampMillisecondArray>().unwrap();
        let reason = b.column(4).as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..b.num_rows() {
            rows.push((symbol.value(i).into(), ts.value(i), reason.value(i).into()));
        }
    }
    rows
}

fn trade_at(symbol: &str, ts: i64, price: f64) -> Trade {
    Trade {
        symbol: symbol.into(),
        price,
        size: 1.0,
        ts,
    }
}

/// Feeds `trades` as one batch; returns what went to the late output.
async fn feed_late(op: &mut Box<dyn Operator>, trades: &[Trade]) -> Vec<(String, i64, String)> {
    let mut out = Collector::default();
    op.process_batch(batch_of(trades), &mut out).await.unwrap();
    assert!(out.take_rejected().is_empty());
    late_rows(&mut out)
}

#[tokio::test]
async fn a_row_bridging_two_sessions_merges_them_and_a_row_after_its_session_is_late() {
    let metrics = Arc::new(Metrics::new());
    let window = "SESSION(ts, INTERVAL '10' SECOND)";
    let mut op = operator_with(window, "LATE DATA TO late", Arc::clone(&metrics)).await;
    let a = |ts, p| trade_at("A", ts, p);
    assert!(feed_late(&mut op, &[a(0, 1.0), a(20_000, 3.0)])
        .await
        .is_empty());
    assert!(advance(&mut op, 5_000).await.is_empty());
    assert_eq!(metrics.open_windows(), 2);
    // Bridges [0, 10 s) and [20 s, 30 s): one session.
    assert!(
        feed_late(&mut op, &[a(10_000, 2.0), trade_at("B", 1_000, 5.0)])
            .await
            .is_empty()
    );
    assert_eq!(metrics.open_windows(), 2);
    let b = rows(&advance(&mut op, 12_000).await);
    assert_eq!(b.len(), 1);
    assert_eq!(
        (b[0].symbol.as_str(), b[0].start, b[0].end, b[0].n),
        ("B", 1_000, 11_000, 1)
    );
    // B's session is gone: a B row from before it is late. An A row behind the
    // watermark that is within the gap of A's open session joins it.
    let late = feed_late(&mut op, &[trade_at("B", 500, 6.0), a(1_500, 9.0)]).await;
    assert_eq!(late.len(), 1);
    assert_eq!((late[0].0.as_str(), late[0].1), ("B", 500));
    assert!(late[0].2.contains("session closed"), "{}", late[0].2);
    assert_eq!(metrics.late_rows(), 1);
    let a_rows = rows(&advance(&mut op, 30_000).await);
    assert_eq!(a_rows.len(), 1);
    let r = &a_rows[0];
    assert_eq!(
        (r.start, r.end, r.n, r.open, r.close),
        (0, 30_000, 4, 1.0, 3.0)
    );
    assert_eq!(metrics.windows_emitted(), 2);
    assert_eq!(metrics.open_windows(), 0);
}

#[tokio::test]
async fn cumulate_keeps_a_row_for_its_later_windows_and_sends_a_row_after_its_period_to_late() {
    let metrics = Arc::new(Metrics::new());
    let mut op = operator_with(CUMULATE_SQL, "LATE DATA TO late", Arc::clone(&metrics)).await;
    let base = 600_000; // a period [10 min, 20 min)
    assert!(feed_late(&mut op, &[trade_at("A", base + 10_000, 1.0)])
        .await
        .is_empty());
    let first = rows(&advance(&mut op, base + 65_000).await);
    assert_eq!(first.len(), 1);
    assert_eq!(
        (first[0].start, first[0].end, first[0].n),
        (base, base + 60_000, 1)
    );
    // Its step has closed, its period has not: counted late, and in every later window.
    // The other row's period ended before the watermark: the late output.
    let late = feed_late(
        &mut op,
        &[
            trade_at("A", base + 30_000, 2.0),
            trade_at("A", 100_000, 3.0),
        ],
    )
    .await;
    assert_eq!(metrics.late_rows(), 2);
    assert_eq!(late.len(), 1);
    assert_eq!(late[0].1, 100_000);
    assert!(late[0].2.contains("the end of its period"), "{}", late[0].2);
    let second = rows(&advance(&mut op, base + 125_000).await);
    assert_eq!(second.len(), 1);
    let r = &second[0];
    assert_eq!(
        (r.start, r.end, r.n, r.open, r.close),
        (base, base + 120_000, 2, 1.0, 2.0)
    );
    // The rest of the period at the end of the input: every step to its end, unchanged.
    let rest = rows(&end(&mut op).await);
    assert_eq!(rest.len(), 8);
    assert!(rest.iter().all(|r| r.n == 2 && r.start == base));
    assert_eq!(rest.last().unwrap().end, base + 600_000);
    assert_eq!(metrics.open_windows(), 0);
}

/// A row behind the watermark joins a session opened by the rows before it,
/// in the batch too, never one opened by rows after it: how rows are batched
/// does not decide whether a row is late.
#[tokio::test]
async fn a_row_behind_the_watermark_joins_only_sessions_opened_before_it() {
    let window = "SESSION(ts, INTERVAL '10' SECOND)";
    for (order, late_expected, n) in [([85_000, 95_000], 1, 1), ([95_000, 85_000], 0, 2)] {
        let metrics = Arc::new(Metrics::new());
        let mut op = operator_with(window, "LATE DATA TO late", Arc::clone(&metrics)).await;
        assert!(advance(&mut op, 100_000).await.is_empty());
        let trades: Vec<Trade> = order.iter().map(|&ts| trade_at("A", ts, 1.0)).collect();
        let late = feed_late(&mut op, &trades).await;
        assert_eq!(late.len(), late_expected, "{order:?}");
        assert_eq!(metrics.late_rows(), late_expected as u64);
        let out = rows(&end(&mut op).await);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].n, out[0].end), (n, 105_000), "{order:?}");
    }
}

/// One watermark closing several sessions of a key emits them in the order they end.
#[tokio::test]
async fn sessions_of_a_key_closing_together_come_out_in_order() {
    let mut op = operator(
        "SESSION(ts, INTERVAL '10' SECOND)",
        Arc::new(Metrics::new()),
    )
    .await;
    for ts in [40_000, 20_000, 0] {
        feed(
            &mut op,
            batch_of(&[trade_at("A", ts, 1.0), trade_at("B", ts + 1, 1.0)]),
        )
        .await;
    }
    let out = rows(&advance(&mut op, 100_000).await);
    for symbol in ["A", "B"] {
        let starts: Vec<i64> = out
            .iter()
            .filter(|r| r.symbol == symbol)
            .map(|r| r.start)
            .collect();
        let offset = if symbol == "A" { 0 } else { 1 };
        assert_eq!(starts, [0, 20_000, 40_000].map(|s| s + offset), "{symbol}");
    }
}

/// The end of a bounded input emits a day of CUMULATE windows for every key:
/// given out in parts of about 64k rows, in window order, none lost.
#[tokio::test]
async fn the_rest_of_a_cumulate_day_comes_out_in_parts() {
    let day = "CUMULATE(ts, INTERVAL '1' MINUTE, INTERVAL '1' DAY)";
    let mut op = operator(day, Arc::new(Metrics::new())).await;
    let base = 1_763_596_800_000; // a midnight
    let trades: Vec<Trade> = (0..100)
        .map(|i| trade_at(&format!("S{i:03}"), base + 30_000 + i, 1.0 + i as f64))
        .collect();
    feed(&mut op, batch_of(&trades)).await;
    let mut out = Collector::default();
    op.handle_end_of_data(&mut out).await.unwrap();
    let first = rows(&out.take(MAIN));
    assert!(op.has_pending());
    assert!((65_536..70_000).contains(&first.len()), "{}", first.len());
    let rest = rows(&pending(&mut op).await);
    let all: Vec<&Out> = first.iter().chain(&rest).collect();
    assert_eq!(all.len(), 100 * 1440);
    assert!(all.windows(2).all(|w| w[0].end <= w[1].end));
    assert!(all.iter().all(|r| r.start == base && r.n == 1));
    assert_eq!(all.last().unwrap().end, base + 86_400_000);
    // A later trade of that day is late: the day was emitted to its end.
    let metrics = Arc::new(Metrics::new());
    let snapshot = op.snapshot().unwrap();
    let mut op = operator(day, Arc::clone(&metrics)).await;
    op.restore(&snapshot).await.unwrap();
    feed(
        &mut op,
        batch_of(&[trade_at("S000", base + 3_600_000, 1.0)]),
    )
    .await;
    assert_eq!(metrics.late_rows(), 1);
}

/// A row the query cannot compute (a size of 1e31 cast to DECIMAL(38, 8) in
/// jobs/intraday_vwap.sql's sums) is dead-lettered once, without its window
/// columns, and every other row still counts: for CUMULATE and for SESSION.
#[tokio::test]
async fn a_row_the_query_cannot_compute_is_rejected_once_by_cumulate_and_session() {
    let text = std::fs::read_to_string(repo_root().join("jobs/intraday_vwap.sql")).unwrap();
    let cumulate = "CUMULATE(ts, INTERVAL '1' MINUTE, INTERVAL '1' DAY)";
    assert!(text.contains(cumulate));
    let session = text.replace(cumulate, "SESSION(ts, INTERVAL '30' SECOND)");
    for (kind, text) in [("CUMULATE", text.clone()), ("SESSION", session)] {
        let job = JobFile::parse("intraday_vwap.sql", &text, &|_| None).unwrap();
        let planned = plan_job(&job).await.unwrap();
        let mut op =
            engine::operator::for_statement(&planned[0], Metrics::new().statement("test.sql"))
                .unwrap();
        let base = 1_763_596_800_000;
        let mut trades: Vec<Trade> = (0..50)
            .map(|i| trade_at("A", base + i * 100, 10.0))
            .collect();
        trades[17].size = 1e31;
        let mut out = Collector::default();
        op.process_batch(batch_of(&trades), &mut out).await.unwrap();
        let rejected = out.take_rejected();
        assert_eq!(rejected.len(), 1, "{kind}");
        assert_eq!(
            rejected[0].row.num_columns(),
            4,
            "{kind}: the source's columns only"
        );
        let size = rejected[0]
            .row
            .column(2)
            .as_any()
            .downcast_ref::<Float64Array>()
            .unwrap();
        assert_eq!(size.value(0), 1e31, "{kind}");
        let rows = end(&mut op).await;
        let first = &rows[0];
        let n = first
            .column(9)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(n.value(0), 49, "{kind}: every other row counts");
    }
}
