//! The Kafka sink: one JSON record per row, keyed, timestamped, idempotent.

mod config;
mod sink;

pub use config::{KafkaSinkConfig, TimestampFormat};
pub use sink::KafkaSink;
