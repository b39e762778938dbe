//! Trades as a market makes them: each symbol's price follows a geometric
//! random walk rounded to the tick, sizes come in round lots (with some odd
//! lots), arrivals are a Poisson process, and a few symbols trade far more
//! often than the rest (Zipf weights). Everything follows from the seed.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// What the simulator makes.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedConfig {
    /// Ticker symbols; the first ones are the busiest.
    pub symbols: Vec<String>,
    /// Trades per second of market time, over all symbols.
    pub rate: f64,
    /// Seed: the same seed and settings give the same records, byte for byte.
    pub seed: u64,
    /// Event time of the first trade, ms since the epoch.
    pub start_ms: i64,
    /// Records leave up to this many ms after their event time (bounded disorder).
    pub disorder_ms: u64,
    /// Share of records sent far behind the watermark (event time a minute
    /// older than the disorder bound allows).
    pub late_fraction: f64,
    /// Share of malformed records (for the dead-letter path).
    pub bad_fraction: f64,
}

/// How a record was made, so tests know what to expect of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A trade within the disorder bound.
    Trade,
    /// A trade sent a minute later than the watermark allows.
    Late,
    /// Not a valid trade.
    Bad,
}

/// One record, in the order the feed sends them.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedRecord {
    /// The Kafka key: the symbol.
    pub key: String,
    /// The JSON value.
    pub payload: Vec<u8>,
    /// Market time at which it is sent (ms): non-decreasing, used for pacing.
    pub sent_ms: i64,
    /// The trade's event time (ms); for bad records, the time it was sent.
    pub ts: i64,
    /// What it is.
    pub kind: RecordKind,
}

/// Extra delay of a late record beyond the disorder bound.
const LATE_BY_MS: i64 = 60_000;
/// Daily volatility of the random walk, roughly a liquid stock's.
const DAILY_VOLATILITY: f64 = 0.02;
/// Price tick.
const TICK: f64 = 0.01;

/// The trade simulator: an endless iterator of records.
#[derive(Debug)]
pub struct Simulator {
    config: FeedConfig,
    rng: StdRng,
    prices: Vec<f64>,
    /// Cumulative Zipf weights for picking a symbol.
    cumulative: Vec<f64>,
    /// Market time of the next send, in fractional ms.
    clock_ms: f64,
    /// Last event time per symbol, so each symbol's trades have distinct times.
    last_ts: Vec<i64>,
    /// Records made but not yet sent, by (send time, sequence).
    pending: std::collections::BTreeMap<(i64, u64), FeedRecord>,
    sequence: u64,
}

impl Simulator {
    /// A simulator for `config`. Fractions must be in [0, 1] and the rate positive (checked by the CLI).
    pub fn new(config: FeedConfig) -> Self {
        let mut rng = StdRng::seed_from_u64(config.seed);
        let prices = (0..config.symbols.len())
            .map(|_| (rng.random_range(20.0..500.0) / TICK).round() * TICK)
            .collect();
        let weights: Vec<f64> = (1..=config.symbols.len())
            .map(|rank| 1.0 / rank as f64)
            .collect();
        let total: f64 = weights.iter().sum();
        let cumulative = weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w / total;
                Some(*acc)
            })
            .collect();
        let n = config.symbols.len();
        Self {
            clock_ms: config.start_ms as f64,
            config,
            rng,
            prices,
            cumulative,
            last_ts: vec![i64::MIN; n],
            pending: Default::default(),
            sequence: 0,
        }
    }

    /// The highest rate (trades/s of market time) `symbols` symbols reach:
    /// event times are whole milliseconds and distinct per symbol (so open and
    /// close are never a tie), 1000 trades a second each.
    pub fn max_rate(symbols: usize) -> f64 {
        1000.0 * symbols as f64
    }

    /// The next trade in event-time order (before disorder is applied).
    fn next_trade(&mut self) -> (usize, f64, u64, i64) {
        // Poisson arrivals: exponential gaps with mean 1000 / rate ms.
        let u: f64 = self.rng.random_range(f64::MIN_POSITIVE..1.0);
        self.clock_ms += -u.ln() * 1000.0 / self.config.rate;
        let pick: f64 = self.rng.random();
        let n = self.cumulative.len();
        let mut s = self
            .cumulative
            .iter()
            .position(|c| pick <= *c)
            .unwrap_or(n - 1);
        // A symbol that already traded in this millisecond passes the trade to the
        // next symbol that has not, so a busy symbol never runs ahead of the clock
        // (which would hold its trades back and grow the send queue without bound).
        // When every symbol has traded in it, the clock moves to the next millisecond:
        // the market is then as busy as it can be (`max_rate`).
        let mut now = self.clock_ms as i64;
        if self.last_ts[s] >= now {
            match (1..n)
                .map(|k| (s + k) % n)
                .find(|&other| self.last_ts[other] < now)
            {
                Some(free) => s = free,
                None => {
                    now += 1;
                    self.clock_ms = now as f64;
                }
            }
        }
        let ts = now;
        let dt_days = if self.last_ts[s] == i64::MIN {
            0.0
        } else {
            (ts - self.last_ts[s]) as f64 / 86_400_000.0
        };
        self.last_ts[s] = ts;
        // Geometric random walk: log-return ~ N(-sigma^2/2 dt, sigma^2 dt), Box-Muller normal.
        let (u1, u2): (f64, f64) = (
            self.rng.random_range(f64::MIN_POSITIVE..1.0),
            self.rng.random(),
        );
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let sigma = DAILY_VOLATILITY * dt_days.sqrt();
        let next = self.prices[s] * (sigma * z - sigma * sigma / 2.0).exp();
        self.prices[s] = ((next / TICK).round() * TICK).max(TICK);
        let size = if self.rng.random_bool(0.9) {
            100 * self.rng.random_range(1..=10)
        } else {
            self.rng.random_range(1..100)
        };
        (s, self.prices[s], size, ts)
    }

    fn make(&mut self) {
        let (s, price, size, ts) = self.next_trade();
        let symbol = self.config.symbols[s].clone();
        let roll: f64 = self.rng.random();
        let (kind, sent_ms) = if roll < self.config.bad_fraction {
            (RecordKind::Bad, ts)
        } else if roll < self.config.bad_fraction + self.config.late_fraction {
            (
                RecordKind::Late,
                ts + self.config.disorder_ms as i64 + LATE_BY_MS,
            )
        } else {
            let delay = if self.config.disorder_ms == 0 {
                0
            } else {
                self.rng.random_range(0..=self.config.disorder_ms)
            };
            (RecordKind::Trade, ts + delay as i64)
        };
        let payload = match kind {
            RecordKind::Bad => self.malformed(&symbol, price, ts),
            _ => format!(
                r#"{{"symbol":"{symbol}","price":{},"size":{size},"ts":{ts}}}"#,
                format_price(price)
            )
            .into_bytes(),
        };
        self.pending.insert(
            (sent_ms, self.sequence),
            FeedRecord {
                key: symbol,
                payload,
                sent_ms,
                ts,
                kind,
            },
        );
        self.sequence += 1;
    }

    fn malformed(&mut self, symbol: &str, price: f64, ts: i64) -> Vec<u8> {
        match self.rng.random_range(0..5) {
            0 => format!(r#"{{"symbol":"{symbol}","price":{}"#, format_price(price)).into_bytes(), // truncated
            1 => format!(r#"{{"symbol":"{symbol}","price":"n/a","size":100,"ts":{ts}}}"#)
                .into_bytes(), // wrong type
            2 => format!(
                r#"{{"symbol":"{symbol}","price":{},"ts":{ts}}}"#,
                format_price(price)
            )
            .into_bytes(), // no size
            3 => Vec::new(), // empty
            _ => b"\x00\xff not json".to_vec(),
        }
    }
}

impl Iterator for Simulator {
    type Item = FeedRecord;

    /// Records in send order: a record is released once no record still to be
    /// made could be sent before it. Records yet to be made have event times
    /// at or after the clock, and none is sent before its event time.
    fn next(&mut self) -> Option<FeedRecord> {
        loop {
            if let Some(((sent, _), _)) = self.pending.first_key_value() {
                if *sent <= self.clock_ms.floor() as i64 {
                    return self.pending.pop_first().map(|(_, record)| record);
                }
            }
            self.make();
        }
    }
}

/// Prices with at most two decimals, as a feed prints them.
fn format_price(p: f64) -> String {
    let s = format!("{p:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}
