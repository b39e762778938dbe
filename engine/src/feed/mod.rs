//! The market feed: a reproducible simulator of trades in the trade contract
//! (`{"symbol","price","size","ts"}`, key = symbol), with disorder, late and
//! malformed records on purpose, for driving and testing the engine.

mod market;

pub use market::{FeedConfig, FeedRecord, RecordKind, Simulator};
