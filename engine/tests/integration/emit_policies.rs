//! When windows emit, without any service: early rows (`EMIT ON UPDATE`,
//! `EMIT EVERY`), corrections within `ALLOW LATENESS`, the last revision on
//! the final output, and `LATE DATA TO` rows, each checked against a plain
//! fold of the trades the operator was given.

use crate::common;

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    Array, BooleanArray, Float64Array, Int64Array, StringArray, TimestampMillisecondArray,
};
use arrow::record_batch::RecordBatch;
use common::*;
use engine::operator::{Collector, Operator, FINAL, LATE, MAIN};
use engine::Metrics;
use engine_sql::{plan_job, JobFile};

/// A 1-minute candle statement with `clauses` after its GROUP BY.
async fn operator(clauses: &str, metrics: Arc<Metrics>) -> Box<dyn Operator> {
    let text = format!(
        "CREATE TABLE trades (symbol TEXT NOT NULL, price DOUBLE NOT NULL, size DOUBLE NOT NULL, ts TIMESTAMP NOT NULL,
            WATERMARK FOR ts AS ts - INTERVAL '2' SECOND) WITH (connector = 'kafka', topic = 't');
         CREATE TABLE out (symbol TEXT, window_start TIMESTAMP, revision BIGINT, final BOOLEAN,
            open DOUBLE, close DOUBLE, n BIGINT, volume DOUBLE) WITH (connector = 'kafka', topic = 'o');
         CREATE TABLE late (symbol TEXT, price DOUBLE, size DOUBLE, ts TIMESTAMP, late_reason TEXT,
            watermark_at_arrival TIMESTAMP, statement TEXT) WITH (connector = 'kafka', topic = 'l');
         CREATE VIEW candles AS SELECT symbol, window_start, window_revision, window_final,
            first_value(price ORDER BY ts), last_value(price ORDER BY ts), count(*), sum(size)
         FROM trades GROUP BY symbol, TUMBLE(ts, INTERVAL '1' MINUTE) {clauses};
         INSERT INTO out SELECT * FROM candles;"
    );
    let job = JobFile::parse("test.sql", &text, &|_| None).unwrap();
    let planned = plan_job(&job).await.unwrap();
    engine::operator::for_statement(&planned[0], metrics.statement("test.sql")).unwrap()
}

/// One output row of the candle statement.
#[derive(Debug, Clone, PartialEq)]
struct Row {
    symbol: String,
    start: i64,
    revision: i64,
    is_final: bool,
    open: f64,
    close: f64,
    n: i64,
    volume: f64,
}

fn rows(batches: &[RecordBatch]) -> Vec<Row> {
    let mut out = Vec::new();
    for b in batches {
        let c = |i: usize| b.column(i).as_any();
        let symbol = c(0).downcast_ref::<StringArray>().unwrap();
        let start = c(1).downcast_ref::<TimestampMillisecondArray>().unwrap();
        let revision = c(2).downcast_ref::<Int64Array>().unwrap();
        let is_final = c(3).downcast_ref::<BooleanArray>().unwrap();
        let f = |i: usize| c(i).downcast_ref::<Float64Array>().unwrap();
        let n = c(6).downcast_ref::<Int64Array>().unwrap();
        for i in 0..b.num_rows() {
            out.push(Row {
                symbol: symbol.value(i).into(),
                start: start.value(i),
                revision: revision.value(i),
                is_final: is_final.value(i),
                open: f(4).value(i),
                close: f(5).value(i),
                n: n.value(i),
                volume: f(7).value(i),
            });
        }
    }
    out
}

/// What one step of the operator emitted, by output.
#[derive(Debug, Default, Clone, PartialEq)]
struct Emitted {
    main: Vec<Row>,
    last: Vec<Row>,
    late: Vec<RecordBatch>,
}

fn emitted(mut out: Collector) -> Emitted {
    Emitted {
        main: rows(&out.take(MAIN)),
        last: rows(&out.take(FINAL)),
        late: out.take(LATE),
    }
}

async fn feed(op: &mut Box<dyn Operator>, trades: &[Trade]) -> Emitted {
    let mut out = Collector::default();
    op.process_batch(batch_of(trades), &mut out).await.unwrap();
    assert!(out.take_rejected().is_empty());
    emitted(out)
}

async fn advance(op: &mut Box<dyn Operator>, watermark: i64) -> Emitted {
    let mut out = Collector::default();
    op.handle_watermark(watermark, &mut out).await.unwrap();
    emitted(out)
}

async fn tick(op: &mut Box<dyn Operator>) -> Emitted {
    let mut out = Collector::default();
    op.handle_tick(&mut out).await.unwrap();
    emitted(out)
}

/// The row a window of `trades` must have (revision and finality aside).
fn expect(trades: &[Trade], symbol: &str, start: i64) -> Option<(f64, f64, i64, f64)> {
    let folded = fold_windows(trades, 60_000, 60_000);
    let c = folded.get(&(symbol.to_string(), start))?;
    Some((c.open, c.close, c.trades, c.volume))
}

fn matches(row: &Row, trades: &[Trade]) -> bool {
    let got = (row.open, row.close, row.n, row.volume);
    expect(trades, &row.symbol, row.start) == Some(got)
}

fn trade(symbol: &str, ts: i64, price: f64) -> Trade {
    Trade {
        symbol: symbol.into(),
        price,
        size: 1.0 + (ts % 7) as f64,
        ts,
    }
}

#[tokio::test]
async fn early_rows_equal_a_fold_of_the_trades_before_them() {
    let trades = generate_trades(3, 6_000, 4, 1_763_640_000_000, 37);
    let arrivals = arrival_order(&trades, 5, 1900);
    let mut op = operator("EMIT ON UPDATE", Arc::new(Metrics::new())).await;
    let (mut seen, mut upserted) = (Vec::new(), BTreeMap::new());
    let mut next_revision: BTreeMap<(String, i64), i64> = BTreeMap::new();
    let (mut early, mut finals, mut last) = (0, 0, Vec::new());
    let mut max_ts = i64::MIN;
    for chunk in arrivals.chunks(97) {
        seen.extend_from_slice(chunk);
        max_ts = max_ts.max(chunk.iter().map(|t| t.ts).max().unwrap());
        let mut out = feed(&mut op, chunk).await;
        let closed = advance(&mut op, max_ts - 2000).await;
        assert!(out.last.is_empty());
        out.main.extend(closed.main);
        last.extend(closed.last);
        for row in out.main {
            // Every row equals the fold of the trades given so far, in its window.
            assert!(matches(&row, &seen), "{row:?}");
            let key = (row.symbol.clone(), row.start);
            let revision = next_revision.entry(key.clone()).or_default();
            assert_eq!(
                row.revision, *revision,
                "revisions count up by one: {row:?}"
            );
            *revision += 1;
            match row.is_final {
                true => finals += 1,
                false => early += 1,
            }
            upserted.insert(key, row);
        }
    }
    let mut out = Collector::default();
    op.handle_end_of_data(&mut out).await.unwrap();
    let out = emitted(out);
    for row in &out.main {
        assert!(row.is_final && matches(row, &seen), "{row:?}");
        let key = (row.symbol.clone(), row.start);
        let revision = next_revision.entry(key.clone()).or_default();
        assert_eq!(row.revision, *revision, "{row:?}");
        *revision += 1;
        upserted.insert(key, row.clone());
    }
    last.extend(out.last);
    let folded = fold_windows(&trades, 60_000, 60_000);
    assert!(early > folded.len() * 3, "{early} early rows");
    // Upserting by (symbol, window_start) ends with the whole fold, every row final.
    assert_eq!(upserted.len(), folded.len());
    assert!(upserted.values().all(|r| r.is_final && matches(r, &trades)));
    // The final output has each window once, final, in its last revision.
    assert_eq!(last.len(), folded.len());
    for row in &last {
        let key = (row.symbol.clone(), row.start);
        assert!(row.is_final && matches(row, &trades), "{row:?}");
        assert_eq!(row.revision, next_revision[&key] - 1);
        assert_eq!(&upserted[&key], row);
    }
    assert_eq!(finals, folded.len() - out.main.len());
}

#[tokio::test]
async fn emit_every_emits_the_windows_that_changed() {
    let mut op = operator("EMIT EVERY INTERVAL '1' SECOND", Arc::new(Metrics::new())).await;
    assert_eq!(op.tick_interval(), Some(std::time::Duration::from_secs(1)));
    let first = [trade("A", 1_000, 10.0), trade("B", 1_500, 20.0)];
    assert!(
        feed(&mut op, &first).await.main.is_empty(),
        "rows wait for the tick"
    );
    let rows = tick(&mut op).await.main;
    assert_eq!(rows.len(), 2);
    assert!(rows
        .iter()
        .all(|r| !r.is_final && r.revision == 0 && matches(r, &first)));
    assert!(tick(&mut op).await.main.is_empty(), "nothing changed");
    let second = [trade("A", 2_000, 11.0), trade("A", 3_000, 12.0)];
    feed(&mut op, &second).await;
    let rows = tick(&mut op).await.main;
    let all: Vec<Trade> = first.iter().chain(&second).cloned().collect();
    assert_eq!(rows.len(), 1, "only A changed: {rows:?}");
    assert!(rows[0].revision == 1 && matches(&rows[0], &all));
    // The final row follows the early ones' revisions, on both outputs.
    let closed = advance(&mut op, 60_000).await;
    assert_eq!(closed.main, closed.last);
    let mut revisions: Vec<(String, i64)> = closed
        .main
        .iter()
        .map(|r| (r.symbol.clone(), r.revision))
        .collect();
    revisions.sort();
    assert_eq!(revisions, [("A".into(), 2), ("B".into(), 1)]);
    assert!(closed.main.iter().all(|r| r.is_final && matches(r, &all)));
}

/// Windows close at 60 s; with 30 s of lateness their state stays until the
/// watermark passes 90 s.
async fn lateness_script(
    op: &mut Box<dyn Operator>,
    from_step: usize,
    upto: usize,
) -> Vec<Emitted> {
    let on_time = [
        trade("A", 1_000, 10.0),
        trade("A", 50_000, 11.0),
        trade("B", 2_000, 30.0),
    ];
    let steps: Vec<Step> = vec![
        Step::Feed(on_time.to_vec()),
        Step::Advance(60_000),
        // Within the lateness: corrections, one per row, in row order.
        Step::Feed(vec![trade("A", 30_000, 12.0)]),
        Step::Feed(vec![
            trade("A", 500, 9.0),
            trade("C", 5_000, 40.0),
            trade("A", 59_000, 13.0),
            trade("A", 61_000, 14.0),
        ]),
        Step::Advance(85_000),
        Step::Feed(vec![trade("B", 10, 29.0)]),
        // Past the lateness: the state is dropped, the last revision goes to the final output.
        Step::Advance(95_000),
        // Too late for any window: the late output.
        Step::Feed(vec![trade("A", 20_000, 15.0), trade("A", 96_000, 16.0)]),
        Step::Advance(200_000),
    ];
    let mut out = Vec::new();
    for step in &steps[from_step..upto] {
        out.push(match step {
            Step::Feed(trades) => feed(op, trades).await,
            Step::Advance(w) => advance(op, *w).await,
        });
    }
    out
}

enum Step {
    Feed(Vec<Trade>),
    Advance(i64),
}

const LATENESS: &str = "ALLOW LATENESS INTERVAL '30' SECOND LATE DATA TO late";

#[tokio::test]
async fn late_rows_within_the_lateness_correct_their_window() {
    let metrics = Arc::new(Metrics::new());
    let mut op = operator(LATENESS, Arc::clone(&metrics)).await;
    let out = lateness_script(&mut op, 0, 9).await;
    let all = |upto: &[Trade]| upto.to_vec();
    // In row order (corrections come in the order of their rows).
    let a = |rows: &[Row]| {
        rows.iter()
            .map(|r| (r.symbol.clone(), r.revision, r.is_final, r.n))
            .collect::<Vec<_>>()
    };
    // In symbol order (a window's groups come out in the aggregate's order).
    let s = |rows: &[Row]| {
        let mut v = a(rows);
        v.sort_by(|x, y| x.0.cmp(&y.0));
        v
    };
    // The window's final rows at 60 s, on the main output only (corrections may follow).
    assert_eq!(
        s(&out[1].main),
        [("A".into(), 0, true, 2), ("B".into(), 0, true, 1)]
    );
    assert!(out[1].last.is_empty());
    // One correction per late row, each the fold of the window's rows so far.
    let mut given = vec![
        trade("A", 1_000, 10.0),
        trade("A", 50_000, 11.0),
        trade("B", 2_000, 30.0),
    ];
    given.push(trade("A", 30_000, 12.0));
    assert_eq!(a(&out[2].main), [("A".into(), 1, true, 3)]);
    assert!(matches(&out[2].main[0], &given));
    assert_eq!(
        a(&out[3].main),
        [
            ("A".into(), 2, true, 4),
            ("C".into(), 0, true, 1),
            ("A".into(), 3, true, 5)
        ],
        "the row for the open window (61 s) makes no correction"
    );
    let mut upto = given.clone();
    for (row, t) in out[3].main.iter().zip([
        trade("A", 500, 9.0),
        trade("C", 5_000, 40.0),
        trade("A", 59_000, 13.0),
    ]) {
        upto.push(t);
        assert!(matches(row, &upto), "{row:?}");
    }
    given = upto;
    given.push(trade("A", 61_000, 14.0));
    given.push(trade("B", 10, 29.0));
    assert_eq!(a(&out[5].main), [("B".into(), 1, true, 2)]);
    // At 95 s the first minute's state is dropped: its last revisions on the final output.
    assert!(out[6].main.is_empty());
    assert_eq!(
        s(&out[6].last),
        [
            ("A".into(), 3, true, 5),
            ("B".into(), 1, true, 2),
            ("C".into(), 0, true, 1)
        ]
    );
    assert!(out[6].last.iter().all(|r| matches(r, &all(&given))));
    // The row for the dropped minute reached no window: the late output, with why.
    assert_eq!(metrics.late_rows(), 1);
    let late = &out[7].late;
    assert_eq!(late.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let reason = late[0]
        .column(4)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .value(0);
    assert!(reason.starts_with("window closed"), "{reason}");
    let wm = late[0]
        .column(5)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    assert_eq!(wm.value(0), 95_000);
    let statement = late[0]
        .column(6)
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap();
    assert_eq!(statement.value(0), "candles");
    let ts = late[0]
        .column(3)
        .as_any()
        .downcast_ref::<TimestampMillisecondArray>()
        .unwrap();
    assert_eq!(ts.value(0), 20_000);
    // The second minute: closed at 200 s with its lateness passed too, so final on both outputs.
    given.push(trade("A", 96_000, 16.0));
    assert_eq!(a(&out[8].main), [("A".into(), 0, true, 2)]);
    assert_eq!(out[8].main, out[8].last);
    assert!(matches(&out[8].main[0], &given));
}

/// A checkpoint taken while windows wait out their lateness, restored into a
/// fresh operator, goes on with the same revisions and late rows.
#[tokio::test]
async fn lateness_state_survives_a_restore() {
    let whole = {
        let mut op = operator(LATENESS, Arc::new(Metrics::new())).await;
        lateness_script(&mut op, 0, 9).await
    };
    for cut in [2, 3, 5, 6, 7] {
        let mut op = operator(LATENESS, Arc::new(Metrics::new())).await;
        let mut out = lateness_script(&mut op, 0, cut).await;
        let snapshot = op.snapshot().unwrap();
        drop(op);
        let mut restored = operator(LATENESS, Arc::new(Metrics::new())).await;
        restored.restore(&snapshot).await.unwrap();
        out.extend(lateness_script(&mut restored, cut, 9).await);
        assert_eq!(out, whole, "restored after step {cut}");
    }
}

/// Corrections do not depend on how the late rows were batched.
#[tokio::test]
async fn corrections_do_not_depend_on_batching() {
    let late: Vec<Trade> = (0..12)
        .map(|i| {
            trade(
                ["A", "B", "C"][i % 3],
                1_000 + i as i64 * 4_000,
                10.0 + i as f64,
            )
        })
        .collect();
    let mut outputs = Vec::new();
    for size in [1, 5, 12] {
        let mut op = operator(LATENESS, Arc::new(Metrics::new())).await;
        feed(&mut op, &[trade("A", 100, 1.0), trade("B", 200, 2.0)]).await;
        let mut main = advance(&mut op, 70_000).await.main;
        for chunk in late.chunks(size) {
            main.extend(feed(&mut op, chunk).await.main);
        }
        outputs.push(main);
    }
    assert_eq!(outputs[0].len(), 2 + 12);
    assert_eq!(outputs[0], outputs[1]);
    assert_eq!(outputs[0], outputs[2]);
}
