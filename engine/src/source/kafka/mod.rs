//! The Kafka source: consume a topic, decode to Arrow, track event time,
//! dead-letter bad records, commit offsets once outputs are durable; with
//! `--scale-out`, share the partitions with other processes through the group.

mod config;
mod dlq;
mod group;
mod source;

pub use config::{KafkaSourceConfig, StartupMode};
pub use group::{end_offsets, GroupCommits, GroupEvent, GroupMember};
pub use source::{KafkaSource, SourceBarriers, SourceProgress};
