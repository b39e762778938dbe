//! Duplicates across a reconnect: providers replay recent trades after a
//! new subscription (Coinbase's `last_match`, a test stream's last frames),
//! so trades whose `(symbol, id)` was seen lately are dropped. Memory is
//! bounded: the oldest ids are forgotten first. And gaps: where ids grow by
//! one per trade of a symbol, a jump is counted as missed trades.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

/// Ids remembered unless told otherwise: minutes of a busy feed, about
/// 10 MB (one shared `symbol\0venue\0id` string per id).
pub const DEFAULT_CAPACITY: usize = 100_000;

/// The `(symbol, venue, id)` triples seen lately, at most `capacity` of them
/// (a provider's ids may be unique per venue only, as Alpaca's are).
#[derive(Debug)]
pub struct Dedupe {
    seen: HashSet<Arc<str>>,
    order: VecDeque<Arc<str>>,
    capacity: usize,
}

impl Dedupe {
    /// Remembers at most `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: HashSet::new(),
            order: VecDeque::new(),
            capacity: capacity.max(1),
        }
    }

    /// Whether `(symbol, venue, id)` is new (and remembers it).
    pub fn first_time(&mut self, symbol: &str, venue: &str, id: &str) -> bool {
        // Symbols and venues hold no NUL (they are checked for control characters,
        // ids are short text), so the triple is unambiguous.
        let key: Arc<str> = format!("{symbol}\0{venue}\0{id}").into();
        if self.seen.contains(&key) {
            return false;
        }
        if self.order.len() == self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        self.seen.insert(Arc::clone(&key));
        self.order.push_back(key);
        true
    }
}

/// Symbols whose sequence is followed: a feed sending ever new symbols
/// (a hostile server) must not grow the memory without bound.
const MAX_SYMBOLS: usize = 100_000;

/// The last sequence number seen per symbol, for counting missed trades.
#[derive(Debug, Default)]
pub struct Gaps {
    last: HashMap<String, i64>,
}

impl Gaps {
    /// `sequence` of `symbol` was seen: how many sequence numbers were
    /// skipped since the last one (0 for the first, or one seen before).
    pub fn observe(&mut self, symbol: &str, sequence: i64) -> u64 {
        match self.last.get_mut(symbol) {
            None => {
                if self.last.len() < MAX_SYMBOLS {
                    self.last.insert(symbol.to_string(), sequence);
                }
                0
            }
            Some(last) if sequence > *last => {
                let missed = sequence.saturating_sub(*last).saturating_sub(1);
                *last = sequence;
                u64::try_from(missed).unwrap_or(0)
            }
            Some(_) => 0,
        }
    }

    /// The provider says `sequence` is the last of `symbol` (a heartbeat):
    /// how many after the last one seen were missed (it is one of them).
    pub fn last_was(&mut self, symbol: &str, sequence: i64) -> u64 {
        match self.last.get(symbol) {
            Some(&last) if sequence > last => self.observe(symbol, sequence) + 1,
            _ => self.observe(symbol, sequence),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forgets_the_oldest_first() {
        let mut d = Dedupe::new(2);
        assert!(d.first_time("A", "", "1"));
        assert!(!d.first_time("A", "", "1"));
        assert!(d.first_time("B", "", "1"), "ids are per symbol");
        assert!(d.first_time("A", "", "2"));
        assert!(d.first_time("A", "", "1"), "forgotten after two newer ids");
        assert!(!d.first_time("A", "", "2"));
        assert!(d.first_time("A", "X", "2"), "and per venue");
    }

    #[test]
    fn counts_skipped_sequence_numbers() {
        let mut g = Gaps::default();
        assert_eq!(g.observe("A", 10), 0);
        assert_eq!(g.observe("A", 11), 0);
        assert_eq!(g.observe("A", 15), 3);
        assert_eq!(g.observe("A", 12), 0, "an older one is no gap");
        assert_eq!(g.observe("B", 1), 0);
        assert_eq!(
            g.last_was("A", 15),
            0,
            "a heartbeat naming the last trade seen"
        );
        assert_eq!(g.last_was("A", 20), 5, "16 to 20 missed");
        assert_eq!(g.observe("A", 21), 0);
        assert_eq!(
            g.observe("A", i64::MAX),
            u64::try_from(i64::MAX - 22).unwrap()
        );
    }
}
