//! `WITH (...)` options of a Kafka source table.

use engine_sql::{LineError, TableDef};

use crate::kafka::KafkaClientOptions;
use crate::source::{ReadOptions, StartupMode};

/// A Kafka source table's configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaSourceConfig {
    /// Table name (for logs and the default group id).
    pub table: String,
    /// `topic`: the topic read.
    pub topic: String,
    /// Broker address and pass-through settings.
    pub client: KafkaClientOptions,
    /// `group_id`: the consumer group whose offsets are used and committed.
    pub group_id: String,
    /// `scan.startup.mode`: `group-offsets` (default), `earliest-offset`, `latest-offset`.
    pub startup: StartupMode,
    /// `auto.offset.reset`: where `group-offsets` starts without a committed offset (`earliest` default).
    pub offset_reset_earliest: bool,
    /// `dlq.topic`: where bad records go (default `<topic>.dlq`).
    pub dlq_topic: String,
    /// Batching, decoding and row rules.
    pub read: ReadOptions,
}

impl KafkaSourceConfig {
    /// Reads and checks the options of `table`; unknown options are errors.
    pub fn from_table(table: &TableDef) -> Result<Self, LineError> {
        let mut o = table.options.clone();
        let topic = o.required("topic", table.line)?;
        let read = ReadOptions::from_options(&mut o)?;
        let client = KafkaClientOptions::from_options(&mut o, table.line)?;
        let startup = match o
            .one_of(
                "scan.startup.mode",
                &["group-offsets", "earliest-offset", "latest-offset"],
            )?
            .as_str()
        {
            "earliest-offset" => StartupMode::Earliest,
            "latest-offset" => StartupMode::Latest,
            _ => StartupMode::GroupOffsets,
        };
        let config = Self {
            table: table.name.clone(),
            group_id: o
                .get("group_id")
                .unwrap_or_else(|| format!("engine.{}", table.name)),
            startup,
            offset_reset_earliest: o.one_of("auto.offset.reset", &["earliest", "latest"])?
                == "earliest",
            dlq_topic: o.get("dlq.topic").unwrap_or_else(|| format!("{topic}.dlq")),
            read,
            topic,
            client,
        };
        o.reject_unknown("kafka")?;
        Ok(config)
    }
}
