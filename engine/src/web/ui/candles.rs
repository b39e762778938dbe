//! The candles the page draws: the newest rows of a derived topic, by
//! symbol and window start, kept as readers of the topic keep them (a later
//! revision of a window replaces the earlier one).

use std::collections::BTreeMap;

use serde::Serialize;

/// One candle as the page draws it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candle {
    /// The symbol.
    pub symbol: String,
    /// The window's start and end (ms since the epoch, UTC).
    pub start: i64,
    /// See `start`.
    pub end: i64,
    /// Open, high, low and close prices.
    pub open: f64,
    /// See `open`.
    pub high: f64,
    /// See `open`.
    pub low: f64,
    /// See `open`.
    pub close: f64,
    /// Volume traded in the window.
    pub volume: f64,
    /// Volume-weighted average price, if the job computes it.
    pub vwap: Option<f64>,
    /// Trades in the window, if the job counts them.
    pub trades: Option<i64>,
    /// False for an early row of a window still open (`window_final`);
    /// true when the job emits final rows only.
    pub complete: bool,
}

impl Candle {
    /// A derived topic's row (the JSON the Kafka sink writes: times as
    /// epoch milliseconds or RFC 3339) as a candle; the error says what is
    /// missing.
    pub fn from_json(payload: &[u8]) -> Result<Self, String> {
        let v: serde_json::Value =
            serde_json::from_slice(payload).map_err(|e| format!("not JSON: {e}"))?;
        let number = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
        let price = |k: &str| number(k).ok_or_else(|| format!("no number `{k}`"));
        let time = |k: &str| -> Result<i64, String> {
            match v.get(k) {
                Some(serde_json::Value::Number(n)) => n.as_i64(),
                Some(serde_json::Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s)
                    .ok()
                    .map(|t| t.timestamp_millis()),
                _ => None,
            }
            .ok_or_else(|| format!("no time `{k}`"))
        };
        let symbol = (v.get("symbol").and_then(serde_json::Value::as_str))
            .ok_or("no text `symbol`")?
            .to_string();
        if symbol.len() > MAX_SYMBOL_BYTES {
            return Err(format!("`symbol` is over {MAX_SYMBOL_BYTES} bytes"));
        }
        Ok(Self {
            symbol,
            start: time("window_start")?,
            end: time("window_end")?,
            open: price("open")?,
            high: price("high")?,
            low: price("low")?,
            close: price("close")?,
            volume: number("volume").unwrap_or(0.0),
            vwap: number("vwap"),
            trades: v.get("trades").and_then(serde_json::Value::as_i64),
            complete: v
                .get("window_final")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(true),
        })
    }
}

/// The newest candles of each symbol, at most `keep` each.
#[derive(Debug)]
pub struct CandleBook {
    keep: usize,
    by_symbol: BTreeMap<String, BTreeMap<i64, Candle>>,
    /// Candles of symbols beyond [`MAX_SYMBOLS`], not kept.
    refused: u64,
}

/// Symbols a book keeps: a topic of many more (or a hostile one) must not
/// grow the page's memory without bound: 10,000 symbols of 240 candles are
/// an estimated 0.7 GB at worst (a candle and its map entry, ~300 bytes).
pub const MAX_SYMBOLS: usize = 10_000;

/// The longest symbol the page draws, in bytes (longer rows are unreadable to it).
pub const MAX_SYMBOL_BYTES: usize = 64;

impl CandleBook {
    /// A book keeping the newest `keep` candles of each symbol.
    pub fn new(keep: usize) -> Self {
        Self {
            keep: keep.max(1),
            by_symbol: BTreeMap::new(),
            refused: 0,
        }
    }

    /// Candles not kept because the book already holds [`MAX_SYMBOLS`] others.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Puts `candle` in, replacing an earlier revision of its window.
    /// Returns whether the book changed (a candle older than every kept one
    /// of a full symbol is dropped).
    pub fn upsert(&mut self, candle: Candle) -> bool {
        if !self.by_symbol.contains_key(&candle.symbol) && self.by_symbol.len() >= MAX_SYMBOLS {
            self.refused += 1;
            return false;
        }
        let candles = self.by_symbol.entry(candle.symbol.clone()).or_default();
        if candles.len() >= self.keep
            && candles
                .first_key_value()
                .is_some_and(|(s, _)| candle.start < *s)
        {
            return false;
        }
        if candles.get(&candle.start) == Some(&candle) {
            return false;
        }
        candles.insert(candle.start, candle);
        while candles.len() > self.keep {
            candles.pop_first();
        }
        true
    }

    /// Every symbol seen, in order.
    pub fn symbols(&self) -> Vec<String> {
        self.by_symbol.keys().cloned().collect()
    }

    /// `symbol`'s candles, oldest first.
    pub fn candles(&self, symbol: &str) -> Vec<Candle> {
        self.by_symbol
            .get(symbol)
            .map(|c| c.values().cloned().collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(symbol: &str, start: i64, close: f64, complete: Option<bool>) -> Vec<u8> {
        let mut v = serde_json::json!({
            "symbol": symbol, "window_start": start, "window_end": start + 60_000,
            "open": 1.0, "high": 2.0, "low": 0.5, "close": close, "volume": 10.0,
            "vwap": 1.25, "trades": 3,
        });
        if let Some(f) = complete {
            v["window_final"] = f.into();
        }
        v.to_string().into_bytes()
    }

    #[test]
    fn rows_parse_with_either_time_format() {
        let c = Candle::from_json(&row("AAPL", 60_000, 1.5, None)).unwrap();
        assert_eq!(
            (c.start, c.end, c.close, c.trades, c.complete),
            (60_000, 120_000, 1.5, Some(3), true)
        );
        let text = br#"{"symbol":"X","window_start":"1970-01-01T00:01:00Z","window_end":"1970-01-01T00:02:00Z","open":1,"high":1,"low":1,"close":1}"#;
        let c = Candle::from_json(text).unwrap();
        assert_eq!((c.start, c.vwap, c.volume), (60_000, None, 0.0));
        assert_eq!(
            Candle::from_json(b"{\"symbol\":\"X\"}").unwrap_err(),
            "no time `window_start`"
        );
        assert!(Candle::from_json(b"nope").is_err());
    }

    #[test]
    fn the_book_holds_at_most_max_symbols_and_short_symbols() {
        let mut book = CandleBook::new(2);
        for i in 0..MAX_SYMBOLS {
            assert!(book.upsert(Candle::from_json(&row(&format!("S{i}"), 0, 1.0, None)).unwrap()));
        }
        let one_more = Candle::from_json(&row("ONE_MORE", 0, 1.0, None)).unwrap();
        assert!(!book.upsert(one_more));
        assert_eq!((book.symbols().len(), book.refused()), (MAX_SYMBOLS, 1));
        // A symbol already kept still takes new candles.
        assert!(book.upsert(Candle::from_json(&row("S0", 60_000, 1.0, None)).unwrap()));
        let long = "X".repeat(MAX_SYMBOL_BYTES + 1);
        let err = Candle::from_json(&row(&long, 0, 1.0, None)).unwrap_err();
        assert!(
            err.contains("over 64 bytes") && !err.contains(&long),
            "{err}"
        );
    }

    #[test]
    fn later_revisions_replace_and_old_candles_go() {
        let mut book = CandleBook::new(2);
        let early = Candle::from_json(&row("A", 0, 1.0, Some(false))).unwrap();
        assert!(book.upsert(early.clone()));
        assert!(!book.upsert(early), "the same row again changes nothing");
        assert!(book.upsert(Candle::from_json(&row("A", 0, 1.1, Some(true))).unwrap()));
        assert_eq!(book.candles("A")[0].close, 1.1);
        assert!(book.candles("A")[0].complete);
        assert!(book.upsert(Candle::from_json(&row("A", 60_000, 1.2, None)).unwrap()));
        assert!(book.upsert(Candle::from_json(&row("A", 120_000, 1.3, None)).unwrap()));
        let starts: Vec<i64> = book.candles("A").iter().map(|c| c.start).collect();
        assert_eq!(starts, [60_000, 120_000], "the newest two kept");
        assert!(
            !book.upsert(Candle::from_json(&row("A", 0, 9.0, None)).unwrap()),
            "older than all kept"
        );
        assert!(book.upsert(Candle::from_json(&row("B", 0, 1.0, None)).unwrap()));
        assert_eq!(book.symbols(), ["A", "B"]);
    }
}
