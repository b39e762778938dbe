//! The Kafka sink: one JSON record per row, keyed, timestamped; idempotent,
//! or transactional (`sink.commit_mode = 'exactly_once'`).

mod config;
mod sink;
mod transaction;

pub use config::{CommitMode, KafkaSinkConfig, TimestampFormat};
pub use sink::{EncodedRows, KafkaSink};
pub use transaction::{CheckpointMark, GroupCommit, Recovery, Transactions};
