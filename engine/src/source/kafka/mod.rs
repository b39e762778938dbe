//! The Kafka source: consume a topic, decode to Arrow, track event time,
//! dead-letter bad records, commit offsets once outputs are durable; with
//! `--scale-out`, share the partitions with other processes through the group.

mod commit;
mod config;
mod dlq;
mod group;
mod source;

pub use commit::{KafkaPositions, OffsetCommitter};
pub use config::{KafkaSourceConfig, StartupMode};
pub use dlq::{DeadLetters, Origin};
pub use group::{committed_offsets, end_offsets, GroupCommits, GroupEvent, GroupMember};
pub use source::{row_rules, KafkaSource, SourceBarriers, SourceProgress};
