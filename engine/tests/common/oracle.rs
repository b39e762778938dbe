//! Trades and the independent fold the engine's output is checked against.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;

use super::*;

/// One trade, as the producer sent it.
#[derive(Debug, Clone, PartialEq)]
pub struct Trade {
    pub symbol: String,
    pub price: f64,
    pub size: f64,
    pub ts: i64,
}

/// Trades over `symbols` symbols starting at `start_ms`, one every `spacing_ms`
/// (so event times are unique, and first/last by time are well defined),
/// random-walk prices with cent ticks, integer sizes.
pub fn generate_trades(
    seed: u64,
    n: usize,
    symbols: usize,
    start_ms: i64,
    spacing_ms: i64,
) -> Vec<Trade> {
    let mut rng = StdRng::seed_from_u64(seed);
    let names: Vec<String> = (0..symbols).map(|i| format!("SYM{i:02}")).collect();
    let mut prices: Vec<f64> = (0..symbols).map(|i| 50.0 + 25.0 * i as f64).collect();
    (0..n)
        .map(|i| {
            let s = rng.random_range(0..symbols);
            let step = rng.random_range(-5i64..=5) as f64 / 100.0;
            prices[s] = ((prices[s] + step).max(1.0) * 100.0).round() / 100.0;
            Trade {
                symbol: names[s].clone(),
                price: prices[s],
                size: rng.random_range(1..=1000) as f64,
                ts: start_ms + i as i64 * spacing_ms,
            }
        })
        .collect()
}

/// A trade as the contract's JSON, with `ts` written as given (a number or a quoted string).
pub fn trade_json(t: &Trade, ts: &str) -> Vec<u8> {
    format!(
        r#"{{"symbol":"{}","price":{},"size":{},"ts":{ts}}}"#,
        t.symbol, t.price, t.size
    )
    .into_bytes()
}

/// Kafka records (key = symbol) for trades, `ts` in epoch milliseconds.
pub fn trade_records(trades: &[Trade]) -> Vec<(String, Vec<u8>)> {
    trades
        .iter()
        .map(|t| (t.symbol.clone(), trade_json(t, &t.ts.to_string())))
        .collect()
}

/// The order trades reach Kafka: each delayed by up to `max_delay_ms` (< the watermark delay).
pub fn arrival_order(trades: &[Trade], seed: u64, max_delay_ms: i64) -> Vec<Trade> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut keyed: Vec<(i64, usize)> = trades
        .iter()
        .enumerate()
        .map(|(i, t)| (t.ts + rng.random_range(0..max_delay_ms), i))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, i)| trades[i].clone()).collect()
}

/// A window's aggregates, computed independently of the engine.
#[derive(Debug, Clone, PartialEq)]
pub struct Candle {
    pub window_end: i64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub notional: f64,
    pub trades: i64,
    first_ts: i64,
    last_ts: i64,
}

impl Candle {
    pub fn vwap(&self) -> f64 {
        self.notional / self.volume
    }
}

/// Plain fold: every trade into each window `[start, start + size)` containing
/// it, starts multiple of `slide`. Keyed by (symbol, window_start).
pub fn fold_windows(
    trades: &[Trade],
    size_ms: i64,
    slide_ms: i64,
) -> BTreeMap<(String, i64), Candle> {
    let mut out: BTreeMap<(String, i64), Candle> = BTreeMap::new();
    for t in trades {
        let last_start = t.ts.div_euclid(slide_ms) * slide_ms;
        let mut start = last_start;
        while start > t.ts - size_ms {
            let key = (t.symbol.clone(), start);
            let c = out
                .entry(key)
                .or_insert_with(|| Candle::empty(t, start + size_ms));
            c.add(t);
            start -= slide_ms;
        }
    }
    out
}

impl Candle {
    /// A window ending at `window_end` that `first` will be the first trade of.
    fn empty(first: &Trade, window_end: i64) -> Candle {
        Candle {
            window_end,
            open: first.price,
            high: first.price,
            low: first.price,
            close: first.price,
            volume: 0.0,
            notional: 0.0,
            trades: 0,
            first_ts: first.ts,
            last_ts: first.ts,
        }
    }

    /// Folds one trade in.
    fn add(&mut self, t: &Trade) {
        if t.ts < self.first_ts {
            (self.first_ts, self.open) = (t.ts, t.price);
        }
        if t.ts > self.last_ts {
            (self.last_ts, self.close) = (t.ts, t.price);
        }
        self.high = self.high.max(t.price);
        self.low = self.low.min(t.price);
        self.volume += t.size;
        self.notional += t.price * t.size;
        self.trades += 1;
    }
}

/// The aggregates of `trades` (at least one) as one window ending at `window_end`.
pub fn candle_of<'a>(trades: impl IntoIterator<Item = &'a Trade>, window_end: i64) -> Candle {
    let mut c: Option<Candle> = None;
    for t in trades {
        c.get_or_insert_with(|| Candle::empty(t, window_end)).add(t);
    }
    c.expect("a window has at least one trade")
}

/// Plain fold of CUMULATE(ts, step, max): for every period (multiples of
/// `max`) and every step end in it, the trades of the period before that
/// end, for each symbol that has any. Keyed by (symbol, window_start, window_end).
pub fn fold_cumulate(
    trades: &[Trade],
    step_ms: i64,
    max_ms: i64,
) -> BTreeMap<(String, i64, i64), Candle> {
    let mut by_period: BTreeMap<(String, i64), Vec<&Trade>> = BTreeMap::new();
    for t in trades {
        let period = t.ts.div_euclid(max_ms) * max_ms;
        by_period
            .entry((t.symbol.clone(), period))
            .or_default()
            .push(t);
    }
    let mut out = BTreeMap::new();
    for ((symbol, start), ts) in by_period {
        let mut end = start + step_ms;
        while end <= start + max_ms {
            let before: Vec<&Trade> = ts.iter().copied().filter(|t| t.ts < end).collect();
            if !before.is_empty() {
                out.insert((symbol.clone(), start, end), candle_of(before, end));
            }
            end += step_ms;
        }
    }
    out
}

/// Plain fold of SESSION(ts, gap, max_length): per symbol, trades in time
/// order split where two are more than `gap` apart or on either side of a
/// multiple of `max_length`; a session is `[first, last + gap)`. Keyed by
/// (symbol, window_start).
pub fn fold_sessions(
    trades: &[Trade],
    gap_ms: i64,
    max_length_ms: i64,
) -> BTreeMap<(String, i64), Candle> {
    let mut by_symbol: BTreeMap<&str, Vec<&Trade>> = BTreeMap::new();
    for t in trades {
        by_symbol.entry(&t.symbol).or_default().push(t);
    }
    let mut out = BTreeMap::new();
    for (symbol, mut ts) in by_symbol {
        ts.sort_by_key(|t| t.ts);
        let mut session: Vec<&Trade> = Vec::new();
        let mut close = |session: &mut Vec<&Trade>| {
            if let (Some(first), Some(last)) = (session.first(), session.last()) {
                let key = (symbol.to_string(), first.ts);
                out.insert(key, candle_of(session.iter().copied(), last.ts + gap_ms));
            }
            session.clear();
        };
        for t in ts {
            if let Some(last) = session.last() {
                let span = |x: i64| x.div_euclid(max_length_ms);
                if t.ts - last.ts > gap_ms || span(t.ts) != span(last.ts) {
                    close(&mut session);
                }
            }
            session.push(t);
        }
        close(&mut session);
    }
    out
}

/// `a` and `b` equal to `rel` relative error.
pub fn close_to(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()).max(f64::MIN_POSITIVE)
}

/// Trades of a JSON-lines file in the trade contract (every line a trade).
pub fn read_trades_file(path: &std::path::Path) -> Vec<Trade> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            Trade {
                symbol: v["symbol"].as_str().unwrap().to_string(),
                price: v["price"].as_f64().unwrap(),
                size: v["size"].as_f64().unwrap(),
                ts: v["ts"].as_i64().unwrap(),
            }
        })
        .collect()
}

/// Trades as a batch of the jobs' `trades` columns (symbol, price, size, ts).
pub fn batch_of(trades: &[Trade]) -> RecordBatch {
    let schema = Schema::new(vec![
        Field::new("symbol", DataType::Utf8, false),
        Field::new("price", DataType::Float64, false),
        Field::new("size", DataType::Float64, false),
        Field::new("ts", engine_sql::timestamp_type(), false),
    ]);
    let ts: Vec<i64> = trades.iter().map(|t| t.ts).collect();
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            trades
                .iter()
                .map(|t| Some(t.symbol.as_str()))
                .collect::<StringArray>(),
        ),
        Arc::new(trades.iter().map(|t| t.price).collect::<Float64Array>()),
        Arc::new(trades.iter().map(|t| t.size).collect::<Float64Array>()),
        Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
    ];
    RecordBatch::try_new(Arc::new(schema), columns).unwrap()
}
