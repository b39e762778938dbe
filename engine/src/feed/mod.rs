//! The market feed: a reproducible simulator of trades in the trade contract
//! (`{"symbol","price","size","ts"}`, key = symbol), with disorder, late and
//! malformed records on purpose, for driving and testing the engine.

mod market;
mod publish;
mod replay;

pub use market::{FeedConfig, FeedRecord, RecordKind, Simulator};
pub use publish::{
    create_topics, feed_producer, kind_index, publish, send, FeedProducer, Pacer, Speed,
};
pub use replay::{replay, Mapping, Replay, ReplayOptions, ReplayOrder};

/// Symbols a feed trades unless told otherwise (`SYM000`...).
pub const DEFAULT_SYMBOLS: usize = 20;
/// Trades per second of market time unless told otherwise.
pub const DEFAULT_RATE: f64 = 1000.0;
/// Seed unless told otherwise.
pub const DEFAULT_SEED: u64 = 42;

/// `n` generated ticker names, `SYM000`, `SYM001`, ...
pub fn symbol_names(n: usize) -> Vec<String> {
    let width = n.saturating_sub(1).to_string().len().max(3);
    (0..n).map(|i| format!("SYM{i:0width$}")).collect()
}
