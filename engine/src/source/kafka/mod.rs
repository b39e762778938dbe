//! The Kafka source: consume a topic, decode to Arrow, track event time,
//! dead-letter bad records, commit offsets once outputs are durable.

mod config;
mod dlq;
mod source;

pub use config::{KafkaSourceConfig, StartupMode};
pub use source::{KafkaSource, SourceBarriers, SourceProgress};
