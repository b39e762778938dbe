//! What the emit policies and allowed lateness cost: the 1-minute candle
//! statement over the same trades, in-process (no broker, no decoding), once
//! per policy, each in a child process of its own so that its peak RSS is
//! its own.
//!
//! ```text
//! cargo run -p engine-benches --bin emit -- [TRADES] [SYMBOLS]
//! ```
//! Modes: `close` (jobs/ohlc_1m.sql's candles, EMIT ON WINDOW CLOSE);
//! `revisions` (the same with window_revision / window_final selected);
//! `every_1s` (EMIT EVERY INTERVAL '1' SECOND, ticks on the wall clock);
//! `on_update` (EMIT ON UPDATE); `lateness_30s` (ALLOW LATENESS 30 s);
//! `live` (jobs/ohlc_1m_live.sql: every second, 30 s lateness, late rows);
//! the other window kinds over the same trades: `session_1m` (jobs/ohlc_1m.sql's
//! aggregates over SESSION(ts, INTERVAL '1' MINUTE)) and `cumulate_1d`
//! (jobs/intraday_vwap.sql: the day so far, every minute, which at the end of
//! the input emits every remaining minute of the day).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use arrow::array::{Float64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use engine::operator::{Collector, FINAL, LATE, MAIN};
use engine::Metrics;
use engine_sql::{plan_job, timestamp_type, JobFile};
use rand::{rngs::StdRng, Rng, SeedableRng};

const MODES: &[&str] = &[
    "close",
    "revisions",
    "every_1s",
    "on_update",
    "lateness_30s",
    "live",
    "session_1m",
    "cumulate_1d",
];

/// The candle statement of `mode`: the live job with its clauses as the mode says.
fn job_text(mode: &str, root: &std::path::Path) -> Result<String> {
    let read = |f: &str| std::fs::read_to_string(root.join("jobs").join(f));
    let tumble = "TUMBLE(ts, INTERVAL '1' MINUTE)";
    match mode {
        "close" => return Ok(read("ohlc_1m.sql")?),
        "session_1m" => {
            let text = read("ohlc_1m.sql")?;
            if !text.contains(tumble) {
                bail!("jobs/ohlc_1m.sql no longer groups by {tumble}");
            }
            return Ok(text.replace(tumble, "SESSION(ts, INTERVAL '1' MINUTE)"));
        }
        "cumulate_1d" => return Ok(read("intraday_vwap.sql")?),
        _ => {}
    }
    let live = read("ohlc_1m_live.sql")?;
    let clauses = "EMIT EVERY INTERVAL '1' SECOND\nALLOW LATENESS INTERVAL '30' SECOND\nLATE DATA TO trades_late;";
    if !live.contains(clauses) {
        bail!("jobs/ohlc_1m_live.sql no longer ends with the clauses this benchmark replaces");
    }
    let with = match mode {
        "revisions" => ";",
        "every_1s" => "EMIT EVERY INTERVAL '1' SECOND;",
        "on_update" => "EMIT ON UPDATE;",
        "lateness_30s" => "ALLOW LATENESS INTERVAL '30' SECOND;",
        "live" => clauses,
        other => bail!("unknown mode {other}: one of {MODES:?}"),
    };
    Ok(live.replace(clauses, with))
}

fn batches(trades: usize, symbols: usize) -> Result<Vec<RecordBatch>> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
        Field::new("size", DataType::Float64, false),
        Field::new("ts", timestamp_type(), false),
    ]));
    let mut rng = StdRng::seed_from_u64(1);
    let names: Vec<String> = (0..symbols).map(|i| format!("S{i:05}")).collect();
    let mut out = Vec::new();
    let mut i = 0i64;
    while (i as usize) < trades {
        let n = 8192.min(trades - i as usize);
        let sym: StringArray = (0..n)
            .map(|_| Some(names[rng.random_range(0..symbols)].as_str()))
            .collect();
        let price: Float64Array = (0..n)
            .map(|_| Some(100.0 + rng.random_range(0..10_000) as f64 / 100.0))
            .collect();
        let size: Float64Array = (0..n)
            .map(|_| Some(rng.random_range(1..1000) as f64))
            .collect();
        // A trade every 3 ms of market time.
        let ts = TimestampMillisecondArray::from_iter_values(
            (0..n as i64).map(|k| 1_763_640_000_000 + 3 * (i + k)),
        )
        .with_timezone("UTC");
        out.push(RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(sym), Arc::new(price), Arc::new(size), Arc::new(ts)],
        )?);
        i += n as i64;
    }
    Ok(out)
}

fn peak_rss_mb() -> f64 {
    // SAFETY: `usage` is a valid rusage for the call to fill.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_maxrss as f64 / 1024.0
}

/// Rows of the main output; the final and late outputs are dropped (a sink
/// would take them), so that they do not pile up in memory.
fn taken(out: &mut Collector) -> usize {
    let _ = (out.take(FINAL), out.take(LATE));
    out.take(MAIN).iter().map(|b| b.num_rows()).sum()
}

/// Takes what the operator gives out in parts (as the statement task does); the rows.
async fn pending(
    op: &mut Box<dyn engine::operator::Operator>,
    out: &mut Collector,
) -> Result<usize> {
    let mut rows = 0;
    while op.has_pending() {
        op.emit_pending(out).await?;
        rows += taken(out);
    }
    Ok(rows)
}

/// One mode in this process: prints `mode events/s rows ticks rss`.
async fn run_mode(mode: &str, trades: usize, symbols: usize) -> Result<()> {
    let text = job_text(mode, &engine_benches::repo_root())?;
    let job = JobFile::parse(mode, &text, &|_| None)?;
    let planned = plan_job(&job).await?;
    let input = batches(trades, symbols)?;
    let mut op =
        engine::operator::for_statement(&planned[0], Metrics::new().statement("test.sql"))?;
    let every = op.tick_interval();
    let (mut rows, mut ticks) = (0usize, 0usize);
    let started = Instant::now();
    let mut last_tick = Instant::now();
    let mut out = Collector::default();
    for b in input {
        let max_ts = arrow::compute::max(
            b.column(3)
                .as_any()
                .downcast_ref::<TimestampMillisecondArray>()
                .expect("ts column"),
        )
        .unwrap_or(i64::MIN);
        op.process_batch(b, &mut out).await?;
        op.handle_watermark(max_ts - 2000, &mut out).await?;
        if every.is_some_and(|e| last_tick.elapsed() >= e) {
            op.handle_tick(&mut out).await?;
            (ticks, last_tick) = (ticks + 1, Instant::now());
        }
        rows += taken(&mut out);
        rows += pending(&mut op, &mut out).await?;
    }
    let ending = Instant::now();
    op.handle_end_of_data(&mut out).await?;
    rows += taken(&mut out);
    rows += pending(&mut op, &mut out).await?;
    let (elapsed, end) = (started.elapsed(), ending.elapsed());
    println!(
        "{mode:<13} {:>10.0} events/s  {rows:>9} rows  {ticks:>4} ticks  end of input {:>5.2} s  peak RSS {:>6.0} MB",
        trades as f64 / elapsed.as_secs_f64(),
        end.as_secs_f64(),
        peak_rss_mb()
    );
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, mode, trades, symbols] = args.as_slice() {
        if flag == "--mode" {
            return run_mode(mode, trades.parse()?, symbols.parse()?).await;
        }
    }
    let trades: usize = args.first().map_or(Ok(2_000_000), |a| a.parse())?;
    let symbols: usize = args.get(1).map_or(Ok(10_000), |a| a.parse())?;
    println!(
        "trades={trades} symbols={symbols} batch=8192, a trade every 3 ms of market time, \
         1-minute candles; each mode in its own process"
    );
    let me = std::env::current_exe()?;
    for mode in MODES {
        let status = std::process::Command::new(&me)
            .args(["--mode", mode, &trades.to_string(), &symbols.to_string()])
            .status()?;
        if !status.success() {
            bail!("mode {mode} failed");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}
