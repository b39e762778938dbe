//! What a feed did, for the status line and the summary.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Counters of one feed, shared between the client and whoever reports them.
#[derive(Debug, Default)]
pub struct IngestStats {
    /// Trades delivered (after duplicates were dropped).
    pub trades: AtomicU64,
    /// Trades dropped as duplicates of one seen lately.
    pub duplicates: AtomicU64,
    /// Trades missed, by the provider's sequence numbers.
    pub missed: AtomicU64,
    /// Gaps (jumps in a sequence), each of one or more missed trades.
    pub gaps: AtomicU64,
    /// Frames or trades sent to the dead letters.
    pub dead_letters: AtomicU64,
    /// Messages that are not trades on purpose (price updates).
    pub skipped: AtomicU64,
    /// Connections after the first.
    pub reconnects: AtomicU64,
    /// Frames received.
    pub frames: AtomicU64,
    last_prices: Mutex<BTreeMap<String, String>>,
}

impl IngestStats {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The value of `counter`.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// The last price of `symbol` is `price`.
    pub fn set_last_price(&self, symbol: &str, price: &str) {
        let mut prices = self.last_prices.lock().expect("no panics while locked");
        let room = prices.len() < 10_000;
        match prices.get_mut(symbol) {
            Some(p) => price.clone_into(p),
            // The status line shows a few; a feed of ever new symbols must not grow this.
            None if room => {
                prices.insert(symbol.to_string(), price.to_string());
            }
            None => {}
        }
    }

    /// The last price of every symbol traded.
    pub fn last_prices(&self) -> BTreeMap<String, String> {
        self.last_prices
            .lock()
            .expect("no panics while locked")
            .clone()
    }

    /// One line of the counters, e.g. for the summary.
    pub fn summary(&self) -> String {
        format!(
            "{} trades, {} duplicates dropped, {} gaps ({} trades missed), {} dead letters, {} skipped, {} reconnects",
            Self::get(&self.trades),
            Self::get(&self.duplicates),
            Self::get(&self.gaps),
            Self::get(&self.missed),
            Self::get(&self.dead_letters),
            Self::get(&self.skipped),
            Self::get(&self.reconnects),
        )
    }
}
